"""The `adamrepro` command: one module per subcommand, assembled here.

Every user mistake surfaces as `UserError`; `main` prints it as one line and exits 2, as it
does what the filesystem refuses. What a Ctrl-C or SIGTERM leaves is interrupts.py's.
"""

from __future__ import annotations

import codecs
import errno
import os
import signal
import sys

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

from adamrepro.cli import bench as bench_cmd
from adamrepro.cli import compare as compare_cmd
from adamrepro.cli import fetch as fetch_cmd
from adamrepro.cli import interrupts
from adamrepro.cli import listing as list_cmd
from adamrepro.cli import plot as plot_cmd
from adamrepro.cli import report as report_cmd
from adamrepro.cli import run as run_cmd
from adamrepro.errors import UserError

app = typer.Typer(
    name="adamrepro",
    help="Reproduce the experiments of Kingma & Ba, 'Adam' (ICLR 2015).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # click's plain help: rich's boxes cut option names and words off with "…" in a terminal
    # of 80 columns (--reference-pass…, training.checkpo…)
    rich_markup_mode=None,
    result_callback=interrupts.command_over,
)
app.command("run")(run_cmd.run)
app.command("plot")(plot_cmd.plot)
app.command("report")(report_cmd.report)
app.command("list")(list_cmd.list_things)
app.command("fetch")(fetch_cmd.fetch)
app.command("bench")(bench_cmd.bench)
app.command("compare")(compare_cmd.compare)


def speak_in_any_encoding() -> None:
    """What the commands say holds α, ε and ×. Where stdout's encoding cannot write them (a
    locale of ASCII or Latin-1, as a cluster's LANG=en_US), Python raised UnicodeEncodeError
    mid-command, a traceback after its files were written. Such characters are written as
    backslash escapes there instead, as Python's stderr already writes them."""
    for stream in (sys.stdout, sys.stderr):
        encoding = getattr(stream, "encoding", None)
        if (encoding and codecs.lookup(encoding).name != "utf-8"
                and hasattr(stream, "reconfigure")):
            stream.reconfigure(errors="backslashreplace")


def draw_without_a_backend() -> None:
    """The figures are drawn with matplotlib's object-oriented API, which needs no backend
    (savefig picks each format's canvas). matplotlib still checks $MPLBACKEND when imported:
    a name it does not know (a typo, another machine's setting) made `plot` and `report`
    tracebacks. The variable is dropped, here and in the workers: it cannot change a figure."""
    os.environ.pop("MPLBACKEND", None)


def main(argv: list[str] | None = None) -> int:
    """Entry point: runs the app and turns every user mistake into one line and exit code 2."""
    from adamrepro.provenance import COMMAND_ARGS

    speak_in_any_encoding()
    draw_without_a_backend()
    args = list(sys.argv[1:] if argv is None else argv)
    COMMAND_ARGS.set(args)
    try:
        kept = interrupts.INTERRUPTED.get(args[0] if args else "", interrupts.INTERRUPTED_ELSE)
        with interrupts.interrupts_said(kept):
            code = app(args=argv, standalone_mode=False)
        stopped_by = interrupts.COMMAND["stopped_by"]
        if stopped_by is not None:  # typer's 130 for any stop, or a stop lost
            return 128 + stopped_by
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
        if interrupts.COMMAND["stopped_by"] is None:
            print("adamrepro: aborted", file=sys.stderr)
        return 128 + (interrupts.COMMAND["stopped_by"] or signal.SIGINT)
    except Exit as err:
        return err.exit_code
    except KeyboardInterrupt:  # raised outside typer's own handling, as a command ended
        return 128 + (interrupts.COMMAND["stopped_by"] or signal.SIGINT)
    except OSError as err:
        if err.errno == errno.ENOMEM:  # an import or a fork the memory limit refused
            print(f"adamrepro: error: {out_of_memory()}", file=sys.stderr)
            return 2
        if err.errno not in FILESYSTEM_ERRORS:
            raise
        command = args[0] if args else ""
        print(f"adamrepro: error: {filesystem_problem(err, FOLDER_FLAGS.get(command))}",
              file=sys.stderr)
        return 2
    except MemoryError as err:  # numpy's or Python's, under `ulimit -v` or on a full machine
        # (torch's own, in training, halves the group instead: runner/executors.py)
        print(f"adamrepro: error: {out_of_memory(str(err))}", file=sys.stderr)
        return 2
    return 0


def out_of_memory(said: str = "") -> str:
    """Memory the machine or a limit refused, with what the refusal `said` (numpy names the
    array): a traceback until 2026-12-06, where a data set's array, an import or a fork
    asked for more than `ulimit -v` or a full machine gave."""
    return (f"out of memory{f' ({said})' if said else ''}; give the command more (a job's "
            f"memory request, ulimit -v) or run less at once (run --workers 1, or "
            f"training.max_group_size), then run it again (finished runs are kept)")


# What the filesystem refuses (permissions, a read-only or full disk, a file where a folder
# should be): the user's to fix, named in one line; other OSErrors are bugs and show.
FILESYSTEM_ERRORS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT,
                     errno.EFBIG, errno.ENOTDIR, errno.EEXIST, errno.EISDIR,
                     errno.ENAMETOOLONG, errno.ELOOP}


# The folders each command's flags name: a fix offers only flags the command has.
# The data folder is also $ADAMREPRO_DATA's: a script around adamrepro (reproduce_paper.sh)
# passes no --data-dir, and its user sets the variable
DATA_FOLDER = "--data-dir (or $ADAMREPRO_DATA)"
BOTH_FOLDERS = "--out (results) or --data-dir (data; or $ADAMREPRO_DATA)"
FOLDER_FLAGS = {"run": BOTH_FOLDERS, "plot": BOTH_FOLDERS, "bench": BOTH_FOLDERS,
                "report": "--out", "compare": "--out", "fetch": DATA_FOLDER}


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
    elif err.errno == errno.ELOOP:
        fix = f"a symbolic link on that path leads back to itself: remove or correct it{other}"
    elif err.errno == errno.EEXIST and path and os.path.islink(path) and not os.path.exists(path):
        # mkdir on a link to nothing: "File exists", though nothing is there
        fix = (f"it is a symbolic link to {os.readlink(path)}, which does not exist: create "
               f"that folder, or remove the link{other}")
    elif err.errno in (errno.EISDIR, errno.ENOTDIR, errno.EEXIST):  # read or written alike
        fix = (f"a folder stands where a file goes, or a file where a folder goes: move it "
               f"away{other}")
    elif err.errno == errno.EROFS:  # no permission makes a read-only disk writable
        fix = "the disk is mounted read-only" + (f": pass another {flags}" if flags else "")
    else:
        fix = f"change its permissions{other}"
    return f"{where}{err.strerror}; {fix}"
