"""A user's optimizer whose `step` is inherited from a class of another of their modules
(my_optimizers.py): an error it raises is still theirs, shown at the line that raised it."""

from __future__ import annotations

from my_optimizers import Faulty


class FaultyChild(Faulty):
    """Faulty, unchanged, under another name in another file."""
