"""Files written whole or not at all: each goes to a temporary name in its folder and is
renamed into place once complete and synced, so a reader (or a resume after kill -9) sees
the old file or the new one, never half of one. Results, checkpoints, data caches and
benchmark tables are all written through here.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
import time
import zipfile
from pathlib import Path


@contextlib.contextmanager
def atomic_file(path: Path, mode: str = "w"):
    """Write `path` through a temporary file in its folder (made if missing), renamed into
    place once complete: readers see the old file or the new one, never half of one."""
    renames: list[tuple[str, Path]] = []
    with _renamed_later(path, renames, mode) as f:
        yield f
    _rename(renames)


def load_intact(path: Path, **options):
    """`torch.load(path, weights_only=True)` of a file `atomic_torch_save` wrote, once every
    zip entry's CRC-32 is checked: torch reads a tensor's damaged bytes without a word (a
    checkpoint with 100 flipped signs resumed to other curves, silently). A damaged entry is
    a ValueError naming it. The file is read twice, once for the check: a resume reads its
    checkpoint once per command, and the check costs less than the passes it would lose."""
    import torch

    with zipfile.ZipFile(path) as archive:
        damaged = archive.testzip()
    if damaged is not None:
        raise ValueError(f"its entry {damaged} is damaged (CRC-32 mismatch)")
    return torch.load(path, weights_only=True, **options)


def atomic_torch_save(obj, path: Path) -> None:
    """torch.save `obj` to `path` through `atomic_file`. A write the disk refuses (full,
    over a size limit) is the OSError it raised, naming the file, and a Ctrl-C mid-write the
    KeyboardInterrupt: torch's zip writer, closing after the write it cut short, puts a
    RuntimeError ("unexpected pos ...") in their place, which was a traceback (exit code 1
    where a Ctrl-C during a checkpoint's or a run's parameters' save says what is kept and
    exits 130)."""
    import torch

    try:
        with atomic_file(path, "wb") as f:
            torch.save(obj, f)
    except RuntimeError as err:
        refused = err.__cause__ or err.__context__
        if isinstance(refused, KeyboardInterrupt):
            raise refused from None
        if not isinstance(refused, OSError):
            raise
        raise OSError(refused.errno, refused.strerror, str(path)) from None


def atomic_write(path: Path, text: str) -> None:
    with atomic_file(path) as f:
        f.write(text)


def atomic_set(texts: dict[Path, str | bytes]) -> None:
    """Several files as one set (an experiment's tables): every one is written complete
    to its temporary file before any is renamed into place, so a failure midway (a full
    disk) leaves the old set whole, never new curves beside an old best.csv."""
    renames: list[tuple[str, Path]] = []
    try:
        with contextlib.ExitStack() as staged:
            for path, text in texts.items():
                mode = "wb" if isinstance(text, bytes) else "w"
                staged.enter_context(_renamed_later(path, renames, mode)).write(text)
    except BaseException:  # those completed before the failure are not renamed either
        _remove(renames)
        raise
    blocked = [path for path in texts if path.is_dir()]  # a rename onto it would fail midway
    if blocked:
        _remove(renames)
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(blocked[0]))
    order = list(texts)  # renamed in the order given (the stack above completes them last first)
    _rename(sorted(renames, key=lambda rename: order.index(rename[1])))


# How long a temporary file of `atomic_file` goes untouched before it is taken for one a
# kill left (`remove_abandoned`): a write touches its file until it is synced and renamed,
# seconds later (a 75 MB ZCA fit: under a second on this project's disk).
ABANDONED_SECONDS = 600.0


def remove_abandoned(folder: Path, name_pattern: str) -> int:
    """Remove the temporary files of `atomic_file`'s writes of `name_pattern` (a glob of
    file names) in `folder` that no write has touched for ABANDONED_SECONDS; return how
    many. For a data cache, which no lock guards: a kill during its write left a hidden
    temporary file there for good (75 MB for a ZCA fit, 38 MB for IMDB's bag-of-words),
    and a younger one may be another command's write in progress."""
    removed = 0
    for path in Path(folder).glob(f".{name_pattern}.*.tmp"):
        with contextlib.suppress(OSError):  # gone meanwhile, or a read-only data folder
            if time.time() - path.stat().st_mtime > ABANDONED_SECONDS:
                path.unlink()
                removed += 1
    return removed


def missing_folders(folder: Path) -> list[Path]:
    """`folder` and those above it that do not exist yet, deepest first: those a write into
    it makes."""
    return [path for path in (folder, *folder.parents) if not path.exists()]


def remove_empty(folders: list[Path]) -> None:
    """Remove each of `folders` (deepest first) that is left empty: a write that failed
    leaves none of the folders it made behind."""
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()


@contextlib.contextmanager
def _renamed_later(path: Path, renames: list[tuple[str, Path]], mode: str = "w"):
    """A temporary file beside `path` (its folder made if missing), written, synced and
    made readable, then added to `renames`; removed if anything fails."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise _naming(err, path) from None
    try:
        # UTF-8 whatever the locale: report.md's α once failed to encode where the locale
        # was ASCII or Latin-1 (a cluster's LANG=en_US), and the same results read alike
        # everywhere
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; results and caches are shared data
    except BaseException as err:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(err, OSError) and err.filename in (None, tmp):
            raise _naming(err, path) from None
        raise
    renames.append((tmp, path))


def _naming(err: OSError, path: Path) -> OSError:
    """`err` (a full disk, a read-only one) as the file the user knows: a write says no
    file at all, and the temporary file's name is ours, not theirs (cli `filesystem_problem`
    words it)."""
    return OSError(err.errno, err.strerror, str(path))


def _rename(renames: list[tuple[str, Path]]) -> None:
    for index, (tmp, path) in enumerate(renames):
        try:
            os.replace(tmp, path)
        except BaseException:
            _remove(renames[index:])
            raise


def _remove(renames: list[tuple[str, Path]]) -> None:
    for tmp, _ in renames:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
