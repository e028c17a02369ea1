"""`--executor ray` against a local Ray instance started here: the same results as local."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import ray  # noqa: F401  (a dev extra: `make install` installs it)
import yaml

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "logreg_mnist.yaml"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory):
    """`ray start --head` on loopback only, stopped after the module. Token authentication
    is off for this private, loopback-only head (Ray's own test setting); a real cluster
    keeps it on and its drivers carry the cluster's token."""
    os.environ["RAY_AUTH_MODE"] = "disabled"
    ray_bin = Path(sys.executable).parent / "ray"
    command = str(ray_bin) if ray_bin.exists() else shutil.which("ray")
    port = _free_port()
    temp = tmp_path_factory.mktemp("ray")
    subprocess.run([command, "start", "--head", "--node-ip-address=127.0.0.1",
                    f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
                    f"--temp-dir={temp}", "--disable-usage-stats"],
                   check=True, capture_output=True, timeout=180)
    yield f"127.0.0.1:{port}"
    subprocess.run([command, "stop", "--force"], capture_output=True, timeout=120)
    del os.environ["RAY_AUTH_MODE"]


def _table(folder: Path) -> pd.DataFrame:
    curves = pd.read_csv(folder / "logreg_mnist" / "curves.csv")
    curves = curves.drop(columns=["seconds", "train_seconds"])
    return curves.sort_values(["run_id", "epoch"]).reset_index(drop=True)


def test_ray_executor_gives_the_local_results(ray_head, tmp_path, data_dir):
    base = [sys.executable, "-m", "adamrepro", "run", str(CONFIG), "--scale", "smoke",
            "--quiet", "--data-dir", str(data_dir)]
    subprocess.run(base + ["--out", str(tmp_path / "local")], check=True, capture_output=True)
    done = subprocess.run(base + ["--out", str(tmp_path / "ray"), "--executor", "ray",
                                  "--address", ray_head],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    runs = sum(len(m["grid"]["lr"]) for m in yaml.safe_load(CONFIG.read_text())["methods"].values())
    assert done.stdout.startswith(f"trained {runs} runs")
    pd.testing.assert_frame_equal(_table(tmp_path / "ray"), _table(tmp_path / "local"))
    # Resume works the same through Ray: nothing left to do.
    again = subprocess.run(base + ["--out", str(tmp_path / "ray"), "--executor", "ray",
                                   "--address", ray_head], capture_output=True, text=True)
    assert again.returncode == 0 and again.stdout.startswith("trained 0 runs")


def test_unreachable_cluster_is_one_line(cli, tmp_path, data_dir):
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, _, stderr = cli("run", CONFIG, "--scale", "smoke", "--out", tmp_path / "out",
                          "--data-dir", data_dir, "--executor", "ray",
                          "--address", f"127.0.0.1:{port}")
    assert code == 2 and stderr.count("\n") == 1 and "no Ray cluster answers" in stderr
    assert not (tmp_path / "out").exists()


def test_address_needs_the_ray_executor(cli, tmp_path, data_dir):
    code, _, stderr = cli("run", CONFIG, "--scale", "smoke", "--out", tmp_path,
                          "--data-dir", data_dir, "--address", "127.0.0.1:6379")
    assert code == 2 and "--address goes with --executor ray" in stderr
