"""The CIFAR-10 reader on the real (JPEG q75 re-encoded, hence unverified) copy: checksums
before unpickling, the opt-out, the download path, and the ZCA whitening."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import pickle
import re
import shutil
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from cut_off import cut_off_write

from adamrepro.data import cifar10
from adamrepro.data.download import extract_tar
from adamrepro.errors import UserError


@pytest.fixture(scope="module")
def folder(data_dir):
    path = data_dir / cifar10.FOLDER
    if not all((path / name).is_file() for name in cifar10.FILES):
        pytest.fail(f"real CIFAR-10 missing in {path}: run ../shared/data/prepare.py")
    return path


@pytest.fixture(scope="module")
def train_images(folder):
    return cifar10.read_split(folder, cifar10.TRAIN_FILES, verify=False)


def test_labels_go_with_their_images(folder):
    """Each label belongs to its own image, from a physical fact of the photographs: sky and
    sea make airplanes and ships bluer than green (mean blue minus green pixel), grass and
    forest make frogs and deer greener. On the 10,000 test images the two pairs of classes are
    ~30 grey levels apart (a class mean's standard error is under one); labels shifted
    against their images mix the classes and leave them a few levels apart."""
    images, labels = cifar10.read_split(folder, cifar10.TEST_FILES, verify=False)
    blue_minus_green = (images[:, 2].double() - images[:, 1].double()).mean((1, 2))
    mean = {name: blue_minus_green[labels == c].mean().item()
            for c, name in enumerate(cifar10.CLASSES)}
    assert min(mean["airplane"], mean["ship"]) - max(mean["frog"], mean["deer"]) > 20, mean


def test_the_training_split_is_the_five_batches_in_their_order(folder, train_images):
    """Row i of the training split is the same image whatever reads it: the small scales'
    subsets are drawn by row, so batches read in another order train on other images."""
    x, y = train_images
    for i in range(5):
        batch = cifar10.read_batch(folder / f"data_batch_{i + 1}", "", verify=False)
        rows = slice(i * cifar10.IMAGES_PER_BATCH, (i + 1) * cifar10.IMAGES_PER_BATCH)
        assert torch.equal(y[rows], torch.tensor(batch[b"labels"]))
        assert torch.equal(x[rows].reshape(-1, 3072), torch.from_numpy(batch[b"data"]))


def test_reader_shapes_labels_and_uint8(folder, train_images):
    x, y = train_images
    test_x, test_y = cifar10.read_split(folder, cifar10.TEST_FILES, verify=False)
    assert x.shape == (50000, 3, 32, 32) and test_x.shape == (10000, 3, 32, 32)
    assert x.dtype == test_x.dtype == torch.uint8
    assert torch.bincount(y).tolist() == [5000] * 10  # the official split is balanced
    assert torch.bincount(test_y).tolist() == [1000] * 10


def test_inputs_are_made_on_the_device_from_uint8(data_dir):
    images = cifar10.load(cifar10.Options(verify=False, whitening="none", train_size=64,
                                          test_size=32), data_dir)
    assert images.train_x.dtype == torch.uint8
    placed = images.to(torch.device("cpu"))
    assert placed.train_x.dtype == torch.float32 and placed.train_x.shape == (64, 3, 32, 32)
    torch.testing.assert_close(placed.train_x, images.train_x.float() / 255)


def test_a_file_with_the_wrong_checksum_is_never_unpickled(folder, tmp_path):
    """Verified, the MD5 is checked before a byte is unpickled: a file that is no pickle at
    all is refused as "not the official file", not with the unpickling error that the same
    bytes give unverified (what reading them first would have said)."""
    with pytest.raises(UserError, match="not the official file") as err:
        cifar10.read_batch(folder / "data_batch_1", cifar10.TRAIN_FILES["data_batch_1"], True)
    assert "\n" not in str(err.value) and "--unverified-data" in str(err.value)
    path = tmp_path / "data_batch_1"
    path.write_bytes(b"not a pickle at all")
    with pytest.raises(UserError, match="not the official file") as err:
        cifar10.read_batch(path, cifar10.TRAIN_FILES["data_batch_1"], verify=True)
    assert "not a CIFAR-10 batch" not in str(err.value)
    with pytest.raises(UserError, match="is not a CIFAR-10 batch \\(UnpicklingError"):
        cifar10.read_batch(path, cifar10.TRAIN_FILES["data_batch_1"], verify=False)


def test_even_unverified_files_cannot_run_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": Evil()}))
    with pytest.raises(UserError, match="refusing to load global builtins.print"):
        cifar10.read_batch(path, "0" * 32, verify=False)


class _Reconstruct:
    """Pickles as numpy's own arrays start, `_reconstruct(ndarray, shape, dtype)`, then
    their `__setstate__(state)` where `state` is given: any shape, whatever the bytes."""

    def __init__(self, shape, dtype, state=None):
        self.shape, self.dtype, self.state = shape, dtype, state

    def __reduce__(self):
        from numpy._core.multiarray import _reconstruct

        call = (_reconstruct, (np.ndarray, self.shape, np.dtype(self.dtype)))
        return call if self.state is None else (*call, self.state)


@pytest.mark.parametrize("array, said", [
    # one byte more than a batch's pixels: numpy allocated it, and it was returned
    (_Reconstruct((10_000, 3072 + 1), "uint8"), "an array of 30,730,000 bytes, more than "
                                                "the 30,720,000 of the largest official one"),
    (_Reconstruct((10**6, 10**6), "float64"), "an array of 8,000,000,000,000 bytes"),
    # the size that counts is the state's, which __setstate__ gives the empty array
    (_Reconstruct((0,), "uint8", (1, (10**5, 10**5), np.dtype("uint8"), False, b"")),
     "an array of 10,000,000,000 bytes"),
    (_Reconstruct((10**9,), "O"), "refusing an array of Python objects"),
])
def test_an_unverified_file_cannot_make_numpy_allocate_any_size(array, said, tmp_path):
    """A pickle of a few hundred bytes names the size numpy allocates: more than the largest
    official array (a batch's 10,000 x 3072 pixels) is refused before numpy makes it."""
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": array, b"labels": [0]}))
    assert path.stat().st_size < 300
    with pytest.raises(UserError) as err:
        cifar10.read_batch(path, "0" * 32, verify=False)
    message = str(err.value)
    assert message.startswith(f"CIFAR-10: {path} is not a CIFAR-10 batch (UnpicklingError: ")
    assert said in message and message.endswith("; replace it with the official one")


def _read_in_a_child(path: Path, call: str) -> subprocess.CompletedProcess:
    """`cifar10.<call>` on `path` in a child process, which prints what it raises: a file
    that crashes the interpreter kills the child, not the test run."""
    code = ("import sys; from pathlib import Path; from adamrepro.data import cifar10\n"
            "path = Path(sys.argv[1])\n"
            f"try: cifar10.{call}\n"
            "except Exception as err: print(err)")
    return subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                          text=True, timeout=120)


def test_an_array_of_objects_shorter_than_its_shape_is_refused_not_a_crash(tmp_path):
    """numpy's `__setstate__` for an array of Python objects reads a list of them, and one
    shorter than the shape it names crashed the interpreter (a segmentation fault): no
    official file holds such an array. Read in a child process, as the crash kills it."""

    path = tmp_path / "data_batch_1"
    crafted = _Reconstruct((0,), "uint8", (1, (10,), np.dtype("O"), False, [None]))
    path.write_bytes(pickle.dumps({b"data": crafted, b"labels": [0]}))
    done = _read_in_a_child(path, "read_batch(path, '', verify=False)")
    assert done.returncode == 0, done.stderr
    assert done.stdout == (f"CIFAR-10: {path} is not a CIFAR-10 batch (UnpicklingError: "
                           f"refusing an array of Python objects); replace it with the "
                           f"official one\n")


class _GrowDtype:
    """Pickles as `numpy.dtype(dtype)` followed by the state of `dtype` with another element
    size: numpy honours that state for a string or void type, and an array built with that
    dtype object, checked at its first size, then reaches past its memory."""

    def __init__(self, dtype: np.dtype, itemsize: int):
        self.dtype, self.itemsize = dtype, itemsize

    def __reduce__(self):
        state = self.dtype.__reduce__()[2]
        return (np.dtype, (self.dtype,), state[:5] + (self.itemsize,) + state[6:])


def test_a_dtype_grown_after_its_array_was_checked_is_refused_not_a_crash(tmp_path):
    """An array of a string type passed the size check, then the pickle set its dtype's
    element size to 1e9 (numpy.dtype of a dtype is that same object): reading its labels
    read far past the array, and the interpreter died (segmentation fault). Only arrays of
    numbers are read, and each dtype the pickle makes is a new one. In a child process."""

    strings = np.dtype("S8")
    labels = np.ndarray((2,), strings)
    labels[:] = b"12345678"
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": _pixels(1, 3072), b"labels": labels,
                                   b"grow": _GrowDtype(strings, 10**9)}, protocol=4))
    done = _read_in_a_child(
        path, "read_split(path.parent, {'data_batch_1': ''}, False)")
    assert done.returncode == 0, done.stderr
    assert done.stdout == (f"CIFAR-10: {path} is not a CIFAR-10 batch (UnpicklingError: "
                           f"refusing an array of |S8, not of numbers); replace it with the "
                           f"official one\n")


