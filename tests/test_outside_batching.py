"""A user's batchable optimizer (a GridOptimizer subclass) is checked, when its config is
loaded, to update each run of a group as that run alone: one that mixes the runs is refused
in one line, where it trained curves that changed with the grouping under the same run ids;
one that does not trains batched, each run's curve what it is trained alone."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

OUTSIDE = Path(__file__).resolve().parent / "outside"


def _race(tmp_path: Path, optimizer: str, **method) -> Path:
    """Logistic regression on real MNIST at smoke scale: the user's method over three step
    sizes, one group."""
    config = {"name": "batched_race", "title": "a user's batched optimizer",
              "dataset": {"name": "mnist"},
              "model": {"name": "logreg", "l2": 1.0e-4, "init": "normal", "init_scale": 0.01},
              "training": {"batch_size": 128, "epochs": 2},
              "methods": {"mine": {"optimizer": optimizer,
                                   "grid": {"lr": [1.0e-4, 1.0e-3, 1.0e-2]}, **method}},
              "scales": {"smoke": {"train_size": 1024, "test_size": 512}}}
    path = tmp_path / f"race-{len(list(tmp_path.glob('race-*')))}.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


@pytest.mark.parametrize(("optimizer", "method", "said"), [
    # (G,) against the weight's last dimension: 10 classes, so it fails only in a group
    ("my_grid_optimizers:RawLr", {}, "in a group of 3 runs its step raises RuntimeError: "),
    ("my_grid_optimizers:WholeNorm", {}, "apart (relative) from that run trained alone, in a "
                                         "parameter of shape (G, "),
    # a step given a closure is batched all the same, and checked so
    ("my_grid_optimizers:WholeNorm", {"closure": True}, "apart (relative) from that run "
                                                        "trained alone"),
    # the first three points of an lr x eps grid shared one eps: the probe varies each axis
    ("my_grid_optimizers:FirstEps", {"grid": {"lr": [1.0e-3, 1.0e-2, 1.0e-1],
                                              "eps": [0.1, 1.0, 10.0]}},
     "apart (relative) from that run trained alone"),
])
def test_an_optimizer_that_mixes_the_runs_of_a_group_is_refused(optimizer, method, said,
                                                                tmp_path, cli, data_dir,
                                                                monkeypatch):
    monkeypatch.syspath_prepend(str(OUTSIDE))
    out = tmp_path / "out"
    code, stdout, stderr = cli("run", _race(tmp_path, optimizer, **method), "--scale", "smoke",
                               "--out", out, "--quiet", "--data-dir", data_dir)
    assert code == 2 and stdout == ""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    assert (f"methods.mine: {optimizer} trains a group of runs batched, and they are not "
            f"independent: ") in lines[0]
    assert said in lines[0], lines[0]
    assert "declare `capabilities = Capabilities()` on the class" in lines[0]
    assert not out.exists()


def test_a_correct_one_trains_batched_as_each_run_alone(tmp_path, cli, data_dir, monkeypatch):
    """SignMomentum (Lion) trains its three step sizes as one group, and each curve equals
    the run trained in a group of its own (`max_group_size: 1`); WholeNorm, declared to train
    one run at a time, is accepted."""
    monkeypatch.syspath_prepend(str(OUTSIDE))
    tables = {}
    for name, method in (("batched", {}), ("alone", {"max_group_size": 1})):
        out = tmp_path / name
        code, _, stderr = cli("run", _race(tmp_path, "my_grid_optimizers:SignMomentum",
                                           **method),
                              "--scale", "smoke", "--out", out, "--quiet", "--data-dir",
                              data_dir)
        assert code == 0, stderr
        tables[name] = pd.read_csv(out / "batched_race" / "curves.csv")
    assert tables["batched"]["group_size"].max() == 3
    assert tables["alone"]["group_size"].max() == 1
    columns = ["lr", "epoch", "train_loss", "train_loss_full", "test_loss", "test_acc"]
    batched, alone = (tables[name][columns].sort_values(["lr", "epoch"]).reset_index(drop=True)
                      for name in ("batched", "alone"))
    assert batched["train_loss_full"].iloc[-1] != batched["train_loss_full"].iloc[0]
    pd.testing.assert_frame_equal(batched, alone, rtol=1e-5)
    code, _, stderr = cli("run", _race(tmp_path, "my_grid_optimizers:WholeNormAlone"),
                          "--scale", "smoke", "--out", tmp_path / "declared", "--quiet",
                          "--data-dir", data_dir, "--dry-run")
    assert code == 0, stderr


@pytest.mark.parametrize("clips", [[1.0, None], [None, 1.0]])
def test_points_of_another_kind_are_never_probed_as_one_group(clips, monkeypatch):
    """`clip: null` is no number: its runs train in a group apart from `clip: 1.0`'s (the
    runner groups by every setting that is not a number), and a probe that mixed them
    refused a correct class when the grid listed 1.0 first."""
    from adamrepro.optim.batching import batching_problem, probe_points

    monkeypatch.syspath_prepend(str(OUTSIDE))
    from my_grid_optimizers import Clipped

    points = [{"lr": lr, "clip": clip} for lr in (0.1, 0.01) for clip in clips]
    assert {point["clip"] for point in probe_points(points)} == {clips[0]}
    assert batching_problem(Clipped, points) is None


def test_a_user_s_grid_optimizer_is_batched_but_not_graphed_unless_it_says_so(monkeypatch):
    """A GridOptimizer subclass from elsewhere inherited our `graphable`: its step, its own
    code, would be captured in a CUDA graph on a GPU (and compiled by compile_optimizer),
    where a host sync or a branch on values freezes at capture and trains wrong curves on a
    GPU alone. Its batching is checked at load; graphs, as the README's table says, only
    where the class declares them itself."""
    from adamrepro.optim import OPTIMIZERS
    from adamrepro.optim.capabilities import Capabilities, capabilities_of

    monkeypatch.syspath_prepend(str(OUTSIDE))
    import my_grid_optimizers as mine

    inherited = capabilities_of(mine.SignMomentum)
    assert inherited.batchable and not inherited.graphable

    class Declared(mine.SignMomentum):
        capabilities = Capabilities(batchable=True, graphable=True)

    assert capabilities_of(Declared).graphable
    assert capabilities_of(OPTIMIZERS["adam"]).graphable  # ours keep theirs
    assert not capabilities_of(OPTIMIZERS["sfo"]).graphable
