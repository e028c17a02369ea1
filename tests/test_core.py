"""The core's two protocols end to end on real data: a workload without labels, optimizers
named by import path (torch's, one that needs a closure, one from outside the package),
entry points, honest training seconds, and capabilities declared as data."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from dry_run import dry_run_total

from adamrepro.config import load_experiment, parse_experiment
from adamrepro.errors import UserError
from adamrepro.figures.palette import COLORS, colors
from adamrepro.optim import OPTIMIZERS
from adamrepro.optim.capabilities import Capabilities
from adamrepro.optim.resolve import ambiguous, registered, resolve
from adamrepro.report.rules import SlowerPerPass
from adamrepro.results.measures import Measured, seconds_per_pass
from adamrepro.runner.executors import LocalExecutor, load_data
from adamrepro.runner.group import train_group
from adamrepro.runner.plan import base_digest, config_digest, plan
from adamrepro.runner.sweep import run_sweep

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
OUTSIDE = TESTS / "outside"
TIMING = ["seconds", "train_seconds", "commit", "device", "torch_version", "date"]


def _tables(folder: Path) -> pd.DataFrame:
    curves = pd.read_csv(folder / "curves.csv").drop(columns=TIMING)
    return curves.sort_values(["run_id", "epoch"]).reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# Race your own optimizer


def test_race_against_optimizers_named_by_import_path(tmp_path, data_dir, cli, monkeypatch):
    out = tmp_path / "results"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(OUTSIDE), str(REPO)]),
           "ADAMREPRO_DATA": str(data_dir)}
    done = subprocess.run([sys.executable, "-m", "adamrepro", "run",
                           str(TESTS / "configs" / "race.yaml"), "--scale", "smoke", "--out",
                           str(out), "--quiet"], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    folder = out / "race"
    best = pd.read_csv(folder / "best.csv")
    assert set(best["method"]) == {"adam", "sgd", "lbfgs", "signsgd"}
    curves = pd.read_csv(folder / "curves.csv")
    sizes = curves.groupby("method")["group_size"].max()
    assert sizes["adam"] == 2 and sizes[["sgd", "lbfgs", "signsgd"]].tolist() == [1, 1, 1]
    # every selected run trained: its full training objective fell
    for _, row in best.iterrows():
        run = curves[curves["point_id"] == row["point_id"]].sort_values("epoch")
        assert run["train_loss_full"].iloc[-1] < run["train_loss_full"].iloc[0], row["method"]

    # a curve of a user's optimizer names the code that drew it: the digest its run id was
    # traced by, in curves.csv, and the file, in its run record; torch's and ours name none
    source = (OUTSIDE / "my_optimizers.py").read_bytes()
    digest = hashlib.sha1(hashlib.sha1(source).digest()).hexdigest()[:12]
    codes = curves.groupby("method")["optimizer_code"].unique()
    assert list(codes["signsgd"]) == [digest]
    assert all(pd.isna(codes[m]).all() for m in ("adam", "sgd", "lbfgs"))
    for record in (json.loads(p.read_text()) for p in (folder / "runs").glob("*.json")):
        if record["method"] == "signsgd":
            assert record["optimizer_source"] == [str((OUTSIDE / "my_optimizers.py").resolve())]
        else:
            assert "optimizer_code" not in record and "optimizer_source" not in record

    # the figure and the report show them, in distinct colors that no built-in has
    monkeypatch.syspath_prepend(str(OUTSIDE))
    assert cli("plot", "race", "--out", out)[0] == 0
    assert (folder / "curves.png").stat().st_size > 0
    palette = colors(best["optimizer"])
    assert len(set(palette.values())) == 4
    for name in ("torch.optim.SGD", "torch.optim.LBFGS", "my_optimizers:SignSGD"):
        assert palette[name] not in COLORS.values()
    assert cli("report", "--out", out)[0] == 0
    report = (out / "report.md").read_text()
    for method in ("lbfgs", "signsgd", "sgd"):
        assert f"| {method} |" in report
    # ... and judges each against Adam: unless the two selection rules disagree, the verdict
    # is what best.csv's final costs give
    cost = json.loads((folder / "config.json").read_text())["config"]["plot"]["y"]
    final = best.set_index("method")[f"final_{cost}"]
    section = report.split("## Other methods against Adam", 1)[1].split("\n## ", 1)[0]
    for method in ("sgd", "lbfgs", "signsgd"):
        row = next(line for line in section.splitlines()
                   if line.startswith(f"| {method} |") and "ends below adam." in line)
        verdict = row.split(" | ")[3]
        assert verdict in ("holds", "does not hold", "depends on the selection rule"), row
        if verdict != "depends on the selection rule":
            assert (verdict == "holds") == (final[method] < 0.95 * final["adam"]), row

    # resume: lose the records of the three non-batched methods, run again, same tables
    before = _tables(folder)
    for record in (folder / "runs").glob("*.json"):
        if json.loads(record.read_text())["method"] != "adam":
            record.unlink()
    code, stdout, stderr = cli("run", TESTS / "configs" / "race.yaml", "--scale", "smoke",
                               "--out", out, "--quiet", "--data-dir", data_dir)
    assert code == 0, stderr
    assert "trained 6 runs, 2 already finished" in stdout
    pd.testing.assert_frame_equal(_tables(folder), before)


def _race(tmp_path: Path, methods: dict, name: str = "faulty") -> Path:
    """A config racing `methods` on logreg_mnist at smoke scale, written in tmp_path."""
    config = {"name": name, "title": "a user's optimizer", "dataset": {"name": "mnist"},
              "model": {"name": "logreg", "l2": 1.0e-4, "init": "normal", "init_scale": 0.01},
              "training": {"batch_size": 128, "epochs": 2}, "methods": methods,
              "scales": {"smoke": {"train_size": 1024, "test_size": 512}}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


@pytest.mark.parametrize("optimizer, fails, raised", [
    ("my_optimizers:Faulty", "step", "RuntimeError: a bug in step (in step, "),
    ("my_optimizers:Faulty", "params", "ValueError: a bug on real parameters (in __init__, "),
    # its step inherited from a class in another of the user's files: still theirs
    ("my_subclassed:FaultyChild", "step", "RuntimeError: a bug in step (in step, "),
    # the fix it names is the config's `closure: true` (it said "fix the optimizer" alone)
    ("my_optimizers:Faulty", "closure", "RuntimeError: Faulty requires a closure (in step, "),
])
def test_a_user_optimizer_that_raises_in_training_is_one_line_and_keeps_what_finished(
        optimizer, fails, raised, tmp_path, data_dir, cli, monkeypatch):
    """Its error (where in its own files, the fix) in one line with exit code 2, not a
    traceback; the runs finished before it are kept, and a folder it would leave holding
    nothing is not left at all. Fixed, the next command trains only what is left."""
    monkeypatch.syspath_prepend(str(OUTSIDE))
    faulty = {"optimizer": optimizer, "hparams": {"fails": fails}, "grid": {"lr": [1.0e-3]}}
    args = ["--scale", "smoke", "--quiet", "--data-dir", data_dir, "--workers", "1"]
    alone = tmp_path / "alone"
    # without --quiet too: where stderr is no terminal, the bar's last frame stood above it
    code, stdout, stderr = cli("run", _race(tmp_path, {"faulty": faulty}), "--out", alone,
                               *(a for a in args if a != "--quiet"))
    assert code == 2 and stdout == "", stderr
    [line] = stderr.splitlines()
    assert stderr == line + "\n"
    assert line.startswith(f"adamrepro: error: method 'faulty': optimizer {optimizer!r} "
                           f"raised {raised}"), line
    assert f"{OUTSIDE / 'my_optimizers.py'}:" in line and "Traceback" not in stderr
    assert ("kept: give the method `closure: true` if its step needs a closure, or fix the "
            "optimizer" in line) == (fails == "closure"), line
    assert not alone.exists()  # nothing recorded: nothing left

    out = tmp_path / "beside"
    race = {"adam": {"optimizer": "adam", "grid": {"lr": [1.0e-3, 1.0e-2]}}, "faulty": faulty}
    code, _, stderr = cli("run", _race(tmp_path, race), "--out", out, *args)
    assert code == 2 and raised in stderr
    assert len(list((out / "faulty" / "runs").glob("*.json"))) == 2  # adam's, trained first
    race["faulty"]["hparams"]["fails"] = "never"  # fixed
    code, stdout, stderr = cli("run", _race(tmp_path, race), "--out", out, *args)
    assert code == 0, stderr
    assert "trained 1 run, 2 already finished" in stdout  # not "1 runs"


def test_a_step_that_ignores_the_closure_it_is_told_to_take_is_one_line(
        tmp_path, data_dir, cli, monkeypatch):
    """`closure: true` on a step that takes one but never calls it (CountedSGD) evaluated
    no loss: an IndexError traceback, where the fix is the config's."""
    monkeypatch.syspath_prepend(str(OUTSIDE))
    race = {"counted": {"optimizer": "my_optimizers:CountedSGD", "closure": True,
                        "grid": {"lr": [1.0e-1]}}}
    out = tmp_path / "out"
    for workers in ("1", "2"):
        code, stdout, stderr = cli("run", _race(tmp_path, race), "--out", out, "--scale",
                                   "smoke", "--quiet", "--data-dir", data_dir, "--workers",
                                   workers)
        assert code == 2 and stdout == "", stderr
        # the method named, as for every error of a user's optimizer
        assert stderr == ("adamrepro: error: method 'counted': CountedSGD.step did not call "
                          "the closure it was given (`closure: true`), so no loss was "
                          "evaluated; remove `closure: true`, or have step call it\n")
        assert not out.exists()


