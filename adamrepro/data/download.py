"""Fetch official dataset files once, with a progress bar and an MD5 check.

Files land in the standard layouts under the data folder. Offline, or when a checksum does
not match, the user gets one line saying which file is missing and where to put it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import http.client
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from adamrepro.atomic import missing_folders, remove_empty
from adamrepro.errors import UserError, home_expanded

# `--quiet` (run, bench) hides the data layer's bars too, not only the training's: a
# download's, and IMDB's tokenizing. Set for the command's duration by `quiet_bars`.
_HIDDEN = {"bars": False}


@contextlib.contextmanager
def quiet_bars(quiet: bool = True):
    before = _HIDDEN["bars"]
    _HIDDEN["bars"] = before or quiet
    try:
        yield
    finally:
        _HIDDEN["bars"] = before


def bar_console() -> tuple[Console, bool]:
    """The console of a data bar (stderr, beside the notes: stdout holds what the command
    produces) and whether the bar is hidden: under `--quiet`, or where stderr is no terminal
    (a transient bar still leaves a line break there)."""
    console = Console(stderr=True)
    return console, _HIDDEN["bars"] or not console.is_terminal


class MissingData(UserError):
    """Files that are absent and could not be downloaded; `places` maps each folder to the
    names to put there (so `fetch` can name every one of them in one line)."""

    def __init__(self, message: str, places: dict[Path, list[str]], reason: str):
        super().__init__(message)
        self.places, self.reason = places, reason


def md5sum(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_data_folder(folder: Path) -> None:
    """A data folder that is a file is named as such, before a dataset is looked for in it
    (whose message would say to put files under it)."""
    if folder.exists() and not folder.is_dir():
        raise UserError(f"data folder {folder} is a file; give --data-dir (or $ADAMREPRO_DATA) "
                        f"a folder, new or holding the datasets")


def default_data_dir() -> Path:
    """$ADAMREPRO_DATA, else the user's cache folder. A `~` is the home folder, as the
    shell would make it had the value not been quoted (`scripts/offline_data.py` reads it
    so too: data laid out in ~/data was then looked for in ./~/data)."""
    value = os.environ.get("ADAMREPRO_DATA")
    if value and not value.strip():  # read as the folder " ", which messages print as blank
        raise UserError("$ADAMREPRO_DATA is blank; unset it, or set it to the data folder")
    if value:
        try:
            return home_expanded(value)
        except UserError as error:
            raise UserError(f"$ADAMREPRO_DATA is {error}") from None
    cache = os.environ.get("XDG_CACHE_HOME", "")
    # the XDG spec: a relative path is invalid and ignored (it read as a folder of the
    # working directory, another one in every folder a command ran from)
    if not os.path.isabs(cache):
        cache = Path.home() / ".cache"
    return Path(cache) / "adamrepro" / "data"


def url_from_env(variable: str) -> str | None:
    """$variable, a URL that replaces the official one(s), or None when unset or empty.
    UserError for one urllib cannot fetch from (it would raise a bare ValueError)."""
    value = os.environ.get(variable)
    if not value:
        return None
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in ("http", "https", "ftp", "file") or (
            parts.scheme != "file" and not parts.netloc):
        raise UserError(f"${variable} is {value!r}, not a URL (http://, https://, ftp:// or "
                        f"file://...); set it to one, or unset it to use the official one")
    return value


class _WriteFailed(Exception):
    """An OSError on our side of a download (making the folder, writing or renaming the
    file), told apart from the network's: its fix is another folder, not another mirror."""

    def __init__(self, error: OSError):
        super().__init__(error)
        self.error = error


@contextlib.contextmanager
def _writing():
    try:
        yield
    except OSError as err:
        raise _WriteFailed(err) from err


def data_dir_to(where: str) -> str:
    """The fix that names another data folder: the flag of `adamrepro`, and the variable of
    a script around it, whose user passes no flag (scripts/reproduce_paper.sh)."""
    return f"pass --data-dir (or set $ADAMREPRO_DATA) to {where}"


def check_not_inside(data_dir: Path, layout: tuple[str, ...], markers, what: str) -> None:
    """A UserError where `data_dir` is the dataset's own folder (or one in it) rather than
    the data folder holding it (ADAMREPRO_DATA=~/data/MNIST): `layout` is the folders from
    the data folder down to the one holding any of `markers`. The line said the files were
    missing, and to put them in .../MNIST/MNIST/raw, beside the ones there (online, they
    were downloaded again there)."""
    data_dir = Path(data_dir)
    if any(data_dir.joinpath(*layout, marker).exists() for marker in markers):
        return
    for depth in range(1, len(layout) + 1):
        inside = data_dir.joinpath(*layout[depth:])
        named = Path(os.path.abspath(data_dir))  # a relative `raw` is MNIST/raw too
        if tuple(named.parts[-depth:]) == layout[:depth] and any(
                (inside / marker).exists() for marker in markers):
            holding = named.parents[depth - 1]
            raise UserError(f"{what}: {data_dir} is the dataset's own folder, not the data "
                            f"folder holding it; {data_dir_to(str(holding))}")


