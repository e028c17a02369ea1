"""CIFAR-10 from the official python batches in DATA/cifar-10-batches-py/, for Fig. 3.

Files: `data_batch_1` .. `data_batch_5` (50,000 training images), `test_batch` (10,000) and
`batches.meta`, as `cifar-10-python.tar.gz` unpacks (downloaded, from $ADAMREPRO_CIFAR10_URL
when set, checked and unpacked when missing). Each batch is a pickle; a pickle can run code
when loaded, so a file is unpickled only once its MD5 matches the official one (`FILES`). A
copy whose pixels were re-encoded (e.g. ../shared/data, which went through JPEG q75 once) is
real data with other bytes: it is refused unless the caller opts out (`verify: false`, or
`adamrepro run --unverified-data`), and the results then say so (provenance `data_verified:
false`). Even then the unpickler accepts nothing but numpy arrays, strings and numbers, no
array larger than the official ones (`SafeUnpickler`).

No per-item work: the (N, 3072) uint8 rows become one (N, 3, 32, 32) uint8 tensor, moved to the
device as it is. There, `to(device)` turns the images into the model's float32 inputs in one
batched step:

- `whitening: zca` (default; the paper whitens, ZCA is ours): pixels scaled to [0, 1],
  centred on the training mean and multiplied by W = U·diag(1/√(λ + ε))·Uᵀ, the ZCA matrix of
  the training images' covariance U·diag(λ)·Uᵀ, with ε = `zca_epsilon` (ours). The fit
  uses the training images that are trained on (the subset at the small scales), in float64.
  It is cached as DATA/cifar-10-batches-py/.adamrepro-cache/zca-<digest>.pt, keyed by the
  MD5 of those images' bytes and ε, so a scale's whitening is fitted once.
- `whitening: none`: pixels scaled to [0, 1].

Why whiten once on the device rather than per minibatch in the model: a minibatch costs
128·3072·3072·2 = 2.4 GFLOP to whiten, as much as ~7% of a training step of one run, and the
evaluation passes would pay it again; the whitened float32 set is 614 MB (all 50,000 images),
which a GPU holds easily, and the small scales use subsets on a CPU.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import operator
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field
from torch import Tensor

from adamrepro.atomic import atomic_file, remove_abandoned
from adamrepro.data.base import TensorDataset, load_sealed, sealed
from adamrepro.data.download import (
    MissingData,
    check_not_inside,
    ensure_file,
    extract_tar,
    md5sum,
    url_from_env,
)
from adamrepro.errors import UserError, note
from adamrepro.options import Count, Frozen, options_model

FOLDER = "cifar-10-batches-py"
# The official splits' sizes: a config asking for more is refused at load (config/checks.py).
SPLIT_SIZES = {"train_size": 50_000, "test_size": 10_000}
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
ARCHIVE = "cifar-10-python.tar.gz"
ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"
# The official MD5s (the dataset's page; torchvision's CIFAR10 lists the same).
TRAIN_FILES = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
}
TEST_FILES = {"test_batch": "40351d587109b95175f43aff81a1287e"}
META = {"batches.meta": "5ff9c542aee3614f3951f8cda6e48888"}
FILES = {**TRAIN_FILES, **TEST_FILES, **META}
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
           "truck")
ZCA_CACHE_VERSION = 2  # bump when the fit or the cached format changes (2: sealed)
IMAGES_PER_BATCH = 10_000  # every official batch, training or test
WHITEN_CHUNK = 4096  # images whitened at once on the device (a 4096x3072 float32 block)

# How many times a ZCA whitening was fitted in this process (tests read it to check that a
# second load comes from the cache).
zca_fits = 0


class Options(Frozen):
    name: str = "cifar10"
    train_size: Count | None = None
    test_size: Count | None = None
    # False reads batches whose MD5 differs from the official one (a re-encoded copy).
    verify: bool = True
    whitening: Literal["zca", "none"] = "zca"
    zca_epsilon: float = Field(0.01, gt=0)


def options(values: dict, where: str) -> Options:
    return options_model(Options, values, where)


def feature_shape(opts: Options) -> tuple[int, ...]:
    return (3, 32, 32)


def outside_unit_range(opts: Options) -> str | None:
    """Why `load`'s features may leave [0, 1], with the fix, or None."""
    if opts.whitening != "none":
        return (f"{opts.whitening}-whitened images are centred, not in [0, 1]; set "
                f"dataset.whitening: none")
    return None


