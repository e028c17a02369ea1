"""Imported first by each Python script under scripts/, before its other imports: a Ctrl-C
while those run (torch's take seconds) ended the script in a KeyboardInterrupt traceback.
It is one line instead, exit 130, as `adamrepro` itself says it (entry.py); nothing has been
read or written yet then. `errors.script_exit` hands Ctrl-C back to Python as the script's
`main` starts, where it says what running the script again does.

The handler is installed when this module is imported: that is its one purpose, and only
scripts import it.
"""

from __future__ import annotations

import os
import signal
import sys


def _interrupted_while_starting(signum, frame) -> None:
    name = os.path.splitext(os.path.basename(sys.argv[0] or "script"))[0]
    print(f"{name}: interrupted while starting; nothing was written", file=sys.stderr)
    sys.exit(128 + signum)


signal.signal(signal.SIGINT, _interrupted_while_starting)
