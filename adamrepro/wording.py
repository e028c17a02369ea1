"""How numbers read in what the commands say (a leaf: anything may import it)."""

from __future__ import annotations


def count(number: int, noun: str, plural: str | None = None) -> str:
    """'1 run', '2 runs', '1 pass', '3 passes': never '1 groups' in a progress bar."""
    return f"{number} {noun if number == 1 else plural or noun + 's'}"
