"""How numbers and names read in what the commands say (a leaf: anything may import it)."""

from __future__ import annotations

import difflib


def count(number: int, noun: str, plural: str | None = None) -> str:
    """'1 run', '2 runs', '1 pass', '3 passes': never '1 groups' in a progress bar."""
    return f"{number} {noun if number == 1 else plural or noun + 's'}"


def did_you_mean(name: str, known, n: int = 1) -> str:
    """"did you mean 'adam'?" (or "'a', 'b' or 'c'" with n = 3) for the names of `known`
    nearest to a misspelt `name`; '' where none is near."""
    close = [repr(match) for match in difflib.get_close_matches(name, list(known), n=n)]
    if not close:
        return ""
    return f"did you mean {', '.join(close[:-1])}{' or ' if close[1:] else ''}{close[-1]}?"