# The largest array an official file holds: a batch's (10,000, 3072) uint8 pixels. A pickle
# names an array's size in a few bytes and numpy allocates it whole, so an unverified file of
# a few hundred bytes could ask for terabytes; nothing larger is ever needed.
LARGEST_ARRAY_BYTES = IMAGES_PER_BATCH * 3072


def _array_bytes(shape, dtype) -> tuple[int, np.dtype]:
    """(bytes, dtype) of an array of `shape` and `dtype` as a pickle names them; an
    UnpicklingError for one larger than an official file's, or of Python objects (never in
    an official file; numpy reads their pointers from the pickle's bytes, and a list shorter
    than the shape crashed the interpreter)."""
    try:
        dtype = np.dtype(dtype)
        dims = [operator.index(n) for n in (shape if isinstance(shape, (tuple, list))
                                           else (shape,))]
    except Exception as err:  # noqa: BLE001 (an unverified file may name anything)
        raise pickle.UnpicklingError(f"not an array's shape and type: {err}") from None
    _check_numeric(dtype)
    size = math.prod(max(n, 0) for n in dims) * dtype.itemsize
    if size > LARGEST_ARRAY_BYTES:
        raise pickle.UnpicklingError(f"refusing an array of {size:,} bytes, more than the "
                                     f"{LARGEST_ARRAY_BYTES:,} of the largest official one")
    return size, dtype


def _check_numeric(dtype: np.dtype) -> None:
    """An UnpicklingError unless `dtype` is of booleans, integers or floats, one number an
    element: the official files hold uint8 pixels (their labels and names are lists). A
    string or void type's size is state a pickle may set again once an array of it was
    checked (numpy then reads past the array)."""
    if dtype.hasobject:
        raise pickle.UnpicklingError("refusing an array of Python objects")
    if dtype.kind not in "biuf" or dtype.fields is not None or dtype.subdtype is not None:
        raise pickle.UnpicklingError(f"refusing an array of {dtype}, not of numbers")


def _dtype(spec, align=False, copy=True):
    """`numpy.dtype` as a pickle calls it, always a new object (the state a pickle sets next
    then changes no dtype already used, numpy's own uint8 included), and only of numbers."""
    dtype = np.dtype(spec, bool(align), True)  # what it raises, read_batch words
    _check_numeric(dtype)
    return dtype


class _CheckedArray(np.ndarray):
    """What `_reconstruct` builds while a file is read: its `__setstate__`, which gives the
    array its real shape, type and bytes, checks them first (`_array_bytes`)."""

    def __setstate__(self, state):
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise pickle.UnpicklingError("not an array's state")
        shape, dtype = state[-4], state[-3]
        if not isinstance(dtype, np.dtype):
            raise pickle.UnpicklingError("not an array's state")
        _array_bytes(shape, dtype)
        # numpy's own dtype of that type, not the pickle's object: state a pickle may set on a
        # dtype (a flag that reads the array's contents from a list, which a short list let
        # read past its end) never reaches an array
        super().__setstate__((*state[:-3], _canonical(dtype), *state[-2:]))


def _reconstruct(subtype, shape, dtype):
    """numpy's pickled arrays start as `_reconstruct(ndarray, shape, dtype)`: the same, but
    only for a plain array, checked, that `_plain` turns back into an ndarray once read."""
    if subtype is not _NDARRAY:
        raise pickle.UnpicklingError("refusing to rebuild an array of another class")
    _, dtype = _array_bytes(shape, dtype)
    return np.ndarray.__new__(_CheckedArray, shape, _canonical(dtype))