@pytest.mark.parametrize("optimizer", ["my_optimizers:KeywordClosure",
                                       "my_grid_optimizers:KeywordSignMomentum",
                                       # beside *args: step(closure) filled args instead
                                       "my_optimizers:StarArgsKeywordClosure"])
def test_a_step_that_takes_its_closure_by_keyword_alone_trains(optimizer, tmp_path, data_dir,
                                                                cli, monkeypatch):
    """`def step(self, *, closure=None)` is a legitimate step: under `closure: true` it was
    refused at validation ("takes no closure"), though the runner can hand it over as
    step(closure=...). Plain and batched (a GridOptimizer subclass, probed at load), each
    run's objective falls, so its step was given the closure (it raises without one)."""
    monkeypatch.syspath_prepend(str(OUTSIDE))
    race = {"keyword": {"optimizer": optimizer, "closure": True,
                        "grid": {"lr": [1.0e-3, 1.0e-2]}}}
    out = tmp_path / "out"
    code, _, stderr = cli("run", _race(tmp_path, race), "--out", out, "--scale", "smoke",
                          "--quiet", "--data-dir", data_dir, "--workers", "1")
    assert code == 0, stderr
    curves = pd.read_csv(out / "faulty" / "curves.csv")
    assert curves["run_id"].nunique() == 2
    for _, run in curves.sort_values("epoch").groupby("run_id"):
        assert run["train_loss_full"].iloc[-1] < run["train_loss_full"].iloc[0]


