"""Every method beyond the paper's six algorithms against Adam, in every experiment.

An optimizer author's question ("does mine beat Adam here?") and PAPER.md's extra rows
(AdaMax, NAdam, AMSGrad, AdamW) are not claims of the paper, yet a reader wants them judged
as carefully: the same rules, thresholds, selection rules, seeds and grid-edge cautions as
the claims (judge.judge_rule), on the same tables.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from adamrepro.metrics import metric_set
from adamrepro.report.claims import BEATS, CLAIMS, FORMER_NAMES, REVIEWER_CLAIMS
from adamrepro.report.document import Block, Heading, Paragraph, Table
from adamrepro.report.judge import judge_rule
from adamrepro.report.rules import NOT_RUN, Beats, Rule, Verdict, tally
from adamrepro.results.measures import Measured, Method
from adamrepro.results.tables import in_config_order, variants
from adamrepro.wording import count

# The algorithms the paper races (Figs. 1-4); every other optimizer is an extra row.
PAPER_OPTIMIZERS = frozenset({"adam", "adagrad", "rmsprop", "adadelta", "sgd_nesterov", "sfo"})
# How the report names them: Sec. 7's AdaMax and averaging are the paper's too, but no
# figure races them ("none of the paper's six algorithms" read as if they were not its own).
PAPER_SIX = ("the six algorithms the paper's figures race (Adam, AdaGrad, RMSProp, AdaDelta, "
             "SGD Nesterov, SFO)")
ADAM = "adam"

# What each row asks, and the rule that decides it (rules.py's vocabulary, claims.py's margin).
QUESTIONS = (("converges faster than", {}), ("ends below", {"measure": "final"}))


@dataclass(frozen=True)
class Row:
    experiment: str
    method: str  # labels in the experiment's config
    adam: str | None
    question: str
    rule: Rule | None
    why_not: str | None = None  # without a rule: why the method has no Adam to race


def _named_by_claims(experiment: str) -> set[Method]:
    """The methods some claim of the paper or the reviewer already compares in `experiment`."""
    return {method for claim in (*CLAIMS, *REVIEWER_CLAIMS) if claim.experiment == experiment
            for method in claim.rule.methods}


def _identities(found: Measured) -> pd.DataFrame:
    """One row per method label that trained: its optimizer, variant and the model settings
    its config entry sets (`model:`, e.g. dropout), in config order."""
    frame = found.curves.assign(variant=variants(found.curves))
    frame = frame[["method", "optimizer", "variant"]].drop_duplicates("method")
    methods = found.meta["config"].methods
    frame = frame.assign(model=frame["method"].map(
        lambda m: _settings(methods[m].model if m in methods else {})))
    return in_config_order(frame, found.meta)


def _settings(model: dict) -> str:
    return ", ".join(f"model.{key}={value}" for key, value in sorted(model.items()))


def _adam_for(found: Measured, method, adams: pd.DataFrame) -> tuple[str | None, str | None]:
    """The Adam a method is compared with, or None and why: one trained with the same model
    settings (its config's `model:`, such as Fig. 3's dropout) and, among those, Adam of the
    method's own variant (a `variant: constant_lr` meets Adam at a constant α), else plain
    Adam, else the only one; none where no Adam qualifies, or where the choice would be a
    guess."""
    if adams.empty:
        return None, (f"no runs of Adam in {found.name} to compare with (it has "
                      f"{', '.join(sorted(found.methods))})")
    alike = adams[adams["model"] == method.model]
    for variant in (method.variant, ""):
        chosen = list(alike[alike["variant"] == variant]["method"])
        named = str(Method(ADAM, variant or None))
        if named in chosen:  # `adam` beside a tuned `adam_tiny`: the one labelled so
            return named, None
        if len(chosen) == 1:
            return chosen[0], None
        if chosen:
            return None, (f"several Adams of {method.method}'s variant in {found.name} "
                          f"({', '.join(chosen)}) and none labelled {named}: label the "
                          f"one to race {named}, or give the others a variant")
    if len(alike) == 1:
        return str(alike["method"].iloc[0]), None
    if alike.empty:
        own = "the experiment's own"
        return None, (f"no Adam in {found.name} trained with {method.method}'s model settings "
                      f"({method.model or own}); Adam's: "
                      + "; ".join(f"{a.method}: {a.model or own}" for a in adams.itertuples()))
    return None, (f"several Adams in {found.name} ({', '.join(alike['method'])}) and none of "
                  f"{method.method}'s variant nor plain: give it the variant of the one to race")


def rows_of(found: Measured) -> tuple[list[Row], list[str]]:
    """The extra methods of one experiment, each against its Adam, one row per question;
    and the methods left out, being one of the paper's optimizers that no claim names."""
    named = _named_by_claims(FORMER_NAMES.get(found.name, found.name))  # mlp_dropout: mlp's
    methods = _identities(found)
    adams = methods[methods["optimizer"] == ADAM]
    rows, paper = [], []
    for method in methods.itertuples():
        if Method(method.optimizer, method.variant or None) in named:
            continue
        if method.optimizer in PAPER_OPTIMIZERS:
            paper.append(method.method)
            continue
        adam, why = _adam_for(found, method, adams)
        for question, kwargs in QUESTIONS:
            rule = Beats(method.method, adam, margin=BEATS, **kwargs) if adam else None
            rows.append(Row(found.name, method.method, adam, question, rule, why))
    raced = {row.adam for row in rows}
    return rows, [label for label in paper if label not in raced]


