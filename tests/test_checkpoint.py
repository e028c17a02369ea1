"""Checkpoints inside a group, the time budget, and groups split when they do not fit.

On the CPU, on real MNIST: a group stopped at its checkpoint after pass k (by a spent time
budget, the real mechanism) and started again traces exactly the curves of an uninterrupted
one, dropout masks included; a budget that lasts writes no checkpoint, and one that would
run out within the next pass stops the group before it; `run --time-budget 0` advances a
sweep one pass per command and ends with the tables of an uninterrupted sweep; a group too
large for the (simulated) device memory is halved and its runs trace the curves they trace
unsplit.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from dry_run import dry_run_total

from adamrepro.config import load_experiment, parse_experiment
from adamrepro.results.tables import read_table
from adamrepro.runner.checkpoint import (
    Budget,
    BudgetSpent,
    CheckpointPolicy,
    GroupCheckpoint,
    save_seconds,
    unreadable_part,
)
from adamrepro.runner.executors import load_data, out_of_memory
from adamrepro.runner.group import FAKE_MEMORY_LIMIT, train_group
from adamrepro.runner.plan import plan

REPO = Path(__file__).resolve().parent.parent
TIMING = ["seconds", "train_seconds"]


def experiment(model: dict, methods: dict, **training):
    return parse_experiment({
        "name": "checkpoint", "title": "resume == uninterrupted",
        "dataset": {"name": "mnist", "train_size": 512, "test_size": 256},
        "model": model,
        "training": {"batch_size": 128, "epochs": 4, "dtype": "float64", "log_every": 2,
                     **training},
        "seeds": 2, "seed": 3, "methods": methods,
    }, "test")


CASES = {
    # input dropout: masks from the group's generator, whose state the checkpoint restores;
    # Adam with temporal averaging (evaluated at the average) and its per-pass statistic
    "logreg-dropout": ({"name": "logreg", "input_dropout": 0.5},
                       {"adam": {"optimizer": "adam",
                                 "hparams": {"averaging": 0.99, "track_step_ratio": True},
                                 "grid": {"lr": [1e-3, 1e-2]}},
                        "sgd": {"optimizer": "sgd_nesterov", "hparams": {"momentum": 0.9},
                                "grid": {"lr": [0.1]}}}),
    "mlp-dropout": ({"name": "mlp", "hidden": [32, 32], "input_dropout": 0.2,
                     "hidden_dropout": 0.5},
                    {"adagrad": {"optimizer": "adagrad", "grid": {"lr": [1e-2]}}}),
    # a closure optimizer with Python numbers in its state, and SFO's subfunction passes
    "lbfgs-sfo": ({"name": "logreg"},
                  {"lbfgs": {"optimizer": "torch.optim.LBFGS", "hparams": {"max_iter": 2},
                             "grid": {"lr": [0.5]}},
                   "sfo": {"optimizer": "sfo", "grid": {"max_history": [5]}}}),
    # the VAE draws noise when it is evaluated too (its ELBO samples z): the evaluation
    # generator's state is restored as well, else the resumed passes' test costs differ
    "vae": ({"name": "vae", "hidden": 16, "latent": 4},
            {"adam": {"optimizer": "adam", "grid": {"lr": [1e-3]}}}),
    # a user's optimizer that keeps its step count in its param group, not in `state`
    "counter-in-group": ({"name": "logreg"},
                         {"counted": {"optimizer": "my_optimizers:CountedSGD",
                                      "grid": {"lr": [0.5]}}}),
    # one that keeps it in `state` under a key of its own, no parameter's: it was a
    # traceback at the first pass (the state's size read every value as a parameter's dict)
    "counter-under-its-own-key": ({"name": "logreg"},
                                  {"counted": {"optimizer": "my_optimizers:KeyedCounted",
                                               "grid": {"lr": [0.5]}}}),
}


def rows(curve) -> pd.DataFrame:
    return pd.DataFrame(curve.rows).drop(columns=TIMING)


@pytest.mark.parametrize("case,device", [
    *((case, "cpu") for case in CASES),
    # on a GPU: the dropout generator registered with a CUDA graph (not run without one)
    pytest.param("logreg-dropout", "cuda", marks=pytest.mark.cuda),
])
def test_a_group_resumed_from_its_checkpoint_equals_an_uninterrupted_one(
        case, device, tmp_path, data_dir, one_thread, monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "tests" / "outside"))  # my_optimizers
    model, methods = CASES[case]
    exp = experiment(model, methods)
    data = load_data(exp, data_dir, torch.device(device))
    for group in plan(exp):
        whole = train_group(exp, group, data)
        path = tmp_path / f"{group.group_id}.ckpt.pt"
        spent = GroupCheckpoint(path, every=None, budget=Budget(deadline=0.0))
        for stopped_after in (1, 2):  # a spent budget: one pass a call, then a checkpoint
            with pytest.raises(BudgetSpent) as stop:
                train_group(exp, group, data, checkpoint=spent)
            assert stop.value.checkpointed == {group.group_id: (group.size, stopped_after)}
            assert path.exists()
        seen = []
        resumed = train_group(exp, group, data, on_pass=seen.append,
                              checkpoint=GroupCheckpoint(path, every=2))
        assert seen == [2, 3, 4], "the group did not go on from its checkpoint"
        # a CPU replays the same kernels: the same bits; a GPU captures a new CUDA graph on
        # resume, whose cuBLAS kernels may be chosen otherwise (test_cuda_graphs.py): float64
        # rounding, far below what another mask or minibatch moves (>1e-4)
        exact = device == "cpu"
        for run, (a, b) in enumerate(zip(resumed, whole, strict=True)):
            what = f"{case} {group.method} run {run}"
            pd.testing.assert_frame_equal(rows(a), rows(b), check_exact=exact, rtol=1e-10,
                                          atol=1e-12, obj=what)
            assert a.diverged == b.diverged, what
            assert a.steps == b.steps if exact else (
                pd.DataFrame(a.steps).to_numpy() == pytest.approx(
                    pd.DataFrame(b.steps).to_numpy(), rel=1e-10, abs=1e-12)), what
            # `seconds` and `train_seconds` go on from the checkpoint's
            assert [r["train_seconds"] for r in a.rows] == sorted(
                r["train_seconds"] for r in a.rows), what
            assert [r["seconds"] for r in a.rows] == sorted(r["seconds"] for r in a.rows), what
            assert all(r["train_seconds"] <= r["seconds"] for r in a.rows), what


def test_a_signals_stop_saves_after_the_pass_unless_the_save_would_outlast_its_grace(
        tmp_path, data_dir, one_thread, monkeypatch):
    """A stop a SIGTERM asked for (stopping.py): the group stops after its pass in progress
    and saves it; a save expected to outlast what the signal's sender grants before its kill
    (SFO's 20 GB) is skipped, and the group stops at once, said to be at no checkpoint."""
    from adamrepro.runner import group as group_module
    from adamrepro.stopping import STOP

    exp = experiment(*CASES["mlp-dropout"])
    data = load_data(exp, data_dir, torch.device("cpu"))
    group = plan(exp)[0]
    STOP.request()
    try:
        saved = GroupCheckpoint(tmp_path / "saved.ckpt.pt", None)
        with pytest.raises(BudgetSpent) as stop:
            train_group(exp, group, data, checkpoint=saved)
        assert stop.value.checkpointed == {group.group_id: (group.size, 1)}
        assert saved.path.exists()
        monkeypatch.setattr(group_module, "SIGNAL_SAVE_SECONDS", 0.0)
        skipped = GroupCheckpoint(tmp_path / "skipped.ckpt.pt", None)
        with pytest.raises(BudgetSpent) as stop:
            train_group(exp, group, data, checkpoint=skipped)
        assert stop.value.checkpointed == {group.group_id: (group.size, 0)}
        assert not skipped.path.exists()
    finally:
        STOP.reset()


def test_a_budget_that_lasts_writes_no_checkpoint_and_a_period_does(tmp_path, data_dir,
                                                                     one_thread):
    """A checkpoint is the group's whole state written and synced (20 GB for SFO at paper
    scale): under a budget alone a group saves only when the budget stops it; periodic saves,
    which survive a kill, are `training.checkpoint_every`'s."""
    exp = experiment(*CASES["mlp-dropout"])
    data = load_data(exp, data_dir, torch.device("cpu"))
    group = plan(exp)[0]
    for every, expected in ((None, [False] * 4), (1, [False, True, True, True])):
        checkpoint = CheckpointPolicy(tmp_path / str(every), every,
                                      Budget.minutes(60)).for_group(group.group_id)
        existed: list[bool] = []  # after each pass, before that pass's checkpoint is due
        train_group(exp, group, data, checkpoint=checkpoint,
                    on_pass=lambda epoch, path=checkpoint.path, seen=existed:
                    seen.append(path.exists()))
        assert existed == expected, every
    assert CheckpointPolicy(tmp_path, None).for_group(group.group_id) is None


def test_a_budget_stops_a_group_before_a_pass_that_would_overrun_it(tmp_path):
    budget = Budget(deadline=time.time() + 60)
    checkpoint = GroupCheckpoint(tmp_path / "g.ckpt.pt", None, budget)
    assert not checkpoint.stop(1, 4, last_pass_seconds=1.0)
    assert checkpoint.stop(1, 4, last_pass_seconds=120.0)
    assert not checkpoint.stop(4, 4, last_pass_seconds=120.0)  # the last: its records follow
    assert not GroupCheckpoint(tmp_path / "g.ckpt.pt", 1).stop(1, 4, last_pass_seconds=1e9)
    # a pass that fits, and the save after it that would not (SFO's 20 GB basis): stop,
    # unless the passes left end before the deadline (3 s to finish against a long save)
    sfo_save = save_seconds(20e9, None)
    assert sfo_save > 60
    assert checkpoint.stop(1, 100, last_pass_seconds=1.0, save_seconds=sfo_save)
    assert not checkpoint.stop(1, 4, last_pass_seconds=1.0, save_seconds=sfo_save)
    assert save_seconds(20e9, measured=2.5) == 2.5  # a timed save is the better estimate


def test_split_to_fit_stops_a_group_whose_passes_left_would_overrun_the_budget(tmp_path):
    fits = GroupCheckpoint(tmp_path / "g.ckpt.pt", None, Budget(time.time() + 60, True))
    assert fits.too_slow(2, 10, pass_seconds=1.0, attempt_passes=2) is False
    assert fits.too_slow(2, 10, pass_seconds=10.0, attempt_passes=2)  # 80 s > 60 s
    assert not fits.too_slow(1, 10, pass_seconds=10.0, attempt_passes=1)  # the warm-up
    assert not fits.too_slow(10, 10, pass_seconds=10.0, attempt_passes=10)  # done
    assert fits.too_slow(7, 10, pass_seconds=30.0, attempt_passes=2)  # 90 s left
    unasked = GroupCheckpoint(tmp_path / "g.ckpt.pt", None, Budget(time.time() + 60))
    assert not unasked.too_slow(2, 10, pass_seconds=10.0, attempt_passes=2)
    # a group resumed from its checkpoint: that checkpoint outlived a command, and halves
    # would start over; a budget stop saves it instead
    assert not fits.too_slow(7, 10, pass_seconds=30.0, attempt_passes=2, resumed=True)
    # a half of 10 passes at about half of 10 s a pass, 50 s, could finish in 60 s; at 20 s,
    # 100 s, it could not, and halving would only throw the passes trained away
    assert fits.half_could_finish(10, pass_seconds=10.0)
    assert not fits.half_could_finish(10, pass_seconds=20.0)


def test_a_checkpoint_of_another_setting_is_not_trusted(tmp_path, data_dir, one_thread):
    exp = experiment(*CASES["mlp-dropout"])
    data = load_data(exp, data_dir, torch.device("cpu"))
    group = plan(exp)[0]
    path = tmp_path / "group.ckpt.pt"
    with pytest.raises(BudgetSpent):
        train_group(exp, group, data, checkpoint=GroupCheckpoint(path, 1, Budget(0.0)))
    longer = experiment(*CASES["mlp-dropout"], epochs=5)  # another group id, too
    seen = []
    train_group(longer, plan(longer)[0], data, on_pass=seen.append,
                checkpoint=GroupCheckpoint(path, 10))
    assert seen[0] == 1  # started over


def _flip_signs(path: Path) -> str:
    """Flip the sign bits of 100 float32s inside the checkpoint's first tensor, as bit rot
    would, leaving the zip's structure whole; the name of the entry damaged."""
    import struct
    import zipfile

    with zipfile.ZipFile(path) as archive:
        entry = next(info for info in archive.infolist() if "/data/" in info.filename
                     and info.file_size >= 1400)
    data = bytearray(path.read_bytes())
    name, extra = struct.unpack("<HH", data[entry.header_offset + 26:entry.header_offset + 30])
    start = entry.header_offset + 30 + name + extra
    for offset in range(0, 400, 4):
        data[start + offset + 3] ^= 0x80
    path.write_bytes(bytes(data))
    return entry.filename


@pytest.mark.parametrize("damage", ["cut", "flipped"])
def test_a_damaged_checkpoint_is_trained_again_with_a_note(damage, tmp_path, cli, data_dir):
    """Cut short (a disk that filled), or with bytes of a tensor changed (bit rot, which
    torch.load reads without a word and which resumed to other curves): the group starts
    over, and says so rather than spend the passes it held again without a word; the curves
    are an uninterrupted run's."""
    config = _config(tmp_path)
    args = ("run", config, "--scale", "smoke", "--quiet", "--data-dir", data_dir)
    assert cli(*args, "--out", tmp_path / "whole", "--workers", "1")[0] == 0
    out = tmp_path / "cut"
    assert cli(*args, "--out", out, "--time-budget", "0")[0] == 3
    [saved] = (out / "logreg_mnist" / "runs").glob("*.ckpt.pt")
    if damage == "cut":
        saved.write_bytes(saved.read_bytes()[: saved.stat().st_size // 2])
        why = "BadZipFile"
    else:
        why = f"ValueError: its entry {_flip_signs(saved)} is damaged (CRC-32 mismatch)"
    # no --time-budget now: a checkpoint left by one is resumed all the same (--workers 1:
    # the note of a forked worker goes to the terminal, not to this test's capture)
    code, _, err = cli(*args, "--out", out, "--workers", "1")
    assert code == 0 and err == (f"adamrepro: note: {saved} could not be read ({why}): "
                                 f"its group trains from its first pass again\n"), err
    pd.testing.assert_frame_equal(_comparable(out / "logreg_mnist"),
                                  _comparable(tmp_path / "whole" / "logreg_mnist"))


def test_a_command_without_a_budget_resumes_a_checkpoint_one_with_a_budget_left(
        tmp_path, cli, data_dir):
    """It saves none of its own, but the passes a budgeted command saved are not trained
    again (they were, from pass 0, without a word)."""
    config = _config(tmp_path)
    args = ("run", config, "--scale", "smoke", "--quiet", "--data-dir", data_dir)
    out = tmp_path / "out"
    assert cli(*args, "--out", out, "--time-budget", "0")[0] == 3
    [saved] = (out / "logreg_mnist" / "runs").glob("*.ckpt.pt")
    group_id = saved.name.removesuffix(".ckpt.pt")
    from adamrepro.runner.checkpoint import CheckpointPolicy

    policy = CheckpointPolicy(saved.parent, None)
    assert policy.for_group(group_id).path == saved
    assert policy.for_group("another-group") is None
    assert cli(*args, "--out", out, "--workers", "1")[0] == 0
    assert not saved.exists()


def test_training_max_group_size_caps_every_method_and_keeps_run_ids():
    model, methods = CASES["logreg-dropout"]
    exp = experiment(model, methods)
    capped = experiment(model, methods, max_group_size=1, checkpoint_every=3)
    assert {g.size for g in plan(exp)} == {2, 1}  # one seed a group
    assert {g.size for g in plan(capped)} == {1}
    assert ({r.run_id for g in plan(exp) for r in g.runs}
            == {r.run_id for g in plan(capped) for r in g.runs})


CONFIG = REPO / "configs" / "logreg_mnist.yaml"


def _config(tmp_path: Path, **training) -> Path:
    config = yaml.safe_load(CONFIG.read_text())
    config["scales"]["smoke"] = {"epochs": 3, "train_size": 1024, "test_size": 256,
                                 "extend_edges": 0}
    config["training"].update(training)
    path = tmp_path / "logreg_mnist.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _saved_seconds(runs: Path) -> set[float]:
    """The training seconds the checkpoints in `runs` hold for the passes they saved: a
    rerun that went on from them records these very numbers for those passes, one that
    trained the group again from its first pass measures others."""
    seconds = set()
    for path in runs.glob("*.ckpt.pt"):
        state = torch.load(path, map_location="cpu", weights_only=True)
        seconds |= {value for value in state["train_seconds"] if value > 0}
    assert seconds, "no checkpoint with a timed pass"
    return seconds


def _went_on_from(saved: set[float], folder: Path) -> None:
    recorded = set(read_table(folder / "curves.csv")["train_seconds"])
    assert saved <= recorded, "the rerun trained the checkpointed passes again"


def _comparable(folder: Path, drop=()) -> pd.DataFrame:
    curves = pd.read_csv(folder / "curves.csv").drop(columns=[*TIMING, "commit", "date", *drop])
    return curves.sort_values(["run_id", "epoch"]).reset_index(drop=True)


def test_no_group_starts_once_one_stopped_for_the_budget(tmp_path):
    """A group stops at its checkpoint when its next pass and a save would end past the
    deadline, which has not passed yet: a group started then would build its model and
    train a pass past it (the command overran a 21 s budget by 4 s at quick scale). The
    scheduler's inputs are the outcomes a group's attempt hands back (plain data)."""
    from adamrepro.runner.checkpoint import Budget, CheckpointPolicy
    from adamrepro.runner.executors import Outcome, schedule

    groups = plan(load_experiment(_config(tmp_path)).at_scale("smoke"))
    assert len(groups) >= 3
    budget = Budget.minutes(10.0)  # not spent while the test runs
    started, done = [], []

    def start(group, must_start: bool) -> None:
        started.append(group.group_id)
        # the first stops after pass 1 for the budget, as `GroupCheckpoint.stop` decides
        done.append((group, Outcome(stopped=1) if len(started) == 1 else Outcome(curves=[])))

    stopped = schedule(groups, 2, torch.device("cpu"),
                       CheckpointPolicy(tmp_path, None, budget), start, done.pop, capacity=1)
    with pytest.raises(BudgetSpent) as spent:
        list(stopped)
    assert started == [groups[0].group_id] and not budget.spent()
    assert spent.value.checkpointed == {groups[0].group_id: (groups[0].size, 1)}


def test_groups_taken_up_after_the_budget_are_not_said_checkpointed(tmp_path):
    """Ray submits every group at once; those a worker takes up once the budget is spent
    train nothing (`Outcome(stopped=0)`) and leave no checkpoint: only the group that
    trained a pass is said checkpointed, or the next command's count names files that are
    not there."""
    from adamrepro.runner.checkpoint import Budget, CheckpointPolicy
    from adamrepro.runner.executors import Outcome, schedule

    groups = plan(load_experiment(_config(tmp_path)).at_scale("smoke"))
    outcomes = [Outcome(stopped=1), *(Outcome(stopped=0) for _ in groups[1:])]
    done = []

    def start(group, must_start: bool) -> None:
        done.insert(0, (group, outcomes[len(done)]))

    stopped = schedule(groups, 3, torch.device("cpu"),
                       CheckpointPolicy(tmp_path, None, Budget.minutes(10.0)), start, done.pop,
                       capacity=None)
    with pytest.raises(BudgetSpent) as spent:
        list(stopped)
    assert spent.value.checkpointed == {groups[0].group_id: (groups[0].size, 1)}


def test_time_budget_carries_a_sweep_across_commands(tmp_path, cli, data_dir):
    config = _config(tmp_path)
    args = ("run", config, "--scale", "smoke", "--quiet", "--data-dir", data_dir)
    assert cli(*args, "--out", tmp_path / "whole")[0] == 0
    out = tmp_path / "budget"
    runs = out / "logreg_mnist" / "runs"
    commands = 0
    while True:  # a spent budget: one pass (one checkpoint) per command
        code, text, _ = cli(*args, "--out", out, "--time-budget", "0")
        commands += 1
        if code == 0:
            break
        assert code == 3 and "time budget spent" in text and "remain" in text, text
        assert len(list(runs.glob("*.ckpt.pt"))) <= 1
        assert not (out / "logreg_mnist" / "curves.csv").exists()
        assert commands < 20
        if commands == 1:  # the figures of a sweep not finished: the fix is to finish it
            code, _, err = cli("plot", "logreg_mnist", "--out", out)
            assert code == 2 and err == (
                f"adamrepro: error: {out / 'logreg_mnist'} holds no tables yet: its sweep "
                f"has not finished (a --time-budget or an interruption stopped it); run the "
                f"same 'adamrepro run' command again to finish it\n"), err
            code, _, err = cli("report", "--out", out)
            assert code == 2 and err == (
                f"adamrepro: error: no finished results under {out}: the sweeps of "
                f"logreg_mnist have written no tables yet; run the same 'adamrepro run' "
                f"command again to finish them\n"), err
            # beside a finished experiment: named, not "no results for" it
            both = tmp_path / "both"
            shutil.copytree(tmp_path / "whole" / "logreg_mnist", both / "logreg_mnist")
            shutil.copytree(out / "logreg_mnist", both / "mlp")
            code, _, err = cli("report", "--out", both)
            assert code == 0, err
            assert ("Not in this report, their sweeps unfinished (no tables yet; run the same "
                    "`adamrepro run` command again to finish them): mlp.") in (
                both / "report.md").read_text()
    # G groups of 3 passes: passes 1 and 2 of each stop at a checkpoint, pass 3 finishes it
    # (and the command stops before the next group)
    from adamrepro.config import load_experiment
    from adamrepro.runner.plan import plan

    assert commands == 3 * len(plan(load_experiment(config).at_scale("smoke")))
    assert not list(runs.glob("*.ckpt.pt"))  # removed once the records are written
    pd.testing.assert_frame_equal(_comparable(out / "logreg_mnist"),
                                  _comparable(tmp_path / "whole" / "logreg_mnist"))


def test_a_group_that_does_not_fit_is_halved(tmp_path, cli, data_dir, monkeypatch):
    """In float64 without dropout a run's curve does not depend on its group: the halves
    trace the curves the whole group traces (to rounding: another matmul width); only the
    group's own columns (its size, its optimizer state's bytes) differ."""
    config = _config(tmp_path, dtype="float64")
    args = ("run", config, "--scale", "smoke", "--quiet", "--data-dir", data_dir)
    assert cli(*args, "--out", tmp_path / "whole")[0] == 0
    b = _comparable(tmp_path / "whole" / "logreg_mnist", drop=["group_size", "state_bytes"])
    # 1: groups of two that do not fit are halved too; only a single run is a user error
    for limit in (2, 1):
        monkeypatch.setenv(FAKE_MEMORY_LIMIT, str(limit))
        out = tmp_path / f"split-{limit}"
        code, _, err = cli(*args, "--out", out)
        assert code == 0, err
        assert "does not fit" in err
        split = pd.read_csv(out / "logreg_mnist" / "curves.csv")
        assert split["group_size"].max() == limit
        a = _comparable(out / "logreg_mnist", drop=["group_size", "state_bytes"])
        pd.testing.assert_frame_equal(a, b, rtol=1e-9, atol=1e-12)


def test_a_checkpointed_group_that_no_longer_fits_leaves_no_checkpoint(tmp_path, cli,
                                                                       data_dir, monkeypatch):
    """A group checkpointed in one command (a larger GPU, say) that does not fit in the next
    is trained as two other groups from their first pass: its checkpoint is dead, and must
    not stay behind to be counted ("an unfinished sweep (N checkpoints)") or read."""
    args = ("run", _config(tmp_path), "--scale", "smoke", "--quiet", "--data-dir", data_dir,
            "--out", tmp_path / "out", "--time-budget", "0")
    runs = tmp_path / "out" / "logreg_mnist" / "runs"
    assert cli(*args)[0] == 3
    whole = set(runs.glob("*.ckpt.pt"))
    assert len(whole) == 1
    monkeypatch.setenv(FAKE_MEMORY_LIMIT, "2")
    code, _, err = cli(*args)
    assert code == 3 and "does not fit" in err, err
    halves = set(runs.glob("*.ckpt.pt"))
    assert halves and halves.isdisjoint(whole), (whole, halves)


def test_a_checkpointed_run_that_does_not_fit_keeps_its_checkpoint(tmp_path, cli, data_dir,
                                                                   monkeypatch):
    """A single run checkpointed by one command that does not fit in the next (another
    process held the memory a while): its checkpoint was deleted with the error, and its
    passes with it. It is kept, and the next command, with the memory back, goes on from it."""
    config = _config(tmp_path)
    text = yaml.safe_load(config.read_text())
    text["methods"] = {"adam": {**text["methods"]["adam"], "grid": {"lr": [1e-3]}}}
    config.write_text(yaml.safe_dump(text))
    args = ("run", config, "--scale", "smoke", "--quiet", "--data-dir", data_dir, "--seeds",
            "1", "--out", tmp_path / "out")
    runs = tmp_path / "out" / "logreg_mnist" / "runs"
    code, text_out, err = cli(*args, "--time-budget", "0")
    assert code == 3 and "checkpointed after pass 1 of 3" in text_out, text_out + err
    [checkpoint] = runs.glob("*.ckpt.pt")
    monkeypatch.setenv(FAKE_MEMORY_LIMIT, "0")
    code, _, err = cli(*args)
    assert code == 2 and err.startswith("adamrepro: error: one run of adam does not fit in cpu "
                                        "memory (its checkpoint is kept); "), err
    assert checkpoint.exists()
    saved = _saved_seconds(runs)
    monkeypatch.delenv(FAKE_MEMORY_LIMIT)
    code, _, err = cli(*args)
    assert code == 0, err
    _went_on_from(saved, tmp_path / "out" / "logreg_mnist")


def test_save_params_turned_on_after_the_runs_finished_trains_them_again(tmp_path, cli,
                                                                         data_dir):
    """`training.save_params` is in no run id (it changes no curve), so runs finished
    without it were done for good: turned on afterwards, no parameters ever came (and the
    VAE's picture asked for the option already set). A run is done once its parameters are
    kept too: the same command trains those runs again, to the same curves."""
    config = _config(tmp_path)
    text = yaml.safe_load(config.read_text())
    text["methods"] = {"adam": text["methods"]["adam"]}
    config.write_text(yaml.safe_dump(text))
    args = ("run", config, "--scale", "smoke", "--quiet", "--data-dir", data_dir, "--out",
            tmp_path / "out")
    folder = tmp_path / "out" / "logreg_mnist"
    assert cli(*args)[0] == 0
    before = _comparable(folder)
    assert not list((folder / "runs").glob("*.pt"))
    text["training"]["save_params"] = True
    config.write_text(yaml.safe_dump(text))
    code, out, err = cli(*args, "--dry-run")
    runs = len(list((folder / "runs").glob("*.json")))
    assert code == 0 and dry_run_total(out)["left"] == runs, out + err
    code, out, err = cli(*args)
    assert code == 0 and out.startswith(f"trained {runs} runs, 0 already finished"), out + err
    assert len(list((folder / "runs").glob("*.pt"))) == runs
    pd.testing.assert_frame_equal(_comparable(folder), before)
    code, out, _ = cli(*args)
    assert code == 0 and out.startswith(f"trained 0 runs, {runs} already finished"), out


def test_an_optimizer_state_no_checkpoint_can_hold_is_one_line(tmp_path, cli, data_dir,
                                                               monkeypatch):
    """A user's optimizer that keeps a NumPy number in its state: torch.save took it, the
    resume's torch.load(weights_only=True) did not, so every command threw the checkpoint
    away as unreadable and a budgeted sweep never got past its first pass. The first save
    says so in one line naming the method and where in its state; nothing unreadable is
    written."""
    monkeypatch.syspath_prepend(str(Path(__file__).parent / "outside"))
    config = _config(tmp_path)
    text = yaml.safe_load(config.read_text())
    text["methods"] = {"mine": {"optimizer": "my_optimizers:NumpyCounted",
                                "grid": {"lr": [1e-2]}}}
    config.write_text(yaml.safe_dump(text))
    args = ("run", config, "--scale", "smoke", "--quiet", "--data-dir", data_dir, "--out",
            tmp_path / "out", "--seeds", "1")
    code, _, err = cli(*args, "--time-budget", "0")
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith("adamrepro: error: method 'mine': a checkpoint cannot hold what its "
                          "optimizer keeps at optimizer.state.0.t (numpy.float64): "), err
    assert not list((tmp_path / "out").rglob("*.ckpt.pt"))
    assert cli(*args)[0] == 0  # without checkpoints it trains
    assert unreadable_part({"optimizer": {"state": {0: {"t": 1.5, "m": torch.ones(2)}}}}) is None


@pytest.mark.parametrize("optimizer", ["AttributeCounted", "OwnMomentum"])
def test_an_optimizer_state_no_checkpoint_saves_is_refused_at_load(optimizer, tmp_path, cli,
                                                                   data_dir, monkeypatch):
    """A user's optimizer that keeps what it carries between steps outside torch's
    state_dict (a step count as an attribute, momentum in a dict of its own): a resumed run
    started that over and went on along another curve under the same run id, without a
    word. The config is refused at load, in one line naming the method and the fix; nothing
    is written. One that keeps its counter in its param group (CountedSGD) is accepted."""
    monkeypatch.syspath_prepend(str(Path(__file__).parent / "outside"))
    config = _config(tmp_path)
    text = yaml.safe_load(config.read_text())
    text["methods"] = {"mine": {"optimizer": f"my_optimizers:{optimizer}",
                                "grid": {"lr": [1e-2, 1e-1]}}}
    config.write_text(yaml.safe_dump(text))
    out = tmp_path / "out"
    code, stdout, err = cli("run", config, "--scale", "smoke", "--quiet", "--data-dir",
                            data_dir, "--out", out)
    assert code == 2 and stdout == "" and err.count("\n") == 1, err
    assert err.startswith(f"adamrepro: error: {config}: methods.mine: my_optimizers:"
                          f"{optimizer} does not resume from a checkpoint as it trains: "
                          f"resumed from its state_dict after 2 steps"), err
    assert "(lr=0.01)" in err and "not in attributes of the optimizer" in err, err
    assert "Traceback" not in err and not out.exists()
    text["methods"]["mine"]["optimizer"] = "my_optimizers:CountedSGD"
    config.write_text(yaml.safe_dump(text))
    assert load_experiment(config).methods["mine"].optimizer == "my_optimizers:CountedSGD"


def test_an_allocation_failure_behind_another_error_still_splits_the_group():
    """What a GPU raises when a group does not fit is not always torch's OutOfMemoryError:
    an allocation that fails while a CUDA graph is captured invalidates the capture, whose
    end raises that instead (the allocation's error as its context), and cuBLAS and cuDNN
    say so in their own words. Each is a group to halve; any other error is not."""
    def during(inner: BaseException, outer: BaseException) -> BaseException:
        try:
            try:
                raise inner
            except type(inner):
                raise outer  # noqa: B904  # as torch.cuda.graph's __exit__ does
        except type(outer) as err:
            return err

    captured = during(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"),
                      RuntimeError("CUDA error: operation not permitted when stream is "
                                   "capturing"))
    assert out_of_memory(captured)
    assert out_of_memory(RuntimeError(
        "CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"))
    assert out_of_memory(RuntimeError("cuDNN error: CUDNN_STATUS_ALLOC_FAILED"))
    # a failed cudaMalloc checked by C10_CUDA_CHECK (a plain RuntimeError, not an
    # OutOfMemoryError), and the host allocator's own failure on a CPU
    assert out_of_memory(RuntimeError("CUDA error: out of memory\nCUDA kernel errors might be "
                                      "asynchronously reported at some other API call"))
    assert out_of_memory(RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. "
                                      "DefaultCPUAllocator: can't allocate memory: you tried "
                                      "to allocate 68719476736 bytes. Error code 12"))
    assert not out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied "
                                          "(128x10 and 784x10)"))
    assert not out_of_memory(during(ValueError("lr must be positive"),
                                    RuntimeError("the step failed")))


