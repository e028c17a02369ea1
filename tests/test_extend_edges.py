"""Grid-edge extension (`selection.extend_edges`): the next point per edge and round on
hand-made tables, the optimizer's bounds, and real sweeps on a small MNIST subset (the
selection ends inside the extended grid; a resumed sweep equals an uninterrupted one)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import torch

from adamrepro.config import load_experiment
from adamrepro.runner.executors import LocalExecutor
from adamrepro.runner.extend import extended_text, log_axes, next_points
from adamrepro.runner.sweep import run_sweep

CONFIGS = Path(__file__).parent.parent / "configs"


def experiment(methods: dict, extend: int = 2, **scale):
    """logreg_mnist with other methods and grids, `extend_edges` set."""
    base = load_experiment(CONFIGS / "logreg_mnist.yaml")
    specs = {label: base.methods["adam"].model_copy(update=spec) for label, spec in
             methods.items()}
    exp = base.model_copy(update={
        "methods": specs,
        "selection": base.selection.model_copy(update={"extend_edges": extend})})
    return exp


def best_at(label: str, point: dict) -> tuple[pd.DataFrame, dict]:
    return pd.DataFrame([{"method": label, "point_id": "p"}]), {"p": point}


def test_only_positive_real_axes_with_two_values_extend():
    axes = log_axes({"lr": [1e-3, 1e-2, 3e-2], "one": [0.5], "n": [1, 2, 4],
                     "beta1": [0.0, 0.9], "flag": [True, False]})
    assert list(axes) == ["lr"] and axes["lr"] == pytest.approx((10.0, 3.0))


def test_an_edge_point_adds_one_point_per_round_and_stops_after_k():
    exp = experiment({"adam": {"grid": {"lr": [1e-3, 3e-3, 1e-2]}}}, extend=2)
    points = {"adam": exp.methods["adam"].points()}
    fixed = exp.methods["adam"].hparams
    steps: Counter = Counter()
    chosen = {**fixed, "lr": 1e-3}
    added = []
    for _ in range(4):  # the selection stays at the low edge every round
        lowest = min(p["lr"] for p in points["adam"])
        best, hparams_of = best_at("adam", {**chosen, "lr": lowest})
        new = next_points(exp, best, hparams_of, points, steps)
        assert len(new.get("adam", [])) <= 1
        for point in new.get("adam", []):
            points["adam"].append(point)
            added.append(point["lr"])
    assert added == [pytest.approx(3.33333e-4), pytest.approx(1.11111e-4)]
    assert extended_text(steps, "adam") == "lr-2"
    # the selection inside the grid adds nothing
    best, hparams_of = best_at("adam", {**chosen, "lr": 3e-3})
    assert next_points(exp, best, hparams_of, {"adam": exp.methods["adam"].points()},
                       Counter()) == {}


def test_the_high_edge_uses_the_grid_step_there():
    exp = experiment({"adam": {"grid": {"lr": [1e-3, 3e-3, 1e-2]}}}, extend=1)
    points = {"adam": exp.methods["adam"].points()}
    best, hparams_of = best_at("adam", {**exp.methods["adam"].hparams, "lr": 1e-2})
    new = next_points(exp, best, hparams_of, points, Counter())
    assert [p["lr"] for p in new["adam"]] == [pytest.approx(3.33333e-2)]


def test_a_point_the_optimizer_refuses_is_never_added():
    # RMSProp's alpha must stay below 1: 0.99 x (0.99 / 0.9) = 1.089 is refused
    exp = experiment({"rmsprop": {"optimizer": "rmsprop", "hparams": {"eps": 1e-8},
                                  "grid": {"lr": [1e-3, 1e-2], "alpha": [0.9, 0.99]}}})
    points = {"rmsprop": exp.methods["rmsprop"].points()}
    steps, closed = Counter(), set()
    best, hparams_of = best_at("rmsprop", {"eps": 1e-8, "lr": 1e-3, "alpha": 0.99})
    new = next_points(exp, best, hparams_of, points, steps, closed)
    assert new == {"rmsprop": [{"eps": 1e-8, "lr": 1e-4, "alpha": 0.99}]}
    assert closed == {("rmsprop", "alpha", "+")}
    assert extended_text(steps, "rmsprop") == "lr-1"


def test_a_point_another_method_trains_is_never_added():
    """Two methods alike but for their grids (Adam over lr 1e-4, 1e-3 and over 1e-2, 1e-1):
    the point beyond the first's high edge, 1e-2, is one of the second's, whose runs, and
    run ids, it would share (the report and figures would read one run as both methods'):
    that edge closes instead, and so does the second's low edge."""
    exp = experiment({"low": {"grid": {"lr": [1e-4, 1e-3]}},
                      "high": {"grid": {"lr": [1e-2, 1e-1]}}}, extend=2)
    points = {label: exp.methods[label].points() for label in ("low", "high")}
    fixed = exp.methods["low"].hparams
    best = pd.DataFrame([{"method": "low", "point_id": "a"}, {"method": "high", "point_id": "b"}])
    hparams_of = {"a": {**fixed, "lr": 1e-3}, "b": {**fixed, "lr": 1e-2}}
    steps, closed = Counter(), set()
    assert next_points(exp, best, hparams_of, points, steps, closed) == {}
    assert closed == {("low", "lr", "+"), ("high", "lr", "-")} and not steps
    # a point no other method trains still extends: the low edge of "low"
    hparams_of["a"] = {**fixed, "lr": 1e-4}
    new = next_points(exp, best, hparams_of, points, Counter(), set())
    assert new == {"low": [{**fixed, "lr": 1e-5}]}


def test_stored_runs_beyond_either_edge_are_known_as_the_extensions_runs():
    """A results folder's runs beyond its grid, below the smallest lr (an extension at the
    low edge) as above the largest, are the runs this config's extension trains, by the ids
    it gives them; a run inside the grid's range off its values, or of a method the config
    lacks, is none: a config whose digest changed since (an option added to the schema) may
    write into a folder only while every run of its tables is the grid's or the
    extension's (store.check_owner)."""
    from adamrepro.runner.extend import stored_extensions
    from adamrepro.runner.plan import method_groups

    exp = experiment({"adam": {"grid": {"lr": [1e-3, 3e-3, 1e-2]}}}, extend=2)
    fixed = exp.methods["adam"].hparams

    def ids(lr: float) -> set[str]:
        return {run.run_id for group in method_groups(exp, "adam", [{**fixed, "lr": lr}])
                for run in group.runs}

    below, further_below, above = 3.33333e-4, 1.11111e-4, 3.33333e-2
    curves = pd.DataFrame(
        [{"method": "adam", "lr": lr, "run_id": f"stored-{lr:g}"}
         for lr in (further_below, below, 1e-3, 3e-3, 5e-3, 1e-2, above)]
        + [{"method": "sgd", "lr": 1e-5, "run_id": "stored-sgd"}])
    assert stored_extensions(exp, curves) == ids(further_below) | ids(below) | ids(above)


# --- real sweeps on a small MNIST subset ----------------------------------------------------

def wrong_edge(extend: int):
    """Adam on logistic regression with a grid far below its best step size."""
    base = experiment({"adam": {"grid": {"lr": [1e-4, 1e-3]}}}, extend=extend)
    return base.model_copy(update={"scales": {"smoke": base.scales["smoke"].model_copy(
        update={"train_size": 512, "test_size": 256, "extend_edges": None})}})


def tables(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    timing = ["seconds", "train_seconds", "peak_memory_bytes", "commit", "torch_version",
              "device", "date", "group_id", "group_size"]
    curves = pd.read_csv(folder / "curves.csv").sort_values(["run_id", "epoch"])
    best = pd.read_csv(folder / "best.csv").sort_values("method")
    return (curves.drop(columns=[c for c in timing if c in curves.columns]).reset_index(drop=True),
            best.reset_index(drop=True))


@pytest.fixture(scope="module")
def extended(tmp_path_factory, data_dir):
    out = tmp_path_factory.mktemp("extended")
    done = run_sweep(wrong_edge(3), "smoke", None, out,
                     LocalExecutor(data_dir, torch.device("cpu")), quiet=True)
    return out, done


def test_a_grid_starting_at_the_wrong_edge_ends_with_the_selection_inside(extended):
    out, done = extended
    curves, best = tables(out / "logreg_mnist")
    row = best.set_index("method").loc["adam"]
    lrs = sorted(curves[curves["method"] == "adam"]["lr"].unique())
    assert lrs[:2] == [1e-4, 1e-3] and len(lrs) > 2 and done["trained"] == len(lrs)
    assert row["extended"].startswith("lr+")
    assert lrs[0] < row["lr"] < lrs[-1]
    assert pd.isna(row["at_grid_edge"])


class Interrupted(LocalExecutor):
    """Trains `budget` groups, then stops the command as a crash would."""

    def __init__(self, data_dir, budget: int) -> None:
        super().__init__(data_dir, torch.device("cpu"))
        self.budget = budget

    def run(self, exp, groups, on_pass, checkpoints=None):
        for item in super().run(exp, groups, on_pass, checkpoints):
            if self.budget == 0:
                raise KeyboardInterrupt
            self.budget -= 1
            yield item


def test_a_resumed_sweep_with_extensions_equals_an_uninterrupted_one(extended, tmp_path,
                                                                     data_dir):
    # two groups: the grid, then the first extension round's point; then it stops
    with pytest.raises(KeyboardInterrupt):
        run_sweep(wrong_edge(3), "smoke", None, tmp_path, Interrupted(data_dir, 2), quiet=True)
    again = run_sweep(wrong_edge(3), "smoke", None, tmp_path,
                      LocalExecutor(data_dir, torch.device("cpu")), quiet=True)
    assert again["trained"] < extended[1]["trained"]
    for resumed, whole in zip(tables(tmp_path / "logreg_mnist"),
                              tables(extended[0] / "logreg_mnist"), strict=True):
        pd.testing.assert_frame_equal(resumed, whole)


def test_a_finished_extension_groups_checkpoint_is_removed(extended, tmp_path, data_dir):
    """A kill between an extension round's last record and the removal of its group's
    checkpoint leaves the file; that group is never trained again, so the next command
    removes it once the rounds are known (a paper-scale checkpoint is 0.26-20 GB)."""
    import json
    import shutil

    from adamrepro.runner.plan import plan

    shutil.copytree(extended[0], tmp_path / "out")
    runs = tmp_path / "out" / "logreg_mnist" / "runs"
    grid = {group.group_id for group in plan(wrong_edge(3).at_scale("smoke"))}
    rounds = {json.loads(path.read_text())["group_id"] for path in runs.glob("*.json")} - grid
    assert rounds  # the extension rounds trained groups of their own
    leftover = runs / f"{sorted(rounds)[0]}.ckpt.pt"
    leftover.write_bytes(b"the state a kill left behind")
    done = run_sweep(wrong_edge(3), "smoke", None, tmp_path / "out",
                     LocalExecutor(data_dir, torch.device("cpu")), quiet=True)
    assert done["trained"] == 0 and not leftover.exists()


def test_an_extended_folder_takes_its_config_changed_where_no_run_changes(extended, tmp_path,
                                                                          data_dir):
    """A config whose digest changed since (its title here; an option added to the schema
    does the same) may write into a folder its grid and extension trained: the extension's
    runs, which the plan alone does not list, are its own, not another config's (it was
    told to pass --force, which would have trained every run again)."""
    import shutil

    from adamrepro.runner.plan import base_digest

    shutil.copytree(extended[0], tmp_path / "out")
    retitled = wrong_edge(3).model_copy(update={"title": "Adam from the wrong edge"})
    assert base_digest(retitled) != base_digest(wrong_edge(3))
    done = run_sweep(retitled, "smoke", None, tmp_path / "out",
                     LocalExecutor(data_dir, torch.device("cpu")), quiet=True)
    assert done["trained"] == 0
    for again, whole in zip(tables(tmp_path / "out" / "logreg_mnist"),
                            tables(extended[0] / "logreg_mnist"), strict=True):
        pd.testing.assert_frame_equal(again, whole)


def test_bundled_configs_train_three_seeds_at_paper_scale_only_and_extend_where_tuned():
    tuned = ("logreg_mnist", "logreg_imdb", "mlp", "cnn_cifar10")  # the paper tuned α there
    for path in sorted(CONFIGS.glob("*.yaml")):
        base = load_experiment(path)
        smoke, quick, paper = (base.at_scale(s) for s in ("smoke", "quick", "paper"))
        assert (smoke.seeds, quick.seeds, paper.seeds) == (1, 1, 3), path.stem
        assert base.at_scale("paper", seeds=1).seeds == 1  # --seeds wins
        if path.stem in tuned:
            assert (smoke.selection.extend_edges, quick.selection.extend_edges) == (0, 2)
    assert {path.stem for path in CONFIGS.glob("*.yaml")} >= set(tuned)


def test_the_report_says_how_far_a_grid_was_extended(extended):
    from adamrepro.report.build import write_report

    out, _ = extended
    report = write_report(out)[0].read_text()
    assert "(grid extended: lr+" in report


def test_a_dry_run_counts_the_rounds_the_stored_results_decided(extended, tmp_path, data_dir):
    """Cut off after the grid and the first round, a dry run counts both rounds and the
    next one's point (decided from the first's results) and says more may follow; on the
    uninterrupted sweep it counts every run it trained and nothing left."""
    from adamrepro.runner.preview import preview

    cpu = torch.device("cpu")
    before = preview(wrong_edge(3), "smoke", None, tmp_path, False, None, cpu)
    assert before.extension_pending and before.extension_rounds == 0
    with pytest.raises(KeyboardInterrupt):
        run_sweep(wrong_edge(3), "smoke", None, tmp_path, Interrupted(data_dir, 2), quiet=True)
    cut = preview(wrong_edge(3), "smoke", None, tmp_path, False, None, cpu)
    stored = len(list((tmp_path / "logreg_mnist" / "runs").glob("*.json")))
    [adam] = cut.methods
    assert cut.extension_pending and cut.extension_rounds == 2
    assert adam.finished == stored and adam.left == len(adam.groups_left) == 1
    again = run_sweep(wrong_edge(3), "smoke", None, tmp_path, LocalExecutor(data_dir, cpu),
                      quiet=True)
    assert again["trained"] >= adam.left
    whole = preview(wrong_edge(3), "smoke", None, extended[0], False, None, cpu)
    [adam] = whole.methods
    assert not whole.extension_pending and whole.runs_left == 0
    assert adam.runs == adam.finished == extended[1]["trained"]
    assert whole.extension_rounds == adam.runs - 2  # one point a round beyond the 2 of the grid