def test_a_keyword_only_closure_is_handed_by_keyword_whatever_else_step_takes():
    """A positional argument never reaches a keyword-only `closure`: `step(self, *args,
    closure=None)` and `step(self, scaler=None, *, closure=None)` got the closure in `args`
    or `scaler`, and their own `closure` stayed None."""
    from adamrepro.optim.capabilities import closure_by_keyword

    def by_keyword(step) -> bool:
        return closure_by_keyword(type("Opt", (torch.optim.SGD,), {"step": step}))

    assert by_keyword(lambda self, *, closure=None: None)
    assert by_keyword(lambda self, *args, closure=None: None)
    assert by_keyword(lambda self, scaler=None, *, closure=None: None)
    assert by_keyword(lambda self, **kwargs: None)
    # torch's convention, and a step whose one argument has another name: positionally
    assert not by_keyword(lambda self, closure=None: None)
    assert not by_keyword(lambda self, fn=None: None)
    assert not by_keyword(lambda self, *args, **kwargs: None)


def test_every_point_diverged_is_said(tmp_path, data_dir, cli):
    race = {"adam": {"optimizer": "adam", "grid": {"lr": [1.0e-3]}},
            "sgd": {"optimizer": "sgd_nesterov", "grid": {"lr": [1.0e12, 1.0e14]}}}
    code, _, stderr = cli("run", _race(tmp_path, race), "--out", tmp_path / "out", "--scale",
                          "smoke", "--quiet", "--data-dir", data_dir)
    assert code == 0, stderr
    assert "adamrepro: note: every grid point of sgd diverged (NaN or inf)" in stderr
    assert "of adam" not in stderr and "adam," not in stderr
    # every method diverged: best.csv is a header alone, which the figures and the report
    # still read (they said it was damaged, and `run --force` wrote the same again)
    alone = tmp_path / "alone"
    code, _, stderr = cli("run", _race(tmp_path, {"sgd": race["sgd"]}), "--out", alone,
                          "--scale", "smoke", "--quiet", "--data-dir", data_dir)
    assert code == 0 and "every grid point of sgd diverged" in stderr, stderr
    for command in (("plot", "faulty"), ("report",)):
        code, _, stderr = cli(*command, "--out", alone)
        assert code == 0, (command, stderr)