def _canonical(dtype: np.dtype) -> np.dtype:
    """numpy's own dtype of `dtype`'s type and byte order (checked numeric: `_array_bytes`)."""
    return np.dtype(dtype.str)


# `numpy.ndarray` is named by a pickle only as `_reconstruct`'s first argument: it is given
# this stand-in, which cannot be called (ndarray itself would allocate any shape it is asked).
_NDARRAY = object()


def _plain(value):
    """`value` as read, each _CheckedArray in it a plain ndarray (read_split checks types)."""
    if isinstance(value, _CheckedArray):
        _array_bytes(value.shape, value.dtype)  # as it ends up, whatever state came after
        return value.view(np.ndarray)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)) and any(isinstance(item, (_CheckedArray, dict, list,
                                                                  tuple)) for item in value):
        return type(value)(_plain(item) for item in value)
    return value


class SafeUnpickler(pickle.Unpickler):
    """Rebuilds numpy arrays and plain containers only: any other global is refused, so even
    an unverified file cannot run code while it is read, nor (`_array_bytes`) make numpy
    allocate more than an official file needs. `load` returns plain ndarrays."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): _NDARRAY,
        ("numpy", "dtype"): _dtype,
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        return self.ALLOWED[module, name]

    def load(self):
        return _plain(super().load())


def url() -> str:
    """$ADAMREPRO_CIFAR10_URL (a full URL of the archive) replaces the official one when set."""
    return url_from_env("ADAMREPRO_CIFAR10_URL") or URL


def fetch(data_dir: Path) -> Path:
    """DATA/cifar-10-batches-py, downloading and unpacking the archive if a file is missing."""
    root = Path(data_dir)
    folder = root / FOLDER
    if all((folder / name).is_file() for name in FILES):
        return folder
    check_not_inside(root, (FOLDER,), FILES, "CIFAR-10")
    if os.path.lexists(folder) and not folder.is_dir():
        # Said before any download: offline, the line said to put the unpacked folder (or
        # the archive) in the data folder, where the user saw it already; online, the 170 MB
        # came first, to no avail (the archive is never unpacked over what is there)
        there = root / ARCHIVE
        again = f"unpack {there}" if there.is_file() else f"download and unpack {ARCHIVE}"
        raise UserError(f"CIFAR-10: {folder} is not a folder; move it away and run again to "
                        f"{again} there")
    try:
        archive = ensure_file(root, ARCHIVE, ARCHIVE_MD5, [url()], "CIFAR-10")
    except MissingData as err:
        missing = [name for name in FILES if not (folder / name).is_file()]
        if len(missing) == len(FILES):
            # the unpacked folder does as well as the archive (../shared/data lays it out)
            raise MissingData(
                f"{err}; or put the unpacked official archive ({FOLDER}/data_batch_1, ...) in "
                f"{root} (scripts/offline_data.py lays out a local copy)",
                {root: [f"{ARCHIVE} (or its unpacked {FOLDER}/)"]}, err.reason) from None
        # a folder that lost some batches: name those, not only the archive
        raise MissingData(
            f"CIFAR-10: {folder} lacks {', '.join(missing)} (of its {len(FILES)} files), and "
            f"{root / ARCHIVE} to unpack them from is missing and could not be downloaded "
            f"({err.reason}); put {'it' if len(missing) == 1 else 'them'} back in {folder}, "
            f"or the official {ARCHIVE} in {root}", {folder: missing}, err.reason) from None
    extract_tar(archive, root, "CIFAR-10")  # puts back what the folder lacks, no more
    missing = [name for name in FILES if not (folder / name).is_file()]
    # What unpacking cannot mend: something else where the folder or a file goes (it is
    # never replaced), or an archive without the file (not the official one, whose MD5 is)
    if missing and not folder.is_dir():
        raise UserError(f"CIFAR-10: {folder} is not a folder; move it away and run again to "
                        f"unpack {archive} there")
    blocked = [name for name in missing if os.path.lexists(folder / name)]
    if blocked:
        raise UserError(f"CIFAR-10: {folder / blocked[0]} is not a file; move it away and run "
                        f"again to unpack it from {archive}")
    if missing:
        raise UserError(f"CIFAR-10: {archive} has no {FOLDER}/{missing[0]}; delete it and run "
                        f"again to download it")
    return folder


def unofficial(folder: Path) -> str:
    """What makes `folder` (a fetched cifar-10-batches-py) not the official bytes, in words:
    the files whose MD5 is not the official one (a re-encoded copy, or damage); "" for none.
    Reading them needs the opt-out (`verify: false`)."""
    wrong = [name for name, md5 in FILES.items() if md5sum(folder / name) != md5]
    return f"the MD5 of {', '.join(wrong)} differs" if wrong else ""


def official(data_dir: Path, opts: Options | None = None) -> bool:
    """Whether DATA holds every batch, each the official bytes (whatever `opts` says: every
    load reads them all): `--unverified-data` then leaves the config alone (its runs are a
    verified run's, with its run ids)."""
    folder = Path(data_dir) / FOLDER
    try:
        return all((folder / name).is_file() for name in FILES) and not unofficial(folder)
    except OSError:
        return False


def read_batch(path: Path, md5: str, verify: bool) -> dict:
    """One pickled batch, its MD5 checked first (unless `verify` is off). The file is read
    once: the bytes unpickled are the bytes checked (a file replaced in between was read
    unchecked)."""
    raw = path.read_bytes()  # an OSError: the CLI names the file the filesystem refuses
    if verify:
        found = hashlib.md5(raw).hexdigest()
        if found != md5:
            raise UserError(
                f"CIFAR-10: {path} is not the official file (MD5 {found}, expected {md5}); "
                f"not unpickling it. Replace it with the official one, or, for a copy you "
                f"trust, pass --unverified-data (dataset option verify: false)")
    try:
        return SafeUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as err:  # noqa: BLE001 (an unverified file's bytes may raise anything)
        raise UserError(f"CIFAR-10: {path} is not a CIFAR-10 batch ({type(err).__name__}: "
                        f"{err}); replace it with the official one") from None


def read_split(folder: Path, files: dict[str, str], verify: bool) -> tuple[Tensor, Tensor]:
    """(N, 3, 32, 32) uint8 images and (N,) int64 labels of the batches in `files`, in order."""
    images, labels = [], []
    for name, md5 in files.items():
        batch = read_batch(folder / name, md5, verify)
        # An unverified file may unpickle to anything: check what is read before using it.
        wrong = f"CIFAR-10: {folder / name} is not a CIFAR-10 batch"
        if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
            raise UserError(f"{wrong} (no data and labels in it); replace it")
        # The official bytes are uint8 pixels and integer labels: anything else is cast
        # without a word by asarray (floats in [0, 1] to 0, 300 to 44), so it is refused.
        data = batch[b"data"]
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8:
            kind = (f"an array of {data.dtype}" if isinstance(data, np.ndarray)
                    else f"a {type(data).__name__}")
            raise UserError(f"{wrong} (its data is {kind}, not the official uint8 pixels); "
                            f"replace it")
        labels_read = batch[b"labels"]
        if not isinstance(labels_read, (list, tuple, np.ndarray)) or not all(
                isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                for v in labels_read):
            raise UserError(f"{wrong} (its labels are not a list of integers); replace it")
        try:
            label = torch.tensor(np.asarray(labels_read, dtype=np.int64), dtype=torch.int64)
        except (TypeError, ValueError, OverflowError) as err:
            raise UserError(f"{wrong} ({err}); replace it") from None
        if data.ndim != 2 or data.shape[1] != 3072 or label.shape != (len(data),):
            raise UserError(f"CIFAR-10: {folder / name} has data of shape {data.shape}, not "
                            f"(N, 3072) with N labels; replace it")
        if len(label) and not 0 <= int(label.min()) <= int(label.max()) < len(CLASSES):
            raise UserError(f"{wrong} (a label outside 0-{len(CLASSES) - 1}); replace it")
        images.append(torch.from_numpy(data.copy()).view(-1, 3, 32, 32))
        labels.append(label)
    return torch.cat(images), torch.cat(labels)


@dataclass(frozen=True)
class Whitening:
    """x -> (x/255 - mean) @ matrix on flattened images; float64 as fitted."""

    mean: Tensor  # (3072,)
    matrix: Tensor  # (3072, 3072), symmetric

    def apply(self, images: Tensor) -> Tensor:
        """(N, 3, 32, 32) uint8 on any device -> whitened float32 there, in chunks."""
        mean = self.mean.to(images.device, torch.float32)
        matrix = self.matrix.to(images.device, torch.float32)
        out = torch.empty(images.shape, dtype=torch.float32, device=images.device)
        flat_out = out.view(len(images), -1)
        for start in range(0, len(images), WHITEN_CHUNK):
            chunk = images[start : start + WHITEN_CHUNK].reshape(-1, 3072).float() / 255.0
            torch.mm(chunk - mean, matrix, out=flat_out[start : start + len(chunk)])
        return out


def fit_zca(images: Tensor, epsilon: float) -> Whitening:
    """ZCA of (N, 3, 32, 32) uint8 images scaled to [0, 1], in float64.

    With the covariance's eigenvectors V and eigenvalues λ, W = V·diag(1/√(λ+ε))·Vᵀ. Fewer
    images than pixels (the small scales) leave a null space where λ = 0 and W = 1/√ε; the
    same W then comes from the thin SVD of the centred images, far cheaper than the
    3072x3072 eigendecomposition: W = I/√ε + V·diag(1/√(λ+ε) − 1/√ε)·Vᵀ.
    """
    global zca_fits
    zca_fits += 1
    x = images.reshape(len(images), -1).double() / 255.0
    mean = x.mean(0)
    x -= mean
    n, d = x.shape
    if n < d:
        _, singular, vh = torch.linalg.svd(x, full_matrices=False)
        eigenvalues, eigenvectors = singular.square() / n, vh.T
        scale = (eigenvalues + epsilon).rsqrt() - epsilon ** -0.5
        matrix = (eigenvectors * scale) @ eigenvectors.T
        matrix.diagonal().add_(epsilon ** -0.5)
        return Whitening(mean, matrix)
    eigenvalues, eigenvectors = torch.linalg.eigh(x.T @ x / n)
    scale = (eigenvalues.clamp_min(0) + epsilon).rsqrt()
    return Whitening(mean, (eigenvectors * scale) @ eigenvectors.T)


# Fits kept in the cache, the most recently used: each is a 3072x3072 float64 matrix, 75 MB,
# and every other subset or ε (a sweep over `zca_epsilon`, scales, a user's train_size)
# added one for good. The three bundled scales' fits stay.
ZCA_CACHE_KEEP = 4


def _prune_zca_cache(cache_dir: Path, keep: int) -> None:
    """Remove all but the `keep` most recently used fits (modification time: a fit read
    from the cache is touched)."""
    fits = sorted(cache_dir.glob("zca-*.pt"), key=lambda p: p.stat().st_mtime, reverse=True)
    for stale in fits[keep:]:
        with contextlib.suppress(OSError):  # another process's prune took it first
            stale.unlink()


def zca(images: Tensor, epsilon: float, cache_dir: Path) -> Whitening:
    """The ZCA whitening of `images`, from the cache when fitted before (the cache keeps
    the ZCA_CACHE_KEEP fits used last)."""
    checksum = hashlib.md5(images.numpy().tobytes()).hexdigest()
    key = json.dumps({"images_md5": checksum, "epsilon": epsilon,
                      "version": ZCA_CACHE_VERSION}, sort_keys=True)
    path = cache_dir / f"zca-{hashlib.sha1(key.encode()).hexdigest()[:12]}.pt"
    remove_abandoned(cache_dir, "zca-*.pt")  # what a kill during a fit's write left
    if path.exists():
        try:
            saved = load_sealed(path)
            if saved.get("key") == key:
                with contextlib.suppress(OSError):  # used now: the last to be pruned
                    os.utime(path)
                return Whitening(saved["mean"], saved["matrix"])
        except Exception as err:  # noqa: BLE001 - an unreadable cache is simply refitted
            note(f"CIFAR-10: ignoring the unreadable cache {path} ({err}); fitting it again")
    whitening = fit_zca(images, epsilon)
    buffer = io.BytesIO()
    torch.save(sealed({"key": key, "mean": whitening.mean, "matrix": whitening.matrix}),
               buffer)
    try:
        with atomic_file(path, "wb") as f:
            f.write(buffer.getvalue())
        _prune_zca_cache(cache_dir, ZCA_CACHE_KEEP)
    except OSError as err:
        note(f"CIFAR-10: could not cache the whitening in {path} ({err.strerror}); it will "
             f"be fitted again next time")
    return whitening


@dataclass(frozen=True)
class CifarImages(TensorDataset):
    """uint8 images as read, plus what turns them into the model's inputs: `to(device)`
    moves the uint8 tensors, then whitens (or scales) them there, returning a plain
    `TensorDataset` of float32 inputs."""

    whitening: Whitening | None = None

    def to(self, device: torch.device) -> TensorDataset:
        placed = super().to(device)

        def inputs(split):
            x = split["x"]
            x = (self.whitening.apply(x) if self.whitening is not None
                 else x.float().div_(255.0))
            return {**split, "x": x}

        return TensorDataset(inputs(placed.train), inputs(placed.test), self.num_classes)


def check_meta(folder: Path, verify: bool) -> None:
    """The label names of batches.meta: a cheap check that this is CIFAR-10 at all, which an
    unverified copy needs most (its MD5s say nothing)."""
    path = folder / "batches.meta"
    meta = read_batch(path, META["batches.meta"], verify)
    names = meta.get(b"label_names") if isinstance(meta, dict) else None
    if not isinstance(names, list) or not all(isinstance(n, bytes) for n in names):
        raise UserError(f"CIFAR-10: {path} is not CIFAR-10's batches.meta (no list of label "
                        f"names in it); replace it with the official one")
    found = tuple(n.decode("utf-8", "replace") for n in names)
    if found != CLASSES:
        raise UserError(f"CIFAR-10: {path} names the classes {', '.join(found) or 'none'}, "
                        f"not CIFAR-10's ({', '.join(CLASSES)}); replace it with the official "
                        f"one")


def check_count(images: Tensor, files: dict[str, str], folder: Path) -> None:
    """Each official batch holds IMAGES_PER_BATCH images: a truncated or merged unverified
    copy would otherwise train on another set than the paper's without a word."""
    expected = IMAGES_PER_BATCH * len(files)
    if len(images) != expected:
        raise UserError(f"CIFAR-10: {', '.join(files)} in {folder} hold {len(images):,} images, "
                        f"not {expected:,}; replace them with the official files")


def load(opts: Options, data_dir: Path) -> CifarImages:
    folder = fetch(data_dir)
    check_meta(folder, opts.verify)
    train_x, train_y = read_split(folder, TRAIN_FILES, opts.verify)
    test_x, test_y = read_split(folder, TEST_FILES, opts.verify)
    check_count(train_x, TRAIN_FILES, folder)
    check_count(test_x, TEST_FILES, folder)
    data = TensorDataset.labelled(train_x, train_y, test_x, test_y, num_classes=len(CLASSES))
    data = data.subset(opts.train_size, opts.test_size)
    whitening = None
    if opts.whitening == "zca":
        whitening = zca(data.train_x, opts.zca_epsilon, folder / ".adamrepro-cache")
    return CifarImages(data.train, data.test, data.num_classes, whitening)
