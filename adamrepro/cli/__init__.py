"""The `adamrepro` command: one module per subcommand, assembled here.

Every user mistake surfaces as `UserError`; `main` prints it as one line and exits 2.
"""

from __future__ import annotations

import contextlib
import errno
import signal
import sys
import threading

import typer
from typer import Abort, Exit

try:  # recent typer vendors its own click
    from typer._click.exceptions import UsageError
except ImportError:  # older typer depends on click
    from click.exceptions import UsageError
try:  # click 8.2 raises it where `no_args_is_help` shows the help
    from typer._click.exceptions import NoArgsIsHelpError
except ImportError:
    try:
        from click.exceptions import NoArgsIsHelpError
    except ImportError:  # older click printed the help and raised a message-less UsageError
        NoArgsIsHelpError = ()

from adamrepro import stopping
from adamrepro.cli import bench as bench_cmd
from adamrepro.cli import compare as compare_cmd
from adamrepro.cli import fetch as fetch_cmd
from adamrepro.cli import listing as list_cmd
from adamrepro.cli import plot as plot_cmd
from adamrepro.cli import report as report_cmd
from adamrepro.cli import run as run_cmd
from adamrepro.errors import UserError, note
from adamrepro.stopping import STOP, held_back


def _over(*_, **__) -> None:
    """Called by typer as soon as a command has returned: a Ctrl-C from here on has
    nothing left to stop (its files are written, its exit code decided)."""
    _COMMAND["over"] = True


_COMMAND: dict = {"over": False, "stopped_by": None}  # the signal that stopped it

app = typer.Typer(
    name="adamrepro",
    help="Reproduce the experiments of Kingma & Ba, 'Adam' (ICLR 2015).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # click's plain help: rich's boxes cut option names and words off with "…" in a terminal
    # of 80 columns (--reference-pass…, training.checkpo…)
    rich_markup_mode=None,
    result_callback=_over,
)
app.command("run")(run_cmd.run)
app.command("plot")(plot_cmd.plot)
app.command("report")(report_cmd.report)
app.command("list")(list_cmd.list_things)
app.command("fetch")(fetch_cmd.fetch)
app.command("bench")(bench_cmd.bench)
app.command("compare")(compare_cmd.compare)


def main(argv: list[str] | None = None) -> int:
    """Entry point: runs the app and turns every user mistake into one line and exit code 2."""
    from adamrepro.provenance import COMMAND_ARGS

    args = list(sys.argv[1:] if argv is None else argv)
    COMMAND_ARGS.set(args)
    try:
        with interrupts_said(INTERRUPTED.get(args[0] if args else "", INTERRUPTED_ELSE)):
            code = app(args=argv, standalone_mode=False)
        if _COMMAND["stopped_by"] is not None:  # typer's 130 for any stop, or a stop lost
            return 128 + _COMMAND["stopped_by"]
        if isinstance(code, int):  # a command's `typer.Exit(code)` comes back as its value
            return code
    except UserError as err:
        print(f"adamrepro: error: {err}", file=sys.stderr)
        return 2
    except NoArgsIsHelpError as err:  # `adamrepro` alone: its help, not an error
        print(err.format_message())
        return 0
    except UsageError as err:
        if not err.format_message():  # `adamrepro` alone: the help was shown
            return 0
        # a subcommand's own help, or the app's (whose context has no parent)
        command = f" {err.ctx.info_name}" if err.ctx and err.ctx.parent else ""
        hint = f" (see 'adamrepro{command} --help')"
        if command == " report" and "unexpected extra argument" in err.format_message():
            # `report results/`: plot takes names, report a folder, and both as --out
            hint = " (report takes the results folder as --out FOLDER)"
        # typer's enum check words its refusal as a pydantic validator's ("Value error, ")
        said = err.format_message().replace(": Value error, ", ": ")
        print(f"adamrepro: error: {said}{hint}", file=sys.stderr)
        return 2
    except Abort:
        if _COMMAND["stopped_by"] is None:
            print("adamrepro: aborted", file=sys.stderr)
        return 128 + (_COMMAND["stopped_by"] or signal.SIGINT)
    except Exit as err:
        return err.exit_code
    except KeyboardInterrupt:  # raised outside typer's own handling, as a command ended
        return 128 + (_COMMAND["stopped_by"] or signal.SIGINT)
    except OSError as err:
        if err.errno not in FILESYSTEM_ERRORS:
            raise
        command = args[0] if args else ""
        print(f"adamrepro: error: {filesystem_problem(err, FOLDER_FLAGS.get(command))}",
              file=sys.stderr)
        return 2
    return 0


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
    _COMMAND["over"], _COMMAND["stopped_by"] = False, None
    STOP.reset()

    def on_stop(signum, frame):
        if not working or _COMMAND["over"]:  # after it, a Ctrl-C has nothing to stop
            return
        if held_back(signum):  # a cleanup that must not stop halfway: stopped after it
            return
        if signum == signal.SIGTERM and STOP.accepting and not STOP.requested:
            STOP.request()  # the groups save, then `run` ends with 143 itself
            note(STOP_ASKED)
            return
        _COMMAND["stopped_by"] = signum
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
        if working and not held_back(_COMMAND["stopped_by"] or signal.SIGINT):
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
        if _COMMAND["stopped_by"] is not None:
            print(f"adamrepro: {STOPPING[_COMMAND['stopped_by']]}; {kept}", file=sys.stderr)


