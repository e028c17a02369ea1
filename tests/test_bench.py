"""`adamrepro bench`: it runs end to end and writes what it promises (no timed assertions:
speeds depend on the machine and its load)."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from dynamo_import import dynamo_imported_from

from adamrepro.bench.flops import FlopCount, experiment_flops, flop_count, flops_sentence
from adamrepro.bench.machine import cpu_seconds, other_cores
from adamrepro.cli import main
from adamrepro.cli.bench import _note_busy
from adamrepro.config import load_experiment, resolve_config_arg
from adamrepro.data.base import TensorDataset
from adamrepro.runner.history import RunCurve
from adamrepro.runner.plan import config_digest, plan, seeds_of


def bench(tmp_path: Path, data_dir: Path, *options: str) -> dict:
    """Run the command in-process (one thread: fast and steady on a busy machine)."""
    threads = torch.get_num_threads()
    argv = ["bench", "logreg_mnist", "--device", "cpu", "--scale", "smoke",
            "--out", str(tmp_path), "--data-dir", str(data_dir), "--quiet", "--threads", "1",
            *options]
    assert main(argv) == 0
    assert torch.get_num_threads() == threads  # the command leaves the process as it was
    return json.loads((tmp_path / "bench" / "logreg_mnist-cpu-smoke.json").read_text())


def test_bench_smoke_writes_json_and_csv(tmp_path, data_dir):
    result = bench(tmp_path, data_dir)

    assert result["experiment"] == "logreg_mnist" and result["scale"] == "smoke"
    assert result["device"] == "cpu" and result["threads"] == 1
    assert "cores" in result["hardware"] and result["machine_load"]["cpu_count"] >= 1
    for key in ("commit", "torch_version", "date", "device"):
        assert result["provenance"][key]
    assert result["provenance"]["torch_version"] == torch.__version__
    rows = {row["implementation"]: row for row in result["results"]}
    assert set(rows) == {"batched", "reference"}
    grid_runs = len([run for g in plan(_smoke()) for run in g.runs])
    for row in rows.values():
        assert row["runs"] == grid_runs
        assert row["run_passes"] == grid_runs * result["grid"]["passes"]
        for key in ("seconds", "run_passes_per_s", "samples_per_s", "flops_per_s",
                    "fraction_of_peak", "peak_memory_bytes"):
            assert row[key] > 0 and math.isfinite(row[key]), key
    assert rows["batched"]["flops"] == rows["reference"]["flops"]  # the same work
    assert result["ratio"] == pytest.approx(
        rows["batched"]["run_passes_per_s"] / rows["reference"]["run_passes_per_s"])
    assert result["peak"]["flops_per_s"] > 0
    assert result["memory_kind"].startswith("peak_rss")
    assert not result["reference_subset"]["extrapolated"]
    check = result["check"]
    assert check["passed"] is True and check["timed_curves"]["compared_values"] > 0
    # logistic regression is convex: its whole float32 curves are judged, beside float64
    assert check["timed_curves"]["judged"] and check["timed_curves"]["dtype"] == "float32"
    prefix = check["float64_prefix"]
    assert prefix["passed"] and prefix["runs"] == grid_runs and prefix["passes"] == 2
    assert prefix["compared_values"] == grid_runs * 8  # 3 records x 3 losses, less pass 0's
    assert prefix["max_relative_difference"] < 1e-12
    assert "TFLOP" in result["flops_summary"] or "GFLOP" in result["flops_summary"]
    # what was timed: the config at that scale, as a sweep's config.json records it
    assert result["config_digest"] == config_digest(_smoke())
    assert result["seeds"] == seeds_of(_smoke())
    assert result["config"]["methods"].keys() == _smoke().methods.keys()

    table = pd.read_csv(tmp_path / "bench" / "logreg_mnist-cpu-smoke.csv")
    assert list(table["implementation"]) == ["batched", "reference"]
    for column in ("ratio", "run_passes_per_s", "samples_per_s", "flops_per_s",
                   "peak_flops_per_s", "peak_memory_bytes", "date", "commit", "hardware",
                   "torch_version", "config_digest", "seeds"):
        assert column in table.columns, column


def test_bench_reference_subset_is_extrapolated_and_said(tmp_path, data_dir):
    result = bench(tmp_path, data_dir, "--reference-runs", "1", "--reference-passes", "1")
    groups = len(plan(_smoke()))
    rows = {row["implementation"]: row for row in result["results"]}
    assert rows["reference"]["runs"] == groups and rows["reference"]["run_passes"] == groups
    assert rows["batched"]["run_passes"] == result["grid"]["runs"] * result["grid"]["passes"]
    subset = result["reference_subset"]
    assert subset["extrapolated"] and subset["passes_per_run"] == 1
    assert f"ran {groups} of {result['grid']['runs']} runs for 1 of 2 passes" in subset["note"]
    check = result["check"]
    assert check["passed"] is True  # compared where both ran: pass 0 and 1
    assert check["timed_curves"]["compared_values"] == groups * 5  # 2 x 3 losses, less NaN
    assert check["float64_prefix"]["runs"] == groups  # the float64 check follows the subset


def test_the_float64_check_sees_a_reference_on_other_minibatches(data_dir):
    """The check that judges a network: with the reference's copy of the training set moved
    by one row (each minibatch then differs from the batched one in its examples), the float64
    curves of Fig. 2b's MLP differ far beyond rounding; with the same copy they are equal."""
    from adamrepro.bench.same_curves import identity_check
    from adamrepro.runner.executors import load_data

    exp = load_experiment(resolve_config_arg("mlp_sfo")).at_scale("smoke")
    groups = [g for g in plan(exp) if g.resolved.capabilities.batchable and g.size > 1][:1]
    data = load_data(exp, data_dir, torch.device("cpu"))
    same = identity_check(exp, groups, data, data, 2)
    assert same["passed"] and same["runs"] == 2 and same["max_relative_difference"] < 1e-12
    moved = TensorDataset({k: torch.roll(v, 1, 0) for k, v in data.train.items()},
                          data.test, data.num_classes)
    other = identity_check(exp, groups, data, moved, 2)
    assert not other["passed"] and other["mismatches"]
    assert other["max_relative_difference"] > 1e-4


