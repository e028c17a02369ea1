"""A stop asked for by a signal: every group training saves its checkpoint after its pass in
progress and the command ends, as at a spent time budget (checkpoint.py), rather than at once
with the passes since its last checkpoint lost.

SIGTERM is what a preemptible machine, SLURM (`scancel`, a job's time limit), Kubernetes and
`timeout` send, then SIGKILL some seconds later (30 by default for the three first): time
for a pass and a save on most experiments (a paper-scale MLP pass and its save take about a
second each on an H100), not for SFO's 20 GB paper-scale save. The first SIGTERM asks for
the stop (cli's `interrupts_said`); a second, or a Ctrl-C, stops at once, as before. Only a
sweep training with the local executor can stop so (`StopRequest.accepting`); elsewhere
(loading the data, writing the tables, Ray's remote workers) SIGTERM stops at once.

The driver sets the request; its forked workers (executors.py) see it through a
multiprocessing Event handed to them as they start: reading it is no host sync, and the
driver itself never reads the Event, so a signal handler setting it cannot wait on a lock
its own thread holds. No torch here: the CLI imports this module before any command runs.
"""

from __future__ import annotations

import contextlib
import signal


class StopRequest:
    """Whether a stop is asked for (`request()`; read by calling the object). The driver's
    request is a flag, shared with forked workers through `tell`'s Event; a worker reads the
    Event it was given (`watch`)."""

    def __init__(self) -> None:
        self.requested = False
        self.accepting = False  # a local sweep trains: a request can be honoured
        self._tell = None  # the driver's Event, set with the request (workers watch it)
        self._watch = None  # a worker's: the driver's Event

    def __call__(self) -> bool:
        return self.requested or (self._watch is not None and self._watch.is_set())

    def request(self) -> None:
        self.requested = True
        if self._tell is not None:
            self._tell.set()

    def reset(self) -> None:
        """A command begins: no request yet (tests run several commands in one process)."""
        self.requested = False
        self.accepting = False

    @contextlib.contextmanager
    def accepted(self):
        """While a local executor trains: a request stops its groups at their checkpoints."""
        before, self.accepting = self.accepting, True
        try:
            yield
        finally:
            self.accepting = before

    @contextlib.contextmanager
    def told(self, event):
        """While forked workers run: `event` is set with a request (already, if one came)."""
        self._tell = event  # first: a request from here on sets it
        if self.requested:
            event.set()
        try:
            yield
        finally:
            self._tell = None

    def watch(self, event) -> None:
        """A forked worker's set-up: it reads the driver's `event`."""
        self._watch = event


STOP = StopRequest()  # this process's; a forked worker inherits it and `watch`es its driver


# The deferred blocks entered and not yet left, and the signal one of them held back.
_DEFERRING: dict = {"depth": 0, "held": None}


@contextlib.contextmanager
def signals_deferred():
    """A stop (Ctrl-C, SIGTERM) that comes during the block is held back by the command's
    handler (`held_back`) and delivered as the block ends: for a few file operations that
    must not stop halfway, such as removing a folder a stopped command created (a second
    Ctrl-C there, `timeout`'s own included, left a results folder holding only its lock and
    owner files, which then refused the next run as another config's). At Python's level,
    not by a signal mask: a signal sent to the process reaches whichever of its threads
    (torch's among them) does not block it, and its handler runs in the main thread."""
    _DEFERRING["depth"] += 1
    try:
        yield
    finally:
        _DEFERRING["depth"] -= 1
        if _DEFERRING["depth"] == 0 and _DEFERRING["held"] is not None:
            signum, _DEFERRING["held"] = _DEFERRING["held"], None
            signal.raise_signal(signum)  # to the handler again, which now stops


def held_back(signum: int) -> bool:
    """For a signal handler: whether a deferred block runs, keeping `signum` for its end."""
    if _DEFERRING["depth"]:
        _DEFERRING["held"] = signum
        return True
    return False