def test_a_users_optimizer_keeps_its_color_in_every_figure(tmp_path, data_dir, cli):
    """torch.optim.ASGD and torch.optim.SGD hash to the same color of EXTRA, so one moves to
    the next. ASGD diverges here: `curves` draws SGD alone, `sensitivity` both (ASGD as ×).
    Each figure once resolved the collision over what it drew, and SGD changed color
    between them; every figure now resolves it over the experiment's optimizers."""
    import matplotlib.image as mpimg
    import numpy as np

    from adamrepro.figures.palette import EXTRA, _hashed

    assert _hashed("torch.optim.ASGD") == _hashed("torch.optim.SGD")
    moved = EXTRA[(_hashed("torch.optim.SGD") + 1) % len(EXTRA)]  # ASGD sorts first
    race = {"asgd": {"optimizer": "torch.optim.ASGD", "grid": {"lr": [1.0e12]}},
            "sgd": {"optimizer": "torch.optim.SGD", "grid": {"lr": [0.1, 0.3]}}}
    out = tmp_path / "out"
    code, _, stderr = cli("run", _race(tmp_path, race), "--out", out, "--scale", "smoke",
                          "--quiet", "--data-dir", data_dir)
    assert code == 0 and "every grid point of asgd diverged" in stderr, stderr
    code, _, stderr = cli("plot", "faulty", "--out", out)
    assert code == 0, stderr
    # the color a user knows it by, from another figure, is not silently another's
    assert (f"adamrepro: note: faulty: torch.optim.SGD is drawn in another color than its own "
            f"({EXTRA[_hashed('torch.optim.SGD')]}), which torch.optim.ASGD has in this "
            f"experiment") in stderr
    rgb = np.array([int(moved[i:i + 2], 16) / 255 for i in (1, 3, 5)])
    for figure in ("curves.png", "sensitivity.png"):
        image = mpimg.imread(out / "faulty" / figure)[..., :3]
        assert (np.abs(image - rgb).max(-1) < 0.02).sum() > 50, f"SGD's color in {figure}"


def test_names_pandas_would_read_as_missing_stay_names(tmp_path, data_dir, cli):
    """An experiment called `nan` with a method called `NA`: their tables, figures and
    report, as any other's."""
    race = {"NA": {"optimizer": "adam", "grid": {"lr": [1.0e-3, 1.0e-2]}}}
    out = tmp_path / "out"
    code, _, stderr = cli("run", _race(tmp_path, race, name="nan"), "--out", out, "--scale",
                          "smoke", "--quiet", "--data-dir", data_dir)
    assert code == 0, stderr
    assert cli("plot", "nan", "--out", out)[0] == 0
    assert (out / "nan" / "sensitivity.png").stat().st_size > 0
    assert cli("report", "--out", out)[0] == 0
    report = (out / "report.md").read_text()
    assert "| NA |" in report
    # no experiment of the paper here: its claims are said to be left out, not listed
    assert "None of the experiments whose claims this report judges" in report
    assert "not run yet" not in report


def test_a_users_optimizer_edited_is_another_run(tmp_path, monkeypatch):
    """A run's id covers the code of a user's optimizer (the files of its class and its
    bases outside torch and adamrepro), so an edited optimizer trains again instead of
    keeping the curves of its old code; a built-in's and torch's ids do not change."""
    from adamrepro.config import parse_experiment
    from adamrepro.runner.plan import plan

    module = tmp_path / "edited_optimizers.py"
    module.write_text((OUTSIDE / "my_optimizers.py").read_text())
    monkeypatch.syspath_prepend(str(tmp_path))
    exp = parse_experiment({
        "name": "edited", "title": "t", "dataset": {"name": "mnist"}, "model": {"name": "logreg"},
        "training": {"batch_size": 128, "epochs": 1},
        "methods": {"mine": {"optimizer": "edited_optimizers:SignSGD", "grid": {"lr": [0.1]}},
                    "adam": {"optimizer": "adam", "grid": {"lr": [0.1]}},
                    "sgd": {"optimizer": "torch.optim.SGD", "grid": {"lr": [0.1]}}}}, "test")

    def ids() -> dict[str, str]:
        return {group.method: group.runs[0].run_id for group in plan(exp)}

    before = ids()
    assert ids() == before  # the same code: the same runs (a resumed sweep skips them)
    text = module.read_text()
    module.write_text(text.replace('alpha=-group["lr"]', 'alpha=-2 * group["lr"]', 1))
    after = ids()
    assert after["mine"] != before["mine"]
    assert {k: v for k, v in after.items() if k != "mine"} == {
        k: v for k, v in before.items() if k != "mine"}