def test_timed_curves_in_bf16_are_reported_not_judged(tmp_path, data_dir):
    """`bench --precision bf16`: the reference loop computes in full float32, so against bf16
    batched runs the timed curves of a convex model differ by bf16's rounding; they are
    reported, and the float64 check (which trains both in float64) decides. The files are the
    precision's own, beside the fp32 bench's."""
    argv = ["bench", "logreg_mnist", "--device", "cpu", "--scale", "smoke", "--out",
            str(tmp_path), "--data-dir", str(data_dir), "--quiet", "--threads", "1",
            "--precision", "bf16", "--passes", "1", "--reference-runs", "1"]
    assert main(argv) == 0
    assert not (tmp_path / "bench" / "logreg_mnist-cpu-smoke.json").exists()
    result = json.loads((tmp_path / "bench" / "logreg_mnist-cpu-smoke-bf16.json").read_text())
    assert result["precision"] == "bf16"
    table = pd.read_csv(tmp_path / "bench" / "logreg_mnist-cpu-smoke-bf16.csv")
    assert set(table["precision"]) == {"bf16"}
    check = result["check"]
    timed = check["timed_curves"]
    assert not timed["judged"] and "bf16" in timed["not_judged"]
    assert not timed["passed"]  # bf16 moves the losses beyond float32's tolerance
    assert check["passed"] and check["float64_prefix"]["passed"]


def _smoke():
    return load_experiment(resolve_config_arg("logreg_mnist")).at_scale("smoke")


