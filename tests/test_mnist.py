"""The MNIST reader on the real files, and the download path against a local HTTP server."""

from __future__ import annotations

import errno
import functools
import hashlib
import http.server
import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from adamrepro.config import CONFIG_DIR
from adamrepro.data import cifar10, mnist
from adamrepro.data.download import not_writable
from adamrepro.errors import UserError

# Published class frequencies of the official MNIST split.
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_reader_shapes_and_class_counts(data_dir):
    data = mnist.load(mnist.Options(), data_dir)
    assert data.train_x.shape == (60000, 784) and data.test_x.shape == (10000, 784)
    assert data.train_x.dtype == torch.float32
    assert 0.0 == data.train_x.min() and data.train_x.max() == 1.0
    assert torch.bincount(data.train_y).tolist() == TRAIN_COUNTS
    assert torch.bincount(data.test_y).tolist() == TEST_COUNTS


def test_pixel_scale_divides_the_bytes(data_dir):
    """[0, 1] is ours (`pixel_scale: 255`); `pixel_scale: 1` keeps the bytes 0-255, the
    paper's "raw pixels" read literally."""
    unit = mnist.load(mnist.Options(train_size=100, test_size=50), data_dir)
    raw = mnist.load(mnist.Options(train_size=100, test_size=50, pixel_scale=1), data_dir)
    assert raw.train_x.max() == 255 and torch.equal(raw.train_x, raw.train_x.round())
    torch.testing.assert_close(raw.train_x / 255, unit.train_x, rtol=0, atol=0)
    with pytest.raises(UserError, match="pixel_scale: Input should be greater than 0"):
        mnist.options({"pixel_scale": 0}, "dataset")


def test_a_size_of_the_whole_split_is_the_whole_split(data_dir):
    """train_size spelled out as the split's own size is the split, as when left out: not
    refused as more than it, and the test subset drawn after it is the one drawn without."""
    whole = mnist.load(mnist.Options(test_size=500), data_dir)
    spelled = mnist.load(mnist.Options(train_size=60000, test_size=500), data_dir)
    for key in ("train_x", "train_y", "test_x", "test_y"):
        assert torch.equal(getattr(spelled, key), getattr(whole, key)), key


def test_idx_header_is_read_not_assumed(data_dir):
    images = mnist.read_idx(data_dir / "MNIST/raw/t10k-images-idx3-ubyte.gz")
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8


def test_subset_is_fixed_and_the_image_layout_works(data_dir):
    a = mnist.load(mnist.Options(train_size=100, test_size=50), data_dir)
    b = mnist.load(mnist.Options(train_size=100, test_size=50, layout="image"), data_dir)
    assert a.train_x.shape == (100, 784) and b.train_x.shape == (100, 1, 28, 28)
    torch.testing.assert_close(a.train_x, b.train_x.reshape(100, 784))


def _unpacked_copy(data_dir, folder):
    """`folder` holding the real files gunzipped, named as torchvision leaves them."""
    import gzip

    folder.mkdir(parents=True)
    for name in mnist.FILES:
        with gzip.open(data_dir / "MNIST" / "raw" / name) as packed:
            (folder / name.removesuffix(".gz")).write_bytes(packed.read())


def test_the_official_files_unpacked_are_read_as_the_gzipped_ones(data_dir, tmp_path,
                                                                   monkeypatch):
    """torchvision leaves `train-images-idx3-ubyte` etc. unpacked: they were ignored, and the
    line said the files were missing (here nothing could be downloaded)."""
    monkeypatch.setenv("ADAMREPRO_MNIST_MIRROR", "http://127.0.0.1:9/")  # nothing listens
    _unpacked_copy(data_dir, tmp_path / "MNIST" / "raw")
    unpacked = mnist.load(mnist.Options(), tmp_path)
    packed = mnist.load(mnist.Options(), data_dir)
    for split in ("train", "test"):
        for key in ("x", "y"):
            assert torch.equal(getattr(unpacked, split)[key], getattr(packed, split)[key])
    assert sorted(p.name for p in (tmp_path / "MNIST" / "raw").iterdir()) == sorted(
        name.removesuffix(".gz") for name in mnist.FILES)  # nothing downloaded beside them


