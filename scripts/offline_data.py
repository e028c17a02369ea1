#!/usr/bin/env python3
"""Lay out an offline copy of the datasets where `adamrepro` looks for them, for a machine
without network access:

    python scripts/offline_data.py --from ../shared/data    # a folder with prepare.py
    python scripts/offline_data.py --from ~/Downloads       # the official archives

`--from DIR` is either a folder holding `prepare.py` (like ../shared/data), which is run to lay
the data out, or a folder holding the official downloads: the four MNIST `*-ubyte.gz` files,
`aclImdb_v1.tar.gz` and `cifar-10-python.tar.gz`. In a prepare.py folder an archive `X.tar.gz`
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
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from adamrepro.cli import main as adamrepro
from adamrepro.cli.params import DEFAULT_DATA_DIR, ScriptParser, folder_argument
from adamrepro.data import cifar10, imdb, mnist
from adamrepro.data.download import default_data_dir
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


def from_official_archives(source: Path, out: Path) -> None:
    """Copy what is there into the layout `adamrepro fetch` would have downloaded into."""
    mnist_dir = out / "MNIST" / "raw"
    mnist_dir.mkdir(parents=True, exist_ok=True)
    for name in mnist.FILES:
        found = next(iter(sorted(source.rglob(name))), None)
        if found and not (mnist_dir / name).exists():
            shutil.copyfile(found, mnist_dir / name)
    archive = next(iter(sorted(source.rglob(imdb.ARCHIVE))), None)
    if archive and not (out / imdb.ARCHIVE).exists() and not (out / "aclImdb").is_dir():
        shutil.copyfile(archive, out / imdb.ARCHIVE)  # fetch checks and unpacks it
    archive = next(iter(sorted(source.rglob(cifar10.ARCHIVE))), None)
    if archive and not (out / cifar10.ARCHIVE).exists() and not (out / cifar10.FOLDER).is_dir():
        shutil.copyfile(archive, out / cifar10.ARCHIVE)  # fetch checks and unpacks it


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
    made = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # a file above it, a read-only disk
        fail(f"cannot make {out} ({err.strerror}); pass --out (or set ADAMREPRO_DATA) to a "
             f"writable folder")
    try:
        if official:
            from_official_archives(source, out)
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