def test_flop_count_by_hand():
    """784->10 logistic regression, batch 128: forward 2*128*7840, backward weight gradient
    only (the pixels need none); evaluation forward over train + test."""
    exp = _smoke()
    data = TensorDataset.labelled(torch.zeros(1000, 784), torch.zeros(1000, dtype=torch.long),
                         torch.zeros(500, 784), torch.zeros(500, dtype=torch.long), 10)
    count = flop_count(exp, plan(exp)[0], data)
    assert count == FlopCount(train_step=4 * 128 * 7840, train_pass=7 * 4 * 128 * 7840,
                              eval_pass=2 * 1500 * 7840)
    assert count.run(3) == 3 * (count.train_pass + count.eval_pass) + count.eval_pass
    flops = experiment_flops(exp, data)
    assert flops["total_flops"] == flops["runs"] * count.run(exp.training.epochs)
    assert "MFLOP per training step" in flops_sentence(flops)


def test_imdb_s_sparse_input_is_counted_as_the_dense_model_it_computes():
    """IMDB's logistic regression with input dropout takes the sparse input path on a CPU,
    whose gathers FlopCounterMode does not see: counted as written (dense) instead, binary
    output, batch 128: forward 2*128*D and the weight gradient 2*128*D, on any device."""
    exp = load_experiment(resolve_config_arg("logreg_imdb")).at_scale("smoke")
    D = 300
    train = torch.zeros(256, D, dtype=torch.uint8)
    train[:, :4] = 1  # a few non-zeros, as bag-of-words counts
    data = TensorDataset.labelled(train, torch.zeros(256, dtype=torch.long),
                                  train[:64], torch.zeros(64, dtype=torch.long), 2)
    group = next(g for g in plan(exp) if g.model.get("input_dropout"))
    assert group.model.get("sparse_input", "auto") == "auto"  # sparse on this CPU
    assert flop_count(exp, group, data).train_step == 4 * 128 * D


def test_mlp_flops_count_input_gradients_of_hidden_layers():
    exp = load_experiment(resolve_config_arg("mlp")).at_scale("smoke")
    data = TensorDataset.labelled(torch.zeros(256, 784), torch.zeros(256, dtype=torch.long),
                         torch.zeros(256, 784), torch.zeros(256, dtype=torch.long), 10)
    count = flop_count(exp, plan(exp)[0], data)
    macs = 784 * 1000 + 1000 * 1000 + 1000 * 10
    assert count.train_step == 128 * (2 * macs + 2 * macs + 2 * (macs - 784 * 1000))


def test_bench_times_the_vae_against_its_straightforward_loop(tmp_path, data_dir):
    """Fig. 4 has a reference loop too (`VAEReference`), so every experiment of the paper has a
    ratio to the straightforward loop; its ε differs from the batched draws, so the curves are
    not compared, and the command says why."""
    argv = ["bench", "vae_bias_correction", "--device", "cpu", "--scale", "smoke",
            "--out", str(tmp_path), "--data-dir", str(data_dir), "--quiet", "--threads", "1",
            "--reference-runs", "1", "--passes", "1"]
    assert main(argv) == 0
    result = json.loads((tmp_path / "bench" / "vae_bias_correction-cpu-smoke.json").read_text())
    rows = {row["implementation"]: row for row in result["results"]}
    assert rows["reference"]["run_passes"] > 0 and result["ratio"] > 0
    assert result["check"]["passed"] is None and "VAE's ε" in result["check"]["skipped"]


