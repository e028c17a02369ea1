"""Freed host memory kept for the next step (runner/host_memory.py), each case in a process of
its own, since glibc's settings are per process: a large block freed and allocated again maps
no new pages, and a CNN sweep whose activations are above glibc's own mmap threshold trains
bitwise the curves it trains with glibc's defaults."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

from adamrepro.runner.host_memory import OPT_OUT

REPO = Path(__file__).resolve().parent.parent

# Allocates, writes and frees a 64 MiB tensor 24 times, as a training step its activations;
# prints whether memory is kept (`kept`, set before) and the minor page faults a round over
# the last 8. Kept, the heap settles within a few rounds (measured: 7) into reusing the same
# blocks: a block freed is a little smaller than the next 64-byte-aligned request, which
# takes fresh heap until two freed neighbours merge.
MEASURE = """
for _ in range(16):
    torch.empty(16 << 20).fill_(1.0)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(8):
    torch.empty(16 << 20).fill_(1.0)
print(kept, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) // 8)
"""
ROUNDS = """
import resource, torch
from adamrepro.runner.host_memory import keep_freed_memory
kept = keep_freed_memory(torch.device("cpu"))
""" + MEASURE
# The same rounds after the local executor is prepared as `adamrepro run` prepares it (data
# loaded from argv[1]), without a call of our own: the setting is the executor's to make.
PREPARED = """
import resource, sys, torch
from pathlib import Path
from adamrepro.config import parse_experiment
from adamrepro.runner.executors import LocalExecutor
exp = parse_experiment({"name": "kept", "title": "kept", "model": {"name": "logreg"},
                        "dataset": {"name": "mnist", "train_size": 512, "test_size": 256},
                        "training": {"batch_size": 128, "epochs": 1},
                        "methods": {"adam": {"optimizer": "adam", "grid": {"lr": [1e-3]}}}},
                       "test")
LocalExecutor(Path(sys.argv[1]), torch.device("cpu")).prepare(exp)
kept = True
""" + MEASURE


def environment(keep: bool) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop(OPT_OUT, None)
    return env if keep else {**env, OPT_OUT: "0"}


def test_a_freed_block_is_kept_and_maps_no_new_pages():
    faults = {}
    for keep in (True, False):
        done = subprocess.run([sys.executable, "-c", ROUNDS], env=environment(keep),
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        kept, faults[keep] = done.stdout.split()
        assert kept == str(keep)
    # 64 MiB is 16,384 pages of 4 KiB: glibc's defaults map (and fault in) every one of them
    # each round; kept, the block is the same heap memory every round
    assert int(faults[False]) > 10_000, faults
    assert int(faults[True]) < 100, faults


def test_the_local_executor_keeps_freed_memory_for_the_groups_it_trains(data_dir):
    """The setting measured above is of no use unless the runner makes it: a sweep's
    executor, as it loads the data, before any group (or forked worker) allocates."""
    done = subprocess.run([sys.executable, "-c", PREPARED, str(data_dir)],
                          env=environment(True), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.split()[1]) < 100, done.stdout


def test_kept_memory_trains_bitwise_the_same_curves(tmp_path, data_dir):
    """8 runs of a CNN a group (4 step sizes, 2 seeds), whose first activations (128 images,
    8 x 16 channels, 32x32) are 64 MiB: above glibc's largest mmap threshold (32 MiB)."""
    config = yaml.safe_load((REPO / "configs" / "cnn_cifar10.yaml").read_text())
    config["dataset"].update(train_size=256, test_size=128)
    config["model"].update(conv_channels=[16, 16, 32], hidden=32)
    config["training"].update(epochs=2, log_every=None)
    config["methods"] = {"adam": {"optimizer": "adam",
                                  "grid": {"lr": [1e-4, 3e-4, 1e-3, 3e-3]}}}
    config.update(seeds=2, scales={})
    config["selection"] = {"extend_edges": 0}
    path = tmp_path / "cnn_memory.yaml"
    path.write_text(yaml.safe_dump(config))
    curves = {}
    for keep in (True, False):
        out = tmp_path / f"keep-{keep}"
        done = subprocess.run(
            [sys.executable, "-m", "adamrepro", "run", str(path), "--out", str(out),
             "--data-dir", str(data_dir), "--device", "cpu", "--workers", "1",
             "--unverified-data", "--quiet"],
            env=environment(keep), capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
        curves[keep] = pd.read_csv(out / "cnn_cifar10" / "curves.csv")
    columns = ["run_id", "epoch", "train_loss", "train_loss_full", "test_loss", "test_acc"]
    kept, default = (curves[k][columns].sort_values(["run_id", "epoch"]).reset_index(drop=True)
                     for k in (True, False))
    assert len(kept) == 8 * 3  # 8 runs, the evaluation before training and 2 passes
    assert kept["train_loss_full"].iloc[-1] != kept["train_loss_full"].iloc[-2]  # they train
    pd.testing.assert_frame_equal(kept, default, check_exact=True)