# What the filesystem refuses (permissions, a read-only or full disk, a file where a folder
# should be): the user's to fix, named in one line; other OSErrors are bugs and show.
FILESYSTEM_ERRORS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT,
                     errno.EFBIG, errno.ENOTDIR, errno.EEXIST, errno.EISDIR,
                     errno.ENAMETOOLONG}


# The folders each command's flags name: a fix offers only flags the command has.
BOTH_FOLDERS = "--out (results) or --data-dir (data)"
FOLDER_FLAGS = {"run": BOTH_FOLDERS, "plot": BOTH_FOLDERS, "bench": BOTH_FOLDERS,
                "report": "--out", "compare": "--out", "fetch": "--data-dir"}


def filesystem_problem(err: OSError, flags: str | None = BOTH_FOLDERS) -> str:
    """One line for what the filesystem refused, with a fix that offers only `flags`, the
    folder flags the command has (FOLDER_FLAGS; None: it has none)."""
    path = err.filename2 or err.filename  # a rename's destination, else the file itself
    where = f"{path}: " if path else ""
    other = f", or pass another {flags}" if flags else ""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        elsewhere = f", or pass {flags} on another disk" if flags else ""
        fix = (f"free some space{elsewhere}, and run the same command again (each file is "
               f"replaced whole: nothing half-written stays)")
    elif err.errno == errno.EFBIG:  # `ulimit -f`, or the filesystem's largest file
        fix = ("the file is larger than this process may write (ulimit -f) or the "
               "filesystem holds" + (f": raise the limit, or pass {flags} on another disk"
                                     if flags else ": raise the limit"))
    elif err.errno == errno.ENAMETOOLONG:
        shorter = f"pass a shorter {flags}" if flags else "give a shorter name"
        fix = f"the filesystem takes names of at most 255 bytes: {shorter}"
    elif err.errno in (errno.EISDIR, errno.ENOTDIR, errno.EEXIST):  # read or written alike
        fix = (f"a folder stands where a file goes, or a file where a folder goes: move it "
               f"away{other}")
    elif err.errno == errno.EROFS:  # no permission makes a read-only disk writable
        fix = "the disk is mounted read-only" + (f": pass another {flags}" if flags else "")
    else:
        fix = f"change its permissions{other}"
    return f"{where}{err.strerror}; {fix}"
