"""What `adamrepro run --dry-run` says: the runs a command would train, method by method,
against what its results folder already holds; read from the folder alone, with no data
loaded and nothing written, so a session with a short budget can be planned before it starts.

The command's own checks are made (the folder's config and scale, `--only-selected`), so a
command that would be refused is refused here too. The passes left count from the checkpoint
a group would resume from (runner/checkpoint.py `saved_pass`). Grid-edge extension
(runner/extend.py) decides its rounds from the results: once the grid is trained the rounds
the stored runs decide are counted, up to the first with runs left; the rounds after that,
and any before the grid is trained, cannot be known yet, and `extension_pending` says so.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch

from adamrepro.config import Experiment
from adamrepro.runner.checkpoint import checkpoint_key, checkpoint_path, saved_pass
from adamrepro.runner.plan import Group
from adamrepro.runner.sweep import checked_plan, extension_rounds, left_to_train
from adamrepro.wording import count


@dataclass(frozen=True)
class MethodPreview:
    method: str
    runs: int  # planned: the grid's points (or the selected ones) x seeds, known rounds too
    finished: int
    groups_left: tuple[int, ...]  # the size of each group (or half) left to train
    run_passes_left: int  # passes a checkpoint already holds not counted

    @property
    def left(self) -> int:
        return self.runs - self.finished


@dataclass(frozen=True)
class Preview:
    experiment: str
    scale: str
    seeds: int
    folder: Path
    passes: int
    methods: tuple[MethodPreview, ...]
    extension_rounds: int  # rounds of grid-edge points counted in `methods`
    extension_pending: bool  # more may follow, decided by results not trained yet
    checkpointed: int  # groups left that resume from a checkpoint

    @property
    def runs_left(self) -> int:
        return sum(m.left for m in self.methods)


def preview(base: Experiment, scale: str, seeds: int | None, out: Path, force: bool,
            only_selected: Path | None, device: torch.device) -> Preview:
    """What `run_sweep` with these arguments would train on `device` (its type decides
    which checkpoints count: one saved on another type is not resumed)."""
    exp, store, groups, _ = checked_plan(base, scale, seeds, out, force, only_selected)
    todo = left_to_train(groups, store)
    rounds, pending = 0, False
    if exp.selection.extend_edges and only_selected is None:
        if todo:
            pending = True  # the rounds are decided by the grid's results
        else:
            for round_groups in extension_rounds(exp, groups, store, Counter()):
                groups, rounds = groups + round_groups, rounds + 1
                left = left_to_train(round_groups, store)
                if left:
                    todo, pending = left, True
                    break
    epochs = exp.training.epochs
    reached = {g.group_id: saved_pass(checkpoint_path(store.runs_dir, g.group_id),
                                      checkpoint_key(g.group_id, device, exp.training))
               for g in todo}

    def method(label: str) -> MethodPreview:
        planned = [run for g in groups if g.method == label for run in g.runs]
        left: list[Group] = [g for g in todo if g.method == label]
        return MethodPreview(
            label, len(planned), sum(store.is_done(run.run_id) for run in planned),
            tuple(g.size for g in left),
            sum(g.size * (epochs - (reached[g.group_id] or 0)) for g in left))

    labels = dict.fromkeys(g.method for g in groups)  # the config's order
    return Preview(exp.name, scale, exp.seeds, store.root, epochs,
                   tuple(method(label) for label in labels), rounds, pending,
                   sum(pass_ is not None for pass_ in reached.values()))


def _sizes(groups: tuple[int, ...]) -> str:
    """(12, 12, 6) -> '3 (12, 12, 6)'; twelve groups of one run -> '12 (1 each)'."""
    if len(groups) > 1 and len(set(groups)) == 1:
        return f"{len(groups)} ({groups[0]} each)"
    return f"{len(groups)} ({', '.join(map(str, groups))})" if groups else "0"


def describe(p: Preview) -> list[str]:
    """The preview as the lines `run --dry-run` prints: a table, then what it leaves out."""
    rows = [("method", "runs", "finished", "left", "groups left (runs each)", "run-passes left")]
    for m in p.methods:
        rows.append((m.method, str(m.runs), str(m.finished), str(m.left),
                     _sizes(m.groups_left), str(m.run_passes_left)))
    rows.append(("total", str(sum(m.runs for m in p.methods)),
                 str(sum(m.finished for m in p.methods)), str(p.runs_left),
                 str(sum(len(m.groups_left) for m in p.methods)),
                 str(sum(m.run_passes_left for m in p.methods))))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [f"{p.experiment} at {p.scale} scale, {count(p.seeds, 'seed')}, "
             f"{count(p.passes, 'pass', 'passes')} a run, into {p.folder} (--dry-run: nothing "
             f"trained or written)"]
    lines += ["  " + "  ".join(cell.ljust(w) if i == 0 or i == 4 else cell.rjust(w)
                               for i, (cell, w) in enumerate(zip(row, widths, strict=True)))
              for row in rows]
    if p.checkpointed:
        lines.append(f"{p.checkpointed} of the groups left resume from a checkpoint (their "
                     f"passes saved are not counted)")
    if p.extension_rounds:
        lines.append(f"counted: {p.extension_rounds} round(s) of grid-edge points the stored "
                     f"results decided (selection.extend_edges)")
    if p.extension_pending:
        lines.append("then grid-edge extension (selection.extend_edges) may add points, "
                     "decided from the results of these runs")
    if not p.runs_left and not p.extension_pending:
        lines.append("nothing left to train: the command would write the tables")
    return lines
