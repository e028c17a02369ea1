"""What a Ctrl-C or a SIGTERM does to a command: it says what is kept and how to go on, and
the command exits with 128 + the signal's number (typer's 130 said nothing); a first SIGTERM
while a local sweep trains stops its groups at a checkpoint instead (../stopping.py)."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading

from adamrepro import stopping
from adamrepro.errors import note
from adamrepro.stopping import STOP, held_back

# The command in progress: whether it is over, and the signal that stopped it (main reads it).
COMMAND: dict = {"over": False, "stopped_by": None}


def command_over(*_, **__) -> None:
    """Called by typer as soon as a command has returned: a Ctrl-C from here on has
    nothing left to stop (its files are written, its exit code decided)."""
    COMMAND["over"] = True


# What a Ctrl-C leaves, by command: `run` keeps its finished runs and the checkpoints its
# groups saved (`training.checkpoint_every`); a Ctrl-C saves none, and a group's passes since
# its last one are trained again (`--time-budget`, and a single SIGTERM while groups train,
# stop at a checkpoint instead). Every other command's files are written whole or not at all.
INTERRUPTED = {"run": "what finished is kept (runs, and the checkpoints saved by "
                      "training.checkpoint_every; a group's passes since its last are trained "
                      "again, --time-budget or a single SIGTERM stops at one instead): run "
                      "the same command again to go on"}
INTERRUPTED_ELSE = ("each file it wrote is whole (written aside, then renamed): run the same "
                    "command again to finish")


# The signals that stop a command as a Ctrl-C does: SIGTERM is what a preemptible machine,
# SLURM or Kubernetes sends before its kill, and it ended the command without a word (exit
# code 143, the lock and the sweep's owner file left behind). While a local sweep trains, a
# first SIGTERM stops its groups at a checkpoint instead (adamrepro/stopping.py), and `run`
# says what is left and exits 143 itself.
STOPPING = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated (SIGTERM)"}
# The files whose calls enter a block that holds a stop back (`signals_deferred`, a
# contextlib context manager): a dropped Ctrl-C raised again is not raised in them.
ENTERING_A_DEFERRAL = {contextlib.__file__, stopping.__file__}
STOP_ASKED = ("SIGTERM: each group training saves a checkpoint after its pass in progress, "
              "then the command stops (another SIGTERM or a Ctrl-C stops it at once)")


@contextlib.contextmanager
def interrupts_said(kept: str = INTERRUPTED["run"]):
    """Ctrl-C (or SIGTERM): typer turns it into exit code 130 without a word; say what is
    kept (`kept`) and how to go on, and exit with 128 + the signal's number."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    working = True
    COMMAND["over"], COMMAND["stopped_by"] = False, None
    STOP.reset()

    def on_stop(signum, frame):
        if not working or COMMAND["over"]:  # after it, a Ctrl-C has nothing to stop
            return
        if held_back(signum):  # a cleanup that must not stop halfway: stopped after it
            return
        if signum == signal.SIGTERM and STOP.accepting and not STOP.requested:
            STOP.request()  # the groups save, then `run` ends with 143 itself
            note(STOP_ASKED)
            return
        COMMAND["stopped_by"] = signum
        signal.default_int_handler(signum, frame)  # raises KeyboardInterrupt, as before

    def swallowed(unraisable) -> None:
        """A stop raised where Python cannot raise it (a weakref callback, a __del__ run by
        the garbage collector) was printed as "Exception ignored" with a traceback and
        lost: the command went on and exited 0. Raise it again at the next call of a
        function, by a trace function: raised in this hook it would be lost again, and one
        that lands in another such callback comes back here and goes on to the next."""
        nonlocal prior
        if isinstance(unraisable.exc_value, KeyboardInterrupt) and working:
            if sys.gettrace() is not stop_again:  # a debugger's or coverage's, put back after
                prior = sys.gettrace()
            sys.settrace(stop_again)
            return
        hook(unraisable)

    prior = None  # the trace function stop_again stands in for

    def stop_again(frame, event, arg):
        if event != "call":
            return None
        if working and frame.f_code.co_filename in ENTERING_A_DEFERRAL:
            return None  # still armed: raised here, it would skip the block's cleanup
        sys.settrace(prior)
        if working and not held_back(COMMAND["stopped_by"] or signal.SIGINT):
            # a trace function's exception is raised in the frame; Python then turns tracing
            # off, a debugger's too: the command is ending
            raise KeyboardInterrupt
        # over, or held back until a cleanup's end (signals_deferred raises it again there)
        return prior(frame, event, arg) if prior is not None else None

    previous = {signum: signal.signal(signum, on_stop) for signum in STOPPING}
    hook, sys.unraisablehook = sys.unraisablehook, swallowed
    try:
        yield
    finally:
        working = False
        sys.unraisablehook = hook
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if COMMAND["stopped_by"] is not None:
            print(f"adamrepro: {STOPPING[COMMAND['stopped_by']]}; {kept}", file=sys.stderr)