def test_bench_says_the_vae_s_epsilon_whatever_the_locale(tmp_path, data_dir, ascii_locale):
    """What bench prints says "a VAE's ε": where stdout's encoding was ASCII or Latin-1, that
    line was a UnicodeEncodeError (a traceback, its tables already written). It is written
    as a backslash escape there, and the command ends as anywhere else."""
    done = subprocess.run(
        [sys.executable, "-m", "adamrepro", "bench", "vae_bias_correction", "--device", "cpu",
         "--scale", "smoke", "--out", str(tmp_path), "--data-dir", str(data_dir), "--quiet",
         "--threads", "1", "--reference-runs", "1", "--passes", "1"],
        env=ascii_locale, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "a VAE's \\u03b5" in done.stdout, done.stdout


def test_the_reference_vae_starts_from_the_batched_weights_and_learns(data_dir):
    """Run `seed`'s slice of the batched VAE's initial weights, layer by layer, and a pass of
    the straightforward loop lowers the negative ELBO from the untrained ~543 nats."""
    from adamrepro.bench.reference import VAEReference, train_run
    from adamrepro.models.vae import VAE
    from adamrepro.runner.executors import load_data

    exp = load_experiment(resolve_config_arg("vae_bias_correction")).at_scale("smoke")
    run = next(r for g in plan(exp) for r in g.runs if r.seed == 0)
    opts = VAE.options(dict(run.model), "model")
    batched = VAE(opts, (784,), None, [1, 0])
    reference = VAEReference(opts, (784,), None, 0)
    for name in ("enc_hidden", "enc_out", "dec_hidden", "dec_out"):
        stacked, linear = getattr(batched, name), getattr(reference, name)
        assert torch.equal(stacked.weight[1], linear.weight.T), name
    data = load_data(exp, data_dir, torch.device("cpu"))
    curve = train_run(exp, run, data, epochs=1)
    first, last = curve.rows[0], curve.rows[-1]
    assert set(first) >= {"train_neg_elbo", "train_neg_elbo_full", "test_neg_elbo",
                          "test_recon", "test_kl"}
    assert 500 < first["test_neg_elbo"] < 600  # p = 0.5 everywhere scores 543.4 nats
    assert last["train_neg_elbo_full"] < first["train_neg_elbo_full"]
    assert last["test_neg_elbo"] == pytest.approx(last["test_recon"] + last["test_kl"])


def _curve(**values: list[float]) -> RunCurve:
    """A run's curve from each metric's values, pass 0 first."""
    passes = len(next(iter(values.values())))
    return RunCurve([{"epoch": e, **{k: v[e] for k, v in values.items()}}
                     for e in range(passes)], diverged=False)


def test_a_loss_the_batched_run_lacks_or_moves_beyond_the_tolerance_is_a_mismatch():
    """The curves compared value by value, in float32 (rtol 1e-4): equal curves pass, with
    pass 0's minibatch cost (NaN on both sides) left out; a batched run that has no value
    where the reference has one (it diverged) fails, and so does a loss 1% off, while an
    accuracy off by one example (not compared: it may flip in float32) does not."""
    from adamrepro.bench.same_curves import compare_curves

    nan = math.nan
    reference = {"train_loss": [nan, 0.5, 0.4], "train_loss_full": [2.3, 0.45, 0.35],
                 "test_loss": [2.3, 0.5, 0.42], "test_acc": [0.1, 0.85, 0.875]}
    exp = _smoke()
    assert exp.training.dtype == "float32"

    def check(**changed: list[float]) -> dict:
        return compare_curves(exp, {"r": _curve(**{**reference, **changed})},
                              {"r": _curve(**reference)})

    same = check()
    assert same["passed"] and same["compared_values"] == 3 * 3 - 1
    assert check(test_acc=[0.1, 0.85, 0.875 + 1 / 256])["passed"]
    lost = check(test_loss=[2.3, 0.5, nan])
    assert not lost["passed"] and "pass 2 test_loss" in lost["mismatches"][0]
    off = check(train_loss_full=[2.3, 0.45 * 1.01, 0.35])
    assert not off["passed"] and "pass 1 train_loss_full" in off["mismatches"][0]


def test_timed_curves_of_a_convex_model_in_fp32_decide_the_check(data_dir):
    """Logistic regression in fp32 on the CPU: the timed curves are judged, so a reference
    trained on other minibatches (its copy of the training set moved by one row) fails the
    check even though the float64 prefix, which reads the same data, passes; the same
    reference on the same data passes it."""
    from adamrepro.bench.reference import train_run
    from adamrepro.bench.same_curves import curves_check
    from adamrepro.runner.executors import load_data
    from adamrepro.runner.group import train_group

    exp = _smoke()
    group = plan(exp)[0]
    data = load_data(exp, data_dir, torch.device("cpu"))
    moved = TensorDataset({k: torch.roll(v, 1, 0) for k, v in data.train.items()},
                          data.test, data.num_classes)
    run = group.runs[0]
    batched = dict(zip((r.run_id for r in group.runs), train_group(exp, group, data),
                       strict=True))
    for reference, passed in ((data, True), (moved, False)):
        check = curves_check(exp, [group], data, data, 1, batched,
                             {run.run_id: train_run(exp, run, reference)})
        timed = check["timed_curves"]
        assert check["float64_prefix"]["passed"] and timed["judged"]
        assert timed["passed"] is passed and check["passed"] is passed


def test_timed_curves_are_judged_only_when_every_group_trains_a_convex_model():
    """Groups of logistic regression alone, in fp32: judged. With a group of Fig. 2b's MLP
    beside them, not judged (the network amplifies float32 rounding along training)."""
    from adamrepro.bench.same_curves import not_judged

    exp = _smoke()
    convex = plan(exp)
    network = plan(load_experiment(resolve_config_arg("mlp_sfo")).at_scale("smoke"))[:1]
    cpu = torch.device("cpu")
    assert not_judged(exp, convex, cpu) is None
    assert "network" in not_judged(exp, [*convex, *network], cpu)
    assert "network" in not_judged(exp, [*network, *convex], cpu)


def test_passes_beyond_the_scale_are_said_and_the_progress_is_on_stderr(tmp_path, data_dir,
                                                                       cli, monkeypatch):
    """`--passes 50` at smoke scale (2 passes) timed 2 without a word, `--reference-runs 99`
    every run of groups of 7; the bars went to stdout, between the lines the bench prints as
    its figures. On a terminal (rich's TTY_COMPATIBLE says stderr is one) each bar has an
    ETA, as run's has; elsewhere none is drawn."""
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    code, stdout, stderr = cli("bench", "logreg_mnist", "--device", "cpu", "--scale", "smoke",
                               "--out", tmp_path, "--data-dir", data_dir, "--threads", "1",
                               "--passes", "50", "--reference-passes", "7",
                               "--reference-runs", "99")
    assert code == 0, stderr
    # the words, without the styles and cursor moves of a terminal
    stdout, stderr = (re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text) for text in (stdout, stderr))
    largest = max(group.size for group in plan(_smoke()))
    assert (f"note: --reference-runs 99: the smoke scale's largest group has {largest} runs; "
            f"timing every run of each group") in stderr, stderr
    assert "note: --passes 50: the smoke scale has 2 passes; timing them" in stderr, stderr
    assert "note: --reference-passes 7: the smoke scale has 2 passes" in stderr, stderr
    assert re.search(r"\d+/\d+ run-passes", stderr), stderr
    assert re.search(r"run-passes \d:\d\d:\d\d eta (\d:\d\d:\d\d|-:--:--)", stderr), stderr
    assert not re.search(r"\d+/\d+ run-passes", stdout), stdout
    assert "cores, 1 thread in use" in stdout and "1 threads" not in stdout, stdout
    result = json.loads((tmp_path / "bench" / "logreg_mnist-cpu-smoke.json").read_text())
    assert result["grid"]["passes"] == 2


