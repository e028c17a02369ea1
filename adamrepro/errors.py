"""The one exception type for user mistakes: the CLI prints its message on one line, exit 2."""


class UserError(Exception):
    """A mistake the user can fix (bad config, missing data, bad flag). Message = problem + fix.

    The message is one line whatever it quotes: a line break (in a YAML key, say) is shown
    escaped, as `\\n`."""

    def __init__(self, message: str):
        super().__init__(str(message).replace("\r", "\\r").replace("\n", "\\n"))
