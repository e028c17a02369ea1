"""Checkpoints inside a group, and the time budget that stops a sweep at one.

A group that trains with a `GroupCheckpoint` saves everything its next pass depends on after
every `every` passes: the model's parameters and buffers, the optimizer's state and param
groups, every generator (the CPU minibatch-order generators, the device dropout and evaluation
generators), the pass reached and the history so far (metrics, within-pass blocks,
seconds, train_seconds, memory, divergence). A group started again with the same
checkpoint goes on from there and traces exactly the curves of an uninterrupted run.

The file is `<out>/<experiment>/runs/<group_id>.ckpt.pt`, written atomically (a temporary
name, renamed), plain tensors, dicts, lists and numbers only (read back with
`torch.load(..., weights_only=True)`); the driver removes it once the group's run records
are written. A checkpoint of another group, another device type or another dtype is ignored
(the group starts over) rather than trusted.

A SIGTERM while a local sweep trains stops it as a spent budget does, at once: each group
saves a checkpoint after its pass in progress and stops (../stopping.py).

With a deadline (`adamrepro run --time-budget`), a group saves a checkpoint and stops
(`BudgetSpent`) after the first pass at which the deadline has passed, or would pass before
another pass as long as the last one, and the save after it, ended; the next command resumes
it. It does not save after every pass: a checkpoint is the whole state copied to the host,
written and synced, from 0.26 GB (a paper-scale group of Fig. 2a's MLP: about a second on
this project's disk, as long as its pass on an H100) to 20 GB (SFO's basis at paper scale:
over a minute), so a budget alone costs one save per group and command. Periodic saves,
which survive a kill, are `training.checkpoint_every`'s, with or without a budget. The
policy, the budget and the checkpoint are plain frozen data, so that a Ray task
(executors.py) receives them as they are and writes to the path the driver chose.

A checkpoint carries a group across commands only where the disk outlives the command. A
lent or preemptible machine loses it (scripts/gpu_session.sh packs no checkpoint: a paper-
scale group's is 0.26-20 GB), so there a group cut off by the budget is trained again from
its start by the next job, and every pass it trained was spent for nothing. With
`split_to_fit` (`run --split-to-fit`) a group whose passes so far show it cannot finish
before the deadline raises `TooSlow` instead, from its second pass on (the first holds the
warm-up: a CUDA graph's capture, a compilation), and the executor trains its halves in its
place, as it does with a group that does not fit in memory: on a GPU a group of 12 CNN runs
is arithmetic-bound, so a half finishes in about half the time. Only where a half could
finish, all its passes at half the group's pass time: else halving throws away the passes
trained at every size on the way down, to no run that finishes. A group that no half of
would finish, or a single run that would not, is left for the next command (whose budget
starts afresh), and this one goes on with the groups after it, which may fit: an SFO run of
Fig. 2b (25 passes of ~10 s) started with two minutes left would otherwise hold the job to
its end for nothing. A group resumed from its checkpoint is never stopped so: that
checkpoint outlived a command, as the next may, and its halves would start over.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from adamrepro.errors import note
from adamrepro.stopping import STOP
from adamrepro.wording import count

FORMAT = 2  # 2: the optimizer's param groups too (a checkpoint of format 1 starts over)


class BudgetSpent(Exception):  # noqa: N818 (a stop, not an error)
    """The time budget ran out. `checkpointed`: every group left at its checkpoint, by id,
    with its number of runs and the pass it stopped after. A group raises it with itself
    alone; an executor, for the whole sweep, with none (it stopped before a group began),
    one, or several (Ray trains groups at once and each stops at its own checkpoint)."""

    def __init__(self, epochs: int, checkpointed: dict[str, tuple[int, int]]) -> None:
        where = ", ".join(f"group {group_id} after pass {epoch}"
                          for group_id, (_, epoch) in checkpointed.items())
        super().__init__(f"time budget spent; checkpointed: {where or 'none'} (of {epochs})")
        self.epochs, self.checkpointed = epochs, dict(checkpointed)


class TooSlow(Exception):  # noqa: N818 (a decision, not an error)
    """A group that would not finish before the deadline (`split_to_fit`): `passes` left of
    `pass_seconds` each, `left` seconds to go. The executor trains its halves instead where
    `halve` (a half could finish), or leaves the group for the next command, so that the
    groups after it may use the time; the message says why."""

    def __init__(self, passes: int, pass_seconds: float, left: float,
                 halve: bool = True) -> None:
        super().__init__(f"{count(passes, 'pass', 'passes')} of {pass_seconds:.2f} s left, "
                         f"{max(left, 0.0):.0f} s of the time budget")
        self.halve = halve


@dataclass(frozen=True)
class Budget:
    """A deadline in seconds since the epoch (`time.time()`); None: no limit. Wall-clock
    rather than monotonic time: a Ray worker on another machine checks the driver's deadline
    on its own clock (a cluster's clocks agree to NTP's precision, far below a pass)."""

    deadline: float | None = None
    # Halve a group that would not finish before the deadline (the module's docstring).
    split_to_fit: bool = False

    @classmethod
    def minutes(cls, minutes: float | None, split_to_fit: bool = False,
                start: float | None = None) -> Budget:
        """`minutes` from `start` (a `time.time()`; None: now)."""
        start = time.time() if start is None else start
        return cls(None if minutes is None else start + 60.0 * minutes, split_to_fit)

    def spent(self, ahead: float = 0.0) -> bool:
        """Whether the deadline has passed, or will have `ahead` seconds from now."""
        return self.deadline is not None and time.time() + ahead >= self.deadline

    def left(self) -> float:
        """Seconds to the deadline (negative once passed; inf without one)."""
        return math.inf if self.deadline is None else self.deadline - time.time()


@dataclass(frozen=True)
class GroupCheckpoint:
    """Where one group's checkpoint lives, how often it is written (`every` passes; None:
    only when the budget stops the group), and the budget."""

    path: Path
    every: int | None
    budget: Budget = Budget()

    def due(self, epoch: int, epochs: int) -> bool:
        """A periodic save after pass `epoch`: every `every` passes, never after the last one
        (the records follow at once)."""
        return self.every is not None and epoch < epochs and epoch % self.every == 0

    def stop(self, epoch: int, epochs: int, last_pass_seconds: float,
             save_seconds: float = 0.0) -> bool:
        """Save and stop after pass `epoch`: the budget is spent, or would be before another
        pass as long as the last one and the save after it ended; unless the passes left,
        each as long as the last, end before the deadline (finishing then costs less than
        the save: SFO's is over a minute). Or a signal asked the command to stop
        (../stopping.py). Never after the last pass."""
        return epoch < epochs and (STOP() or (
            self.budget.spent(ahead=last_pass_seconds + save_seconds)
            and self.budget.spent(ahead=last_pass_seconds * (epochs - epoch))))

    def too_slow(self, epoch: int, epochs: int, pass_seconds: float,
                 attempt_passes: int, resumed: bool = False) -> bool:
        """Stop the group to halve it, or to leave it for the next command
        (`Budget.split_to_fit`): it has trained `attempt_passes` >= 2 passes in this attempt
        (the first holds the warm-up), and the passes left, each as long as `pass_seconds`,
        would end after the deadline. Never a group `resumed` from its checkpoint: that
        checkpoint outlived a command, as the next will, and its halves would start over
        (a budget stop saves it instead)."""
        return (self.budget.split_to_fit and not resumed and attempt_passes >= 2
                and epoch < epochs and self.budget.spent(ahead=pass_seconds * (epochs - epoch)))

    def half_could_finish(self, epochs: int, pass_seconds: float) -> bool:
        """Whether a half of a group whose passes take `pass_seconds` could train all
        `epochs` from its first before the deadline, its passes taken as half as long (a
        batched half takes longer than that: an upper bound on what halving gains)."""
        return not self.budget.spent(ahead=pass_seconds / 2 * epochs)

    def save(self, state: dict) -> None:
        from adamrepro.atomic import atomic_torch_save

        atomic_torch_save({"format": FORMAT, **state}, self.path)

    def load(self, key: dict) -> dict | None:
        """The saved state, or None when there is none or it belongs to something else
        (`key`, `checkpoint_key`: the group, the device type, the dtype, the passes)."""
        return _matching(self.path, key, say=True)


def unreadable_part(state: dict) -> str | None:
    """Where `state` holds what `torch.load(weights_only=True)` refuses to read back (a NumPy
    number, a deque in an optimizer's state), as `optimizer.state.0.t (numpy.float64)`; None
    where every part reads back. Its tensors left out, the rest is tried as a checkpoint is
    read: a user's optimizer that kept such a thing saved checkpoints that every resume
    found unreadable and threw away, and a budgeted sweep never got past its first pass."""
    import io

    def skeleton(value):
        if isinstance(value, torch.Tensor):
            return None
        if isinstance(value, dict):
            return {key: skeleton(item) for key, item in value.items()}
        if type(value) in (list, tuple):
            return type(value)(skeleton(item) for item in value)
        return value

    def reads_back(value) -> bool:
        buffer = io.BytesIO()
        try:
            torch.save(value, buffer)
            buffer.seek(0)
            torch.load(buffer, weights_only=True)
        except Exception:  # noqa: BLE001 (whatever the unpickler or the pickler refuse)
            return False
        return True

    def first_refused(value, where: str) -> str | None:
        if isinstance(value, dict):
            for key, item in value.items():
                if not reads_back(key):
                    return f"{where} (a key of {type(key).__module__}.{type(key).__qualname__})"
                found = first_refused(item, f"{where}.{key}")
                if found:
                    return found
            return None
        if type(value) in (list, tuple):
            return next((found for index, item in enumerate(value)
                         if (found := first_refused(item, f"{where}.{index}"))), None)
        if reads_back(value):
            return None
        return f"{where} ({type(value).__module__}.{type(value).__qualname__})"

    kept = skeleton(state)
    if reads_back(kept):
        return None
    found = first_refused(kept, "")
    return found.lstrip(".") if found else "the state as a whole"


SUFFIX = ".ckpt.pt"


def checkpoint_path(folder: Path, group_id: str) -> Path:
    """Where a group's checkpoint lives in a results folder's `runs/`."""
    return Path(folder) / f"{group_id}{SUFFIX}"


def checkpoint_key(group_id: str, device: torch.device, training) -> dict:
    """What a group's checkpoint must have been saved for to be resumed: the group, the
    device type, the dtype and the number of passes (`training`: the config's settings)."""
    return {"group_id": group_id, "device": device.type, "dtype": training.dtype,
            "epochs": training.epochs}


def _matching(path: Path, key: dict, mmap: bool = False, say: bool = False) -> dict | None:
    if not path.exists():
        return None
    from adamrepro.atomic import load_intact

    try:
        # a memory-mapped read asks only the pass reached (a preview): the resume checks
        state = (torch.load(path, map_location="cpu", weights_only=True, mmap=True) if mmap
                 else load_intact(path, map_location="cpu"))
    except Exception as err:  # a checkpoint from another torch or a damaged file: start over
        if say:  # not silently: the passes it held are trained again
            note(f"{path} could not be read ({type(err).__name__}"
                 + (f": {err}" if isinstance(err, ValueError) else "")
                 + "): its group trains from its first pass again")
        return None
    if state.get("format") != FORMAT or state.get("key") != key:
        return None
    return state


def saved_pass(path: Path, key: dict) -> int | None:
    """The pass the checkpoint at `path` reached, if the group `key` would resume from it
    (else None). Memory-mapped: asking of SFO's 20 GB reads only the file's index."""
    state = _matching(path, key, mmap=True)
    return None if state is None else int(state["epoch"])


# How fast a checkpoint is written before one has been timed (bytes/s): this project's disk,
# torch.save through atomic_file with its fsync, 2.7-4.1 s per GB (2026-12-02). It only makes
# a budget stop a group a little early; SFO's 20 GB at paper scale is 80 s at this rate.
ASSUMED_WRITE_RATE = 250e6


def save_seconds(state_bytes: int, measured: float | None) -> float:
    """What the next save will take: the last one's time if any was timed, else the bytes
    at ASSUMED_WRITE_RATE."""
    return measured if measured is not None else state_bytes / ASSUMED_WRITE_RATE


def generator_state(generator: torch.Generator | None) -> torch.Tensor | None:
    return None if generator is None else generator.get_state().clone()


def set_generator_state(generator: torch.Generator | None, state: torch.Tensor | None) -> None:
    if generator is not None and state is not None:
        generator.set_state(state)


def optimizer_state(optimizer) -> dict:
    """What torch's `state_dict` holds, every tensor copied to the CPU: the per-parameter
    state (by index) and every param group's settings but its parameters. An optimizer may
    change a group's settings as it trains (a schedule's counter, as schedule-free methods
    keep it; a learning rate a scheduler sets), and a resumed run must go on from them."""
    saved = optimizer.state_dict()
    return {"state": to_cpu(saved["state"]),
            "param_groups": [to_cpu({key: value for key, value in group.items()
                                     if key != "params"}) for group in saved["param_groups"]]}


def load_optimizer_state(optimizer, saved: dict, device: torch.device) -> None:
    """Put the saved state back, every tensor on `device` with its saved dtype (torch's
    `load_state_dict` would cast floating state, and flags, to the parameters' dtype), but
    the state an optimizer keeps on the host (its `host_state` keys, SFO's). A
    group's tensor setting is copied into the tensor it holds (a per-run hyperparameter a
    CUDA graph may have captured), any other setting replaced."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    host = getattr(optimizer, "host_state", frozenset())  # SFO's bookkeeping: read per step
    for index, values in saved["state"].items():
        if not isinstance(index, int):
            # a user's optimizer kept it under a key of its own (`self.state["t"]`), which
            # torch's state_dict keeps as it is, not as a parameter's index
            optimizer.state[index] = to_device(values, device)
            continue
        optimizer.state[params[index]] = {
            key: to_device(value, torch.device("cpu") if key in host else device)
            for key, value in values.items()}
    for group, settings in zip(optimizer.param_groups, saved["param_groups"], strict=True):
        for key, value in settings.items():
            held = group.get(key)
            if (isinstance(held, torch.Tensor) and isinstance(value, torch.Tensor)
                    and held.shape == value.shape):
                with torch.no_grad():
                    held.copy_(value)
            else:
                group[key] = to_device(value, device)


def to_cpu(value):
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, dict):
        return {k: to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_cpu(v) for v in value)
    return value


def to_device(value, device: torch.device):
    """A copy of `value` with every tensor on `device` (dtypes kept)."""
    if isinstance(value, torch.Tensor):
        return value.to(device, copy=True)
    if isinstance(value, dict):
        return {k: to_device(v, device) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_device(v, device) for v in value)
    return value


@dataclass(frozen=True)
class CheckpointPolicy:
    """The sweep's checkpoint settings: the folder (`runs/`), passes between periodic
    checkpoints (None: none) and the time budget (with none and no period, no checkpoints)."""

    folder: Path
    every: int | None
    budget: Budget = Budget()

    def path(self, group_id: str) -> Path:
        return checkpoint_path(self.folder, group_id)

    def for_group(self, group_id: str) -> GroupCheckpoint | None:
        # one a budgeted command left is resumed by a command without a budget too (it
        # saves none of its own): trained again from pass 0, its passes would be lost; and
        # where a signal may ask for a stop (../stopping.py), a group must be able to save one
        if (self.every is None and self.budget.deadline is None and not STOP.accepting
                and not self.path(group_id).exists()):
            return None
        return GroupCheckpoint(self.path(group_id), self.every, self.budget)