def test_a_closure_given_or_not_is_another_run(monkeypatch):
    """Whether `step` gets a closure can change the curve (an optimizer that re-evaluates
    with one), so `closure:` enters the run id when set: toggling it reused the old runs
    without a word, and two methods differing in it alone were refused as identical. A
    method without it keeps its id."""
    from adamrepro.config import parse_experiment
    from adamrepro.runner.plan import plan

    monkeypatch.syspath_prepend(str(OUTSIDE))

    def ids(**methods) -> dict[str, str]:
        exp = parse_experiment({
            "name": "closures", "title": "t", "dataset": {"name": "mnist"},
            "model": {"name": "logreg"}, "training": {"batch_size": 128, "epochs": 1},
            "methods": {label: {"optimizer": "my_optimizers:SignSGD", "grid": {"lr": [0.1]},
                                **extra} for label, extra in methods.items()}}, "test")
        return {group.method: group.runs[0].run_id for group in plan(exp)}

    both = ids(plain={}, told={"closure": True})  # no longer "identical runs"
    assert both["plain"] != both["told"]
    assert ids(plain={})["plain"] == both["plain"]  # unset: the id it always had
    assert ids(told={"closure": False})["told"] not in both.values()


def test_capabilities_are_declared_not_guessed(monkeypatch):
    monkeypatch.syspath_prepend(str(OUTSIDE))
    assert resolve("adam", OPTIMIZERS).capabilities == Capabilities(True, False, True)
    lbfgs = resolve("torch.optim.LBFGS", OPTIMIZERS)
    assert lbfgs.cls is torch.optim.LBFGS and lbfgs.capabilities.needs_closure
    assert not lbfgs.capabilities.batchable and not lbfgs.capabilities.graphable
    assert resolve("my_optimizers:SignSGD", OPTIMIZERS).capabilities == Capabilities()
    # a config's `closure: true` declares it for a class that says nothing itself
    assert resolve("my_optimizers:SignSGD", OPTIMIZERS, closure=True).capabilities.needs_closure
    assert resolve("my_optimizers:ClosureOnly", OPTIMIZERS,
                   closure=True).capabilities.needs_closure
    assert resolve("my_optimizers:KeywordClosureOnly", OPTIMIZERS,
                   closure=True).capabilities.needs_closure
    # where the config and the class's step disagree, before anything trains
    for name, closure, said in (
            ("torch.optim.LBFGS", False, "LBFGS declares that its step needs a closure; "
                                         "remove `closure: false`"),
            ("my_optimizers:ClosureOnly", None, "ClosureOnly.step requires 'closure', and an "
                                                "optimizer that needs no closure is called as "
                                                "step(); if it is a closure, add `closure: "
                                                "true`"),
            ("my_optimizers:ClosureOnly", False, "add `closure: true`"),
            # a closure by keyword alone, required: step() cannot be called either
            ("my_optimizers:KeywordClosureOnly", None, "KeywordClosureOnly.step requires "
                                                       "'closure', and an optimizer that "
                                                       "needs no closure is called as step()")):
        with pytest.raises(ValueError, match=re.escape(said)):
            resolve(name, OPTIMIZERS, closure=closure)


