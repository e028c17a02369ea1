"""The no-skip rule of conftest.py: only tests marked `cuda` may skip, and only without CUDA;
every other skip (a call, a skipif, an importorskip at collection) and every xfail fails the
suite."""

from __future__ import annotations

from pathlib import Path

import torch

pytest_plugins = ["pytester"]

CONFTEST = Path(__file__).resolve().parent / "conftest.py"


def test_only_cuda_tests_may_skip(pytester):
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makepyfile(
        test_tests="""
import pytest

def test_skip_call():
    pytest.skip("no data here")

@pytest.mark.skipif(True, reason="a condition")
def test_skipif():
    pass

@pytest.mark.cuda
def test_on_a_gpu():
    assert __import__("torch").cuda.is_available()

def test_plain():
    pass

@pytest.mark.xfail(reason="an expected failure")
def test_xfail():
    assert False

@pytest.mark.cuda
def test_on_a_gpu_without_its_data():
    pytest.skip("no data here")
""",
        test_missing_module="""
import pytest
pytest.importorskip("no_such_module_anywhere")

def test_never_collected():
    pass
""",
    )
    result = pytester.runpytest_subprocess("-ra", "-p", "no:cacheprovider",
                                          "--continue-on-collection-errors")
    gpu = torch.cuda.is_available()
    # a skip in a test fails it, as does an xfail, and a `cuda` test's skip for another
    # reason than CUDA (on a GPU, where its body runs); a skip at set-up (skipif) or
    # collection is an error
    result.assert_outcomes(passed=2 if gpu else 1, failed=3 if gpu else 2, errors=2,
                           skipped=0 if gpu else 2)
    result.stdout.fnmatch_lines(["*is marked xfail (an expected failure)*"])
    result.stdout.fnmatch_lines(["*only tests marked `cuda` may skip*"])
    if not gpu:
        result.stdout.fnmatch_lines(["SKIPPED*needs a CUDA device*"])