def test_an_unpacked_file_that_is_not_the_official_one_is_named(data_dir, tmp_path,
                                                                 monkeypatch):
    monkeypatch.setenv("ADAMREPRO_MNIST_MIRROR", "http://127.0.0.1:9/")  # nothing listens
    folder = tmp_path / "MNIST" / "raw"
    _unpacked_copy(data_dir, folder)
    labels = folder / "t10k-labels-idx1-ubyte"
    labels.write_bytes(labels.read_bytes()[:-1] + b"\x07")  # one label changed
    with pytest.raises(UserError) as err:
        mnist.fetch(tmp_path)
    assert str(err.value) == (f"MNIST: {labels} is corrupt (MD5 mismatch, expected the "
                              f"official unpacked file's 27ae3e4e09519cfbb04c329615203637); delete "
                              f"it and run again to download t10k-labels-idx1-ubyte.gz, or "
                              f"replace it with the official file")


@pytest.fixture
def http_mirror(tmp_path, monkeypatch):
    """A folder served over HTTP on 127.0.0.1, set as the MNIST mirror."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("ADAMREPRO_MNIST_MIRROR", f"http://127.0.0.1:{server.server_port}/")
    yield served
    server.shutdown()
    server.server_close()


def test_download_checksum_pass(http_mirror, data_dir, tmp_path):
    for name in mnist.FILES:
        shutil.copy(data_dir / "MNIST/raw" / name, http_mirror / name)
    target = tmp_path / "fresh"
    folder = mnist.fetch(target)
    assert folder == target / "MNIST/raw"
    for name, md5 in mnist.FILES.items():
        assert hashlib.md5((folder / name).read_bytes()).hexdigest() == md5
    assert not list(folder.glob(".*part"))  # no temporary file left behind


def test_download_checksum_fail_leaves_nothing(http_mirror, data_dir, tmp_path):
    for name in mnist.FILES:
        shutil.copy(data_dir / "MNIST/raw" / name, http_mirror / name)
    labels = http_mirror / "train-labels-idx1-ubyte.gz"
    labels.write_bytes(labels.read_bytes()[:-10] + b"corrupted!")
    target = tmp_path / "fresh"
    with pytest.raises(UserError, match="wrong MD5"):
        mnist.fetch(target)
    assert not (target / "MNIST/raw/train-labels-idx1-ubyte.gz").exists()


def test_offline_says_what_is_missing_and_where(monkeypatch, tmp_path):
    monkeypatch.setenv("ADAMREPRO_MNIST_MIRROR", "http://127.0.0.1:9/")  # nothing listens
    with pytest.raises(UserError, match=r"missing.*put the official .* in "):
        mnist.fetch(tmp_path / "empty")
    assert not (tmp_path / "empty").exists()


@pytest.mark.parametrize("variable, value, dataset", [
    ("ADAMREPRO_MNIST_MIRROR", "not a url", "mnist"),
    ("ADAMREPRO_MNIST_MIRROR", "mirror.example.org/mnist/", "mnist"),  # no scheme
    ("ADAMREPRO_IMDB_URL", "::::", "imdb"),
    ("ADAMREPRO_IMDB_URL", "https:aclImdb_v1.tar.gz", "imdb"),  # a scheme, and no host
    ("ADAMREPRO_CIFAR10_URL", "cifar-10-python.tar.gz", "cifar10"),
])
def test_a_mirror_that_is_no_url_is_one_line(variable, value, dataset, cli, monkeypatch,
                                             tmp_path):
    """urllib raised a bare ValueError ("unknown url type") through the whole command."""
    monkeypatch.setenv(variable, value)
    code, out, err = cli("fetch", dataset, "--data-dir", tmp_path / "data")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"adamrepro: error: ${variable} is {value!r}, not a URL (http://")
    assert not (tmp_path / "data").exists()


def test_corrupt_local_file_is_named(data_dir, tmp_path):
    folder = tmp_path / "MNIST/raw"
    folder.mkdir(parents=True)
    for name in mnist.FILES:
        shutil.copy(data_dir / "MNIST/raw" / name, folder / name)
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(b"not gzip")
    with pytest.raises(UserError, match="t10k-labels-idx1-ubyte.gz is corrupt"):
        mnist.fetch(tmp_path)


def test_fetch_command_reports_the_folder(cli, data_dir):
    code, out, _ = cli("fetch", "mnist", "--data-dir", data_dir)
    assert code == 0 and str(Path(data_dir) / "MNIST" / "raw") in out


def test_fetch_offline_is_one_line_naming_every_file_and_where(cli, monkeypatch, tmp_path):
    """What `make test` shows on a machine without the data and without a network."""
    monkeypatch.setenv("ADAMREPRO_MNIST_MIRROR", "http://127.0.0.1:9/")  # nothing listens
    monkeypatch.setenv("ADAMREPRO_IMDB_URL", "http://127.0.0.1:9/aclImdb_v1.tar.gz")
    code, out, err = cli("fetch", "--data-dir", tmp_path / "data")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    for name in mnist.FILES:
        assert name in err
    assert f"in {tmp_path / 'data' / 'MNIST' / 'raw'};" in err
    assert f"aclImdb_v1.tar.gz (or its extracted aclImdb/) in {tmp_path / 'data'}" in err
    assert not (tmp_path / "data").exists()


def test_fetch_for_experiments_fetches_their_datasets_alone(cli, data_dir, monkeypatch, tmp_path):
    """`fetch EXPERIMENT ...` (a bundled name or a config file) fetches the datasets those
    experiments read, each once: scripts/reproduce_paper.sh relies on it on a machine that was
    sent MNIST alone, where fetching IMDB or CIFAR-10 too would fail offline."""
    monkeypatch.setenv("ADAMREPRO_IMDB_URL", "http://127.0.0.1:9/aclImdb_v1.tar.gz")
    only_mnist = tmp_path / "data"
    only_mnist.mkdir()
    (only_mnist / "MNIST").symlink_to(Path(data_dir) / "MNIST")
    code, out, err = cli("fetch", "mlp_sfo", str(CONFIG_DIR / "vae_bias_correction.yaml"),
                         "--data-dir", only_mnist)
    assert code == 0, err
    assert out.splitlines() == [f"{'mnist':10s} {only_mnist / 'MNIST' / 'raw'}"]
    code, _, err = cli("fetch", "logreg_imdb", "--data-dir", only_mnist)
    assert code == 2 and "aclImdb_v1.tar.gz" in err  # IMDB's experiment wants IMDB


def test_fetch_of_an_unknown_name_is_one_line_naming_datasets_and_experiments(cli, tmp_path):
    code, out, err = cli("fetch", "mnist", "mnsit", "--data-dir", tmp_path / "data")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "unknown dataset or experiment 'mnsit'" in err
    assert "mnist, imdb, cifar10" in err and "logreg_mnist" in err
    assert not (tmp_path / "data").exists()  # checked before anything is fetched


@pytest.mark.parametrize("dataset, what, layout", [
    ("mnist", "MNIST", "MNIST/raw"), ("imdb", "IMDB", ""), ("cifar10", "CIFAR-10", "")])
def test_a_data_folder_that_cannot_be_made_is_not_blamed_on_the_network(
        dataset, what, layout, cli, monkeypatch, tmp_path):
    """A --data-dir under a file (as a read-only or full disk) said the files "could not be
    downloaded" and to put them there: the fix is another folder, not another mirror."""
    monkeypatch.setenv("ADAMREPRO_MNIST_MIRROR", "http://127.0.0.1:9/")  # nothing listens
    monkeypatch.setenv("ADAMREPRO_IMDB_URL", "http://127.0.0.1:9/aclImdb_v1.tar.gz")
    monkeypatch.setattr(cifar10, "URL", "http://127.0.0.1:9/cifar-10-python.tar.gz")
    (tmp_path / "afile").write_text("")
    data = tmp_path / "afile" / "data"
    code, out, err = cli("fetch", dataset, "--data-dir", data)
    assert code == 2 and out == "", err
    assert err == (f"adamrepro: error: {what}: cannot make {data / layout}: "
                   f"{tmp_path / 'afile'} is a file, not a folder; pass --data-dir (or set "
                   f"$ADAMREPRO_DATA) to a writable folder\n")