def test_an_entry_point_registers_an_optimizer(tmp_path, monkeypatch, cli):
    """An installed package's `adamrepro.optimizers` entry point: a distribution on sys.path
    (its .dist-info) names a class in its own module."""
    dist = tmp_path / "fastopt-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fastopt\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[adamrepro.optimizers]\nsignsgd = my_optimizers:SignSGD\n"
        "broken = my_optimizers:NoSuchClass\nadam = my_optimizers:SignSGD\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.syspath_prepend(str(OUTSIDE))
    registered.cache_clear()
    try:
        found = resolve("signsgd", OPTIMIZERS)
        assert found.cls.__name__ == "SignSGD" and not found.builtin
        exp = parse_experiment({
            "name": "ep", "title": "ep", "dataset": {"name": "mnist"},
            "model": {"name": "logreg"}, "training": {"epochs": 1},
            "methods": {"sign": {"optimizer": "signsgd", "grid": {"lr": [1e-3, 1e-2]}}},
        }, "test")
        assert [g.size for g in plan(exp)] == [1, 1]  # not batchable: one run per group
        with pytest.raises(ValueError, match="unknown optimizer 'signsg'; did you mean "
                                             "'signsgd'.*known: .*signsgd"):
            resolve("signsg", OPTIMIZERS)
        # a broken package is listed as such, beside the others; a built-in's name wins
        code, stdout, stderr = cli("list", "optimizers")
        assert code == 0, stderr
        lines = {line.split()[0]: line for line in stdout.splitlines()}
        assert "(entry point)" in lines["signsgd"]
        assert "[cannot be used]" in lines["broken"] and "fails to load" in lines["broken"]
        assert "[ignored]" in stdout and "my_optimizers:SignSGD) has a built-in's name" in stdout
        assert resolve("adam", OPTIMIZERS).builtin
        # and a run of a config naming it says so, on stderr, before anything trains
        code, stdout, stderr = cli("run", "logreg_mnist", "--dry-run", "--out", tmp_path / "o")
        assert code == 0, stderr
        assert ("adamrepro: note: adam: built-in optimizer(s), not the entry point(s) of that "
                "name in group 'adamrepro.optimizers'") in stderr and "note" not in stdout
        # another package registering `signsgd` for another class: neither is used, by name
        other = tmp_path / "otheropt-2.0.dist-info"
        other.mkdir()
        (other / "METADATA").write_text("Metadata-Version: 2.1\nName: otheropt\nVersion: 2.0\n")
        (other / "entry_points.txt").write_text(
            "[adamrepro.optimizers]\nsignsgd = my_optimizers:Faulty\n")
        registered.cache_clear()
        ambiguous.cache_clear()
        said = ("optimizer 'signsgd': installed packages register entry points of that name "
                "for different classes (fastopt: my_optimizers:SignSGD; otheropt: "
                "my_optimizers:Faulty); uninstall all but one")
        with pytest.raises(ValueError, match=re.escape(said)):
            resolve("signsgd", OPTIMIZERS)
        code, stdout, _ = cli("list", "optimizers")
        assert code == 0 and "[cannot be used]" in stdout and said in stdout
    finally:
        registered.cache_clear()
        ambiguous.cache_clear()


# ---------------------------------------------------------------------------------------------
# A workload without labels


def test_a_workload_without_labels_runs_with_its_own_metric_names(tmp_path, data_dir, cli):
    out = tmp_path / "results"
    code, _, stderr = cli("run", TESTS / "configs" / "autoencoder.yaml", "--scale", "smoke",
                          "--out", out, "--quiet", "--data-dir", data_dir)
    assert code == 0, stderr
    folder = out / "autoencoder"
    curves, best = pd.read_csv(folder / "curves.csv"), pd.read_csv(folder / "best.csv")
    for column in ("train_recon_error", "train_recon_error_full", "test_recon_error"):
        assert column in curves.columns and f"final_{column}" in best.columns
    assert not {"train_loss", "test_acc"} & set(curves.columns)
    meta = json.loads((folder / "config.json").read_text())
    assert meta["config"]["selection"]["metric"] == "train_recon_error"
    # it learned: the error of every selected run fell below half its start
    for _, row in best.iterrows():
        run = curves[curves["point_id"] == row["point_id"]].sort_values("epoch")
        assert run["test_recon_error"].iloc[-1] < 0.5 * run["test_recon_error"].iloc[0]
    assert cli("plot", "autoencoder", "--out", out)[0] == 0
    assert (folder / "curves.png").exists() and (folder / "sensitivity.png").exists()
    assert cli("report", "--out", out)[0] == 0
    report = (out / "report.md").read_text()
    assert "final train_recon_error" in report and "test reconstruction error" in report


