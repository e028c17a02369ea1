"""The one exception type for user mistakes: the CLI prints its message on one line, exit 2;
and `note`, the one line for what the user should know while the command goes on."""

import sys


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