def _opcodes_of_a_listed_array(flags: int, pixels: int, listed: int) -> bytes:
    """A batch pickled as Python 2 pickled the official ones (protocol 2: `numpy.dtype('u1',
    0, 1)` and its state, then `_reconstruct` and the array's state), but for a dtype state
    with `flags` and the array's contents a list of `listed` numbers for its `pixels`."""
    import struct

    def text(raw: bytes) -> bytes:  # a Python 2 str
        return b"U" + bytes([len(raw)]) + raw

    def number(n: int) -> bytes:
        return b"K" + bytes([n]) if 0 <= n < 256 else b"J" + struct.pack("<i", n)

    def together(*items: bytes) -> bytes:
        return b"(" + b"".join(items) + b"t"

    dtype_state = together(number(3), text(b"|"), b"N", b"N", b"N", number(-1), number(-1),
                           number(flags))
    return (b"\x80\x02" + b"cnumpy\ndtype\n" + together(text(b"u1"), number(0), number(1))
            + b"R" + dtype_state + b"b" + b"q\x01" + b"0" + b"}" + text(b"data")
            + b"cnumpy.core.multiarray\n_reconstruct\n"
            + together(b"cnumpy\nndarray\n", together(number(0)), text(b"b")) + b"R"
            + together(number(1), together(number(pixels)), b"h\x01", b"\x89",
                       b"](" + number(7) * listed + b"e") + b"b"
            + b"s" + text(b"labels") + b"]" + b"s" + b".")


