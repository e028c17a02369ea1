"""The `adamrepro` command's entry point: the CLI's imports take most of a second (torch
comes later, with the command that needs it), and a Ctrl-C then would end in a
KeyboardInterrupt traceback before the CLI could say anything. Nothing has been read or
written yet at that point."""

from __future__ import annotations

import sys


def main() -> int:
    try:
        from adamrepro.cli import main as cli_main
    except KeyboardInterrupt:
        print("adamrepro: interrupted while starting; nothing was written", file=sys.stderr)
        return 130
    return cli_main()