def test_sigterm_stops_the_bench_at_once_without_a_traceback(tmp_path, data_dir):
    """The bench keeps no checkpoints, so a SIGTERM ends it at once (a sweep's first SIGTERM
    asks its groups to save one, test_checkpoint.py): a bench group asked that ended the
    command with a traceback of the runner's `BudgetSpent`."""
    command = [sys.executable, "-m", "adamrepro", "bench", "logreg_mnist", "--device", "cpu",
               "--scale", "quick", "--out", str(tmp_path), "--data-dir", str(data_dir),
               "--quiet", "--threads", "1", "--workers", "2"]
    job = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           start_new_session=True)
    assert job.stdout.readline().startswith("bench logreg_mnist --scale quick on ")
    time.sleep(2.0)  # into the timed groups (the quick scale's take over ten seconds)
    assert job.poll() is None, "the bench ended before SIGTERM"
    os.killpg(job.pid, signal.SIGTERM)
    _, stderr = job.communicate(timeout=60)
    assert job.returncode == 128 + signal.SIGTERM, stderr
    assert "Traceback" not in stderr and "checkpoint" not in stderr, stderr
    assert stderr.strip().splitlines()[-1].startswith(
        "adamrepro: terminated (SIGTERM); each file it wrote is whole"), stderr
    assert not list(tmp_path.rglob("*.json")), list(tmp_path.rglob("*"))