def test_a_write_that_fails_midway_is_not_blamed_on_the_network(data_dir, tmp_path):
    """A file size limit (RLIMIT_FSIZE, as a full disk: it holds for root too) cuts the
    copy of the first file from a file:// mirror of the real files after 1 MiB; the line
    names the folder and the error, not a download that failed, and nothing is left."""
    import resource
    import subprocess
    import sys

    def limit_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, resource.getrlimit(
            resource.RLIMIT_FSIZE)[1]))

    target = tmp_path / "data"
    env = {**os.environ, "ADAMREPRO_MNIST_MIRROR": (data_dir / "MNIST" / "raw").as_uri()}
    done = subprocess.run([sys.executable, "-m", "adamrepro", "fetch", "mnist", "--data-dir",
                           str(target)], capture_output=True, text=True, env=env,
                          preexec_fn=limit_file_size, timeout=120)
    assert done.returncode == 2 and done.stdout == "", done.stderr
    assert done.stderr == (f"adamrepro: error: MNIST: writing in {target / 'MNIST' / 'raw'} "
                           f"failed (File too large); pass --data-dir (or set "
                           f"$ADAMREPRO_DATA) to another folder\n")
    assert not target.exists()  # no partial file, no folder made for it


@pytest.mark.parametrize("code, said", [
    (errno.EROFS, "{there} is not writable (Read-only file system); pass --data-dir (or set "
                  "$ADAMREPRO_DATA) to a writable folder"),
    (errno.EACCES, "{there} is not writable (Permission denied); pass --data-dir (or set "
                   "$ADAMREPRO_DATA) to a writable folder"),
    (errno.ENOSPC, "{there} is full (No space left on device); free some space there, or "
                   "pass --data-dir (or set $ADAMREPRO_DATA) to a folder on another disk"),
])
def test_what_the_filesystem_refused_is_worded_by_its_errno(code, said, tmp_path):
    """The errors a test cannot cause as root (which no permission stops) nor without root
    (a read-only or full mount): the nearest folder that exists is named, with the fix."""
    error = OSError(code, os.strerror(code), str(tmp_path / "MNIST"))
    message = str(not_writable("MNIST", tmp_path / "MNIST" / "raw", error))
    assert message == f"MNIST: cannot make {tmp_path / 'MNIST' / 'raw'}: " + said.format(
        there=tmp_path)
    assert str(not_writable("MNIST", tmp_path, error)) == "MNIST: " + said.format(
        there=tmp_path)


