"""The `adamrepro` command's entry point: the CLI's imports take most of a second (torch
comes later, with the command that needs it), and a Ctrl-C then would end in a
KeyboardInterrupt traceback before the CLI could say anything. Nothing has been read or
written yet at that point."""

from __future__ import annotations

import gc
import signal
import sys


def main() -> int:
    if sys.platform == "win32":  # the CLI's import needs fcntl: an ImportError's traceback
        print("adamrepro: error: Windows is not supported (results folders are locked with "
              "fcntl, and the CPU workers fork); run it under WSL 2, or on Linux",
              file=sys.stderr)
        return 2
    try:
        from adamrepro.cli import main as cli_main
    except KeyboardInterrupt:
        print("adamrepro: interrupted while starting; nothing was written", file=sys.stderr)
        return 130
    code = cli_main()
    # The command is over (its files written or refused): a Ctrl-C from here to the exit
    # would raise KeyboardInterrupt in the interpreter's shutdown (a traceback, and an exit
    # code that no longer says how the command ended), so it is ignored.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The interpreter's last garbage collections walk every object torch and pandas made (a
    # million and more): 1.2 s of a smoke run's end on a 2-core CPU (0.25 s frozen), for
    # memory the exit frees anyway. Frozen objects are skipped by them; atexit handlers, buffers'
    # flushes and every module's teardown still run.
    gc.freeze()
    return code