def test_labels_are_optional_in_the_data(data_dir):
    exp = load_experiment(TESTS / "configs" / "autoencoder.yaml").at_scale("smoke")
    data = load_data(exp, data_dir, torch.device("cpu")).without_labels()
    assert set(data.train) == {"x"}
    group = plan(exp)[0]
    curves = train_group(exp, group, data)
    first, last = curves[0].rows[0], curves[0].rows[-1]
    assert last["train_recon_error_full"] < first["train_recon_error_full"]


# ---------------------------------------------------------------------------------------------
# Honest time


def _timed_config(max_group_size: int | None) -> dict:
    method = {"optimizer": "adam", "grid": {"lr": [1e-4, 1e-3, 1e-2, 1e-1]}}
    if max_group_size:
        method["max_group_size"] = max_group_size
    return {"name": "timed", "title": "timed",
            "dataset": {"name": "mnist", "train_size": 2048, "test_size": 10000},
            "model": {"name": "logreg"}, "training": {"epochs": 2},
            "methods": {"adam": method}}


def test_training_seconds_per_run_batched_and_alone(tmp_path, data_dir):
    """The same 4 runs, as one batched group and one by one: each run records its training
    seconds without the evaluation (10,000 test images after every pass), and the report's
    per-run seconds divide a batched group's time by its size, and say which it was."""
    executor = LocalExecutor(data_dir, torch.device("cpu"))
    folders = {}
    for kind, size in (("batched", None), ("alone", 1)):
        exp = parse_experiment(_timed_config(size), "test")
        run_sweep(exp, "paper", None, tmp_path / kind, executor, quiet=True)
        folders[kind] = tmp_path / kind / "timed"
    batched = pd.read_csv(folders["batched"] / "curves.csv")
    alone = pd.read_csv(folders["alone"] / "curves.csv")
    assert set(batched["group_size"]) == {4} and set(alone["group_size"]) == {1}
    # a batched group's runs share its time; runs alone have their own
    assert batched.groupby("epoch")["train_seconds"].nunique().max() == 1
    assert alone[alone["epoch"] == 2]["train_seconds"].nunique() == 4
    for table in (batched, alone):
        last = table[table["epoch"] == 2]
        # evaluation is not counted: the wall time of the group, which includes it, is more
        assert (last["train_seconds"] < last["seconds"]).all()
        assert (last["train_seconds"] > 0).all()
    measured = {kind: Measured.load(folder) for kind, folder in folders.items()}
    chosen = {kind: m.best_runs("adam") for kind, m in measured.items()}
    expect = {kind: float(runs[runs["epoch"] == 2]["train_seconds"].iloc[0])
              / runs["group_size"].iloc[0] / 2 for kind, runs in chosen.items()}
    for kind in folders:
        assert seconds_per_pass(measured[kind], "adam") == pytest.approx(expect[kind])
    # both in one experiment: the per-pass comparison says which ran batched
    both = pd.concat([batched.assign(method="adam_batched"), alone.assign(method="adam_alone")])
    best = pd.concat([measured["batched"].best.assign(method="adam_batched"),
                      measured["alone"].best.assign(method="adam_alone")])
    one = Measured("timed", both, best, measured["batched"].meta)
    verdict = SlowerPerPass("adam_alone", "adam_batched", low=0.0, high=1e9)(one)
    ratio = expect["alone"] / expect["batched"]
    assert f"{ratio:.2f}x" in verdict.numbers
    assert "adam_alone trained alone" in verdict.numbers
    assert "adam_batched batched" in verdict.numbers


def test_list_models_says_each_metric_s_direction_and_the_objective(cli):
    code, stdout, stderr = cli("list", "models")
    assert code == 0, stderr
    lines = {line.split()[0]: line for line in stdout.splitlines()}
    assert lines["logreg"].endswith("metrics: loss (lower is better), acc (higher is better); "
                                    "objective: loss")
    assert "objective: neg_elbo" in lines["vae"]