@pytest.mark.parametrize("dataset, what, inside", [
    ("mnist", "MNIST", "MNIST/raw"), ("mnist", "MNIST", "MNIST"),
    ("imdb", "IMDB", "aclImdb"), ("cifar10", "CIFAR-10", "cifar-10-batches-py"),
])
def test_a_data_folder_that_is_the_dataset_s_own_folder_names_the_one_to_pass(
        dataset, what, inside, data_dir, tmp_path, monkeypatch, cli):
    """ADAMREPRO_DATA=~/data/MNIST (the folder the files are in): the line said they were
    missing and to put them in .../MNIST/MNIST/raw (online, they were downloaded again
    there)."""
    for variable in ("ADAMREPRO_MNIST_MIRROR", "ADAMREPRO_IMDB_URL", "ADAMREPRO_CIFAR10_URL"):
        monkeypatch.setenv(variable, "http://127.0.0.1:9/")  # nothing listens
    top = inside.split("/")[0]  # its folders made here, its files linked: none written to
    for path in (data_dir / top).rglob("*"):
        if path.is_file() and ".adamrepro-cache" not in path.parts:
            link = tmp_path / "data" / path.relative_to(data_dir)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(path)
    given = tmp_path / "data" / inside
    before = sorted(p.name for p in given.iterdir())
    code, out, err = cli("fetch", dataset, "--data-dir", given)
    assert code == 2 and out == "", (out, err)
    assert err == (f"adamrepro: error: {what}: {given} is the dataset's own folder, not the "
                   f"data folder holding it; pass --data-dir (or set $ADAMREPRO_DATA) to "
                   f"{tmp_path / 'data'}\n")
    assert sorted(p.name for p in given.iterdir()) == before  # nothing made in it


