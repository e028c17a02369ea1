"""What the runner records and decides, checked piece by piece against values worked out by
hand: the metric columns a declaration gives, the passes and divergence a group's history
records, the minibatch order of every pass, the within-pass block means, when a checkpoint
is due or a budget stops a group, and how runs are cut into groups and halves."""

from __future__ import annotations

import csv
import json
import math
import time
from pathlib import Path

import torch

from adamrepro.config import parse_experiment
from adamrepro.metrics import CLASSIFIER, Metric, MetricSet, metric_set
from adamrepro.results.tables import read_table
from adamrepro.runner.checkpoint import Budget, GroupCheckpoint
from adamrepro.runner.group import MinibatchOrder, block_means
from adamrepro.runner.history import GroupHistory
from adamrepro.runner.plan import group_id_of, halves, plan, unfinished
from adamrepro.seeding import ORDER_STREAM, seeded_generator


def test_every_column_is_better_in_its_own_metric_s_direction():
    """A column takes the direction of the metric it measures, not the objective's: the
    classifier's test accuracy is higher-is-better beside its lower-is-better losses, and an
    objective declared higher-is-better keeps that in its training columns."""
    directions = {c.name: c.lower_is_better for c in CLASSIFIER.columns()}
    assert directions == {"train_loss": True, "train_loss_full": True, "test_loss": True,
                          "test_acc": False}
    rising = MetricSet((Metric("reward", lower_is_better=False), Metric("cost")), "reward")
    directions = {c.name: c.lower_is_better for c in rising.columns()}
    assert directions == {"train_reward": False, "train_reward_full": False,
                          "test_reward": False, "test_cost": True}


def test_a_declaration_reads_back_from_config_json_as_declared():
    """Every reader of the tables takes the model's declaration from config.json: read back,
    the objective is the one declared wherever it stands among the metrics (a declaration
    listing it second read as the first metric's would look for columns no run wrote), and
    each metric keeps its direction and percent."""
    cost_first = MetricSet((Metric("cost"), Metric("reward", lower_is_better=False,
                                                   percent=True)), "reward")
    for declared in (CLASSIFIER, cost_first):
        meta = json.loads(json.dumps({"metrics": declared.to_json()}))
        assert metric_set(meta) == declared
    assert metric_set(meta).train_column == "train_reward"
    assert metric_set({}) == CLASSIFIER  # a folder written before models declared metrics


def _row(*columns: list[float]) -> torch.Tensor:
    """One pass's (columns, G) record."""
    return torch.tensor(columns, dtype=torch.float64)


def _history(passes: list[torch.Tensor], seconds: list[float] | None = None,
             columns: tuple[str, ...] = ("train_loss", "test_loss"),
             checked: int = 2) -> GroupHistory:
    """A history that began with passes[0] and recorded the others as passes 1, 2, ...
    (pass k's training took seconds[k - 1]), stopping as the loop does once every run has
    diverged."""
    G = passes[0].shape[1]
    history = GroupHistory(G, list(columns), checked)
    history.begin(passes[0])
    seconds = seconds or [1.0] * (len(passes) - 1)
    for epoch, (row, took) in enumerate(zip(passes[1:], seconds, strict=True), start=1):
        if not history.end_pass(epoch, row, None, (0, math.nan), lambda took=took: took):
            break
    return history


def test_a_table_reads_back_every_number_exactly_as_written():
    """Each number of a committed curves.csv reads back as the very float its text names:
    pandas 2's default parser (Python 3.10 takes pandas 2) returned 1 in 7 of them a few
    units in the last place off, so two runs that far apart compared "identical, bit for
    bit" and a rerun's timing matched no checkpoint's."""
    path = Path(__file__).resolve().parent.parent / "results" / "logreg_imdb" / "curves.csv"
    with path.open(newline="") as file:
        rows = list(csv.DictReader(file))
    table = read_table(path)
    checked = 0
    for column in table.columns:
        if table[column].dtype.kind != "f":
            continue
        written = [float(row[column]) if row[column] else math.nan for row in rows]
        for read, text in zip(table[column].tolist(), written, strict=True):
            assert read == text or (math.isnan(read) and math.isnan(text)), (column, text, read)
        checked += len(written)
    assert checked > 100_000  # every float column of Fig. 1 right's paper-scale table


