"""The download path (data/download.py) against a local HTTP server that misbehaves as real
ones do: a response cut short, with or without its Content-Length, one that names no size,
a mirror that serves another file. The file served is the real MNIST t10k labels."""

from __future__ import annotations

import hashlib
import http.server
import os
import re
import stat
import sys
import threading

import pytest

from adamrepro.data import mnist
from adamrepro.data.download import ensure_file
from adamrepro.errors import UserError

NAME = "t10k-labels-idx1-ubyte.gz"


class _Misbehaving(http.server.BaseHTTPRequestHandler):
    """GET /KIND/NAME serves the real MNIST file NAME as KIND says: `whole`, `short` (the
    full Content-Length, then half the bytes and the connection closed), `chunked-cut` (half
    the file in whole chunks, then a chunk announced and the connection closed), `bad-length`
    (`Content-Length: abc`, then all the bytes), `other` (whole, but other bytes)."""

    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802 (http.server's name)
        kind, name = self.path.strip("/").split("/")
        payload = (self.server.folder / name).read_bytes()
        half = payload[: len(payload) // 2]
        self.send_response(200)
        if kind == "chunked-cut":
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for start in range(0, len(half), 100_000):
                chunk = half[start : start + 100_000]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.write(b"%x\r\n%s" % (len(payload) - len(half), payload[len(half):][:10]))
        else:
            body = payload[::-1] if kind == "other" else payload
            self.send_header("Content-Length", "abc" if kind == "bad-length" else str(len(body)))
            self.end_headers()
            self.wfile.write(half if kind == "short" else body)
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def server(data_dir):
    """The misbehaving server on 127.0.0.1, serving the real files; yields its base URL."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Misbehaving)
    httpd.folder = data_dir / "MNIST" / "raw"
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    httpd.server_close()


def test_a_chunked_response_cut_short_is_one_line_saying_so(server, cli, monkeypatch,
                                                             tmp_path):
    """http.client raised IncompleteRead through the whole command: a traceback, exit 1."""
    monkeypatch.setenv("ADAMREPRO_MNIST_MIRROR", f"{server}/chunked-cut/")
    code, out, err = cli("fetch", "mnist", "--data-dir", tmp_path / "data")
    assert code == 2 and out == "", err
    url = f"{server}/chunked-cut/train-images-idx3-ubyte.gz"
    assert re.fullmatch(f"adamrepro: error: MNIST: the download of train-images-idx3-ubyte.gz "
                        f"from {re.escape(url)} was cut short at [0-9,]+ bytes \\(the "
                        f"connection dropped\\); run again to download it again\n", err), err
    assert not (tmp_path / "data").exists()  # no partial file, no folder made for it


def test_a_response_short_of_its_content_length_is_not_called_the_wrong_file(
        server, data_dir, tmp_path):
    """http.client ends such a body without an error: it was checksummed, and called the
    wrong file, to be replaced by hand, when running again would have fetched it."""
    folder = tmp_path / "raw"
    with pytest.raises(UserError) as err:
        ensure_file(folder, NAME, mnist.FILES[NAME], [f"{server}/short/{NAME}"], "MNIST")
    size = (data_dir / "MNIST" / "raw" / NAME).stat().st_size
    assert str(err.value) == (f"MNIST: the download of {NAME} from {server}/short/{NAME} was "
                              f"cut short at {size // 2:,} of {size:,} bytes (the connection "
                              f"dropped); run again to download it again")
    assert not folder.exists()


@pytest.mark.parametrize("first", ["short", "chunked-cut", "other"])
def test_a_mirror_that_gives_a_broken_or_other_file_is_followed_by_the_next(first, server,
                                                                            tmp_path):
    """The next mirror was never tried: a short body or another file was an error at once."""
    path = ensure_file(tmp_path, NAME, mnist.FILES[NAME],
                       [f"{server}/{first}/{NAME}", f"{server}/whole/{NAME}"], "MNIST")
    assert hashlib.md5(path.read_bytes()).hexdigest() == mnist.FILES[NAME]
    assert sorted(os.listdir(tmp_path)) == [NAME]  # no temporary file left


def test_a_mirror_serving_another_file_is_named_over_one_that_dropped(server, tmp_path):
    """Of the mirrors' failures the one that says most about the file is named: one that
    serves another file needs the official file put in by hand, where running again (what
    a dropped connection asks) would meet the same wrong file."""
    other = f"{server}/other/{NAME}"
    with pytest.raises(UserError, match=f"the download of {NAME} from {re.escape(other)} has "
                                        f"the wrong MD5"):
        ensure_file(tmp_path, NAME, mnist.FILES[NAME], [other, f"{server}/short/{NAME}"],
                    "MNIST")


def test_a_content_length_that_is_no_number_is_read_as_none(server, tmp_path):
    """`Content-Length: abc` raised a ValueError, a traceback; the body is read to its end."""
    path = ensure_file(tmp_path, NAME, mnist.FILES[NAME], [f"{server}/bad-length/{NAME}"],
                       "MNIST")
    assert hashlib.md5(path.read_bytes()).hexdigest() == mnist.FILES[NAME]


def test_a_file_with_the_wrong_md5_never_takes_the_official_name(server, tmp_path):
    """It was renamed into place, then checked and removed: a reader in between (another
    run) found a file of the official name with other bytes. Every rename is watched (an
    audit hook, Python's own event for os.replace)."""
    renamed = []

    def watch(event, args):
        if event == "os.rename" and renamed is not None:
            renamed.append(os.fspath(args[1]))

    sys.addaudithook(watch)  # (cannot be removed: emptied and left)
    try:
        with pytest.raises(UserError, match=f"the download of {NAME} from .* has the wrong "
                                            f"MD5 .*; put the official {NAME} in {tmp_path}"):
            ensure_file(tmp_path, NAME, mnist.FILES[NAME], [f"{server}/other/{NAME}"], "MNIST")
        assert str(tmp_path / NAME) not in renamed
    finally:
        renamed.clear()
    assert os.listdir(tmp_path) == []


def test_a_downloaded_file_can_be_read_by_everyone(server, tmp_path):
    """mkstemp makes its file private (0600), and the download kept that mode: another user
    of a shared data folder could not read it (atomic.py's files are 0644 for that)."""
    path = ensure_file(tmp_path, NAME, mnist.FILES[NAME], [f"{server}/whole/{NAME}"], "MNIST")
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_leftovers_of_a_killed_download_or_extraction_are_removed_once_old(tmp_path):
    """A process killed (kill -9) leaves its temporary `.NAME.*.part` or `.extract.*`: never
    read, they stayed for good (170 MB each for CIFAR-10). One older than an hour is removed
    when the next download or extraction starts; a younger one may be another process's."""
    import io
    import tarfile
    import time

    from adamrepro.data.download import MissingData, extract_tar

    old, fresh = time.time() - 2 * 3600, time.time() - 60
    leftovers = {}
    for kind, made in (("part", f".{NAME}.abc123.part"), ("extract", ".extract.abc123")):
        for age, when in (("old", old), ("fresh", fresh)):
            path = tmp_path / made.replace("abc123", age)
            if kind == "extract":
                path.mkdir()
                (path / "cifar-10-batches-py").mkdir()
            else:
                path.write_bytes(b"part of a download")
            os.utime(path, (when, when))
            leftovers[kind, age] = path
    with pytest.raises(MissingData):  # nothing listens: the download fails, after the sweep
        ensure_file(tmp_path, NAME, mnist.FILES[NAME], ["http://127.0.0.1:9/x"], "MNIST")
    assert not leftovers["part", "old"].exists() and leftovers["part", "fresh"].exists()
    assert leftovers["extract", "old"].exists()  # only a download's are a download's to remove
    archive = tmp_path / "a.tar"
    with tarfile.open(archive, "w") as tar:
        tar.addfile(tarfile.TarInfo("unpacked"), io.BytesIO(b""))
    extract_tar(archive, tmp_path, "CIFAR-10")
    assert not leftovers["extract", "old"].exists() and leftovers["extract", "fresh"].exists()
    assert (tmp_path / "unpacked").is_file() and leftovers["part", "fresh"].exists()
