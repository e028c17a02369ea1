"""What a group has measured, pass by pass, and the runs' curves made of it.

The training loop (group.py) evaluates every run after each pass into one tensor of
(columns, G) on the device. `GroupHistory` keeps those tensors there until the group ends,
reads the newest one to the host once per pass (the pass's one sync: divergence and
progress), and is what a checkpoint saves of the measurements. `curves` turns it into one
`RunCurve` per run for the results store.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class RunCurve:
    """One run's record: one dict per evaluation point (epoch 0 = the initial weights), and
    with `training.log_every` one dict per block of that many steps (`steps`)."""

    rows: list[dict]
    diverged: bool
    steps: list[dict] = field(default_factory=list)
    params: dict[str, Tensor] | None = None  # final parameters, with training.save_params


class GroupHistory:
    """The measurements of a group's G runs: `columns` per pass, of which the first
    `checked` are metrics (a run whose metric is not finite has diverged and is recorded up
    to that pass) and the rest the optimizer's own statistics."""

    def __init__(self, G: int, columns: list[str], checked: int) -> None:
        self.G, self.columns, self.checked = G, columns, checked
        self.rows: list[Tensor] = []  # per pass: (len(columns), G), on the device
        self.blocks: list[Tensor] = []  # per pass with log_every: (blocks, G), on the device
        self.seconds: list[float] = []  # wall time since the group started, evaluation included
        self.train_seconds: list[float] = []  # training passes alone, summed
        # per pass: the optimizer state's bytes, and the group's peak device memory (CUDA only)
        self.memory: list[tuple[int, float]] = [(0, math.nan)]
        self.alive = torch.ones(G, dtype=torch.bool)
        self.diverged_at: list[int | None] = [None] * G
        self.started = time.perf_counter()

    def begin(self, row: Tensor) -> None:
        """Pass 0: the runs evaluated at their initial weights, before any training."""
        self.rows.append(row)
        self.seconds.append(0.0)
        self.train_seconds.append(0.0)

    def end_pass(self, epoch: int, row: Tensor, blocks: Tensor | None,
                 memory: tuple[int, float], train_seconds: Callable[[], float]) -> bool:
        """Record pass `epoch`; this is the one host sync of a pass, and `train_seconds` (the
        pass's training time, read from CUDA events that only the sync completes) is called
        after it. Returns whether any run is still alive."""
        self.rows.append(row)
        self.memory.append(memory)
        if blocks is not None:
            self.blocks.append(blocks)
        latest = row.cpu()
        self.seconds.append(time.perf_counter() - self.started)
        self.train_seconds.append(self.train_seconds[-1] + train_seconds())
        finite = torch.isfinite(latest[: self.checked]).all(0)
        for g in torch.nonzero(self.alive & ~finite).flatten().tolist():
            self.diverged_at[g] = epoch
        self.alive &= finite
        return bool(self.alive.any())

    def last_pass_seconds(self) -> float:
        return self.seconds[-1] - self.seconds[-2]

    def state(self) -> dict:
        """What a checkpoint keeps of the measurements (on the host)."""
        return {
            "history": torch.stack(self.rows).cpu(),
            "step_history": torch.stack(self.blocks).cpu() if self.blocks else None,
            "seconds": list(self.seconds), "train_seconds": list(self.train_seconds),
            "memory": [list(m) for m in self.memory], "alive": self.alive.clone(),
            "diverged_at": [-1 if d is None else d for d in self.diverged_at]}

    def restore(self, saved: dict, device: torch.device) -> None:
        """Go on from a checkpoint's `state()`; `seconds` goes on from where it stopped."""
        self.rows = [row.to(device) for row in saved["history"]]
        self.blocks = ([] if saved["step_history"] is None
                       else [row.to(device) for row in saved["step_history"]])
        self.seconds = list(saved["seconds"])
        self.train_seconds = list(saved["train_seconds"])
        self.memory = [tuple(m) for m in saved["memory"]]
        self.alive = saved["alive"].clone()
        self.diverged_at = [None if d < 0 else d for d in saved["diverged_at"]]
        self.started = time.perf_counter() - self.seconds[-1]

    def curves(self, sizes: list[int], log_every: int | None,
               train_column: str) -> list[RunCurve]:
        """One curve per run, up to the pass it diverged at; with `log_every`, the mean
        objective of every block of that many steps of a pass of `sizes` steps."""
        table = torch.stack(self.rows).cpu()  # (passes, columns, G)
        steps_table = torch.stack(self.blocks).cpu() if self.blocks else None
        steps_per_pass = len(sizes)
        block_ends = ([min(start + log_every, steps_per_pass)
                       for start in range(0, steps_per_pass, log_every)] if log_every else [])
        curves = []
        for g in range(self.G):
            diverged = self.diverged_at[g] is not None
            last = self.diverged_at[g] if diverged else len(self.rows) - 1
            rows = []
            for epoch in range(last + 1):
                row = {"epoch": epoch, "seconds": self.seconds[epoch],
                       "train_seconds": self.train_seconds[epoch], "group_size": self.G,
                       "diverged": diverged and epoch == last,
                       "state_bytes": self.memory[epoch][0],
                       "peak_memory_bytes": self.memory[epoch][1]}
                row.update({c: float(table[epoch, i, g]) for i, c in enumerate(self.columns)})
                rows.append(row)
            steps = []
            if steps_table is not None:
                for epoch in range(1, last + 1):
                    for block, end in enumerate(block_ends):
                        steps.append({"step": (epoch - 1) * steps_per_pass + end,
                                      "epoch_fraction": epoch - 1 + end / steps_per_pass,
                                      train_column: float(steps_table[epoch - 1, block, g])})
            curves.append(RunCurve(rows, diverged, steps))
        return curves
