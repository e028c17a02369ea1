"""Shared fixtures: the real data folder, and the CLI called in-process."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from adamrepro.cli import main

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """Real data prepared by ../shared/data/prepare.py (CI: $ADAMREPRO_DATA)."""
    path = Path(os.environ.get("ADAMREPRO_DATA") or REPO / "data")
    if not (path / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").exists():
        pytest.fail(f"real data missing in {path}: run "
                    f"'python ../shared/data/prepare.py --out data' or set ADAMREPRO_DATA")
    return path


@pytest.fixture
def cli(capsys):
    """Run `adamrepro ARGS` in-process; return (exit code, stdout, stderr)."""

    def call(*args: str) -> tuple[int, str, str]:
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return call
