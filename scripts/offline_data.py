#!/usr/bin/env python3
"""Lay out an offline copy of the datasets where `adamrepro` looks for them, for a machine
without network access:

    python scripts/offline_data.py --from ../shared/data    # a folder with prepare.py
    python scripts/offline_data.py --from ~/Downloads       # the official archives

`--from DIR` is either a folder holding `prepare.py` (like ../shared/data), which is run to lay
the data out, or a folder holding the official downloads: the four MNIST `*-ubyte.gz` files,
`aclImdb_v1.tar.gz` and `cifar-10-python.tar.gz` (each copied only with its official MD5,
checked before anything is copied). In a prepare.py folder an archive `X.tar.gz`
may travel as `X.tar.xz` (scripts/offline_bundle.sh recompresses IMDB's text so that the whole
paper fits a 64 MiB job); it is turned back into `X.tar.gz` in a staging folder for prepare.py,
which is left as it is. The data goes to `--out` (default: $ADAMREPRO_DATA, else
$XDG_CACHE_HOME/adamrepro/data, ~/.cache/adamrepro/data when unset), and is then checked
exactly as `adamrepro fetch` checks it (MD5 of every MNIST file and of the IMDB archive, the
review folders, the CIFAR-10 batches' presence: their MD5s are checked when they are read,
and ../shared/data's CIFAR-10 copy, re-encoded as JPEG, is read only with
`--unverified-data`).
"""

from __future__ import annotations

import adamrepro.script_start  # noqa: F401  (first: a Ctrl-C while the rest import is one line)

# isort: split

import contextlib
import gzip
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from adamrepro.cli import main as adamrepro
from adamrepro.cli.params import DEFAULT_DATA_DIR, ScriptParser, folder_argument
from adamrepro.data import cifar10, imdb, mnist
from adamrepro.data.download import default_data_dir, md5sum
from adamrepro.errors import UserError, script_exit

DATASETS = ("mnist", "imdb", "cifar10")

try:
    from lzma import LZMAError
except ImportError:  # a Python built without lzma: the `xz` command says its own errors
    LZMAError = EOFError


def fail(message: str) -> None:
    """One line on stderr and exit code 2, as `adamrepro` does for what the user can fix."""
    print(f"offline_data: {message}", file=sys.stderr)
    raise SystemExit(2)


def staged(source: Path, stage: Path) -> Path:
    """`source` itself, or, where it holds an `X.tar.xz` without its `X.tar.gz`, a copy of it
    in `stage`: prepare.py copied (it finds its archives beside its own resolved path), every
    other entry linked, and each such archive written back as gzip (level 1: it is read once)."""
    recompressed = [xz for xz in sorted(source.glob("*.tar.xz"))
                    if not (source / xz.name.replace(".tar.xz", ".tar.gz")).exists()]
    if not recompressed:
        return source
    for entry in source.iterdir():
        if entry.name == "prepare.py":
            shutil.copyfile(entry, stage / entry.name)
        elif entry not in recompressed:
            (stage / entry.name).symlink_to(entry.resolve())
    for xz in recompressed:
        try:
            with xz_reader(xz) as src, \
                    gzip.open(stage / xz.name.replace(".tar.xz", ".tar.gz"), "wb", 1) as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        except (EOFError, LZMAError) as err:  # cut short, or not xz at all
            fail(f"{xz} is not a whole xz file ({err}); copy it again, or bundle the .tar.gz")
    return stage


@contextlib.contextmanager
def xz_reader(path: Path):
    """The decompressed bytes of `path`: Python's lzma, or, in a Python built without it (a
    lent machine's may be), the `xz` command."""
    try:
        import lzma
    except ImportError:
        if shutil.which("xz") is None:
            fail(f"{path} is xz-compressed, and this Python has no lzma module and there "
                 f"is no xz command; install xz, or bundle the .tar.gz")
        with subprocess.Popen(["xz", "-dc", str(path)], stdout=subprocess.PIPE) as xz:
            yield xz.stdout
        if xz.returncode != 0:
            fail(f"xz -dc {path} failed (exit {xz.returncode}); is the file whole?")
        return
    with lzma.open(path) as src:
        yield src


def from_prepare_script(source: Path, out: Path, only: list[str]) -> None:
    with tempfile.TemporaryDirectory(prefix=".offline-data-", dir=out) as stage:
        folder = staged(source, Path(stage))
        done = subprocess.run([sys.executable, str(folder / "prepare.py"), "--out", str(out),
                               *(arg for name in only for arg in ("--only", name))])
    if done.returncode != 0:  # prepare.py said why, above
        fail(f"{source / 'prepare.py'} failed (exit {done.returncode}); fix what it names "
             f"and run this again")


