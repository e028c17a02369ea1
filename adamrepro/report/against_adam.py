"""Every method beyond the paper's six algorithms against Adam, in every experiment.

An optimizer author's question ("does mine beat Adam here?") and PAPER.md's extra rows
(AdaMax, NAdam, AMSGrad, AdamW) are not claims of the paper, yet a reader wants them judged
as carefully: the same rules, thresholds, selection rules, seeds and grid-edge cautions as
the claims (claims.judge_rule), on the same tables.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from adamrepro.report.claims import BEATS, CLAIMS, EXPERIMENTS, REVIEWER_CLAIMS, judge_rule
from adamrepro.report.document import Block, Heading, Paragraph, Table
from adamrepro.report.measures import Measured, Method
from adamrepro.report.rules import NOT_RUN, VERDICTS, Beats, Rule, Verdict
from adamrepro.results.store import variants
from adamrepro.wording import count

# The algorithms the paper races (Figs. 1-4); every other optimizer is an extra row.
PAPER_OPTIMIZERS = frozenset({"adam", "adagrad", "rmsprop", "adadelta", "sgd_nesterov", "sfo"})
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


def _named_by_claims(experiment: str) -> set[Method]:
    """The methods some claim of the paper or the reviewer already compares in `experiment`."""
    return {method for claim in (*CLAIMS, *REVIEWER_CLAIMS) if claim.experiment == experiment
            for method in claim.rule.methods}


def _identities(found: Measured) -> pd.DataFrame:
    """One row per method label that trained: its optimizer and variant, in config order."""
    frame = found.curves.assign(variant=variants(found.curves))
    frame = frame[["method", "optimizer", "variant"]].drop_duplicates("method")
    order = list(found.meta["config"].get("methods", {}))
    return frame.assign(at=frame["method"].map(
        lambda m: order.index(m) if m in order else len(order))).sort_values(["at", "method"])


def _adam_for(variant: str, adams: pd.DataFrame) -> str | None:
    """The Adam a method is compared with: Adam of its own variant (with dropout on IMDB,
    temporal averaging in Sec. 7), else plain Adam, else the experiment's only Adam."""
    for chosen in (adams[adams["variant"] == variant], adams[adams["variant"] == ""]):
        if len(chosen):
            return str(chosen["method"].iloc[0])
    return str(adams["method"].iloc[0]) if len(adams) == 1 else None


def rows_of(found: Measured) -> list[Row]:
    """The extra methods of one experiment, each against its Adam, one row per question."""
    named = _named_by_claims(found.name) if found.name in EXPERIMENTS.values() else set()
    methods = _identities(found)
    adams = methods[methods["optimizer"] == ADAM]
    rows = []
    for method in methods.itertuples():
        if method.optimizer in PAPER_OPTIMIZERS or Method(method.optimizer, method.variant
                                                          or None) in named:
            continue
        adam = _adam_for(method.variant, adams)
        for question, kwargs in QUESTIONS:
            rule = Beats(method.method, adam, margin=BEATS, **kwargs) if adam else None
            rows.append(Row(found.name, method.method, adam, question, rule))
    return rows


def judged_rows(measured: dict[str, Measured]) -> list[tuple[Row, Verdict]]:
    judged = []
    for found in measured.values():
        for row in rows_of(found):
            verdict = (judge_rule(row.rule, found, found.name) if row.rule is not None
                       else Verdict(NOT_RUN, f"no runs of Adam in {found.name} to compare "
                                             f"with (it has {', '.join(sorted(found.methods))})"))
            judged.append((row, verdict))
    return judged


def blocks(measured: dict[str, Measured]) -> list[Block]:
    """The report's section, or nothing where every method is one of the paper's."""
    judged = judged_rows(measured)
    if not judged:
        return []
    counts = {status: sum(v.status == status for _, v in judged) for status in VERDICTS}
    summary = ", ".join(f"{n} {status}" for status, n in counts.items() if n)
    names = list(dict.fromkeys(row.method for row, _ in judged))
    rows = tuple((row.method, f"{row.experiment} ({measured[row.experiment].meta.get('scale')})",
                  f"{row.method} {row.question} {row.adam or 'Adam'}.", verdict.status,
                  verdict.numbers, row.rule.describe() if row.rule else "-")
                 for row, verdict in judged)
    return [
        Heading(2, "Other methods against Adam"),
        Paragraph(
            f"{count(len(judged), 'comparison', 'comparisons')} of "
            f"{count(len(names), 'method', 'methods')} that are none of the paper's "
            f"six algorithms and that no claim above compares ({', '.join(names)}): "
            f"{summary}. Each is raced against Adam in the same experiment: Adam of its own "
            "variant (with dropout on IMDB, with temporal averaging in Sec. 7), else plain "
            "Adam. Decided as the claims are, by the same rules and selection, with the "
            f"spread over seeds and the grid-edge caution: 'converges faster' is a mean cost "
            f"over passes 1-N below {1 - BEATS:g} × Adam's, 'ends below' a final cost below "
            f"{1 - BEATS:g} × Adam's. A row that does not hold says by how much, either way: "
            "a negative percentage is a cost below Adam's, by less than the margin."),
        Table(("method", "experiment (scale)", "compared", "verdict", "numbers", "rule"),
              rows),
    ]