def test_a_group_leaves_nothing_to_the_cycle_collector(data_dir, monkeypatch):
    """Once `train_group` returns, every tensor of the group (its model, optimizer state,
    and on a GPU the memory pool of its CUDA graph) is freed by reference counting alone:
    none is left in a reference cycle for the collector, which would hold it, on a GPU
    while the next group (or the halves of one that did not fit) allocates."""
    import gc

    # CASES names my_optimizers: found here, not only after another test imported it
    monkeypatch.syspath_prepend(str(REPO / "tests" / "outside"))

    cases = {**CASES, "vae": ({"name": "vae", "hidden": 32, "latent": 4},
                              {"adam": {"optimizer": "adam", "grid": {"lr": [1e-3]}}})}
    for case, (model, methods) in cases.items():
        exp = experiment(model, methods, epochs=2)
        data = load_data(exp, data_dir, torch.device("cpu"))
        for group in plan(exp):
            gc.collect()
            gc.disable()
            try:
                train_group(exp, group, data)
                gc.set_debug(gc.DEBUG_SAVEALL)
                gc.collect()
                left = [o for o in gc.garbage if isinstance(o, torch.Tensor)]
            finally:
                gc.garbage.clear()
                gc.set_debug(0)
                gc.enable()
            assert not left, (case, group.method, [tuple(t.shape) for t in left])


