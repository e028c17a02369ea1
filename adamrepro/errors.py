"""The one exception type for user mistakes: the CLI prints its message on one line, exit 2."""


class UserError(Exception):
    """A mistake the user can fix (bad config, missing data, bad flag). Message = problem + fix."""