def test_the_bench_imports_dynamo_before_it_times_anything(tmp_path, data_dir):
    """torch.optim's step imports torch._dynamo at its first call (1.4 s here), which no
    later pass pays, and adamrepro's optimizers no longer do (optim/dynamo_deferred.py): the
    bench imports it itself before any timed phase (`_timed`), so the reference loop's first
    timed pass never pays it. Until then torch 2.13's FlopCounterMode imported it first, by
    chance of the order of run_bench's steps."""
    code, frames = dynamo_imported_from(
        "bench", "logreg_mnist", "--device", "cpu", "--scale", "smoke", "--out", str(tmp_path),
        "--data-dir", str(data_dir), "--quiet", "--threads", "1")
    assert code == 0 and frames, frames
    timing = os.path.join("adamrepro", "bench", "timing.py")
    ours = [frame for frame in frames if "adamrepro" in frame]
    assert ours[-1] == f"run_bench@{ours[-1].split('@')[1]}" and ours[-1].endswith(timing), ours
    assert not any(frame.startswith("_timed@") for frame in frames), frames


def test_a_user_s_batchable_optimizer_is_said_not_timed(tmp_path, data_dir, monkeypatch,
                                                         capsys):
    """A user's GridOptimizer subclass is batchable, but the reference loop has no twin of
    it: the bench raised KeyError once the batched side had been timed, and wrote nothing.
    Its method is named as not timed, and the others are benched."""
    import yaml

    monkeypatch.syspath_prepend(str(Path(__file__).parent / "outside"))
    config = yaml.safe_load((Path(__file__).parent.parent / "configs" / "logreg_mnist.yaml")
                            .read_text())
    config["methods"] = {"adam": config["methods"]["adam"],
                         "mine": {"optimizer": "my_grid_optimizers:SignMomentum",
                                  "grid": {"lr": [1.0e-3, 1.0e-2]}}}
    path = tmp_path / "logreg_mnist.yaml"
    path.write_text(yaml.safe_dump(config))
    argv = ["bench", str(path), "--device", "cpu", "--scale", "smoke", "--out",
            str(tmp_path / "out"), "--data-dir", str(data_dir), "--quiet", "--threads", "1"]
    assert main(argv) == 0, capsys.readouterr().err
    result = json.loads((tmp_path / "out" / "bench" / "logreg_mnist-cpu-smoke.json").read_text())
    assert result["not_timed"] == ["mine"]
    assert "batchable from outside adamrepro" in capsys.readouterr().out


def test_a_bench_in_workers_says_so_in_its_provenance(tmp_path, data_dir):
    """The batched side trained in 2 worker processes of 1 thread; the provenance said
    "x2 threads", the one-process layout, as `run`'s records say the layout they trained in."""
    result = bench(tmp_path, data_dir, "--workers", "2")
    assert result["batched_workers"] == 2
    assert result["provenance"]["device"].endswith(" x2 worker processes of 1 thread"), result