def check_official_archives(source: Path, out: Path, only: list[str]) -> None:
    """A dataset of `only` that neither `source` nor `out` holds, said before anything is
    made: `fetch` would try the network, which this tool is for doing without, and name its
    --data-dir."""
    # MNIST is four files, each needed (one of them alone made a bundle that failed on the
    # lent machine, at its cost); the others one archive or its unpacked folder
    wanted = {"mnist": (list(mnist.FILES), [out / "MNIST" / "raw" / name for name in mnist.FILES],
                        all),
              "imdb": ([imdb.ARCHIVE], [out / imdb.ARCHIVE, out / "aclImdb"], any),
              "cifar10": ([cifar10.ARCHIVE], [out / cifar10.ARCHIVE, out / cifar10.FOLDER], any)}
    for name in only:
        files, there, needed = wanted[name]
        missing = [file for file in files if next(source.rglob(file), None) is None]
        if missing and not needed(path.exists() for path in there):
            what = (f"has no {name} files ({', '.join(files)})" if missing == files else
                    f"lacks {', '.join(missing)} of the {name} files")
            fail(f"--from {source} {what}, nor --out {out}; pass --from a folder with the "
                 f"official downloads or prepare.py, or leave {name} out (--only)")


# The MD5 of each official download, as `fetch` checks it once in --out.
OFFICIAL_MD5 = {**mnist.FILES, imdb.ARCHIVE: imdb.MD5, cifar10.ARCHIVE: cifar10.ARCHIVE_MD5}


def official_file(source: Path, name: str) -> Path | None:
    """The first file named `name` under `source` with the official MD5; None where none is
    named so. One of another MD5 alone (a download cut short, a damaged copy) is refused: it
    was copied into --out, where `fetch` called it corrupt and said to download it again, on
    a machine without network, and a run of this tool with the source mended kept it (a file
    there is not copied again)."""
    first_seen = None  # (path, MD5) of the first found: the one the refusal names
    for path in sorted(source.rglob(name)):
        if not path.is_file():
            continue
        digest = md5sum(path)  # each file read once
        if digest == OFFICIAL_MD5[name]:
            return path
        first_seen = first_seen or (path, digest)
    if first_seen is not None:
        fail(f"{first_seen[0]} is not the official {name} (MD5 {first_seen[1]}, expected "
             f"{OFFICIAL_MD5[name]}): cut short or damaged; copy it again from the official "
             f"download, or leave its dataset out (--only)")
    return None


def official_copies(source: Path, out: Path, only: list[str]) -> list[tuple[Path, Path]]:
    """(file in `source`, where in `out`) for each official download of `only` that `out`
    lacks, in the layout `adamrepro fetch` would have downloaded into; each checked before
    anything is made."""
    wanted = []
    if "mnist" in only:
        wanted += [(name, out / "MNIST" / "raw" / name) for name in mnist.FILES]
    for name, archive, unpacked in (("imdb", imdb.ARCHIVE, "aclImdb"),
                                    ("cifar10", cifar10.ARCHIVE, cifar10.FOLDER)):
        if name in only and not (out / unpacked).is_dir():
            wanted.append((archive, out / archive))  # fetch checks and unpacks it
    return [(found, dest) for name, dest in wanted
            if not dest.exists() and (found := official_file(source, name)) is not None]


def copy_whole(source: Path, dest: Path) -> None:
    """`source` to `dest` through a temporary file beside it, renamed once whole: a copy cut
    short (Ctrl-C, a full disk) left part of a file under the official name, which a run of
    this tool again kept ("run it again to finish" did not). A leftover of a copy killed
    outright is removed by `fetch` (`.NAME.*.part`, as a download's)."""
    part = dest.with_name(f".{dest.name}.{os.getpid()}.part")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, part)
        os.replace(part, dest)
    except OSError as err:  # a file where a folder goes, a full or read-only disk
        fail(f"cannot copy {source} to {dest} ({err.strerror}); move away what is in the way, "
             f"or pass --out (or set ADAMREPRO_DATA) to a writable folder")
    finally:
        with contextlib.suppress(OSError):
            part.unlink(missing_ok=True)


def main() -> int:
    parser = ScriptParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--from", dest="source", type=folder_argument, required=True,
                        help="a folder with prepare.py, or with the official downloads")
    parser.add_argument("--only", choices=DATASETS, action="append",
                        help="lay out and check only these datasets (repeatable; default: all)")
    parser.add_argument("--out", type=folder_argument, default=None,
                        help=f"the data folder (default: {DEFAULT_DATA_DIR})")
    args = parser.parse_args()
    try:
        out = args.out or default_data_dir()
    except UserError as error:
        fail(str(error))
    source = args.source
    if not source.is_dir():
        parser.error(f"{source} is not a folder")
    if out.exists() and not out.is_dir():
        fail(f"{out} is a file, not a data folder; pass --out (or set ADAMREPRO_DATA) to a "
             f"folder")
    only = args.only or list(DATASETS)
    official = not (source / "prepare.py").is_file()
    if official:
        check_official_archives(source, out, only)
        copies = official_copies(source, out, only)
    made = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # a file above it, a read-only disk
        fail(f"cannot make {out} ({err.strerror}); pass --out (or set ADAMREPRO_DATA) to a "
             f"writable folder")
    try:
        if official:
            for found, dest in copies:
                copy_whole(found, dest)
        else:
            from_prepare_script(source, out, only)
    except SystemExit:  # a mistake said: the folder it made for nothing goes
        if made and not any(out.iterdir()):
            out.rmdir()
        raise
    # `adamrepro fetch` checks it all, and names in one line whatever is still missing.
    return adamrepro(["fetch", *only, "--data-dir", str(out)])


if __name__ == "__main__":
    script_exit(main, "offline_data", "finish")
