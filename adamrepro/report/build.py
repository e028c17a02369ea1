"""Assemble the report of a results folder: the verdict on every claim, then per experiment
its figures, scale, provenance and the selected run of each method."""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from pathlib import Path

import pandas as pd

from adamrepro.atomic import atomic_write
from adamrepro.config import Experiment
from adamrepro.errors import UserError
from adamrepro.metrics import column_of, metric_set
from adamrepro.report import against_adam
from adamrepro.report.claims import CLAIMS, EXPERIMENTS, FORMER_NAMES, REVIEWER_CLAIMS, Claim
from adamrepro.report.document import Block, Heading, Image, Paragraph, Table, to_html, to_markdown
from adamrepro.report.judge import judge
from adamrepro.report.rules import (
    DEPENDS,
    FAILS,
    HOLDS,
    NOT_MEASURABLE,
    NOT_RUN,
    Verdict,
    tally,
)
from adamrepro.results.measures import Measured
from adamrepro.results.tables import NEEDED_FILES, OWNER, check_results_folder, hparam_columns
from adamrepro.wording import count

TITLE = "Adam (Kingma & Ba, ICLR 2015): reproduction report"
# Every PNG in an experiment folder is shown; these first, in this order, with their alt text.
FIGURE_CAPTIONS = {
    "curves.png": "training cost beside the test metrics",
    "sensitivity.png": "learning-rate sensitivity",
    "bias_correction.png": "loss after 10% and 100% of the passes per (beta1, beta2) against "
                           "log10 alpha, with and without bias correction",
    "vae_samples.png": "samples and reconstructions of the best run",
    "step_bound.png": "Adam's largest |Δθ|/α per pass against the bound of Sec. 2.1",
}


def find_experiments(out: Path) -> dict[str, Measured]:
    """Every experiment folder under `out` with its three tables, in the paper's order, by
    experiment name: a folder of a former name (FORMER_NAMES) stands for its experiment
    when the folder of the current name is missing."""
    check_results_folder(out)
    if not out.is_dir():
        raise UserError(f"no results folder {out}; run 'adamrepro run CONFIG' first or pass --out")
    # a folder with any of an experiment's tables is one: read_results names what is missing
    folders = sorted({p.parent for name in NEEDED_FILES for p in out.glob(f"*/{name}")})
    if not folders:
        cut_off = unfinished(out)
        if cut_off:
            raise UserError(f"no finished results under {out}: the sweeps of "
                            f"{', '.join(cut_off)} have written no tables yet; run the same "
                            f"'adamrepro run' command again to finish them")
        raise UserError(f"no results under {out}; run 'adamrepro run CONFIG' first or pass --out")
    names = {p.name for p in folders}
    folders = [p for p in folders if FORMER_NAMES.get(p.name) not in names]

    def experiment(folder: Path) -> str:
        return FORMER_NAMES.get(folder.name, folder.name)

    order = list(EXPERIMENTS.values())
    folders.sort(key=lambda p: (order.index(experiment(p)) if experiment(p) in order
                                else len(order), p.name))
    return {experiment(folder): Measured.load(folder) for folder in folders}


def unfinished(out: Path) -> list[str]:
    """The experiment folders under `out` whose sweep has written no tables yet (a time
    budget or an interruption stopped it): named, not taken for experiments never run."""
    return sorted(p.parent.name for p in out.glob(f"*/{OWNER}")
                  if not any((p.parent / name).exists() for name in NEEDED_FILES))


def _short_commit(commit: str) -> str:
    """A commit's first 12 hex digits, keeping a `+dirty` mark (code differing from it)."""
    sha, plus, mark = commit.partition("+")
    return sha[:12] + plus + mark


def _claim_rows(claims, measured: dict[str, Measured], judged: dict[str, Verdict],
                rereadings: dict[str, list[Claim]]) -> tuple[list[tuple], str]:
    """The table rows of `claims` and the count of each verdict, from `judged` (every
    claim's verdict by id, judged once). `rereadings`: by claim id, the reviewer claims
    judging it again under another reading of the protocol; a row whose verdict differs
    from one of theirs says so."""
    rows, counts, disagree = [], Counter(), 0
    for claim in claims:
        verdict = judged[claim.id]
        counts[verdict.status] += 1
        disagree += verdict.seeds_disagree
        for other in rereadings.get(claim.id, []):
            other_verdict = judged[other.id]
            if other_verdict.status not in (verdict.status, NOT_RUN, NOT_MEASURABLE):
                verdict = Verdict(verdict.status, f"{verdict.numbers}; {other.reading}: "
                                                  f"{other_verdict.status} ({other.id})")
        found = measured.get(claim.experiment)
        where = f"{claim.figure} ({claim.experiment}"
        if found is not None and found.name != claim.experiment:
            where += f", results of {found.name}, its former name"
        where += f", {found.meta['scale']})" if found else ")"
        rows.append((claim.id, where, claim.text, verdict.status, verdict.numbers,
                     claim.rule.describe()))
    summary = tally(counts.elements())
    if disagree:  # a verdict on the mean over seeds that some seed alone contradicts
        summary += (f"; {disagree} of the {counts[HOLDS] + counts[FAILS]} that hold or do not "
                    f"{'is' if disagree == 1 else 'are'} not the same in every seed alone "
                    "('changes between seeds' in the row)")
    return rows, summary


