"""MNIST from the four official IDX files in DATA/MNIST/raw/ (downloaded if missing), gzipped
as published or unpacked (`train-images-idx3-ubyte`, ..., as torchvision leaves them).

Pixels become float32, each byte divided by `pixel_scale` (255: [0, 1], ours), flattened to
784 features (the paper's "raw 784-pixel vectors": raw as opposed to features, we read, not
bytes of 0-255; `pixel_scale: 1` keeps those, for a reader who reads it so).
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import torch
from pydantic import Field

from adamrepro.data.base import TensorDataset
from adamrepro.data.download import (
    MissingData,
    check_not_inside,
    data_dir_to,
    ensure_file,
    md5sum,
    url_from_env,
)
from adamrepro.errors import UserError
from adamrepro.options import Count, Frozen, options_model

# The official splits' sizes: a config asking for more is refused at load (config/checks.py).
SPLIT_SIZES = {"train_size": 60_000, "test_size": 10_000}
FILES = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
# The same files unpacked (as torchvision leaves them beside the .gz): the MD5s of the
# official files' gunzipped bytes. Read as they are when no .gz is there.
UNPACKED = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
MIRRORS = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
]


class Options(Frozen):
    name: str = "mnist"
    train_size: Count | None = None
    test_size: Count | None = None
    # `flat`: (N, 784) for the logistic regression and the MLPs; `image`: (N, 1, 28, 28).
    layout: Literal["flat", "image"] = "flat"
    # What each pixel byte is divided by (the paper does not say): 255 gives [0, 1], the
    # scale the L2 coefficients and step-size grids of the bundled configs were set for.
    pixel_scale: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 255.0


def options(values: dict, where: str) -> Options:
    return options_model(Options, values, where)


def feature_shape(opts: Options) -> tuple[int, ...]:
    return (28 * 28,) if opts.layout == "flat" else (1, 28, 28)


def outside_unit_range(opts: Options) -> str | None:
    """Why `load`'s features may leave [0, 1], with the fix, or None."""
    if opts.pixel_scale < 255:
        return (f"pixel_scale {opts.pixel_scale:g} leaves pixels up to {255 / opts.pixel_scale:g}"
                f"; set dataset.pixel_scale: 255")
    return None


def mirrors() -> list[str]:
    """$ADAMREPRO_MNIST_MIRROR (a base URL) replaces the public mirrors when set."""
    own = url_from_env("ADAMREPRO_MNIST_MIRROR")
    return [own.rstrip("/") + "/"] if own else MIRRORS


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file, gzipped (`.gz`) or not (magic: two zero bytes, a type code, the
    number of dims)."""
    with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise UserError(f"MNIST: {path} is not an IDX file of unsigned bytes; replace it")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    offset = 4 + 4 * ndim
    if len(raw) - offset != int(np.prod(shape)):
        raise UserError(f"MNIST: {path} is truncated ({len(raw) - offset} bytes of data)")
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(shape)


def _unpacked(folder: Path, name: str) -> Path | None:
    """The unpacked official file that stands for `name` (a .gz) when that is absent, or
    None where there is none; a UserError for one that is not the official bytes."""
    path = folder / name.removesuffix(".gz")
    if (folder / name).exists() or not path.is_file():
        return None
    if md5sum(path) != UNPACKED[path.name]:
        raise UserError(f"MNIST: {path} is corrupt (MD5 mismatch, expected the official "
                        f"unpacked file's {UNPACKED[path.name]}); delete it and run again to "
                        f"download {name}, or replace it with the official file")
    return path


def files(data_dir: Path) -> dict[str, Path]:
    """Each official file's name (.gz) -> the file to read: it, or the same file unpacked,
    downloading what neither stands for."""
    folder = Path(data_dir) / "MNIST" / "raw"
    check_not_inside(data_dir, ("MNIST", "raw"), (*FILES, *UNPACKED), "MNIST")
    found, missing = {}, []  # every missing file is named at once, not one per attempt
    for name, md5 in FILES.items():
        try:
            found[name] = _unpacked(folder, name) or ensure_file(
                folder, name, md5, [m + name for m in mirrors()], "MNIST")
        except MissingData as err:
            missing.append(err)
    if len(missing) == 1:
        raise missing[0]
    if missing:
        names = [name for err in missing for name in err.places[folder]]
        raise MissingData(
            f"MNIST: {', '.join(names)} are missing and could not be downloaded "
            f"({missing[-1].reason}); put the official files in {folder} or "
            f"{data_dir_to('where they are')}", {folder: names}, missing[-1].reason)
    return found


def fetch(data_dir: Path) -> Path:
    files(data_dir)
    return Path(data_dir) / "MNIST" / "raw"


def load(opts: Options, data_dir: Path) -> TensorDataset:
    arrays = {name.split(".")[0]: read_idx(path) for name, path in files(data_dir).items()}

    def images(key: str) -> torch.Tensor:
        x = torch.from_numpy(arrays[key].copy()).float().div_(opts.pixel_scale)
        return x.reshape(len(x), -1) if opts.layout == "flat" else x.unsqueeze(1)

    data = TensorDataset.labelled(
        train_x=images("train-images-idx3-ubyte"),
        train_y=torch.from_numpy(arrays["train-labels-idx1-ubyte"].astype(np.int64)),
        test_x=images("t10k-images-idx3-ubyte"),
        test_y=torch.from_numpy(arrays["t10k-labels-idx1-ubyte"].astype(np.int64)),
        num_classes=10,
    )
    return data.subset(opts.train_size, opts.test_size)
