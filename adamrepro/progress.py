"""The progress of a long command (`run`'s groups, `bench`'s phases): a bar with an ETA on a
terminal, and plain lines where stderr is a file or a pipe (a batch job's log, `nohup`), which
a bar's frames would fill with escape codes, or leave empty for hours."""

from __future__ import annotations

import math
import os
import sys
from datetime import timedelta

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from adamrepro.errors import UserError

EVERY = "ADAMREPRO_PROGRESS_SECONDS"  # seconds between two lines of a log; 0: every update
DEFAULT_EVERY = 60.0
# rich estimates the speed over the last 30 s by default: a group whose passes take longer (a
# paper-scale CNN's, a CPU's) had no ETA at all between them
SPEED_PERIOD = 3600


def log_every() -> float:
    """The seconds between two progress lines of a log, from $ADAMREPRO_PROGRESS_SECONDS;
    UserError for a value that is not a number of seconds, which a command checks before it
    starts (a batch job learns of its typo at once, not after loading its data)."""
    text = os.environ.get(EVERY, "").strip()
    if not text:
        return DEFAULT_EVERY
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (0 <= seconds < math.inf):
        raise UserError(f"{EVERY}={os.environ[EVERY]!r}: give the seconds between two "
                        f"progress lines of a log, 0 or more (default {DEFAULT_EVERY:g}), "
                        f"or unset it")
    return seconds


def progress_bar(quiet: bool, width: int = 28, unit: str = "") -> Progress:
    """The progress of a long command, on stderr beside the notes (stdout holds what the
    command says it did, so a pipe or a file gets that line alone): each task's count of
    `unit`, elapsed time and ETA, descriptions `width` characters wide. Where stderr is no
    terminal, the tasks added with `logged=True` are said in plain lines instead (LogLines),
    at most one each $ADAMREPRO_PROGRESS_SECONDS and one at the end of a task said before;
    `quiet`: nothing."""
    console = Console(stderr=True)
    if not quiet and not console.is_terminal:
        return LogLines(log_every(), unit, speed_estimate_period=SPEED_PERIOD)
    return Progress(
        TextColumn(f"{{task.description:<{width}}}"),
        BarColumn(),
        MofNCompleteColumn(),
        *([TextColumn(unit)] if unit else []),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
        disable=quiet,  # not quiet and no terminal: LogLines, above
        speed_estimate_period=SPEED_PERIOD,
    )


class LogLines(Progress):
    """rich's Progress with nothing drawn (its tasks still count, time and estimate), saying
    its `logged` tasks in lines such as

        adamrepro: mlp (18 groups): 1,234/14,992 run-passes (8%), 0:03:12 elapsed, eta 0:35:40

    at most one every `every` seconds over all tasks, and, for a task said before, one at its
    end."""

    def __init__(self, every: float, unit: str = "", **kwargs) -> None:
        super().__init__(disable=True, **kwargs)
        self.every, self.unit = every, unit
        self.said_at = self.get_time()
        self.said: dict[TaskID, float] = {}  # the count each task's last line said
        self.ended: set[TaskID] = set()

    def update(self, task_id: TaskID, **kwargs) -> None:
        super().update(task_id, **kwargs)
        self._say(task_id)

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self._say(task_id)

    def _say(self, task_id: TaskID) -> None:
        task = next(task for task in self.tasks if task.id == task_id)
        if (not task.fields.get("logged") or task_id in self.ended
                or self.said.get(task_id) == task.completed):  # an update that moved nothing
            return
        now = self.get_time()
        if task.finished:
            # the end of a task said before, so that a log does not stop at 97%; a task
            # shorter than a line's interval (a smoke run) adds nothing to the command's own
            if task_id not in self.said:
                return
            self.ended.add(task_id)
        elif now - self.said_at < self.every:
            return
        self.said_at = now
        self.said[task_id] = task.completed
        total = f"/{task.total:,.0f}" if task.total is not None else ""
        share = f" ({task.percentage:.0f}%)" if task.total else ""
        eta = task.time_remaining
        print(f"adamrepro: {task.description.strip()}: {task.completed:,.0f}{total}"
              f"{' ' + self.unit if self.unit else ''}{share}, "
              f"{_clock(task.elapsed or 0)} elapsed"
              f"{'' if task.finished else ', eta ' + (_clock(eta) if eta is not None else '?')}",
              file=sys.stderr, flush=True)


def _clock(seconds: float) -> str:
    """0:03:12, as the bar's own columns say a time."""
    return str(timedelta(seconds=max(0, int(seconds))))