HEADER = ("claim", "figure (experiment, scale)", "the paper says", "verdict", "numbers", "rule")


def verdict_blocks(measured: dict[str, Measured]) -> list[Block]:
    judged = sorted({claim.experiment for claim in (*CLAIMS, *REVIEWER_CLAIMS)})
    if not any(name in measured for name in judged):  # a folder of the user's own races
        return [Heading(2, "Claims"), Paragraph(
            f"None of the experiments whose claims this report judges ({', '.join(judged)}) "
            f"is in this folder, so the paper's {len(CLAIMS)} claims and the reviewer's "
            f"{len(REVIEWER_CLAIMS)} are left out. A config that keeps a bundled "
            f"experiment's name has them judged on its runs.")]
    judged = {claim.id: judge(claim, measured) for claim in (*CLAIMS, *REVIEWER_CLAIMS)}
    rereadings: dict[str, list[Claim]] = {}
    for claim in REVIEWER_CLAIMS:
        if claim.rereads is not None:
            rereadings.setdefault(claim.rereads, []).append(claim)
    rows, summary = _claim_rows(CLAIMS, measured, judged, rereadings)
    reviewer, reviewer_summary = _claim_rows(REVIEWER_CLAIMS, measured, judged, rereadings)
    return [
        Heading(2, "Claims of the paper"),
        Paragraph(
            f"{len(CLAIMS)} claims: {summary}. Each row is decided by its rule (thresholds in "
            "`adamrepro/report/claims.py`, rules in `adamrepro/report/rules.py`) from the "
            "experiment's tables alone. The cost is the training cost of the experiment's "
            "figure (config `plot.y`) of each method's selected grid point, mean over seeds. "
            "'Mean cost over passes 1-N' is the mean of the costs recorded for passes 1 "
            "to N: each pass's mean minibatch cost where the figure's cost is that "
            "(`train_loss`), or the cost over the whole training set after each pass (a "
            "`_full` column; its untrained pass 0 is left out). "
            "Every claim is judged twice, with each method's grid point selected by its cost at "
            "the last pass and by its mean cost over passes (config `selection.rule` says "
            "which best.csv holds); where the two disagree the verdict is "
            f"'{DEPENDS}' and both are shown. With several seeds a verdict says whether it "
            "holds in every seed alone, and the spread over seeds of the gap it compares. "
            "A verdict at smoke or quick scale is about that run, not about the paper. A "
            "verdict that compares a method selected at the edge of its grid carries a "
            "caution: a wider grid might select another point and change it. Where the "
            "other selection rule agrees but selects such a point the first does not, its "
            "numbers follow the row's, after '|'. A rule names "
            "a method by its optimizer and variant (`adam+constant_lr`); the numbers call it "
            "by its label in the experiment's config (`adam_constant`), as the figures and "
            "the tables of methods do. Where a claim judged again under another reading "
            "of the paper's protocol (a reviewer claim below, such as AdaGrad at a constant "
            "α in Fig. 1) gets another verdict, the row says so."),
        Table(HEADER, tuple(rows)),
        Heading(2, "Claims of the reviewer"),
        Paragraph(
            f"{len(REVIEWER_CLAIMS)} claims a skeptical reviewer makes about the paper: "
            f"{reviewer_summary}. Judged like the paper's, by the same rules and thresholds "
            "(`REVIEWER_CLAIMS` in `adamrepro/report/claims.py`): whether Adam's lead over "
            "SGD Nesterov holds in training cost, in final test accuracy (each method's "
            "selected runs, mean ± std over seeds) and in test loss; whether Adam gains "
            "from the step-size decay α/√t over a constant α where both are run; and each "
            "Fig. 1 claim about AdaGrad again with AdaGrad at a constant α (Fig. 1 decays "
            "every method's α as α/√t, AdaGrad's too, whose accumulator already anneals its "
            "step: our reading of the paper's α_t = α/√t for the problem, README \"Fig. 1's "
            "protocol\"); and each claim of Fig. 1 left (no dropout: a "
            "deterministic objective) again on the training cost over the whole training "
            "set after each pass (`train_loss_full`), which the figures' mean of a pass's "
            "minibatch costs lags, most in the first passes."),
        Table(("claim", "figure (experiment, scale)", "the reviewer says", *HEADER[3:]),
              tuple(reviewer)),
    ]


