"""Shared fixtures (the real data folder, the CLI called in-process) and the no-skip rule.

No silent skips: a test may skip only when it needs hardware this machine lacks. Such a test
carries `@pytest.mark.cuda` (or `pytestmark = pytest.mark.cuda`); it is skipped, and reported
in the summary, when no CUDA device is present. Any other skip (a `pytest.skip` call, a
`skipif`, an `importorskip`, at collection or in a test) is turned into a failure, so a
machine without the data or a dev extra cannot pass `make test` without running the tests.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from adamrepro.cli import main
from adamrepro.data.download import default_data_dir

REPO = Path(__file__).resolve().parent.parent
NO_CUDA = "needs a CUDA device (none on this machine)"
# What must be under the data folder for the suite (what `adamrepro fetch` lays out), by
# dataset. A machine sent some datasets alone names them in ADAMREPRO_TEST_DATASETS (a GPU
# job's bundle: scripts/gpu_session.sh, whose CUDA tests read MNIST and CIFAR-10; all three
# and the repo no longer fit in the 64 MiB it may carry); a test that reads another fails.
NEEDED_BY_DATASET = {
    "mnist": ("MNIST/raw/train-images-idx3-ubyte.gz", "MNIST/raw/train-labels-idx1-ubyte.gz",
              "MNIST/raw/t10k-images-idx3-ubyte.gz", "MNIST/raw/t10k-labels-idx1-ubyte.gz"),
    "imdb": ("aclImdb/train/pos", "aclImdb/train/neg", "aclImdb/test/pos", "aclImdb/test/neg"),
    "cifar10": tuple(f"cifar-10-batches-py/{name}" for name in (
        "data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5",
        "test_batch", "batches.meta")),
}


def needed() -> list[str]:
    """The files the data folder must hold: every dataset's, or ADAMREPRO_TEST_DATASETS's."""
    names = os.environ.get("ADAMREPRO_TEST_DATASETS", "").split() or list(NEEDED_BY_DATASET)
    unknown = [name for name in names if name not in NEEDED_BY_DATASET]
    if unknown:
        pytest.fail(f"ADAMREPRO_TEST_DATASETS names {', '.join(unknown)}; give some of "
                    f"{', '.join(NEEDED_BY_DATASET)}, or leave it unset for all",
                    pytrace=False)
    return [path for name in names for path in NEEDED_BY_DATASET[name]]


def pytest_configure(config):
    config.addinivalue_line("markers", f"cuda: {NO_CUDA}; the only tests allowed to skip")
    _share_the_cores()


def _share_the_cores() -> None:
    """Under pytest-xdist (`make test`), each test process gets its share of the cores, and
    so do the commands its tests start (OMP_NUM_THREADS, which torch reads at start): two
    processes of two threads each would fight over two cores."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers <= 1 or "OMP_NUM_THREADS" in os.environ:
        return
    threads = max(1, (os.cpu_count() or 1) // workers)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(pytest.mark.skip(reason=NO_CUDA))


def _refuse(report, what: str) -> None:
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
    report.outcome = "failed"
    report.longrepr = (f"{what} skipped ({reason}), but only tests marked `cuda` may skip, "
                       f"and only for want of CUDA (tests/conftest.py): fix what is missing "
                       f"instead")


def _skip_reason(report) -> str:
    return str(report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    report = (yield).get_result()
    if hasattr(report, "wasxfail"):  # an expected failure passes, or is one, for any reason
        report.outcome = "failed"
        report.longrepr = (f"{item.nodeid} is marked xfail ({report.wasxfail}), which passes "
                           f"a test whatever it does (tests/conftest.py): fix it or remove it")
    elif report.skipped and not (item.get_closest_marker("cuda") is not None
                                 and not torch.cuda.is_available()
                                 and _skip_reason(report).endswith(NO_CUDA)):
        # a `cuda` test skipping for another reason (data, say), or on a GPU, is refused too
        _refuse(report, item.nodeid)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    report = (yield).get_result()
    if report.skipped:  # a module-level skip or importorskip
        _refuse(report, collector.nodeid)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real data, where every command looks: $ADAMREPRO_DATA, else the cache's folder
    (`adamrepro fetch` puts it there; `make test` runs it first)."""
    path = default_data_dir()
    missing = [name for name in needed() if not (path / name).exists()]
    if missing:
        pytest.fail(f"real data missing in {path} ({', '.join(missing)}): run 'adamrepro fetch' "
                    f"(offline: python scripts/offline_data.py --from DIR), or set "
                    f"ADAMREPRO_DATA to a folder holding it", pytrace=False)
    return path


@pytest.fixture
def cli(capsys):
    """Run `adamrepro ARGS` in-process; return (exit code, stdout, stderr)."""

    def call(*args: str) -> tuple[int, str, str]:
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return call


@pytest.fixture(scope="session")
def ascii_locale() -> dict[str, str]:
    """The environment of a subprocess whose locale's encoding is ASCII, as where a cluster's
    LANG is en_US (Latin-1) or C with Python's coercion to UTF-8 turned off: no α or ε can
    be encoded by default there."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONCOERCECLOCALE": "0",
           "PYTHONUTF8": "0"}
    encoding = subprocess.run(
        [sys.executable, "-c", "import locale; print(locale.getpreferredencoding())"],
        env=env, capture_output=True, text=True).stdout.strip()
    assert encoding == "ANSI_X3.4-1968"  # else the tests given it would prove nothing
    return env


@pytest.fixture(scope="module")
def one_thread():
    """Tiny float64 problems: one torch thread is faster on two shared cores (L-BFGS ran 20x
    slower with two), and immune to a busy machine. Restored after the module."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def sigkill_once():
    """Start `command` (an `adamrepro run`), SIGKILL it as soon as a file matching `pattern`
    appears in `folder` (or, given `ready`, as soon as `ready()` is true), and assert it was
    still running then."""
    import os
    import signal
    import subprocess
    import time

    def run(command: list[str], folder: Path, pattern: str, ready=None) -> None:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        ready = ready or (lambda: bool(list(folder.glob(pattern))))
        while not ready() and time.monotonic() < deadline:
            time.sleep(0.005)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        assert process.returncode == -signal.SIGKILL, "the sweep finished before it was killed"

    return run