class NotWritable(UserError):
    """A data folder that takes no file: the fix is another --data-dir, whatever else the
    dataset's own message would suggest."""


def not_writable(what: str, folder: Path, error: OSError) -> NotWritable:
    """The one line for a data folder that takes no file: read-only, not ours, full, or under
    a file. It names the nearest folder that exists, the one the user can act on (the
    MNIST/raw that the layout would add under it does not exist yet)."""
    there = folder
    while not os.path.exists(there) and there != there.parent:  # (false on any OSError)
        there = there.parent
    if os.path.exists(there) and not os.path.isdir(there):
        problem, fix = f"{there} is a file, not a folder", data_dir_to("a writable folder")
    elif error.errno in (errno.ENOSPC, errno.EDQUOT):
        problem = f"{there} is full ({error.strerror})"
        fix = f"free some space there, or {data_dir_to('a folder on another disk')}"
    elif error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        problem = f"{there} is not writable ({error.strerror})"
        fix = data_dir_to("a writable folder")
    else:  # a name too long, an I/O error: the folder may be fine, the error says
        problem = f"writing in {there} failed ({error.strerror or error})"
        fix = data_dir_to("another folder")
    where = f"{what}: " if there == folder else f"{what}: cannot make {folder}: "
    return NotWritable(f"{where}{problem}; {fix}")


class _CutShort(Exception):
    """A download whose connection dropped once the file had begun to come (a server killed
    mid-file, a proxy's timeout): another mirror, or the same one again, may give it whole."""

    def __init__(self, received: int, total: int | None, cause: str = ""):
        of = f" of {total:,}" if total is not None else ""
        because = f": {cause}" if cause else ""
        super().__init__(f"cut short at {received:,}{of} bytes{because}")


class _WrongMD5(Exception):
    """A whole download whose MD5 is not the official one: the mirror serves another file."""


# What a network failure may raise out of urllib and http.client: a connection refused or
# reset (OSError, URLError), a malformed or truncated response (HTTPException, among them
# IncompleteRead), a URL or header urllib cannot use (ValueError).
NETWORK_ERRORS = (urllib.error.URLError, OSError, TimeoutError, http.client.HTTPException,
                  ValueError)


def _content_length(response) -> int | None:
    """The size the server announced, or None where it did not (chunked) or named no size
    (`Content-Length: abc` raised a ValueError through the whole command)."""
    value = (response.headers.get("Content-Length") or "").strip()
    return int(value) if value.isdigit() else None


def _download(url: str, dest: Path, md5: str, timeout: float = 30.0) -> None:
    """Stream `url` to `dest` through a temporary file, renamed into place only once whole
    and with the MD5 `md5`, so a failure leaves nothing behind. A local failure raises
    _WriteFailed; a response cut short _CutShort, a whole one with another MD5 _WrongMD5;
    the network's errors before any byte came pass as they are."""
    with _writing():
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            total = _content_length(response)
            digest, received = hashlib.md5(), 0
            columns = (
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
            )
            console, hidden = bar_console()
            with Progress(*columns, transient=True, console=console,
                          disable=hidden) as progress:
                task = progress.add_task(f"download {dest.name}", total=total)
                while True:
                    try:
                        block = response.read(1 << 16)
                    except NETWORK_ERRORS as err:  # the file had begun: it was cut short
                        # (an IncompleteRead's own words count one chunk's bytes, not ours)
                        cause = ("" if isinstance(err, http.client.IncompleteRead)
                                 else str(err) or type(err).__name__)
                        raise _CutShort(received, total, cause) from None
                    if not block:
                        break
                    with _writing():
                        out.write(block)
                    digest.update(block)
                    received += len(block)
                    progress.advance(task, len(block))
            # http.client ends a body that stops short of its Content-Length without an error
            if total is not None and received != total:
                raise _CutShort(received, total)
            # a full disk may refuse the last buffered bytes only now
            with _writing():
                out.flush()
        if digest.hexdigest() != md5:  # checked before it takes the official file's name
            raise _WrongMD5(digest.hexdigest())
        with _writing():
            # mkstemp makes it private (0600): a data folder is shared, as atomic.py's files
            os.chmod(tmp, 0o644)
            os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