def test_a_run_that_diverges_is_recorded_up_to_that_pass_and_marked_there_alone():
    """Run 0's loss turns NaN at pass 2 (run 1 stays finite): run 0's curve ends at pass 2,
    whose row alone says diverged; run 1 goes on to pass 3 and is never marked."""
    nan = math.nan
    history = _history([_row([nan, nan], [2.0, 2.0]), _row([1.0, 1.0], [1.5, 1.4]),
                        _row([nan, 0.9], [nan, 1.2]), _row([nan, 0.8], [nan, 1.1])])
    gone, alive = history.curves([1], None, "train_loss")
    assert gone.diverged and not alive.diverged
    assert [r["epoch"] for r in gone.rows] == [0, 1, 2]
    assert [r["diverged"] for r in gone.rows] == [False, False, True]
    assert [r["epoch"] for r in alive.rows] == [0, 1, 2, 3]
    assert not any(r["diverged"] for r in alive.rows)
    assert [r["test_loss"] for r in alive.rows] == [2.0, 1.4, 1.2, 1.1]


def test_every_run_diverged_ends_the_group_at_that_pass():
    """When the last run alive diverges, `end_pass` says so and the loop stops: no run has a
    row after the pass it diverged at."""
    nan = math.nan
    history = _history([_row([nan, nan], [2.0, 2.0]), _row([1.0, nan], [1.0, nan]),
                        _row([nan, nan], [nan, nan]), _row([0.5, 0.5], [0.5, 0.5])])
    first, second = history.curves([1], None, "train_loss")
    assert [r["epoch"] for r in first.rows] == [0, 1, 2]
    assert [r["epoch"] for r in second.rows] == [0, 1]
    assert first.rows[-1]["diverged"] and second.rows[-1]["diverged"]


def test_an_optimizer_statistic_that_is_not_finite_is_no_divergence():
    """Only the metric columns decide divergence: a per-pass statistic of the optimizer
    (beyond `checked`) that is infinite or NaN is recorded as it is, and the run goes on."""
    nan, inf = math.nan, math.inf
    history = _history([_row([nan], [2.0], [nan]), _row([1.0], [1.5], [inf]),
                        _row([0.9], [1.4], [nan])],
                       columns=("train_loss", "test_loss", "max_step_ratio"), checked=2)
    (curve,) = history.curves([1], None, "train_loss")
    assert not curve.diverged and [r["epoch"] for r in curve.rows] == [0, 1, 2]
    assert curve.rows[1]["max_step_ratio"] == inf and math.isnan(curve.rows[2]["max_step_ratio"])


def test_a_run_diverged_before_a_checkpoint_stays_diverged_after_the_resume():
    """Run 0 diverges at pass 2, the group saves a checkpoint and stops, and the next command
    restores it for pass 3 (where run 0, its weights NaN, is NaN again): its curve still ends
    at pass 2 with that row marked, as in a group never stopped; run 1 goes on."""
    nan = math.nan
    passes = [_row([nan, nan], [2.0, 2.0]), _row([1.0, 1.0], [1.5, 1.4]),
              _row([nan, 0.9], [nan, 1.2]), _row([nan, 0.8], [nan, 1.1])]
    whole = _history(passes)
    saved = _history(passes[:3]).state()
    resumed = GroupHistory(2, ["train_loss", "test_loss"], 2)
    resumed.restore(saved, torch.device("cpu"))
    assert resumed.end_pass(3, passes[3], None, (0, math.nan), lambda: 1.0)
    for a, b in zip(resumed.curves([1], None, "train_loss"),
                    whole.curves([1], None, "train_loss"), strict=True):
        assert a.diverged == b.diverged
        assert [(r["epoch"], r["diverged"]) for r in a.rows] == [
            (r["epoch"], r["diverged"]) for r in b.rows]
    gone = resumed.curves([1], None, "train_loss")[0]
    assert gone.diverged and [r["epoch"] for r in gone.rows] == [0, 1, 2]


def test_train_seconds_add_up_the_passes_training_times():
    """`train_seconds` of pass k is the training time of passes 1..k (pass 0: none), what the
    wall-clock rules divide by; here each pass says how long it took."""
    row = _row([1.0], [1.0])
    history = _history([row, row, row, row], seconds=[0.25, 0.5, 2.0])
    (curve,) = history.curves([1], None, "train_loss")
    assert [r["train_seconds"] for r in curve.rows] == [0.0, 0.25, 0.75, 2.75]