def test_a_quoted_tilde_is_the_home_folder(data_dir, tmp_path, monkeypatch, cli):
    """`ADAMREPRO_DATA='~/data'` and `--data-dir=~/data` (no shell expands either):
    `scripts/offline_data.py` laid the data out in the home folder, and the runs looked in
    ./~/data, with a message naming the folder the files were in."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "data").symlink_to(data_dir)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ADAMREPRO_DATA", "~/data")
    code, stdout, stderr = cli("fetch", "mnist")
    assert code == 0, stderr
    assert stdout.startswith(f"mnist      {home / 'data'}")
    monkeypatch.delenv("ADAMREPRO_DATA")
    code, stdout, stderr = cli("fetch", "mnist", "--data-dir=~/data")
    assert code == 0, stderr
    assert stdout.startswith(f"mnist      {home / 'data'}")
    assert not (tmp_path / "~").exists()


def test_a_relative_xdg_cache_home_is_ignored(cli, tmp_path, monkeypatch, data_dir):
    """The XDG spec: a relative $XDG_CACHE_HOME is invalid and ignored. It read as a folder
    of the working directory (relxdg/adamrepro/data), another one wherever a command ran."""
    home = tmp_path / "home"
    (home / ".cache" / "adamrepro").mkdir(parents=True)
    (home / ".cache" / "adamrepro" / "data").symlink_to(data_dir)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ADAMREPRO_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", "relxdg")
    code, stdout, stderr = cli("fetch", "mnist")
    assert code == 0, stderr
    assert stdout.startswith(f"mnist      {home / '.cache' / 'adamrepro' / 'data'}"), stdout
    assert not (tmp_path / "relxdg").exists()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "abs"))  # an absolute one is used
    (tmp_path / "abs" / "adamrepro").mkdir(parents=True)
    (tmp_path / "abs" / "adamrepro" / "data").symlink_to(data_dir)
    code, stdout, stderr = cli("fetch", "mnist")
    assert code == 0 and stdout.startswith(f"mnist      {tmp_path / 'abs'}"), stderr + stdout


def test_labels_go_with_their_images(data_dir):
    """Each label belongs to its own image, from what the digits are: a 1 is a single stroke
    and carries about half the ink of a 0 (mean pixel ~0.08 against ~0.17 on [0, 1]); labels
    or images shifted against each other mix the classes and bring the two means together.
    And the official files' first labels, as every MNIST reader prints them."""
    data = mnist.load(mnist.Options(), data_dir)
    for x, y in ((data.train_x, data.train_y), (data.test_x, data.test_y)):
        ink = x.double().mean(1)
        assert ink[y == 1].mean() < 0.6 * ink[y == 0].mean()
    assert data.train_y[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert data.test_y[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]


def test_a_train_size_subset_is_drawn_from_the_whole_split_with_its_labels(data_dir):
    """The small scales' subset is random over the split, not its first examples: each
    picked image is one of the split's, with that image's label, and about half come from
    the split's second half."""
    full = mnist.load(mnist.Options(pixel_scale=1), data_dir)
    small = mnist.load(mnist.Options(train_size=1000, test_size=500, pixel_scale=1), data_dir)
    for whole_x, whole_y, x, y in ((full.train_x, full.train_y, small.train_x, small.train_y),
                                   (full.test_x, full.test_y, small.test_x, small.test_y)):
        where: dict[bytes, list[int]] = {}
        for i, row in enumerate(whole_x.to(torch.uint8).numpy()):
            where.setdefault(row.tobytes(), []).append(i)
        found = [where[row.tobytes()] for row in x.to(torch.uint8).numpy()]
        assert all(int(label) in {int(whole_y[i]) for i in at}
                   for at, label in zip(found, y, strict=True))
        second_half = sum(at[0] >= len(whole_x) // 2 for at in found) / len(found)
        assert 0.4 < second_half < 0.6, second_half
