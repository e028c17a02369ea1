"""Figures do not churn: drawing the same results twice gives byte-identical PNG and PDF files,
with no date or version in their metadata."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from adamrepro.cli import main

RESULTS = Path(__file__).resolve().parent.parent / "results"


def test_plot_twice_gives_identical_files(tmp_path, monkeypatch):
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)  # not needed for reproducible files
    for name in ("logreg_mnist", "mlp_dropout"):  # committed paper-scale tables
        shutil.copytree(RESULTS / name, tmp_path / name,
                        ignore=shutil.ignore_patterns("*.png", "*.pdf", "runs"))
    assert main(["plot", "--out", str(tmp_path)]) == 0
    first = {p.name + p.parent.name: p.read_bytes() for p in tmp_path.glob("*/*.p[nd][gf]")}
    assert len(first) == 8  # curves and sensitivity, PNG and PDF, of each experiment
    time.sleep(1.1)  # PDF dates have a resolution of one second
    assert main(["plot", "--out", str(tmp_path)]) == 0
    second = {p.name + p.parent.name: p.read_bytes() for p in tmp_path.glob("*/*.p[nd][gf]")}
    assert second.keys() == first.keys()
    for key, data in second.items():
        assert data == first[key], f"{key} changed between two identical plots"
        assert b"CreationDate" not in data and b"ModDate" not in data  # PDF info dictionary
        assert b"tIME" not in data and b"Software" not in data  # PNG chunks
        assert b"Matplotlib" not in data  # no version: a matplotlib upgrade alone adds no churn