def test_block_means_average_each_block_and_the_short_last_one_over_its_own_steps():
    """Five steps in blocks of two: the means of steps 1-2, 3-4, and of step 5 alone."""
    losses = torch.tensor([[1.0, 10.0], [3.0, 30.0], [5.0, 50.0], [7.0, 70.0],
                           [9.0, 90.0]], dtype=torch.float64)
    blocks = block_means(losses, 2)
    assert blocks.tolist() == [[2.0, 20.0], [6.0, 60.0], [9.0, 90.0]]


def test_every_pass_draws_a_new_permutation_from_the_seed_s_order_stream():
    """A run's minibatch order is reshuffled each pass: pass 1 is the first permutation the
    seed's order stream draws, pass 2 the next one from the same generator (not pass 1
    again), each a permutation of the whole training set; runs sharing a seed share it."""
    n = 50
    order = MinibatchOrder([4, 9, 4], n, torch.device("cpu"))
    first, second = order.new_pass(), order.new_pass()
    assert first.shape == second.shape == (2, n)  # one row per distinct seed
    assert order.index_of_run.tolist() == [0, 1, 0]
    for row, seed in enumerate((4, 9)):
        stream = seeded_generator(seed, ORDER_STREAM)
        assert torch.equal(first[row], torch.randperm(n, generator=stream))
        assert torch.equal(second[row], torch.randperm(n, generator=stream))
        assert not torch.equal(first[row], second[row])
        assert sorted(second[row].tolist()) == list(range(n))


def test_a_periodic_checkpoint_is_due_every_k_passes_but_never_after_the_last():
    """every=2 over 4 passes: after pass 2 only (after pass 4 the records follow at once);
    every=3 over 7 passes: after passes 3 and 6."""
    two, three = (GroupCheckpoint(Path("g.ckpt.pt"), every) for every in (2, 3))
    assert [e for e in range(1, 5) if two.due(e, 4)] == [2]
    assert [e for e in range(1, 8) if three.due(e, 7)] == [3, 6]
    assert not any(GroupCheckpoint(Path("g.ckpt.pt"), None).due(e, 4) for e in range(1, 5))


def test_a_budget_stops_a_group_whose_passes_left_would_end_after_the_deadline():
    """100 s left, passes of 60 s and a save of 50 s: with two passes left (120 s) the group
    saves and stops now; with one left (60 s) it finishes instead of saving. Margins of tens
    of seconds: the test's own run time does not matter."""
    checkpoint = GroupCheckpoint(Path("g.ckpt.pt"), None, Budget(deadline=time.time() + 100))
    assert checkpoint.stop(8, 10, last_pass_seconds=60.0, save_seconds=50.0)
    assert not checkpoint.stop(9, 10, last_pass_seconds=60.0, save_seconds=50.0)
    # a short pass and save fit before the deadline: no stop, whatever is left after them
    assert not checkpoint.stop(1, 10, last_pass_seconds=30.0, save_seconds=20.0)


def _sweep(method_cap: int | None = None, training_cap: int | None = None, lrs: int = 6):
    method = {"optimizer": "adam", "grid": {"lr": [10.0 ** -k for k in range(1, lrs + 1)]}}
    if method_cap:
        method["max_group_size"] = method_cap
    training = {"batch_size": 128, "epochs": 1, **(
        {"max_group_size": training_cap} if training_cap else {})}
    return parse_experiment({
        "name": "groups", "title": "groups and halves",
        "dataset": {"name": "mnist", "train_size": 512, "test_size": 256},
        "model": {"name": "logreg"}, "training": training, "seeds": 1, "seed": 0,
        "methods": {"adam": method}}, "test")


def test_the_smaller_of_the_method_s_and_the_training_s_group_caps_applies():
    """Six runs: a cap of 2 cuts them into groups of 2 whether the method or the training
    section sets it, with the other set to 4; uncapped they train as one group."""
    assert [g.size for g in plan(_sweep())] == [6]
    assert [g.size for g in plan(_sweep(method_cap=2, training_cap=4))] == [2, 2, 2]
    assert [g.size for g in plan(_sweep(method_cap=4, training_cap=2))] == [2, 2, 2]


