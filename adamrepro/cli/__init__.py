"""The `adamrepro` command: one module per subcommand, assembled here.

Every user mistake surfaces as `UserError`; `main` prints it as one line and exits 2.
"""

from __future__ import annotations

import sys

import typer
from typer import Abort, Exit

try:  # recent typer vendors its own click
    from typer._click.exceptions import UsageError
except ImportError:  # older typer depends on click
    from click.exceptions import UsageError

from adamrepro.cli import bench as bench_cmd
from adamrepro.cli import compare as compare_cmd
from adamrepro.cli import fetch as fetch_cmd
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

    COMMAND_ARGS.set(list(sys.argv[1:] if argv is None else argv))
    try:
        code = app(args=argv, standalone_mode=False)
        if isinstance(code, int):  # a command's `typer.Exit(code)` comes back as its value
            return code
    except UserError as err:
        print(f"adamrepro: error: {err}", file=sys.stderr)
        return 2
    except UsageError as err:
        if not err.format_message():  # `adamrepro` alone: the help was shown
            return 0
        hint = f" (see 'adamrepro {err.ctx.info_name} --help')" if err.ctx else ""
        print(f"adamrepro: error: {err.format_message()}{hint}", file=sys.stderr)
        return 2
    except Abort:
        print("adamrepro: aborted", file=sys.stderr)
        return 130
    except Exit as err:
        return err.exit_code
    return 0