def _value(row: pd.Series, metric: str, percent: bool = False) -> str:
    mean, std = row[f"final_{metric}"], row.get(f"final_{metric}_std")
    scale, unit = (100.0, "%") if percent else (1.0, "")
    text = f"{scale * mean:.2f}{unit}" if percent else f"{mean:.4g}"
    if row["n_seeds"] > 1 and std is not None and math.isfinite(std):
        text += f" ± {scale * std:.2f}{unit}" if percent else f" ± {std:.2g}"
    return text


def _hparams(values: dict, edges: frozenset = frozenset()) -> str:
    """`k=v` pairs; a searched value at the end of its grid is flagged (widen the grid)."""
    return ", ".join((f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}")
                     + (" (grid edge)" if k in edges else "")
                     for k, v in values.items()) or "-"


def results_table(found: Measured) -> Table:
    """One row per method: its selected point, the selection metric and every test metric
    the model declares (metrics.py)."""
    config = found.meta["config"]
    metric = config.selection.metric
    shown = [column_of(found.meta, metric)] + [
        c for c in metric_set(found.meta).columns() if c.split == "test" and c.name != metric]
    rows = []
    for method, spec in config.methods.items():
        searched_cols = [c for key, values in spec.grid.items()
                         for c in hparam_columns({key: values[0]})]
        fixed = {k: v for k, v in spec.hparams.items() if k not in spec.grid}
        fixed.update({f"model.{k}": v for k, v in spec.model.items()})
        chosen = found.best[found.best["method"] == method]
        if chosen.empty:
            ran = method in found.methods
            rows.append((method, "every grid point diverged" if ran else "not run",
                         _hparams(fixed), *("-" for _ in shown), "-"))
            continue
        row = chosen.iloc[0]
        edges = frozenset(found.grid_edges(method))
        extended = row.get("extended")
        extended = f" (grid extended: {extended})" if isinstance(extended, str) and extended else ""
        rows.append((method, _hparams({c: row[c] for c in searched_cols}, edges) + extended,
                     _hparams(fixed),
                     *(_value(row, c.name, c.percent) for c in shown),
                     str(int(row["n_seeds"]))))
    return Table(("method", "selected (searched)", "fixed",
                  *(f"final {c.name if c.name == metric else c.label}" for c in shown),
                  "seeds"), tuple(rows))


def _seeds(curves) -> str:
    """'3 seeds (0, 1, 2)': which seeds, so that a rerun of one seed can be told apart."""
    seeds = sorted(int(seed) for seed in curves["seed"].unique())
    return f"{count(len(seeds), 'seed')} ({', '.join(map(str, seeds))})"


# Provenance columns besides the commit that a resumed or reused sweep may mix (device is not
# in a run's id: a sweep cut off on a GPU and finished on a CPU keeps both): the line above
# named config.json's alone, the last command's, for runs it did not train.
MIXED_PROVENANCE = (("torch_version", "torch versions"), ("device", "devices"))


def _mixed(curves, column: str, words: str) -> str:
    """'. The runs' devices: A (adam, adagrad); B (sgd_nesterov)' where the runs of `curves`
    differ in `column`, else ''."""
    if column not in curves.columns:
        return ""
    values = curves[column].astype(str)
    if values.nunique() < 2:
        return ""
    return f". The runs' {words}: " + "; ".join(
        f"{value} ({', '.join(dict.fromkeys(curves.loc[values == value, 'method']))})"
        for value in sorted(values.unique()))