def test_a_method_s_own_cap_makes_other_runs_and_the_training_s_cap_does_not():
    """A method capped to train its runs apart records other times (its own, not a share of
    a batched group's), which the per-pass comparisons read: its runs are other runs, not
    ones a folder of the uncapped method already holds. The training section's cap is a
    memory setting: the same runs."""
    def ids(exp) -> set[str]:
        return {run.run_id for group in plan(exp) for run in group.runs}

    assert ids(_sweep(method_cap=1)).isdisjoint(ids(_sweep()))
    assert ids(_sweep(training_cap=1)) == ids(_sweep())


def test_a_group_s_halves_put_the_extra_run_first_and_have_their_own_ids():
    """Five runs halve into the first three and the last two, in order, each half named by
    its own runs (as a group planned with just those runs would be)."""
    (group,) = plan(_sweep(lrs=5))
    first, second = halves(group)
    assert (first.runs, second.runs) == (group.runs[:3], group.runs[3:])
    assert first.group_id == group_id_of(group.runs[:3]) != group.group_id
    assert second.group_id == group_id_of(group.runs[3:]) != first.group_id


def test_what_is_left_of_a_group_follows_the_group_each_finished_run_was_trained_in():
    """plan.py `unfinished`, on a group of four runs (a, b, c, d), from which runs are
    finished and the group each one's record names:
    - none finished, or a finished run trained in this very group (a command killed while
      it wrote the group's records), even beside runs trained elsewhere: the whole group,
      which retraces the same curves (its noise is seeded by its identity);
    - every run finished: nothing;
    - otherwise (it was split to fit, and part of it finished): the same of each half, with
      that half's own identity, down to single runs."""
    (group,) = plan(_sweep(lrs=4))
    a, b, c, d = (run.run_id for run in group.runs)
    first, second = halves(group)

    def left(trained_in: dict[str, str]) -> list[tuple]:
        return [tuple(run.run_id for run in part.runs) for part in
                unfinished(group, lambda run_id: run_id in trained_in, trained_in.__getitem__)]

    whole = [(a, b, c, d)]
    assert left({}) == whole
    assert left({a: group.group_id}) == whole
    assert left({a: group.group_id, b: first.group_id, c: "elsewhere"}) == whole
    assert left(dict.fromkeys((a, b, c, d), "elsewhere")) == []
    assert left({a: first.group_id, b: first.group_id}) == [(c, d)]
    assert left({a: first.group_id, c: second.group_id}) == [(a, b), (c, d)]
    assert left({a: "elsewhere"}) == [(b,), (c, d)]
    parts = unfinished(group, {a, b}.__contains__, lambda run_id: first.group_id)
    assert [part.group_id for part in parts] == [second.group_id]


def test_a_grid_s_groups_do_not_depend_on_the_order_its_keys_are_written_in(data_dir,
                                                                           one_thread):
    """The same grid written `{eps, lr}` or `{lr, eps}` is the same runs in the same groups:
    a group's dropout masks are seeded by its identity, which its runs' order makes, so
    another order gave the same run ids other curves (and a folder trained with one order
    retrained the other's unfinished groups from scratch)."""
    import pandas as pd

    from adamrepro.runner.executors import load_data
    from adamrepro.runner.group import train_group

    def sweep(grid: dict):
        return parse_experiment({
            "name": "order", "title": "grid key order",
            "dataset": {"name": "mnist", "train_size": 512, "test_size": 256},
            "model": {"name": "logreg", "input_dropout": 0.5},
            "training": {"batch_size": 128, "epochs": 1, "dtype": "float64"},
            "seeds": 1, "seed": 0, "methods": {"adam": {"optimizer": "adam", "grid": grid}}},
            "test")

    eps, lr = [1e-8, 1e-3], [1e-3, 1e-2]
    written, swapped = sweep({"eps": eps, "lr": lr}), sweep({"lr": lr, "eps": eps})
    (group,), (other,) = plan(written), plan(swapped)
    assert other.group_id == group.group_id
    assert [run.run_id for run in other.runs] == [run.run_id for run in group.runs]
    data = load_data(written, data_dir, torch.device("cpu"))

    def curves(exp, group) -> pd.DataFrame:
        return pd.concat([pd.DataFrame(curve.rows).assign(run_id=run.run_id) for run, curve in
                          zip(group.runs, train_group(exp, group, data), strict=True)]
                         ).drop(columns=["seconds", "train_seconds"]).sort_values(
                             ["run_id", "epoch"], ignore_index=True)

    pd.testing.assert_frame_equal(curves(swapped, other), curves(written, group),
                                  check_exact=True)