def test_in_workers_the_reference_loop_trains_as_parallel_as_the_batched_side(tmp_path,
                                                                             data_dir):
    """With 2 workers the batched side trained in 2 processes of 1 thread and the reference
    loop in one process, so the ratio credited the batched runner with a parallelism the loop
    could have had too (1.8-2.8x here), and rose with the machine's load. The reference's
    runs (the first one of each group, here) now train in as many workers, each its own
    curve: the same as the batched one's."""
    result = bench(tmp_path, data_dir, "--workers", "2", "--reference-runs", "1")
    assert result["reference_workers"] == result["batched_workers"] == 2
    assert result["reference_worker_peak_memory_bytes"] > 0  # set by the workers alone
    groups = plan(_smoke())
    rows = {row["implementation"]: row for row in result["results"]}
    assert rows["reference"]["runs"] == len(groups)
    assert rows["reference"]["run_passes"] == len(groups) * result["grid"]["passes"]
    check = result["check"]
    assert check["passed"] is True and check["float64_prefix"]["runs"] == len(groups)
    # every run the reference trained in a worker, compared with its batched twin
    assert check["timed_curves"]["compared_values"] == len(groups) * 8
    for row in rows.values():  # what other processes took meanwhile: measured, not assumed
        assert row["other_processes_cores"] >= 0.0
    table = pd.read_csv(tmp_path / "bench" / "logreg_mnist-cpu-smoke.csv")
    assert set(table["workers"]) == {2} and "other_processes_cores" in table.columns


def test_sigterm_while_the_reference_trains_in_workers_stops_at_once(tmp_path, data_dir):
    """The reference loop's workers are stopped as the batched side's are: a SIGTERM while
    they train ends the command at once, in one line, with nothing written and no worker
    left behind."""
    job = _bench_in_workers_until(tmp_path, data_dir, "reference")
    os.killpg(job.pid, signal.SIGTERM)
    stderr = job.stderr.read()
    job.wait(timeout=60)
    assert job.returncode == 128 + signal.SIGTERM, stderr
    assert "Traceback" not in stderr, stderr
    assert stderr.strip().splitlines()[-1].startswith("adamrepro: terminated (SIGTERM)"), stderr
    assert not list(tmp_path.rglob("*.json")), list(tmp_path.rglob("*"))
    assert _group_gone(job.pid), "a worker of the reference loop outlived the command"


@pytest.mark.parametrize("side", ["batched", "reference"])
def test_a_worker_killed_outright_is_one_line_of_what_the_bench_keeps(tmp_path, data_dir,
                                                                      side):
    """A worker killed by SIGKILL (the kernel's out-of-memory killer) on either side: one
    line, exit 2, nothing written. The batched side's line was `run`'s, "finished runs and
    saved checkpoints are kept: run the same command again", which would time it all again,
    beside the reference's "nothing was written" for the same death."""
    job = _bench_in_workers_until(tmp_path, data_dir, side)
    workers = Path(f"/proc/{job.pid}/task/{job.pid}/children").read_text().split()
    assert len(workers) == 2, workers
    os.kill(int(workers[0]), signal.SIGKILL)
    stderr = job.stderr.read()
    job.wait(timeout=120)
    assert job.returncode == 2, stderr[-2000:]
    lines = [line for line in stderr.splitlines() if not line.startswith(f"adamrepro: {side}: ")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr[-2000:]
    assert lines[0].startswith("adamrepro: error: a worker process died while "), lines
    assert "nothing was written: with --workers 1" in lines[0], lines
    assert not list(tmp_path.rglob("*.json")), list(tmp_path.rglob("*"))
    assert _group_gone(job.pid)


def _bench_in_workers_until(tmp_path: Path, data_dir: Path, side: str) -> subprocess.Popen:
    """A quick bench of 2 passes in 2 workers, in a session of its own, once `side`
    ("batched" or "reference") has trained its first pass: its workers train (the quick
    scale's 32 runs take seconds a side)."""
    command = [sys.executable, "-m", "adamrepro", "bench", "logreg_mnist", "--device", "cpu",
               "--scale", "quick", "--passes", "2", "--out", str(tmp_path), "--data-dir",
               str(data_dir), "--threads", "1", "--workers", "2"]
    job = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           text=True, start_new_session=True,
                           env={**os.environ, "ADAMREPRO_PROGRESS_SECONDS": "0"})
    seen = []
    for line in job.stderr:
        seen.append(line)
        if line.startswith(f"adamrepro: {side}: "):
            break
    assert job.poll() is None, "".join(seen)
    return job