def experiment_blocks(found: Measured, out: Path) -> list[Block]:
    from adamrepro.figures.sensitivity import caption, sensitivity_table

    meta, config = found.meta, found.meta["config"]
    prov = meta["provenance"]
    folder = out / found.name
    data = config.dataset
    sizes = ", ".join(f"{k}={v}" for k, v in data.items() if k != "name")
    commits = sorted(found.curves["commit"].astype(str).unique())
    # Which method's runs each commit trained: a figure that mixes code versions says where.
    by_commit = {commit: ", ".join(dict.fromkeys(found.curves.loc[
        found.curves["commit"].astype(str) == commit, "method"]))
        for commit in commits}
    blocks: list[Block] = [
        Heading(2, f"{config.title} (`{found.name}`)"),
        Paragraph(f"Scale: {meta['scale']}: {count(found.passes, 'pass', 'passes')} over "
                  f"{data['name']}"
                  f"{f' ({sizes})' if sizes else ''}, {_model_words(config)}, "
                  f"minibatch {config.training.batch_size}"
                  f", {_seeds(found.curves)} per grid point; best grid "
                  f"point by {found.best['selected_by'].iloc[0] if len(found.best) else '-'}."),
        *_training_cost_note(found),
        Paragraph(f"Provenance: commit `{prov['commit']}`, torch {prov['torch_version']}, "
                  f"device {prov['device']}, date {prov['date']}, command `{prov['command']}`"
                  + ("" if prov.get("data_verified", True) else
                     "; data unverified (read with `--unverified-data`: a copy whose files do "
                     "not match the official download's checksums)")
                  + ("; the runs come from commits " + "; ".join(
                      f"{_short_commit(commit)} ({by_commit[commit]})" for commit in commits)
                     if len(commits) > 1 else "")
                  + "".join(_mixed(found.curves, column, words)
                            for column, words in MIXED_PROVENANCE) + "."),
    ]
    order = list(FIGURE_CAPTIONS)  # the captioned figures first, in this order
    figures = sorted((p.name for p in folder.glob("*.png") if not p.name.startswith(".")),
                     key=lambda name: (order.index(name) if name in order else len(order), name))
    if not figures:
        blocks.append(Paragraph(f"No figure yet: run `adamrepro plot --out {out}`."))
    stale = _drawn_from_other_tables(folder, figures)
    if stale:
        blocks.append(Paragraph(
            f"Drawn from other tables than these (a run since, without a plot): "
            f"{', '.join(stale)}; run `adamrepro plot {found.name} --out {out}` to draw "
            f"them again, then the report."))
    for name in figures:
        alt = FIGURE_CAPTIONS.get(name, Path(name).stem.replace("_", " "))
        blocks.append(Image(f"{found.name}/{name}", f"{found.name}: {alt}"))
        if name == "sensitivity.png":
            table, others = sensitivity_table(found.curves, meta)
            above = bool(table["above"].any()) if len(table) else False
            blocks.append(Paragraph(caption(meta, others, int(found.curves['seed'].nunique()),
                                            above)))
    blocks.append(results_table(found))
    return blocks


def _drawn_from_other_tables(folder: Path, figures: list[str]) -> list[str]:
    """The figures whose PNG records tables other than the folder's (figures/common.py
    `drawn_from`); one that records none predates the record and is not judged."""
    from adamrepro.figures.common import drawn_from, tables_digest

    now = tables_digest(folder)
    return [name for name in figures
            if (then := drawn_from(folder / name)) is not None and then != now]


def _model_words(config: Experiment) -> str:
    """The model at this scale, as trained (a scale may narrow it: Fig. 2b's quick MLP is
    256-256, not the title's 1000-1000), without the options that change how it computes and
    not what (`IMPLEMENTATION_OPTIONS`)."""
    from adamrepro.models import what_it_computes

    model = config.model
    name = model.get("name")
    what = ", ".join(f"{key}={value}" for key, value in what_it_computes(model).items()
                     if key != "name")
    own = any(method.model for method in config.methods.values())
    return (f"model {name}{f' ({what})' if what else ''}"
            + (", each method's own `model:` keys over it" if own else ""))


def _training_cost_note(found: Measured) -> list[Block]:
    """Where the config plots or selects by a test metric: the claims are judged otherwise."""
    replaced = found.off_training_cost()
    if not replaced:
        return []
    train = metric_set(found.meta).train_column
    named = ", ".join(f"`{field}: {column}`" for field, column in replaced.items())
    how = " and ".join(part for field, part in (
        ("plot.y", f"on the training cost `{train}`"),
        ("selection.metric", f"with each method's grid point selected by `{train}`"))
        if field in replaced)
    return [Paragraph(
        f"This config names a test metric ({named}). The claims above are judged {how}, as "
        f"the paper's protocol has it (no choice made on the test set); the figures and the "
        f"table below show this config's own choice.")]


def build(out: Path) -> list[Block]:
    measured = find_experiments(out)
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    blocks: list[Block] = [
        Heading(1, TITLE),
        Paragraph(f"Generated {now} by `adamrepro report --out {out}` from "
                  f"{len(measured)} experiment(s): "
                  f"{', '.join(found.name for found in measured.values())}."),
        *([Paragraph(f"Not in this report, their sweeps unfinished (no tables yet; run the "
                     f"same `adamrepro run` command again to finish them): "
                     f"{', '.join(cut_off)}.")] if (cut_off := unfinished(out)) else []),
        *verdict_blocks(measured),
        *against_adam.blocks(measured),
    ]
    for found in measured.values():
        blocks += experiment_blocks(found, out)
    return blocks


def write_report(out: Path) -> list[Path]:
    blocks = build(out)
    md, page = out / "report.md", out / "report.html"
    atomic_write(md, to_markdown(blocks))
    atomic_write(page, to_html(blocks, TITLE))
    return [md, page]
