"""The one exception type for user mistakes: the CLI prints its message on one line, exit 2;
`note`, the one line for what the user should know while the command goes on; and
`home_expanded`, the one place a path the user typed has its `~` expanded."""

import sys
from pathlib import Path


class UserError(Exception):
    """A mistake the user can fix (bad config, missing data, bad flag). Message = problem + fix.

    The message is one line whatever it quotes: a line break (in a YAML key, say) is shown
    escaped, as `\\n`."""

    def __init__(self, message: str):
        super().__init__(str(message).replace("\r", "\\r").replace("\n", "\\n"))


def note(text: str) -> None:
    """One line on stderr, `adamrepro: note: TEXT`: stdout keeps only what the command
    produces, and a Python warning would add its source line to what is the user's news."""
    text = str(text).replace("\r", "\\r").replace("\n", "\\n")
    print(f"adamrepro: note: {text}", file=sys.stderr)


def home_expanded(text: str) -> Path:
    """`text` as a path, a leading `~` or `~user` expanded as the shell would have. A user
    the system does not know is a UserError: pathlib raised a RuntimeError, a traceback, for
    a mistyped `--out ~results` that the shell had left as it was."""
    try:
        return Path(text).expanduser()
    except RuntimeError:
        user = text[1:].split("/", 1)[0]
        raise UserError(f"{text!r}: no user {user!r} whose home ~{user} could stand for; "
                        f"write the full path, or ~/{user} for a folder in your own "
                        f"home") from None


def script_exit(main, name: str, again: str) -> None:
    """Run a script's `main` and exit with its code; a Ctrl-C is one line naming the script
    and what running it again does (`again`), exit 130, not a traceback (each file a script
    writes is whole: atomic.py)."""
    import signal
    import sys

    # a Ctrl-C during the script's imports was script_start.py's to say
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print(f"{name}: interrupted; run it again to {again}", file=sys.stderr)
        sys.exit(130)

