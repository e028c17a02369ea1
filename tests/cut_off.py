"""A write that a kill cut off, as it leaves the disk: shared by the data caches' tests."""

from __future__ import annotations

import os
import time
from pathlib import Path

from adamrepro.atomic import ABANDONED_SECONDS, atomic_file


def cut_off_write(path: Path, abandoned: bool = True) -> Path:
    """The temporary file of an `atomic_file` write of `path` whose process died before its
    rename (a forked child that exits at once, running no cleanup, as a kill leaves it);
    `abandoned`: last touched longer ago than ABANDONED_SECONDS, else just now (a write
    that may be in progress)."""
    before = set(path.parent.glob(f".{path.name}.*.tmp"))
    child = os.fork()
    if child == 0:
        with atomic_file(path, "wb") as f:
            f.write(b"half of a cache")
            f.flush()
            os._exit(0)
    os.waitpid(child, 0)
    [left] = set(path.parent.glob(f".{path.name}.*.tmp")) - before
    if abandoned:
        old = time.time() - ABANDONED_SECONDS - 60
        os.utime(left, (old, old))
    return left