def test_a_dtype_flag_that_reads_an_array_from_a_short_list_is_refused_not_a_crash(tmp_path):
    """A dtype's state may carry numpy's flag that an array's contents come as a list (for
    Python objects); on a uint8 dtype it passed every check, and a list shorter than the
    array made numpy read past it: a segmentation fault, through `adamrepro run
    --unverified-data`. Arrays now take numpy's own dtype of their type, never the
    pickle's object. In a child process, as the crash kills it."""

    path = tmp_path / "data_batch_1"
    path.write_bytes(_opcodes_of_a_listed_array(flags=2, pixels=3000, listed=2))
    done = _read_in_a_child(path, "read_batch(path, '', verify=False)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"CIFAR-10: {path} is not a CIFAR-10 batch (")
    assert done.stdout.endswith("); replace it with the official one\n")


def test_the_bytes_unpickled_are_the_bytes_checked(tmp_path):
    """A file that changes between its MD5 check and its reading was checked once and read
    again: what was unpickled was never checked. Here it changes when it is opened a second
    time (an audit hook, Python's own event for every open(), swaps its bytes then)."""
    checked = pickle.dumps({b"data": _pixels(1, 3072), b"labels": [1]})
    other = pickle.dumps({b"data": _pixels(1, 3072), b"labels": [7]})
    path = tmp_path / "data_batch_1"
    path.write_bytes(checked)
    opened = {"watch": True, "count": 0}

    def swap_on_the_second_open(event, args):
        if opened["watch"] and event == "open" and str(args[0]) == str(path):
            opened["count"] += 1
            if opened["count"] == 2:
                opened["watch"] = False  # (writing it opens it too)
                path.write_bytes(other)

    sys.addaudithook(swap_on_the_second_open)  # (cannot be removed: `watch` turns it off)
    try:
        batch = cifar10.read_batch(path, hashlib.md5(checked).hexdigest(), verify=True)
    finally:
        opened["watch"] = False
    assert batch[b"labels"] == [1]


def _pixels(*shape, dtype="uint8"):
    return np.zeros(shape, dtype=dtype)


@pytest.mark.parametrize("content, said", [
    ([1, 2, 3], "no data and labels in it"),
    ({b"labels": [0]}, "no data and labels in it"),
    ({b"data": _pixels(1, 100), b"labels": [0]}, "not (N, 3072) with N labels"),
    ({b"data": _pixels(1, 3072), b"labels": ["cat"]}, "its labels are not a list of integers"),
    ({b"data": _pixels(2, 3072), b"labels": [3, 99]}, "a label outside 0-9"),
    ({b"data": _pixels(2, 3072), b"labels": [3, 10]}, "a label outside 0-9"),  # the edge
    # a copy stored as other numbers was cast without a word: [0, 1] floats to 0, 300 to 44
    ({b"data": _pixels(1, 3072, dtype="float64"), b"labels": [0]},
     "its data is an array of float64, not the official uint8 pixels"),
    ({b"data": _pixels(1, 3072, dtype="int64"), b"labels": [0]}, "an array of int64"),
    ({b"data": [[0] * 3072], b"labels": [0]}, "its data is a list, not the official uint8"),
    ({b"data": _pixels(1, 3072), b"labels": [0.0]}, "its labels are not a list of integers"),
])
def test_an_unverified_file_of_another_shape_is_one_line(content, said, tmp_path):
    """Unverified, a file may unpickle to anything safe: what it holds is checked before
    it is used (a label of 99 would index past the ten classes mid-training, float pixels
    were cast to uint8)."""
    (tmp_path / "data_batch_1").write_bytes(pickle.dumps(content))
    with pytest.raises(UserError, match=f"data_batch_1 .*{re.escape(said)}"):
        cifar10.read_split(tmp_path, {"data_batch_1": "0" * 32}, verify=False)


def test_an_unverified_file_that_unpickles_to_an_error_is_one_line(tmp_path):
    """A damaged batch may fail inside what it unpickles (here numpy, on a dtype whose name
    a flipped byte changed), with any exception: a TypeError was a traceback."""
    import numpy as np

    batch = pickle.dumps({b"data": np.zeros((1, 3072), dtype=np.uint8), b"labels": [0]})
    assert batch.count(b"u1") == 1
    (tmp_path / "data_batch_1").write_bytes(batch.replace(b"u1", b"q1"))
    with pytest.raises(UserError,
                       match=r"data_batch_1 is not a CIFAR-10 batch \(TypeError: data type"):
        cifar10.read_batch(tmp_path / "data_batch_1", "0" * 32, verify=False)


def _copy_with(folder, tmp_path, name=None, content=None):
    """A data folder whose cifar-10-batches-py is the real copy (linked) but for `name`,
    which holds `content` pickled; the real copy itself where `name` is None."""
    copy = tmp_path / cifar10.FOLDER
    copy.mkdir()
    for other in cifar10.FILES:
        if other != name:
            (copy / other).symlink_to(folder / other)
    if name is not None:
        (copy / name).write_bytes(pickle.dumps(content))
    return tmp_path


@pytest.mark.parametrize("meta, said", [
    ({b"label_names": [b"cat", b"dog"]}, "names the classes cat, dog, not CIFAR-10's"),
    ({b"label_names": [n.encode() for n in reversed(cifar10.CLASSES)]},
     "names the classes truck, ship"),
    ([b"airplane"], "is not CIFAR-10's batches.meta (no list of label names"),
    ({b"label_names": "airplane"}, "is not CIFAR-10's batches.meta (no list of label names"),
])
def test_an_unverified_copy_must_name_the_ten_classes(folder, tmp_path, meta, said):
    """Its MD5s say nothing of an unverified copy: the label names, in order (a label is an
    index into them), are checked as for a verified one, which its checksum covers."""
    data_dir = _copy_with(folder, tmp_path, "batches.meta", meta)
    with pytest.raises(UserError, match=f"batches.meta {re.escape(said)}") as err:
        cifar10.load(cifar10.Options(verify=False, whitening="none"), data_dir)
    assert "\n" not in str(err.value)


def test_an_unverified_copy_with_missing_images_is_refused(folder, tmp_path):
    """A truncated batch would otherwise train on another set than the paper's silently."""
    batch = cifar10.read_batch(folder / "data_batch_5", "", verify=False)
    short = {b"data": batch[b"data"][:100], b"labels": batch[b"labels"][:100]}
    data_dir = _copy_with(folder, tmp_path, "data_batch_5", short)
    with pytest.raises(UserError, match="hold 40,100 images, not 50,000; replace them"):
        cifar10.load(cifar10.Options(verify=False, whitening="none"), data_dir)


def test_wrong_checksum_refused_by_run_in_one_line(cli, tmp_path):
    code, out, err = cli("run", "cnn_cifar10", "--scale", "smoke", "--out", tmp_path / "r",
                         "--quiet")
    assert code == 2
    assert err.count("\n") == 1 and "not the official file" in err and "MD5" in err
    assert not (tmp_path / "r").exists()  # nothing written


def test_the_flag_leaves_datasets_that_are_always_checked_or_pass_alone(data_dir, tmp_path):
    """--unverified-data turns the check off (and the run ids with it) only for a dataset
    whose copy fails it: on this data folder the re-encoded CIFAR-10, not the intact IMDB,
    whose committed results it made "a different config" (`make all RUN_FLAGS=...`)."""
    from adamrepro.cli.params import without_data_check
    from adamrepro.config import CONFIG_DIR, load_experiment
    from adamrepro.runner.plan import plan

    mnist = load_experiment(CONFIG_DIR / "logreg_mnist.yaml")
    assert without_data_check(mnist, data_dir) == without_data_check(mnist) == mnist
    cifar = without_data_check(load_experiment(CONFIG_DIR / "cnn_cifar10.yaml"), data_dir)
    assert cifar.dataset["verify"] is False
    imdb = load_experiment(CONFIG_DIR / "logreg_imdb.yaml")
    assert without_data_check(imdb, data_dir) == imdb
    ids = [run.run_id for group in plan(imdb.at_scale("paper")) for run in group.runs]
    assert ids == [run.run_id for group in plan(without_data_check(imdb, data_dir)
                                                .at_scale("paper")) for run in group.runs]
    # no copy there (or none known) to pass the check: the flag does what it says
    for where in (tmp_path, None):
        assert without_data_check(imdb, where).dataset["verify"] is False


def test_missing_files_offline_name_the_archive_the_folder_and_where(tmp_path, monkeypatch):
    """The unpacked folder does as well as the archive (it is what ../shared/data has), and
    scripts/offline_data.py lays it out: both are named, as for IMDB."""
    url = "http://127.0.0.1:9/cifar-10-python.tar.gz"  # nothing listens
    monkeypatch.setenv("ADAMREPRO_CIFAR10_URL", url)
    with pytest.raises(UserError) as err:
        cifar10.fetch(tmp_path)
    assert str(err.value) == (
        f"CIFAR-10: {tmp_path / cifar10.ARCHIVE} is missing and could not be downloaded "
        f"({url}: [Errno 111] Connection refused); put the official cifar-10-python.tar.gz "
        f"in {tmp_path} or pass --data-dir (or set $ADAMREPRO_DATA) to where it is; or put "
        f"the unpacked official archive (cifar-10-batches-py/data_batch_1, ...) in {tmp_path} "
        f"(scripts/offline_data.py lays out a local copy)")


def test_a_file_where_the_folder_goes_is_named_before_any_download(cli, tmp_path, monkeypatch):
    """cifar-10-batches-py a file: offline, the line said the archive was missing and to put
    the unpacked folder in the data folder, where the user saw it already (online, the
    archive was downloaded first, and never unpacked over it)."""
    monkeypatch.setenv("ADAMREPRO_CIFAR10_URL", "http://127.0.0.1:9/cifar-10-python.tar.gz")
    (tmp_path / cifar10.FOLDER).write_text("")
    code, out, err = cli("fetch", "cifar10", "--data-dir", tmp_path)
    assert code == 2 and out == "", (out, err)
    assert err == (f"adamrepro: error: CIFAR-10: {tmp_path / cifar10.FOLDER} is not a folder; "
                   f"move it away and run again to download and unpack cifar-10-python.tar.gz "
                   f"there\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == [cifar10.FOLDER]
    (tmp_path / cifar10.ARCHIVE).write_bytes(_stand_in_archive())  # there: it is unpacked
    with pytest.raises(UserError, match=f"run again to unpack "
                                        f"{re.escape(str(tmp_path / cifar10.ARCHIVE))} there$"):
        cifar10.fetch(tmp_path)


def _stand_in_archive() -> bytes:
    """An archive of the official layout whose files are small stand-ins."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name in cifar10.FILES:
            payload = name.encode()
            info = tarfile.TarInfo(f"{cifar10.FOLDER}/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return buffer.getvalue()


def test_the_archive_comes_from_adamrepro_cifar10_url_when_set(tmp_path, monkeypatch):
    """A mirror of one's own, as ADAMREPRO_IMDB_URL for IMDB (here a file:// URL; its
    archive's MD5 stands in for the official one)."""
    served = tmp_path / "mirror" / "any-name.tar.gz"
    served.parent.mkdir()
    served.write_bytes(_stand_in_archive())
    monkeypatch.setenv("ADAMREPRO_CIFAR10_URL", served.as_uri())
    monkeypatch.setattr(cifar10, "ARCHIVE_MD5", hashlib.md5(served.read_bytes()).hexdigest())
    found = cifar10.fetch(tmp_path / "data")
    assert found == tmp_path / "data" / cifar10.FOLDER
    assert sorted(p.name for p in found.iterdir()) == sorted(cifar10.FILES)


def test_a_folder_that_lost_a_batch_names_it_offline(folder, tmp_path, monkeypatch):
    """Not only "the archive is missing": the folder is there, one file of it is not."""
    monkeypatch.setattr(cifar10, "URL", "http://127.0.0.1:9/cifar-10-python.tar.gz")
    shutil.copytree(folder, tmp_path / cifar10.FOLDER)
    (tmp_path / cifar10.FOLDER / "test_batch").unlink()
    with pytest.raises(UserError) as err:
        cifar10.fetch(tmp_path)
    message = str(err.value)
    assert message.startswith(f"CIFAR-10: {tmp_path / cifar10.FOLDER} lacks test_batch (of "
                              f"its 7 files), and {tmp_path / cifar10.ARCHIVE} to unpack")
    assert message.endswith(f"put it back in {tmp_path / cifar10.FOLDER}, or the official "
                            f"cifar-10-python.tar.gz in {tmp_path}")


def test_download_checks_the_archive_and_unpacks_it(tmp_path, monkeypatch):
    """A local HTTP server serves an archive of the official layout (small stand-in files;
    its MD5 stands in for the official one)."""
    served = tmp_path / "served"
    served.mkdir()
    (served / cifar10.ARCHIVE).write_bytes(_stand_in_archive())
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setattr(cifar10, "URL",
                            f"http://127.0.0.1:{server.server_port}/{cifar10.ARCHIVE}")
        monkeypatch.setattr(cifar10, "ARCHIVE_MD5", "0" * 32)
        with pytest.raises(UserError, match="wrong MD5"):
            cifar10.fetch(tmp_path / "a")
        assert not (tmp_path / "a" / cifar10.ARCHIVE).exists()
        monkeypatch.setattr(cifar10, "ARCHIVE_MD5",
                            hashlib.md5((served / cifar10.ARCHIVE).read_bytes()).hexdigest())
        found = cifar10.fetch(tmp_path / "b")
    finally:
        server.shutdown()
        server.server_close()
    assert found == tmp_path / "b" / cifar10.FOLDER
    assert sorted(p.name for p in found.iterdir()) == sorted(cifar10.FILES)


@pytest.fixture(scope="module")
def real_archive(folder, tmp_path_factory):
    """An archive of the real cifar-10-batches-py, laid out as the official one (not
    compressed, which tarfile reads alike: gzip would cost the suite seconds), and its MD5,
    which tests give as the official one."""
    archive = tmp_path_factory.mktemp("archive") / cifar10.ARCHIVE
    with tarfile.open(archive, "w") as tar:
        for name in cifar10.FILES:
            tar.add(folder / name, f"{cifar10.FOLDER}/{name}")
    digest = hashlib.md5()
    with open(archive, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return archive, digest.hexdigest()


def _folder_with_the_archive(folder, data_dir, archive, missing):
    """`data_dir` holding the archive (linked) and a cifar-10-batches-py of the real files
    (linked) but for `missing`."""
    (data_dir / cifar10.ARCHIVE).symlink_to(archive)
    copy = data_dir / cifar10.FOLDER
    copy.mkdir()
    for name in cifar10.FILES:
        if name != missing:
            (copy / name).symlink_to(folder / name)
    return copy


def test_a_folder_that_lost_a_file_gets_it_back_from_the_archive(folder, real_archive,
                                                                  tmp_path, monkeypatch):
    """Unpacking skipped a folder that was there, so the file stayed missing, and the line
    said to delete the archive and run again: which downloaded it again, to the same end.
    What is there is left as it is (here links to the real files)."""
    archive, md5 = real_archive
    monkeypatch.setattr(cifar10, "ARCHIVE_MD5", md5)
    monkeypatch.setattr(cifar10, "URL", "http://127.0.0.1:9/cifar-10-python.tar.gz")
    copy = _folder_with_the_archive(folder, tmp_path, archive, "data_batch_3")
    assert cifar10.fetch(tmp_path) == copy
    put_back = copy / "data_batch_3"
    assert not put_back.is_symlink()
    assert cifar10.md5sum(put_back) == cifar10.md5sum(folder / "data_batch_3")
    assert all((copy / name).is_symlink() for name in cifar10.FILES if name != "data_batch_3")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([cifar10.ARCHIVE,
                                                                 cifar10.FOLDER])


def test_what_unpacking_cannot_mend_is_named_with_a_fix_that_works(folder, real_archive,
                                                                    tmp_path, monkeypatch):
    """A folder where a batch goes is never replaced: the line names it, and says to move
    it away (not to delete the archive, which changed nothing); done so, the run mends."""
    archive, md5 = real_archive
    monkeypatch.setattr(cifar10, "ARCHIVE_MD5", md5)
    copy = _folder_with_the_archive(folder, tmp_path, archive, "test_batch")
    (copy / "test_batch").mkdir()
    with pytest.raises(UserError) as err:
        cifar10.fetch(tmp_path)
    assert str(err.value) == (f"CIFAR-10: {copy / 'test_batch'} is not a file; move it away "
                              f"and run again to unpack it from {tmp_path / cifar10.ARCHIVE}")
    (copy / "test_batch").rmdir()
    assert cifar10.fetch(tmp_path) == copy
    assert cifar10.md5sum(copy / "test_batch") == cifar10.md5sum(folder / "test_batch")


def test_an_archive_that_cannot_be_unpacked_there_names_the_folder(tmp_path):
    """Unpacking into a folder that takes no files (read-only, full, or under a file: the
    one a test can make as root too) is the data's one line naming it and the fix, not a
    bare OSError."""
    archive = tmp_path / cifar10.ARCHIVE
    with tarfile.open(archive, mode="w:gz") as tar:
        info = tarfile.TarInfo(f"{cifar10.FOLDER}/batches.meta")
        tar.addfile(info, io.BytesIO(b""))
    (tmp_path / "afile").write_text("")
    into = tmp_path / "afile" / "data"
    with pytest.raises(UserError) as err:
        extract_tar(archive, into, "CIFAR-10")
    assert str(err.value) == (f"CIFAR-10: cannot make {into}: {tmp_path / 'afile'} is a file, "
                              f"not a folder; pass --data-dir (or set $ADAMREPRO_DATA) to a "
                              f"writable folder")


def covariance(x: torch.Tensor) -> torch.Tensor:
    x = x.reshape(len(x), -1).double()
    x = x - x.mean(0)
    return x.T @ x / len(x)


def test_whitening_makes_the_covariance_the_identity(train_images):
    """600 images span 599 directions (after centring): with a tiny ε, the whitened images'
    covariance is the identity on them: 599 eigenvalues of 1, the rest 0."""
    sample = train_images[0][:600]
    whitened = cifar10.fit_zca(sample, epsilon=1e-6).apply(sample).reshape(600, -1).double()
    whitened -= whitened.mean(0)
    eigenvalues = torch.linalg.eigvalsh(whitened @ whitened.T / 600)  # = those of the cov
    assert eigenvalues[0].abs() < 1e-6  # the centring's direction
    # 1 - λ/(λ+ε) for the smallest λ of the sample; float32 application adds ~1e-6
    assert eigenvalues[1:].min() > 0.99 and eigenvalues.max() < 1 + 1e-4


# 600 images: the thin-SVD branch of fit_zca (fewer images than 3,072 pixels); 4,096, the
# quick scale's training set, and every larger one (the paper's 50,000): the eigenvalue
# branch, which no test ran (a covariance not divided by n, or V and its transpose swapped,
# passed the suite and would have changed Fig. 3 at both scales that train it)
@pytest.mark.parametrize("n", [600, 4096])
def test_zca_is_the_symmetric_inverse_square_root_of_the_regularised_covariance(
        train_images, n):
    eps = 0.01
    images = train_images[0][:n]
    fit = cifar10.fit_zca(images, epsilon=eps)
    x = images.reshape(n, -1).double() / 255.0
    torch.testing.assert_close(fit.mean, x.mean(0), rtol=0, atol=1e-12)
    x = x - x.mean(0)
    w = fit.matrix
    torch.testing.assert_close(w, w.T, rtol=0, atol=1e-9)  # ZCA, not another whitening
    identity = w @ (x.T @ x / n + eps * torch.eye(3072, dtype=torch.float64)) @ w
    torch.testing.assert_close(identity, torch.eye(3072, dtype=torch.float64), rtol=0,
                               atol=1e-6)


def test_whitened_training_images_are_centred(train_images):
    """The test above re-centres what it whitens: images applied without their mean
    subtracted passed it but for float rounding."""
    images = train_images[0][:600]
    whitened = cifar10.fit_zca(images, epsilon=0.01).apply(images).reshape(600, -1).double()
    assert whitened.mean(0).abs().max() < 1e-4 * whitened.std(0).mean()


def test_whitening_decorrelates_held_out_pixels(train_images):
    """At the config's ε, pixels of images the fit never saw are nearly uncorrelated."""
    images = train_images[0]
    whitening = cifar10.fit_zca(images[:1000], epsilon=0.01)

    def mean_abs_correlation(x):  # over the red channel's 1024 pixels, to stay quick
        cov = covariance(x[:, 0])
        std = cov.diagonal().sqrt()
        corr = cov / std[:, None] / std[None]
        return (corr - torch.diag(corr.diagonal())).abs().mean().item()

    held_out = images[1000:1600]
    assert mean_abs_correlation(held_out.float()) > 0.2  # measured 0.27
    assert mean_abs_correlation(whitening.apply(held_out)) < 0.1  # measured 0.046


def test_whitening_is_cached_by_checksum_and_epsilon(train_images, tmp_path):
    """A second read of the same images at the same ε comes from the cache (no fit: the
    module's count of fits does not move) and gives the same float64 matrix; other images
    or another ε are fitted anew."""
    sample = train_images[0][:100]
    fits = cifar10.zca_fits
    first = cifar10.zca(sample, 0.01, tmp_path)
    assert cifar10.zca_fits == fits + 1
    again = cifar10.zca(sample, 0.01, tmp_path)
    assert cifar10.zca_fits == fits + 1  # read from the cache, not fitted again
    torch.testing.assert_close(again.matrix, first.matrix, rtol=0, atol=0)
    assert again.matrix.dtype == torch.float64
    for other in ((train_images[0][1:101], 0.01), (sample, 0.1)):  # other data, other ε
        fits = cifar10.zca_fits
        cifar10.zca(*other, tmp_path)
        assert cifar10.zca_fits == fits + 1, other[1]


def test_the_whitening_cache_keeps_the_fits_used_last(train_images, tmp_path, monkeypatch):
    """Each fit is a 75 MB matrix, one more for every other subset or ε: the cache keeps
    the ZCA_CACHE_KEEP used last (a fit read from it counts as used), and removes the rest,
    which are fitted again if asked for."""
    import os

    monkeypatch.setattr(cifar10, "ZCA_CACHE_KEEP", 2)  # the policy's size, not its code
    sample = train_images[0][:100]
    cifar10.zca(sample, 0.01, tmp_path)
    [kept] = tmp_path.glob("zca-*.pt")
    os.utime(kept, (1, 1))  # long unused, until it is read again below
    cifar10.zca(sample, 0.1, tmp_path)
    assert len(list(tmp_path.glob("zca-*.pt"))) == 2
    fits = cifar10.zca_fits
    cifar10.zca(sample, 0.01, tmp_path)  # read from the cache: now the most recent
    assert cifar10.zca_fits == fits
    cifar10.zca(sample, 1.0, tmp_path)  # a third: the one used least recently (ε 0.1) goes
    assert len(list(tmp_path.glob("zca-*.pt"))) == 2 and kept.exists()
    fits = cifar10.zca_fits
    cifar10.zca(sample, 0.01, tmp_path)
    assert cifar10.zca_fits == fits  # kept
    cifar10.zca(sample, 0.1, tmp_path)
    assert cifar10.zca_fits == fits + 1  # removed, so fitted again


def test_a_whitening_write_a_kill_cut_off_leaves_no_temporary_file(train_images, tmp_path):
    """A kill while a fit was written (75 MB, the first command at a scale) left its
    temporary file in the cache for good, hidden: the next fit's command removes one that no
    write has touched for ABANDONED_SECONDS, and leaves a younger one, which may be another
    command's write in progress."""
    abandoned = cut_off_write(tmp_path / "zca-000000000000.pt")
    writing = cut_off_write(tmp_path / "zca-111111111111.pt", abandoned=False)
    cifar10.zca(train_images[0][:100], 0.01, tmp_path)
    assert not abandoned.exists() and writing.exists()
    assert len(list(tmp_path.glob("zca-*.pt"))) == 1  # the fit itself, cached


def test_the_whitening_is_fitted_on_the_training_images_alone(folder, tmp_path):
    """`load` at a small scale: the whitening's mean is that of the 200 training images
    trained on (scaled to [0, 1], in float64), not of the training and test images
    together: the test images never shape the inputs."""
    data_dir = _copy_with(folder, tmp_path)  # its whitening cache goes under tmp_path
    images = cifar10.load(cifar10.Options(verify=False, whitening="zca", train_size=200,
                                          test_size=100), data_dir)
    assert images.train_x.shape == (200, 3, 32, 32) and images.test_x.shape == (100, 3, 32, 32)

    def mean(x):
        return x.reshape(len(x), -1).double().mean(0) / 255

    assert images.whitening.mean.dtype == torch.float64
    torch.testing.assert_close(images.whitening.mean, mean(images.train_x), rtol=0, atol=1e-12)
    both = mean(torch.cat([images.train_x, images.test_x]))
    assert (images.whitening.mean - both).abs().max() > 0.01


def test_both_splits_are_whitened_whole_across_the_chunks(folder, tmp_path):
    """What `to` gives the model: every image of both splits whitened, (x/255 - mean) @ W
    (the test images are evaluated on: left scaled alone, the test loss was of other
    inputs), a split of more than WHITEN_CHUNK images too, at each chunk's edges."""
    chunk = cifar10.WHITEN_CHUNK
    data_dir = _copy_with(folder, tmp_path)  # its whitening cache goes under tmp_path
    images = cifar10.load(cifar10.Options(verify=False, whitening="zca", train_size=200,
                                          test_size=chunk + 100), data_dir)
    placed = images.to(torch.device("cpu"))
    whitening = images.whitening
    for raw, inputs, rows in ((images.train_x, placed.train_x, list(range(200))),
                              (images.test_x, placed.test_x, [0, chunk - 1, chunk, chunk + 99])):
        expected = (raw[rows].reshape(len(rows), -1).double() / 255 - whitening.mean) @ (
            whitening.matrix)
        assert inputs.dtype == torch.float32
        torch.testing.assert_close(inputs[rows].reshape(len(rows), -1).double(), expected,
                                   rtol=0, atol=1e-3)


def test_a_whitening_cache_whose_contents_were_damaged_is_fitted_again(train_images, tmp_path,
                                                                      capsys):
    """A value changed inside the cached matrix (a flipped byte loads without a word from
    torch) no longer whitens every image wrongly: the cache's SHA-256 says so."""
    sample = train_images[0][:100]
    first = cifar10.zca(sample, 0.01, tmp_path)
    [cache] = tmp_path.glob("zca-*.pt")
    stored = torch.load(cache, weights_only=True)
    stored["matrix"][0, 0] += 22.6
    torch.save(stored, cache)
    again = cifar10.zca(sample, 0.01, tmp_path)
    torch.testing.assert_close(again.matrix, first.matrix, rtol=0, atol=0)
    said = capsys.readouterr().err
    assert said == (f"adamrepro: note: CIFAR-10: ignoring the unreadable cache {cache} (its "
                    f"contents do not match their checksum); fitting it again\n"), said


def test_fetch_says_which_files_are_not_the_official_bytes(cli, data_dir):
    """This project's copy went through JPEG: every batch differs, the label names do not."""
    code, stdout, stderr = cli("fetch", "cifar10", "--data-dir", data_dir)
    assert code == 0, stderr
    assert (f"cifar10    {data_dir / cifar10.FOLDER} (not the official data: the MD5 of "
            f"data_batch_1, data_batch_2, data_batch_3, data_batch_4, data_batch_5, "
            f"test_batch differs; runs read it only with --unverified-data") in stdout