def judged_rows(measured: dict[str, Measured]) -> tuple[list[tuple[Row, Verdict]],
                                                      dict[str, list[str]]]:
    """Every row with its verdict; and by experiment, the methods left out (rows_of)."""
    judged, left_out = [], {}
    for found in measured.values():
        rows, paper = rows_of(found)
        if paper:
            left_out[found.name] = paper
        for row in rows:
            verdict = (judge_rule(row.rule, found, found.name) if row.rule is not None
                       else Verdict(NOT_RUN, row.why_not))
            judged.append((row, verdict))
    return judged, left_out


def tested(found: Measured, method: str, adam: str | None) -> str:
    """The final test metrics of the method's selected runs and of its Adam's (mean over
    seeds): the claims judge the training cost, a reader racing an optimizer wants both."""
    best = found.best.set_index("method")
    parts = []
    for column in metric_set(found.meta).columns():
        if column.split != "test" or f"final_{column.name}" not in best.columns:
            continue
        values = [best[f"final_{column.name}"].get(label, math.nan)
                  for label in (method, adam) if label is not None]
        text = " / ".join(("-" if not math.isfinite(v) else
                           f"{100 * v:.2f}%" if column.percent else f"{v:.4g}") for v in values)
        parts.append(f"{column.label} {text}")
    return "; ".join(parts) or "-"


def blocks(measured: dict[str, Measured]) -> list[Block]:
    """The report's section, or nothing where every method is one of the paper's."""
    judged, left_out = judged_rows(measured)
    skipped = "; ".join(f"{', '.join(labels)} ({name})" for name, labels in left_out.items())
    not_raced = (f" Not raced here, being one of the paper's optimizers with other settings "
                 f"that no claim names: {skipped}." if skipped else "")
    if not judged:  # the section names what it leaves out, or is left out itself
        return [Heading(2, "Other methods against Adam"),
                Paragraph(f"Every method trained is one of {PAPER_SIX}, and each is compared "
                          f"by the claims above or is one of them with other settings."
                          + not_raced)] if skipped else []
    summary = tally(v.status for _, v in judged)
    names = list(dict.fromkeys(row.method for row, _ in judged))
    scales = sorted({measured[row.experiment].meta["scale"] for row, _ in judged
                     if isinstance(measured[row.experiment].meta.get("scale"), str)})
    rows = tuple((row.method, f"{row.experiment} ({measured[row.experiment].meta.get('scale')})",
                  f"{row.method} {row.question} {row.adam or 'Adam'}.", verdict.status,
                  verdict.numbers, tested(measured[row.experiment], row.method, row.adam),
                  row.rule.describe() if row.rule else "-")
                 for row, verdict in judged)
    return [
        Heading(2, "Other methods against Adam"),
        Paragraph(
            f"{count(len(judged), 'comparison', 'comparisons')} of "
            f"{count(len(names), 'method', 'methods')} that are none of {PAPER_SIX} "
            f"and that no claim above compares ({', '.join(names)}): "
            f"{summary}. Each is raced against Adam in the same experiment, trained with the "
            "same model settings (a method's own `model:`, such as Fig. 3's dropout): Adam of "
            "the method's own variant (with temporal averaging in Sec. 7; a variant "
            "`constant_lr` meets Adam at a constant α on MNIST), else plain Adam, else the "
            "experiment's only Adam (Adam with dropout on IMDB). The methods table of each "
            "experiment below gives both sides' settings. Decided as the claims are, by the "
            "same rules and selection, with the spread over seeds and the grid-edge caution: "
            f"'converges faster' is a mean cost over passes 1-N below {1 - BEATS:g} × Adam's, "
            f"'ends below' a final cost below {1 - BEATS:g} × Adam's; the thresholds give the "
            "words a fixed meaning and are no test of significance. A row that does not hold "
            "says by how much, either way: a negative percentage is a cost below Adam's, by "
            "less than the margin. The test column gives the final test metrics of the "
            "method, then Adam's (selected runs, mean over seeds)."
            + (f" At {' and '.join(scales)} scale a verdict is about these runs, not about "
               "the paper's problems." if set(scales) - {"paper"} else "")
            + not_raced),
        Table(("method", "experiment (scale)", "compared", "verdict", "numbers",
               "final test (method / Adam)", "rule"), rows),
    ]