def test_list_experiments_sizes_each_scale_as_a_dry_run_plans_it(cli, tmp_path):
    """The sizes `list experiments` prints are those `run --dry-run` plans into an empty
    folder: the runs and passes of each scale with its default seeds."""
    code, stdout, stderr = cli("list", "experiments")
    assert code == 0, stderr
    lines = stdout.splitlines()
    sizes = {lines[i].split()[0]: lines[i + 1] for i in range(0, len(lines), 2)}
    assert sorted(sizes) == sorted(p.stem for p in (REPO / "configs").glob("*.yaml"))
    for name, line in sizes.items():
        listed = dict(re.findall(r"(smoke|quick|paper) (\d+ x \d+)", line))
        for scale in ("quick", "paper"):
            code, text, err = cli("run", name, "--scale", scale, "--dry-run",
                                  "--out", tmp_path / name / scale)
            assert code == 0, err
            runs = dry_run_total(text)["runs"]
            passes = int(re.search(r"(\d+) passes", text).group(1))
            assert listed[scale] == f"{runs} x {passes}", (name, scale, text)
        assert ("grid-edge points may follow" in line) == bool(
            load_experiment(REPO / "configs" / f"{name}.yaml").selection.extend_edges)


def test_a_scale_s_title_names_the_network_that_scale_trains():
    """Fig. 3's CPU scales train narrower layers than the paper's: their figures and report
    must not print the paper's widths. A scale without a title keeps the config's."""
    exp = load_experiment(REPO / "configs" / "cnn_cifar10.yaml")
    for scale in ("smoke", "quick", "paper"):
        resolved = exp.at_scale(scale)
        channels = resolved.model["conv_channels"]
        assert f"c{channels[0]}-c{channels[1]}-c{channels[2]}-{resolved.model['hidden']}" \
            in resolved.title, scale
    assert exp.at_scale("paper").title == exp.title


def test_committed_results_are_still_owned_by_their_configs():
    """`run` resumes into a results folder only when the config's base digest is the one
    the folder recorded (store.check_owner): a key added to the schema since, such as a
    scale's `title`, must leave the digest of a config that does not use it unchanged."""
    for name in ("logreg_mnist", "logreg_imdb"):
        recorded = json.loads((REPO / "results" / name / "config.json").read_text())
        assert recorded["scale"] == "paper"
        exp = load_experiment(REPO / "configs" / f"{name}.yaml")
        assert base_digest(exp) == recorded["base_digest"], name
        assert config_digest(exp.at_scale("paper")) == recorded["config_digest"], name


def test_a_scale_s_model_is_checked_against_the_model_each_method_trains():
    """A scale's `model` keys merge into the experiment's, and each method's own keys over
    both (at_scale, the runner): config validation checks that combination. Every method
    here trains an MLP on a logistic-regression experiment, so `hidden` is an MLP option."""
    raw = yaml.safe_load((REPO / "configs" / "logreg_mnist.yaml").read_text())
    for method in raw["methods"].values():
        method["model"] = {**method.get("model", {}), "name": "mlp"}
    raw["scales"]["smoke"]["model"] = {"hidden": [8]}
    exp = parse_experiment(raw, "test")
    assert exp.at_scale("smoke").model["hidden"] == [8]
    raw["scales"]["smoke"]["model"] = {"hidden": [0]}
    with pytest.raises(UserError, match=r"methods\.\w+ at scale smoke: scales\.smoke\.model"):
        parse_experiment(raw, "test")


def test_a_closure_steps_recorded_loss_is_the_loss_before_the_step(data_dir):
    """A closure optimizer's (LBFGS's) training loss is its closure's first evaluation, at
    the weights before the step, as every other method's: one step a pass over the whole
    (small) training set makes it pass 0's cost on the training set. A later evaluation,
    after its inner iterations, was lower and passed the suite: it would flatter such a
    method in a race."""
    exp = parse_experiment({
        "name": "closure_loss", "title": "t",
        "dataset": {"name": "mnist", "train_size": 256, "test_size": 64},
        "model": {"name": "logreg"},
        "training": {"epochs": 1, "batch_size": 256, "dtype": "float64"},
        "seeds": 1, "methods": {"lbfgs": {"optimizer": "torch.optim.LBFGS",
                                          "hparams": {"max_iter": 5}, "grid": {"lr": [0.5]}}},
    }, "test")
    (group,) = plan(exp)
    (curve,) = train_group(exp, group, load_data(exp, data_dir, torch.device("cpu")))
    before, after = curve.rows[0], curve.rows[1]
    assert after["train_loss"] == pytest.approx(before["train_loss_full"], rel=1e-9)
    assert after["train_loss_full"] < 0.9 * before["train_loss_full"]  # it trained