def _group_gone(group: int, seconds: float = 10.0) -> bool:
    """Whether no process of the process group is left within `seconds` (workers die with
    their driver, and a process that just died may not be reaped yet)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def test_the_cores_other_processes_take_are_told_from_ours():
    """A phase's "other processes" are the machine's busy time less this process's and its
    reaped children's (a phase's workers are reaped before it ends). A child that spins
    through the phase, reaped only after it, counts as another process; the same child
    reaped within it counts as ours."""
    spin = [sys.executable, "-c",
            "import time\nend = time.time() + 1.5\nwhile time.time() < end: pass"]

    def phase(reaped_within: bool) -> float:
        before, start = cpu_seconds(), time.perf_counter()
        child = subprocess.Popen(spin)
        time.sleep(1.0)
        if reaped_within:
            child.wait()
        seconds = time.perf_counter() - start
        cores = other_cores(before, cpu_seconds(), seconds)
        child.wait()
        return cores

    ours, theirs = phase(reaped_within=True), phase(reaped_within=False)
    # about 1 core apart, whatever else the machine does meanwhile
    assert theirs - ours > 0.4, (ours, theirs)
    assert math.isnan(other_cores(None, cpu_seconds(), 1.0))


def test_a_proc_stat_of_fewer_fields_is_read_or_left_unknown(tmp_path, monkeypatch):
    """A first line of /proc/stat without steal time (a kernel before 2.6.11, an emulated
    /proc) raised ValueError from the first timed phase, and the bench ended in a traceback:
    the missing fields count as 0, and a line that cannot be read is unknown (NaN cores)."""
    import adamrepro.bench.machine as machine

    stat = tmp_path / "stat"
    monkeypatch.setattr(machine, "open", lambda path: stat.open() if path == "/proc/stat"
                        else open(path), raising=False)  # the module's open, not builtins'
    tick = os.sysconf("SC_CLK_TCK")
    stat.write_text("cpu  100 20 50 1000 10 3 2\ncpu0 100 20 50 1000 10 3 2\n")
    assert machine.cpu_seconds()[0] == pytest.approx((100 + 20 + 50 + 3 + 2) / tick)
    stat.write_text("cpu  100 20 50 1000\n")
    assert machine.cpu_seconds()[0] == pytest.approx(170 / tick)
    for unreadable in ("cpu  100 20\n", "cpu  a b c d e f g h\n", ""):
        stat.write_text(unreadable)
        assert machine.cpu_seconds() is None, unreadable
    assert math.isnan(other_cores(machine.cpu_seconds(), machine.cpu_seconds(), 1.0))


def test_a_busy_machine_is_said_from_what_others_took_while_each_side_ran(capsys):
    """The note read the load average once, before the start: a machine that became busy
    while the reference ran went unsaid. It now reads what other processes took during each
    side, and falls back on the load average where that is unknown (not Linux)."""
    def said(batched: float, reference: float, load: float) -> str:
        _note_busy({"machine_load": {"cpu_count": 2, "load_average_before": load},
                    "results": [{"implementation": "batched", "other_processes_cores": batched},
                                {"implementation": "reference",
                                 "other_processes_cores": reference}]})
        return capsys.readouterr().err

    assert "0.90 while the reference side ran" in said(0.0, 0.9, 0.0)
    assert said(0.1, 0.2, 1.9) == ""  # the load average of earlier jobs: not this bench's
    assert "load average 1.9" in said(math.nan, math.nan, 1.9)
    assert said(math.nan, math.nan, 0.5) == ""
    # one side unknown: the other still said, whichever it is
    assert "0.90 while the reference side ran" in said(math.nan, 0.9, 0.0)
    assert "0.90 while the batched side ran" in said(0.9, math.nan, 0.0)
    assert said(math.nan, 0.1, 1.9) == ""