# A temporary file or folder older than this is a leftover: its process was killed (kill -9,
# a power cut) before it could remove it. Younger ones may be another process's, at work.
LEFTOVER_AGE_S = 3600


def _remove_leftovers(folder: Path, pattern: str) -> None:
    """Remove what matches `pattern` in `folder` and is older than LEFTOVER_AGE_S: never
    read (each run makes its own), they stayed for good (170 MB each for CIFAR-10)."""
    try:
        found = list(folder.glob(pattern))
    except OSError:
        return
    for leftover in found:
        with contextlib.suppress(OSError):  # gone already, or not ours to remove
            if time.time() - leftover.lstat().st_mtime < LEFTOVER_AGE_S:
                continue
            if leftover.is_dir() and not leftover.is_symlink():
                shutil.rmtree(leftover)
            else:
                leftover.unlink()


def ensure_file(folder: Path, name: str, md5: str, urls: list[str], what: str) -> Path:
    """Return folder/name with the right checksum, downloading it from the first URL that
    gives it whole and with that checksum.

    `what` names the dataset in messages, e.g. "MNIST". Raises UserError when the file is
    absent and cannot be fetched, or when what is there (or what came) has the wrong MD5;
    MissingData when no URL could be reached.
    """
    path = folder / name
    _remove_leftovers(folder, f".{name}.*.part")  # _download's, of a process killed
    if path.exists():
        if md5sum(path) != md5:
            raise UserError(
                f"{what}: {path} is corrupt (MD5 mismatch, expected {md5}); delete it and run "
                f"again to download it, or replace it with the official file"
            )
        return path
    unreachable, cut_short, wrong = [], [], []  # each URL's failure, by kind
    created = missing_folders(folder)
    for url in urls:
        try:
            _download(url, path, md5)
        except _WriteFailed as failed:  # another mirror would fail the same way
            error = not_writable(what, folder, failed.error)  # naming the folders it made
            remove_empty(created)
            raise error from None
        except _CutShort as err:
            cut_short.append(f"from {url} was {err}")
        except _WrongMD5 as err:
            wrong.append((url, str(err)))
        except NETWORK_ERRORS as err:
            unreachable.append(f"{url}: {getattr(err, 'reason', err)}")
        else:
            return path
    remove_empty(created)
    # The failure that says most about the file is named: a mirror that serves another
    # file, then one that dropped the connection, then none reached.
    if wrong:
        url, found = wrong[-1]
        raise UserError(
            f"{what}: the download of {name} from {url} has the wrong MD5 ({found}, expected "
            f"{md5}); put the official {name} in {folder}"
        )
    if cut_short:
        raise UserError(f"{what}: the download of {name} {cut_short[-1]} (the connection "
                        f"dropped); run again to download it again")
    reason = unreachable[-1] if unreachable else "no URL"
    raise MissingData(
        f"{what}: {path} is missing and could not be downloaded ({reason}); put the official "
        f"{name} in {folder} or {data_dir_to('where it is')}", {folder: [name]}, reason
    )


def _move_missing(source: Path, target: Path) -> None:
    """Move `source` (unpacked) to `target` where nothing is there; into a folder that is
    there, what it lacks, file by file: a folder that lost some files gets them back from
    the archive (it was skipped whole, and the archive downloaded again to no avail). What
    is there is never replaced (it may be the user's own, or in use)."""
    if not os.path.lexists(target):
        os.replace(source, target)
    elif source.is_dir() and not source.is_symlink() and target.is_dir() and not (
            target.is_symlink()):
        for child in source.iterdir():
            _move_missing(child, target / child.name)


def extract_tar(archive: Path, into: Path, what: str) -> None:
    """Unpack a tar archive atomically enough: into a temporary folder, then each file moved
    in place, where none is there (`_move_missing`). `what` names the dataset in the one line
    for a folder that takes no files (an archive put in a read-only folder by hand, or a disk
    that fills up while it is unpacked)."""
    import tarfile

    _remove_leftovers(into, ".extract.*")  # of an extraction killed
    try:
        tmp = Path(tempfile.mkdtemp(dir=into, prefix=".extract."))
    except OSError as err:
        raise not_writable(what, into, err) from None
    try:
        with tarfile.open(archive) as tar:
            for member in tar:
                tar.extract(member, tmp, filter="data")
                # the folder's own time marks it live for another process's leftover sweep
                # (which takes one older than an hour for a killed extraction's): it would
                # stop at its first child's, and a slow disk's extraction be swept mid-way
                os.utime(tmp)
        for child in tmp.iterdir():
            _move_missing(child, into / child.name)
    except OSError as err:  # its MD5 matched, so the archive reads: the writing failed
        raise not_writable(what, into, err) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
