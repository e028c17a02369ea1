"""How numbers and names read in what the commands say (a leaf: anything may import it)."""

from __future__ import annotations

import difflib


def count(number: int, noun: str, plural: str | None = None) -> str:
    """'1 run', '2 runs', '1 pass', '3 passes': never '1 groups' in a progress bar."""
    return f"{number} {noun if number == 1 else plural or noun + 's'}"


def did_you_mean(name: str, known, n: int = 1) -> str:
    """"did you mean 'adam'?" (or "'a', 'b' or 'c'" with n = 3) for the names of `known`
    nearest to a misspelt `name`; '' where none is near."""
    # difflib finds the near names; the fewest edits orders them, a swap of two letters one
    # edit: for `adma`, difflib's own order put 'adamax' before 'adam'
    near = difflib.get_close_matches(name, list(known), n=max(n, 10))
    near.sort(key=lambda match: _edits(name, match))  # stable: difflib's order among equals
    close = [repr(match) for match in near[:n]]
    if not close:
        return ""
    return f"did you mean {', '.join(close[:-1])}{' or ' if close[1:] else ''}{close[-1]}?"


def _edits(a: str, b: str) -> int:
    """Insertions, deletions, substitutions and swaps of two neighbouring letters that make
    `a` into `b` (the optimal string alignment distance)."""
    rows = [list(range(len(b) + 1))]
    for i, x in enumerate(a, 1):
        row = [i]
        for j, y in enumerate(b, 1):
            row.append(min(rows[-1][j] + 1, row[j - 1] + 1, rows[-1][j - 1] + (x != y)))
            if i > 1 and j > 1 and x == b[j - 2] and a[i - 2] == y:
                row[j] = min(row[j], rows[-2][j - 2] + 1)
        rows.append(row)
    return rows[-1][-1]
