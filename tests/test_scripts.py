"""scripts/reproduce_paper.sh: with BUDGET_MINUTES it stops cleanly (exit 3) after advancing
the first experiment, and run again it finishes what is left, skipping what is done."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).parent.parent


def reproduce(out: Path, data_dir: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / "reproduce_paper.sh")], capture_output=True, text=True,
        env={**os.environ, "OUT": str(out), "SCALE": "smoke", "DEVICE": "cpu",
             "ADAMREPRO": f"{sys.executable} -m adamrepro", "ADAMREPRO_DATA": str(data_dir),
             "RUN_FLAGS": "--quiet",
             "CONFIGS": "configs/logreg_mnist.yaml configs/logreg_imdb.yaml", **env})


def test_a_spent_budget_stops_cleanly_and_the_next_call_finishes(tmp_path, data_dir):
    first = reproduce(tmp_path, data_dir, BUDGET_MINUTES="0.0001")
    assert first.returncode == 3, first.stderr
    # a command always trains something: logreg_mnist's first group, up to a checkpoint or
    # to its end (a smoke group may finish before its first checkpoint is due)
    assert list((tmp_path / "logreg_mnist" / "runs").glob("*.*")), first.stdout
    assert "time budget spent" in first.stdout
    assert not (tmp_path / "logreg_imdb").exists()
    second = reproduce(tmp_path, data_dir)
    assert second.returncode == 0, second.stderr
    assert (tmp_path / "report.md").is_file()
    for name in ("logreg_mnist", "logreg_imdb"):
        best = pd.read_csv(tmp_path / name / "best.csv")
        assert len(best) >= 4 and best["final_train_loss"].notna().all()
    third = reproduce(tmp_path, data_dir)  # nothing left: every run is skipped
    assert third.returncode == 0 and "trained 0 runs" in third.stdout