def test_a_single_run_that_does_not_fit_is_a_user_error(tmp_path, cli, data_dir,
                                                        monkeypatch):
    config = _config(tmp_path)
    monkeypatch.setenv(FAKE_MEMORY_LIMIT, "0")
    code, _, err = cli("run", config, "--scale", "smoke", "--quiet", "--data-dir", data_dir,
                       "--out", tmp_path)
    assert code == 2 and "does not fit" in err and "Traceback" not in err


def test_sigkill_mid_group_then_rerun_equals_an_uninterrupted_sweep(tmp_path, data_dir,
                                                                     sigkill_once):
    """A sweep killed (SIGKILL) after its first checkpoint goes on from it: the tables equal
    an uninterrupted sweep's and no checkpoint is left behind."""
    config = _config(tmp_path, checkpoint_every=1)
    text = yaml.safe_load(config.read_text())
    text["scales"]["smoke"] = {"epochs": 6, "train_size": 4096, "test_size": 256}
    config.write_text(yaml.safe_dump(text))
    command = [sys.executable, "-m", "adamrepro", "run", str(config), "--scale", "smoke",
               "--quiet", "--data-dir", str(data_dir)]
    subprocess.run(command + ["--out", str(tmp_path / "whole")], check=True,
                   capture_output=True)
    out = tmp_path / "killed"
    runs = out / "logreg_mnist" / "runs"
    sigkill_once(command + ["--out", str(out)], runs, "*.ckpt.pt")
    assert list(runs.glob("*.ckpt.pt")) and not list(runs.glob("*.json"))  # mid-group
    saved = _saved_seconds(runs)

    subprocess.run(command + ["--out", str(out)], check=True, capture_output=True)
    assert not list(runs.glob("*.ckpt.pt"))
    _went_on_from(saved, out / "logreg_mnist")
    pd.testing.assert_frame_equal(_comparable(out / "logreg_mnist"),
                                  _comparable(tmp_path / "whole" / "logreg_mnist"))


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigterm_mid_group_saves_a_checkpoint_and_the_rerun_equals_an_uninterrupted_sweep(
        tmp_path, data_dir, workers):
    """SIGTERM (a preemptible machine's, SLURM's, Kubernetes' warning before its kill) to
    the command's process group while a group trains, with no checkpoint_every: the groups
    training save a checkpoint after their pass in progress and the command exits 143 saying
    what is left; the next command goes on from there, to the tables of an uninterrupted
    sweep, in one process or in workers."""
    import os
    import signal

    config = _config(tmp_path)
    text = yaml.safe_load(config.read_text())
    text["scales"]["smoke"] = {"epochs": 20, "train_size": 4096, "test_size": 256,
                               "extend_edges": 0}
    config.write_text(yaml.safe_dump(text))
    command = [sys.executable, "-m", "adamrepro", "run", str(config), "--scale", "smoke",
               "--quiet", "--data-dir", str(data_dir), "--workers", workers]
    subprocess.run(command + ["--out", str(tmp_path / "whole")], check=True,
                   capture_output=True)
    out = tmp_path / "stopped"
    runs = out / "logreg_mnist" / "runs"
    driver = subprocess.Popen(command + ["--out", str(out)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    while not list(runs.glob("*.json")) and time.monotonic() < deadline:  # a group is done
        time.sleep(0.005)
    # past its records (milliseconds), into the next group (20 passes: 1.4 s, unloaded)
    time.sleep(0.5)
    assert driver.poll() is None, "the sweep ended before SIGTERM"
    os.killpg(driver.pid, signal.SIGTERM)
    _, stderr = driver.communicate(timeout=60)
    assert driver.returncode == 128 + signal.SIGTERM, stderr
    assert "Traceback" not in stderr, stderr
    assert ("adamrepro: note: SIGTERM: each group training saves a checkpoint after its pass "
            "in progress") in stderr, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("adamrepro: terminated (SIGTERM): trained ") and last.endswith(
        "; run the same command again to go on"), stderr
    saved = list(runs.glob("*.ckpt.pt"))
    assert saved, "no group saved a checkpoint"
    if workers == "1":
        assert len(saved) == 1 and "is checkpointed after pass" in last, stderr
    assert not (out / "logreg_mnist" / "curves.csv").exists()
    saved = _saved_seconds(runs)

    subprocess.run(command + ["--out", str(out)], check=True, capture_output=True)
    assert not list(runs.glob("*.ckpt.pt"))
    _went_on_from(saved, out / "logreg_mnist")
    pd.testing.assert_frame_equal(_comparable(out / "logreg_mnist"),
                                  _comparable(tmp_path / "whole" / "logreg_mnist"))


def test_fewer_seeds_than_an_unfinished_sweep_s_are_refused(tmp_path, cli, data_dir):
    """A sweep of 2 seeds cut off by its budget, then a command of 1 seed on the folder: it
    finished, and removed the other seed's checkpoint as stale without a word of the
    progress it threw away. The unfinished sweep's owner file records its seeds now: the
    command is refused, the checkpoint kept; --force discards it as asked."""
    config = _config(tmp_path)
    args = ("run", config, "--scale", "smoke", "--quiet", "--data-dir", data_dir,
            "--out", tmp_path / "out")
    runs = tmp_path / "out" / "logreg_mnist" / "runs"
    code, text, err = cli(*args, "--seeds", "2", "--time-budget", "0")
    assert code == 3, err
    [checkpoint] = runs.glob("*.ckpt.pt")
    code, _, err = cli(*args, "--seeds", "1")
    assert code == 2 and err == (
        f"adamrepro: error: {tmp_path / 'out' / 'logreg_mnist'} holds an unfinished sweep of 2 "
        f"seeds per grid point, and this run trains 1: the checkpoints of the others would "
        f"be removed as stale when it ends; pass --seeds 2, --out to another folder, or "
        f"--force to discard them\n"), err
    assert checkpoint.exists()
    code, _, err = cli(*args, "--seeds", "1", "--force")
    assert code == 0, err


def test_a_finished_sweep_removes_the_checkpoints_of_groups_not_in_its_plan(
        tmp_path, cli, data_dir, monkeypatch):
    """With a group too large for memory and a spent budget, each command trains a pass of
    a half of it (a command always trains something, even when its first try did not fit)
    and keeps that checkpoint, though the half is no group of the plan: the sweep is not
    done. With the memory back, the whole group trains instead; the finished sweep then
    removes the half's checkpoint, now stale, and says so on one line."""
    from adamrepro.config import load_experiment

    config = _config(tmp_path)
    planned = {g.group_id for g in plan(load_experiment(config).at_scale("smoke"))}
    args = ("run", config, "--scale", "smoke", "--quiet", "--data-dir", data_dir,
            "--out", tmp_path / "out")
    runs = tmp_path / "out" / "logreg_mnist" / "runs"
    monkeypatch.setenv(FAKE_MEMORY_LIMIT, "2")
    for epoch in (1, 2):
        code, text, err = cli(*args, "--time-budget", "0")
        assert code == 3 and "does not fit" in err, err
        [checkpoint] = runs.glob("*.ckpt.pt")
        half = checkpoint.name.removesuffix(".ckpt.pt")
        assert half not in planned
        assert f"group {half} is checkpointed after pass {epoch} of 3" in text, text
    monkeypatch.delenv(FAKE_MEMORY_LIMIT)
    code, _, err = cli(*args)
    assert code == 0, err
    assert not list(runs.glob("*.ckpt.pt"))
    assert [line for line in err.splitlines() if "stale" in line] == [
        f"adamrepro: removed 1 stale checkpoint(s) from {runs} (of groups not in this "
        f"sweep's plan)"]


def test_split_to_fit_leaves_groups_that_would_not_finish_for_the_next_command(
        tmp_path, cli, data_dir):
    """With passes far beyond any budget (a million), no group, nor any half of one, would
    finish: `--split-to-fit` leaves each for the next command once its second pass shows it,
    whole (halving it down to single runs threw away two passes at every size, to no run
    that could finish), so that the groups after it get the time: each is said, no
    checkpoint is written (on the machines it is for, none would survive), and the command
    ends when nothing is left to try, not when its budget is spent."""
    config = _config(tmp_path)
    text = yaml.safe_load(config.read_text())
    text["scales"]["smoke"]["epochs"] = 1_000_000
    config.write_text(yaml.safe_dump(text))
    groups = plan(load_experiment(config).at_scale("smoke"))
    code, out, err = cli("run", config, "--scale", "smoke", "--quiet", "--data-dir", data_dir,
                         "--out", tmp_path / "out", "--time-budget", "10", "--split-to-fit")
    assert code == 3, err
    said = [line for line in err.splitlines() if "would not finish within the time" in line]
    assert all("passes of" in line and line.endswith("left for the next command")
               for line in said), err
    assert sorted(line.split(": ")[2].split(" would")[0] for line in said) == sorted(
        "a run" if g.size == 1 else f"a group of {g.size} runs, nor a half of it,"
        for g in groups), err
    assert "training it as" not in err
    assert not list((tmp_path / "out" / "logreg_mnist" / "runs").glob("*.ckpt.pt"))
    runs = sum(g.size for g in groups)
    assert "trained 0 runs" in out and f"{runs} runs in" in out, out


def test_no_group_starts_past_the_deadline_after_one_that_would_not_finish(tmp_path):
    """A group found too slow trained passes: once the deadline has passed, the group after
    it does not start on the account of a command that has trained nothing yet (it would
    evaluate, train and save a pass past the deadline, on a disk that is lost)."""
    from adamrepro.runner.executors import Outcome, schedule

    model, methods = CASES["logreg-dropout"]
    groups = plan(experiment(model, methods))[:2]
    assert len(groups) == 2
    policy = CheckpointPolicy(tmp_path, None, Budget(time.time() - 1, True))  # spent
    started, pending = [], []

    def start(g, must_start):
        started.append((g.method, must_start))
        pending.append(g)

    def finished():
        return pending.pop(0), Outcome(too_slow="10 passes of 9.00 s left, 0 s", halve=False)

    with pytest.raises(BudgetSpent):
        list(schedule(groups, 5, torch.device("cpu"), policy, start, finished, 1))
    assert started == [(groups[0].method, True)], started


def test_split_to_fit_never_halves_a_group_resumed_from_its_checkpoint(tmp_path, cli,
                                                                        data_dir):
    """A group checkpointed by one command (a disk that outlived it) and resumed by the next
    with `--split-to-fit`: halving it threw its checkpoint away and started its halves over,
    so that the command left less done than it found. It trains on and saves instead."""
    config = _config(tmp_path)
    text = yaml.safe_load(config.read_text())
    text["scales"]["smoke"]["epochs"] = 1_000_000
    config.write_text(yaml.safe_dump(text))
    args = ("run", config, "--scale", "smoke", "--quiet", "--data-dir", data_dir, "--out",
            tmp_path / "out")
    code, out, err = cli(*args, "--time-budget", "0")
    assert code == 3 and "is checkpointed after pass 1 of" in out, out + err
    code, out, err = cli(*args, "--time-budget", "0.05", "--split-to-fit")
    assert code == 3, err
    assert "would not finish" not in err and "training it as" not in err, err
    passes = re.search(r"is checkpointed after pass ([\d,]+) of", out)
    assert passes and int(passes.group(1).replace(",", "")) > 1, out


def test_split_to_fit_halves_a_group_where_a_half_could_finish_and_leaves_one_where_none():
    """The executor's side of the decision, on what a group's attempt says (`Outcome`):
    halves queued first where a half could finish, the group left (and the next one started)
    where none could."""
    from adamrepro.runner.executors import Outcome, schedule

    model, methods = CASES["logreg-dropout"]
    adam = {**methods["adam"], "grid": {"lr": [1e-4, 1e-3, 1e-2, 1e-1]}}
    group = next(g for g in plan(experiment(model, {"adam": adam})) if g.size == 4)
    for halve, started in ((True, [4, 2, 2]), (False, [4])):
        sizes, pending = [], []

        def start(g, must_start, sizes=sizes, pending=pending):
            sizes.append(g.size)
            pending.append(g)

        def finished(pending=pending, halve=halve):
            g = pending.pop(0)
            if g.size == 4:
                return g, Outcome(too_slow="1,000 passes of 1.00 s left, 9 s", halve=halve)
            return g, Outcome(curves=[])

        with pytest.raises(BudgetSpent) if not halve else contextlib.nullcontext():
            list(schedule([group], 5, torch.device("cpu"), None, start, finished, 1))
        assert sizes == started, (halve, sizes)


def test_the_overall_count_takes_back_the_passes_of_a_group_its_halves_replace():
    from adamrepro.runner.plan import halves
    from adamrepro.runner.sweep import PassCount

    model, methods = CASES["logreg-dropout"]
    adam = {**methods["adam"], "grid": {"lr": [1e-4, 1e-3, 1e-2, 1e-1]}}
    group = next(g for g in plan(experiment(model, {"adam": adam})) if g.size == 4)
    count = PassCount()
    assert [count.record(group, epoch) for epoch in (1, 2, 3)] == [(4, set())] * 3
    first, second = halves(group)  # split after pass 3: each half starts again
    assert count.record(first, 1) == (2 * (1 - 3), {group.group_id})
    assert count.record(second, 1) == (2 * (1 - 3), {group.group_id})
    assert count.record(first, 2) == (2, set())
    # what the bar shows: 12 - 8 + 2 = 6 run-passes, those the halves trained
    assert sum(count.passes.values()) == 2 * 2 + 2 * 1


def test_split_to_fit_needs_a_budget(tmp_path, cli, data_dir):
    code, _, err = cli("run", _config(tmp_path), "--scale", "smoke", "--data-dir", data_dir,
                       "--out", tmp_path / "out", "--split-to-fit")
    assert code == 2 and "--time-budget" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def _records(folder: Path) -> dict[str, dict]:
    import json

    return {path.stem: json.loads(path.read_text()) for path in folder.glob("*.json")}


def test_a_split_group_partly_finished_trains_only_its_halves_left(tmp_path, cli, data_dir,
                                                                   monkeypatch):
    """A group split in halves (here: out of memory) of which one half finished trains
    that half's runs left as that half, not the whole group again: with dropout, the half's
    identity seeds its masks, so they retrace exactly the curves they traced. A group
    trained whole of which a record is missing (a kill while the records were written)
    trains again whole, and retraces the same curves too."""
    config = yaml.safe_load((REPO / "configs" / "mlp.yaml").read_text())
    config["scales"]["smoke"] = {"epochs": 2, "train_size": 256, "test_size": 128,
                                 "extend_edges": 0}
    path = tmp_path / "mlp.yaml"
    path.write_text(yaml.safe_dump(config))
    args = ("run", path, "--scale", "smoke", "--quiet", "--data-dir", data_dir)
    for name, limit in (("split", "2"), ("whole", None)):
        if limit:
            monkeypatch.setenv(FAKE_MEMORY_LIMIT, limit)
        else:
            monkeypatch.delenv(FAKE_MEMORY_LIMIT, raising=False)
        out = tmp_path / name
        assert cli(*args, "--out", out)[0] == 0
        runs = out / "mlp" / "runs"
        before, curves = _records(runs), _comparable(out / "mlp")
        by_group: dict[str, list[str]] = {}
        for run_id, record in sorted(before.items()):
            by_group.setdefault(record["group_id"], []).append(run_id)
        # one run of a group of several, and every run of another group
        first = min((ids for ids in by_group.values() if len(ids) > 1), key=len)
        second = next(ids for ids in by_group.values() if ids != first)
        removed = [first[0], *second]
        for run_id in removed:
            (runs / f"{run_id}.json").unlink()
        monkeypatch.delenv(FAKE_MEMORY_LIMIT, raising=False)
        code, text, err = cli(*args, "--out", out)
        assert code == 0, err
        after = _records(runs)
        retrained = {run_id for run_id in after
                     if after[run_id]["provenance"] != before[run_id]["provenance"]
                     or after[run_id]["rows"][-1]["seconds"]
                     != before[run_id]["rows"][-1]["seconds"]}
        expected = {r for g in by_group.values() if set(g) & set(removed) for r in g}
        assert retrained == expected, (name, retrained, expected)
        assert f"trained {len(expected)} runs" in text, text
        assert {r: after[r]["group_id"] for r in after} == {
            r: before[r]["group_id"] for r in before}
        pd.testing.assert_frame_equal(_comparable(out / "mlp"), curves)


def _run_with_another_l2(config: Path, tmp_path: Path, cli, data_dir) -> tuple[int, str]:
    """`config` with another L2 weight (another config, of other runs), run at smoke scale
    into tmp_path/out: its exit code and stderr."""
    changed = yaml.safe_load(config.read_text())
    changed["model"]["l2"] = 1.0e-3
    other = tmp_path / "other" / "logreg_mnist.yaml"
    other.parent.mkdir()
    other.write_text(yaml.safe_dump(changed))
    code, _, err = cli("run", other, "--quiet", "--data-dir", data_dir, "--out",
                       tmp_path / "out", "--scale", "smoke")
    return code, err


def test_a_sweep_killed_before_it_trained_anything_owns_nothing(tmp_path, cli, data_dir,
                                                                 sigkill_once):
    """Killed as soon as it claimed its folder, before a record or a checkpoint: another
    config or scale may write there (it was refused, "holds results of a different
    logreg_mnist config", of a folder holding an empty runs/); what it trains is its own."""
    config = _config(tmp_path)
    folder = tmp_path / "out" / "logreg_mnist"
    command = [sys.executable, "-m", "adamrepro", "run", str(config), "--scale", "smoke",
               "--quiet", "--data-dir", str(data_dir), "--out", str(tmp_path / "out")]
    sigkill_once(command, folder, ".sweep-owner.json")
    assert not [*folder.joinpath("runs").glob("*.json"), *folder.joinpath("runs").glob("*.pt")]
    code, err = _run_with_another_l2(config, tmp_path, cli, data_dir)
    assert code == 0, err
    assert json.loads((folder / "config.json").read_text())["config"]["model"]["l2"] == 1.0e-3


def test_a_runs_folder_that_is_a_file_is_named(tmp_path, cli, data_dir):
    folder = tmp_path / "out" / "logreg_mnist"
    folder.mkdir(parents=True)
    (folder / "runs").write_text("")
    code, stdout, err = cli("run", _config(tmp_path), "--quiet", "--data-dir", data_dir,
                            "--out", tmp_path / "out", "--scale", "smoke")
    assert code == 2 and stdout == "" and err == (
        f"adamrepro: error: {folder / 'runs'} is a file where the folder of run records goes; "
        f"move it away, or pass --out to another folder\n"), err


def test_a_sweep_cut_off_before_its_tables_still_owns_its_folder(tmp_path, cli, data_dir):
    """A first command stopped by its budget has written no config.json: a command of
    another scale or config into that folder is refused all the same (it had found nothing
    to check, taken the checkpoints for stale and removed them), and the same command goes
    on. Temporary files a kill left behind (a record, a table) are removed under the lock."""
    config = _config(tmp_path)
    args = ("run", config, "--quiet", "--data-dir", data_dir, "--out", tmp_path / "out")
    code, text, _ = cli(*args, "--scale", "smoke", "--time-budget", "0")
    assert code == 3, text
    folder = tmp_path / "out" / "logreg_mnist"
    checkpoints = sorted(folder.joinpath("runs").glob("*.ckpt.pt"))
    assert checkpoints and not (folder / "config.json").exists()
    code, _, err = cli(*args, "--scale", "quick")
    assert code == 2 and "holds an unfinished smoke-scale sweep (1 checkpoint)" in err, err
    code, err = _run_with_another_l2(config, tmp_path, cli, data_dir)
    assert code == 2 and "different logreg_mnist config" in err, err
    assert sorted(folder.joinpath("runs").glob("*.ckpt.pt")) == checkpoints
    # the last: a kill as a command claimed the folder (atomic_file's dot before the
    # owner file's own)
    left = [folder / ".curves.csv.x1y2z3.tmp", folder / "runs" / ".0123456789ab.json.q9.tmp",
            folder / "runs" / ".0123456789ab.ckpt.pt.k7.tmp", folder / "..sweep-owner.json.o8.tmp"]
    # `plot` writes its figures without the lock: its temporary file may be work in progress
    drawing = folder / ".curves.png.p4q5r6.tmp"
    for path in (*left, drawing):
        path.write_text("cut off")
    while (code := cli(*args, "--scale", "smoke", "--time-budget", "0")[0]) == 3:
        pass
    assert code == 0
    assert not any(path.exists() for path in left) and drawing.exists()
    assert not (folder / ".sweep-owner.json").exists()  # config.json says it now


def test_a_sweep_cut_off_between_groups_takes_a_wider_grid_not_another(tmp_path, cli,
                                                                        data_dir):
    """Cut off after a group's last pass (its records written, no checkpoint, no table yet),
    the folder takes a config whose grid holds every run recorded (a grid widened: the runs
    are keyed by their settings), and refuses one that shares only some of them: its tables
    would hold runs of a grid no config names."""
    config = _config(tmp_path)
    args = ("--quiet", "--data-dir", data_dir, "--out", tmp_path / "out", "--scale", "smoke")
    runs = tmp_path / "out" / "logreg_mnist" / "runs"
    for _ in range(3):  # a pass per command: the first group's 3 passes
        code, text, _ = cli("run", config, *args, "--time-budget", "0")
        assert code == 3, text
    records = [json.loads(path.read_text()) for path in runs.glob("*.json")]
    assert records and not any(runs.glob("*.ckpt.pt"))
    assert not (runs.parent / "config.json").exists()
    method = records[0]["method"]
    assert {record["method"] for record in records} == {method}
    raw = yaml.safe_load(config.read_text())
    grid = raw["methods"][method]["grid"]["lr"]

    def run_with_grid(lrs: list[float], name: str) -> tuple[int, str]:
        changed = {**raw, "methods": {**raw["methods"],
                                      method: {**raw["methods"][method], "grid": {"lr": lrs}}}}
        path = tmp_path / name / "logreg_mnist.yaml"
        path.parent.mkdir()
        path.write_text(yaml.safe_dump(changed))
        code, _, err = cli("run", path, *args, "--time-budget", "0")
        return code, err

    code, err = run_with_grid([*grid[1:], 1.0e4], "overlapping")
    assert code == 2 and "different logreg_mnist config" in err, err
    assert len(list(runs.glob("*.json"))) == len(records)
    code, err = run_with_grid([*grid, 1.0e4], "wider")
    assert code in (0, 3), err


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*"))}


def test_a_dry_run_says_what_a_budget_left_and_writes_nothing(tmp_path, cli, data_dir):
    """`run --dry-run` counts what the next command trains as the budget's own message
    does (the passes a checkpoint holds not counted), writes nothing, and is refused where
    the command would be."""
    config = _config(tmp_path)
    args = ("run", config, "--scale", "smoke", "--quiet", "--data-dir", data_dir,
            "--out", tmp_path / "out")
    folder = tmp_path / "out" / "logreg_mnist"
    code, text, _ = cli(*args, "--dry-run")
    assert code == 0 and not (tmp_path / "out").exists(), text
    groups = len(plan(load_experiment(config).at_scale("smoke")))
    assert dry_run_total(text)["groups"] == groups and "nothing left" not in text
    for _ in range(4):  # one pass a command: a group checkpointed, then one finished
        code, said, _ = cli(*args, "--time-budget", "0")
        assert code == 3, said
        before = _files(folder)
        code, text, _ = cli(*args, "--dry-run")
        assert code == 0 and _files(folder) == before, text
        runs, groups_left, run_passes = map(int, re.search(
            r"(\d+) runs? in (\d+) groups? remains? \((\d+) run-passes\)", said).groups())
        total = dry_run_total(text)
        assert (total["left"], total["groups"], total["run_passes"]) == (
            runs, groups_left, run_passes), (said, text)
        assert total["finished"] == len(list(folder.joinpath("runs").glob("*.json")))
        assert ("resume from a checkpoint" in text) == any(folder.rglob("*.ckpt.pt"))
        # a GPU's command (planned here, without one) resumes no checkpoint saved on a CPU
        code, text, _ = cli(*args, "--dry-run", "--device", "cuda")
        assert code == 0 and "resume from a checkpoint" not in text, text
        assert (dry_run_total(text)["run_passes"] > run_passes) == any(
            folder.rglob("*.ckpt.pt"))
    code, _, err = cli(*args[:3], "quick", *args[4:], "--dry-run")
    assert code == 2 and "holds an unfinished smoke-scale sweep" in err, err
    assert "Traceback" not in err
    for bad, said in ((("--workers", "none"), "--workers none"),
                      (("--split-to-fit",), "--time-budget")):
        code, _, err = cli(*args, *bad, "--dry-run")
        assert code == 2 and said in err and "Traceback" not in err, err
    while (code := cli(*args, "--time-budget", "0")[0]) == 3:
        pass
    code, text, _ = cli(*args, "--dry-run")
    assert code == 0 and "nothing left to train" in text, text
    assert dry_run_total(text)["finished"] == dry_run_total(text)["runs"]


def test_a_budgets_count_holds_the_checkpoints_of_groups_it_did_not_reach(
        tmp_path, cli, data_dir):
    """Two workers checkpoint two groups; the next command, with one, reaches one of them:
    its "run-passes remain" counted the other's passes as not trained, more than the
    command before said, and more than `--dry-run` says."""
    config = _config(tmp_path)
    raw = yaml.safe_load(config.read_text())
    raw["scales"]["smoke"]["epochs"] = 1000  # no group finishes within the budget
    config.write_text(yaml.safe_dump(raw))
    args = ("run", config, "--scale", "smoke", "--quiet", "--data-dir", data_dir,
            "--out", tmp_path / "out")
    runs = tmp_path / "out" / "logreg_mnist" / "runs"
    # a budget that both workers start their groups within (a spent one starts one group)
    # (a group that stops before the budget is spent, expecting its next pass to overrun
    # it, leaves its worker to start another: two checkpoints or more)
    # (a process of its own: one that has run torch.compile may not fork workers,
    # executors.py)
    done = subprocess.run([sys.executable, "-m", "adamrepro", *map(str, args), "--time-budget",
                           "0.15", "--workers", "2"], capture_output=True, text=True,
                          timeout=600)
    code, said = done.returncode, done.stdout
    saved = len(list(runs.glob("*.ckpt.pt")))
    assert code == 3 and saved >= 2, said
    first = int(re.search(r"\((\d+) run-passes\)", said).group(1))
    code, said, _ = cli(*args, "--time-budget", "0", "--workers", "1")  # reaches one group
    assert code == 3 and len(list(runs.glob("*.ckpt.pt"))) == saved, said
    left = int(re.search(r"\((\d+) run-passes\)", said).group(1))
    assert left < first, (first, said)
    code, text, _ = cli(*args, "--dry-run")
    assert code == 0 and dry_run_total(text)["run_passes"] == left, (said, text)
    # another scale into it: its fix named --force, which throws those checkpoints away
    code, _, err = cli(*args[:3], "quick", *args[4:], "--dry-run")
    assert code == 2 and err == (
        f"adamrepro: error: {runs.parent} holds an unfinished smoke-scale sweep ({saved} "
        f"checkpoints); finish it with --scale smoke, write quick-scale ones to another "
        f"folder (e.g. --out results/quick), or pass --force to discard it\n"), err


@pytest.mark.parametrize("saved, file, workers", [
    ({"checkpoint_every": 1}, r"\w+\.ckpt\.pt", "1"),
    ({"checkpoint_every": 1}, r"\w+\.ckpt\.pt", "2"),
    # (a worker's parameters reach the driver through shared-memory files, which the limit
    # refuses too: on a full disk they would not be, so the driver's write is tried alone)
    ({"save_params": True}, r"\w+\.pt", "1")])
def test_a_tensor_file_the_disk_refuses_is_one_line(tmp_path, data_dir, workers, saved, file):
    """A file size limit (`ulimit -f`, as a full disk refuses a write) on a checkpoint (a
    worker writes it) or a run's parameters (the driver does): torch's zip writer turns the
    write's OSError into a RuntimeError ("unexpected pos"), which was a traceback of 60
    lines. Now one line naming the file and the fix, exit code 2, and no temporary file
    left."""
    import resource
    import signal

    def limited() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails, EFBIG, not the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))  # a record fits

    out = tmp_path / "out"
    lock = Path(__file__).resolve().parent.parent / ".git" / "index.lock"
    locked_before = lock.exists()
    done = subprocess.run([sys.executable, "-m", "adamrepro", "run",
                           str(_config(tmp_path, **saved)), "--scale", "smoke",
                           "--quiet", "--data-dir", str(data_dir), "--out", str(out),
                           "--workers", workers],
                          capture_output=True, text=True, timeout=300, preexec_fn=limited)
    assert done.returncode == 2 and done.stdout == "", done.stderr
    assert re.fullmatch(r"adamrepro: error: \S+/logreg_mnist/runs/" + file + r": File too "
                        r"large; the file is larger than this process may write \(ulimit -f\) "
                        r"or the filesystem holds: raise the limit, or pass --out \(results\) "
                        r"or --data-dir \(data; or \$ADAMREPRO_DATA\) on another disk\n",
                        done.stderr), done.stderr
    assert not list(out.rglob("*.tmp"))
    # the provenance's `git status` under the limit wrote a refreshed index, cut off: its
    # index.lock, left in the repository, failed every git command after it
    assert locked_before or not lock.exists()


def test_a_ctrl_c_while_a_tensor_file_is_written_is_the_ctrl_c(tmp_path):
    """A Ctrl-C while torch.save wrote a checkpoint or a run's parameters (seconds at paper
    scale: 0.26-20 GB) cut a write short, and torch's zip writer, closing, raised a
    RuntimeError ("unexpected pos ...") in its place: a traceback and exit code 1 where the
    command says what is kept and exits 130. The Ctrl-C comes through (here a timer's,
    mid-write), and no temporary file stays."""
    import signal

    from adamrepro.atomic import atomic_torch_save

    state = {f"tensor{i}": torch.zeros(2_000_000) for i in range(40)}  # 320 MB, many writes
    before = signal.signal(signal.SIGALRM, signal.default_int_handler)  # raises KeyboardInterrupt
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.02)
        with pytest.raises(KeyboardInterrupt):
            atomic_torch_save(state, tmp_path / "group.ckpt.pt")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, before)
    assert list(tmp_path.iterdir()) == []
