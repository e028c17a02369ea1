"""The kernel switches of `training` on real data: `compile_optimizer` and `compile_model`
(MNIST, an MLP with dropout, so the compiled step must draw the eager step's masks) and
`channels_last` (CIFAR-10, the CNN, with shared and with per-run inputs) each trace the
default's curves up to float rounding; none changes a run id; a checkpoint written without
them resumes with them; scripts/bench_kernels.py runs end to end and its loss check can
fail. On a GPU (skipped without one): the same under CUDA graphs, in float64 too.

CPU tests run in float64: the switches compute the same arithmetic in another order (fused
loops, NHWC convolutions), so they agree to ~1e-15 relative; rtol 1e-10 as STYLE.md asks,
while any real difference (another mask, lr or minibatch) moves a loss by more than 1e-4.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from same_curves import seeds_together

from adamrepro.bench.kernels import (
    applicable,
    bench_kernels,
    compare,
    float64_check,
    passed,
    pick_group,
    variant_experiment,
    verdict,
)
from adamrepro.config import parse_experiment
from adamrepro.metrics import CLASSIFIER
from adamrepro.models.cnn import CNN, Options
from adamrepro.runner.checkpoint import Budget, BudgetSpent, GroupCheckpoint
from adamrepro.runner.executors import load_data
from adamrepro.runner.group import (
    build_model,
    channels_last_on,
    minibatch_training,
    train_group,
)
from adamrepro.runner.plan import _config_dump, config_digest, plan

REPO = Path(__file__).resolve().parent.parent
RTOL, ATOL = 1e-10, 1e-12  # see the module docstring
COLUMNS = [c.name for c in CLASSIFIER.columns()] + ["max_step_ratio"]
SWITCHES = ("compile_optimizer", "compile_model", "channels_last")

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def mlp_experiment(dtype: str = "float64", **switches):
    return parse_experiment({
        "name": "kernels", "title": "switches == default",
        "dataset": {"name": "mnist", "train_size": 1024, "test_size": 256},
        "model": {"name": "mlp", "hidden": [64, 32], "input_dropout": 0.2,
                  "hidden_dropout": 0.5, "l2": 1e-3},
        "training": {"batch_size": 64, "epochs": 3, "dtype": dtype, "log_every": 4,
                     **switches},
        "seed": 5,
        "methods": {
            "adam": {"optimizer": "adam", "grid": {"lr": [1e-3, 1e-2]},
                     "hparams": {"averaging": 0.99, "track_step_ratio": True,
                                 "lr_decay": "sqrt"}},
            "sgd": {"optimizer": "sgd_nesterov", "hparams": {"momentum": 0.9},
                    "grid": {"lr": [0.1]}},
        },
    }, "test")


def cnn_experiment(seeds: int, input_dropout: float, dtype: str = "float64", **switches):
    return parse_experiment({
        "name": "kernels_cnn", "title": "channels-last == default",
        "dataset": {"name": "cifar10", "verify": False, "train_size": 256, "test_size": 64},
        "model": {"name": "cnn", "conv_channels": [4, 4, 8], "hidden": 16,
                  "input_dropout": input_dropout},
        "training": {"batch_size": 64, "epochs": 2, "dtype": dtype, **switches},
        "seeds": seeds,
        "methods": {"adam": {"optimizer": "adam", "grid": {"lr": [1e-3, 1e-2]}}},
    }, "test")


def table(curve, columns: list[str] = COLUMNS) -> torch.Tensor:
    return torch.tensor([[row.get(c, float("nan")) for c in columns] for row in curve.rows],
                        dtype=torch.float64)


def assert_same_curves(actual, expected, what: str, rtol: float = RTOL,
                       atol: float = ATOL, columns: list[str] = COLUMNS) -> None:
    assert len(actual) == len(expected)
    for run, (a, b) in enumerate(zip(actual, expected, strict=True)):
        assert a.diverged == b.diverged, what
        torch.testing.assert_close(table(a, columns), table(b, columns), rtol=rtol, atol=atol,
                                   equal_nan=True,
                                   msg=lambda m, run=run: f"{what}, run {run}: {m}")
        steps_a = torch.tensor([list(row.values()) for row in a.steps], dtype=torch.float64)
        steps_b = torch.tensor([list(row.values()) for row in b.steps], dtype=torch.float64)
        torch.testing.assert_close(steps_a, steps_b, rtol=rtol, atol=atol)


def compiled_graphs() -> int:
    return torch._dynamo.utils.counters["stats"]["unique_graphs"]


@pytest.fixture(scope="module")
def mnist(data_dir):
    return load_data(mlp_experiment(), data_dir, torch.device("cpu"))


@pytest.fixture(scope="module")
def cifar(data_dir):
    return load_data(cnn_experiment(1, 0.0), data_dir, torch.device("cpu"))


def test_compiled_step_traces_the_eager_curves(mnist):
    eager, compiled = mlp_experiment(), mlp_experiment(compile_optimizer=True,
                                                       compile_model=True)
    for group in plan(eager):
        expected = train_group(eager, group, mnist)
        before = compiled_graphs()
        actual = train_group(compiled, group, mnist)
        assert compiled_graphs() > before, "nothing was compiled"
        assert_same_curves(actual, expected, f"compiled {group.method}")
        # not vacuous: it learns, and the two step sizes trace different curves
        finals = [curve.rows[-1]["train_loss_full"] for curve in expected]
        assert max(finals) < expected[0].rows[0]["train_loss_full"]
        assert len({round(f, 6) for f in finals}) == len(finals)


def test_compiled_model_alone_traces_the_eager_curves(mnist):
    """The objective compiled, the optimizer not (each switch works without the other)."""
    eager, compiled = mlp_experiment(), mlp_experiment(compile_model=True)
    group = next(g for g in plan(eager) if g.method == "sgd")
    assert_same_curves(train_group(compiled, group, mnist), train_group(eager, group, mnist),
                       "compiled model")


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_compiled_full_width_cnn_has_the_eager_gradients(cifar, channels_last):
    """Fig. 3's CNN as its adam group trains it (4 runs, minibatch 128, every width) in
    float32, one step. With inductor's automatic channels-last layout (its default), torch
    2.13.0 gave every convolution of this group a zero gradient on NCHW activations, and
    other shapes wrong ones (1e-3 relative at 2 runs and 16 hidden units, none at minibatch
    8); compile_model turns that layout off (compiling.py). On NHWC activations (the CPU's
    default, `channels_last: auto`) the layout is ours already. One backward in float32
    rounds to ~1e-6 relative: rtol 1e-4 is loose enough for rounding and fails on either
    error."""
    gradients = []
    for switches in ({}, {"compile_model": True}):
        exp = cnn_experiment(1, 0.0, "float32", channels_last=channels_last, **switches)
        exp = exp.model_copy(update={
            "model": {"name": "cnn"},
            "methods": {"adam": exp.methods["adam"].model_copy(update={
                "grid": {"lr": [3e-5, 1e-4, 3e-4, 1e-3]}})},
            "training": exp.training.model_copy(update={"batch_size": 128})})
        (group,) = plan(exp)
        model = build_model(exp, group, cifar, torch.device("cpu"))
        _, train_pass = minibatch_training(exp, group, cifar, model)
        train_pass.step.new_pass(train_pass.order.new_pass())
        train_pass.run_step(exp.training.batch_size)
        gradients.append({name: p.grad for name, p in model.named_parameters()})
    eager, compiled = gradients
    assert all(g.abs().max() > 0 for g in eager.values())
    for name in eager:
        torch.testing.assert_close(compiled[name], eager[name], rtol=1e-4,
                                   atol=1e-4 * float(eager[name].abs().max()), msg=name)


@pytest.mark.parametrize("seeds,input_dropout", [(1, 0.0), (2, 0.2)],
                         ids=["shared-input", "own-inputs-dropout"])
def test_channels_last_traces_the_nchw_curves(cifar, seeds, input_dropout):
    """One seed: every run sees the same images (the first convolution is a dense one);
    two seeds and input dropout: each run its own (grouped convolutions throughout)."""
    nchw = cnn_experiment(seeds, input_dropout, channels_last=False)
    nhwc = cnn_experiment(seeds, input_dropout, channels_last=True)
    (group,) = seeds_together(plan(nchw))
    expected = train_group(nchw, group, cifar)
    assert_same_curves(train_group(nhwc, group, cifar), expected, "channels_last")
    assert expected[0].rows[-1]["train_loss_full"] < expected[0].rows[0]["train_loss_full"]


def test_channels_last_is_on_by_default_on_a_cpu_only(cifar):
    """`auto` (the default) is NHWC on a CPU, where it pays, and NCHW on a GPU until a GPU
    measures it; a config that names true or false gets it on either device."""
    auto = cnn_experiment(1, 0.0)
    assert auto.training.channels_last == "auto"
    (group,) = plan(auto)
    assert build_model(auto, group, cifar, torch.device("cpu")).channels_last is True
    cpu, cuda = torch.device("cpu"), torch.device("cuda")  # a device name needs no GPU
    assert (channels_last_on(auto.training, cpu), channels_last_on(auto.training, cuda)) == (
        True, False)
    for value in (True, False):
        training = cnn_experiment(1, 0.0, channels_last=value).training
        assert channels_last_on(training, cpu) is value
        assert channels_last_on(training, cuda) is value


@pytest.mark.parametrize("runs,widths", [(4, (3, 16)), (4, (16, 32)), (12, (3, 16)),
                                         (4, (64, 64))], ids=["q1", "q3", "q1x12", "paper2"])
def test_channels_last_convolutions_are_as_accurate_as_nchw(runs, widths):
    """`auto` makes NHWC the CPU's default, so its float32 kernels must round as finely as
    the NCHW ones: a grouped 5x5 convolution (the quick and paper widths), output and both
    gradients, against float64. Measured here 1.2e-7 to 3.1e-6 NCHW and 1.6e-7 to 8.1e-7
    NHWC; a kernel that traded accuracy would be far off (one rounding its operands to
    bfloat16: 2.9e-3)."""
    generator = torch.Generator().manual_seed(0)
    cin, cout = widths
    x = torch.randn(32, runs * cin, 32, 32, dtype=torch.float64, generator=generator)
    w = torch.randn(runs * cout, cin, 5, 5, dtype=torch.float64, generator=generator)
    w *= (2 / (cin * 25)) ** 0.5
    g = torch.randn(32, runs * cout, 32, 32, dtype=torch.float64, generator=generator)

    def convolve(dtype, nhwc):
        xs = x.to(dtype).clone(memory_format=torch.channels_last if nhwc
                               else torch.contiguous_format).requires_grad_()
        ws = w.to(dtype).clone().requires_grad_()
        y = torch.nn.functional.conv2d(xs, ws, padding=2, groups=runs)
        y.backward(g.to(dtype))
        assert y.is_contiguous(memory_format=torch.channels_last) == nhwc
        return [t.detach().double() for t in (y, xs.grad, ws.grad)]

    exact = convolve(torch.float64, False)
    errors = {nhwc: [float((a - e).norm() / e.norm()) for a, e in
                     zip(convolve(torch.float32, nhwc), exact, strict=True)]
              for nhwc in (False, True)}
    for nchw_error, nhwc_error in zip(errors[False], errors[True], strict=True):
        assert nhwc_error < 1e-5 and nhwc_error <= 10 * max(nchw_error, 1e-7), errors


def test_channels_last_puts_every_convolution_on_nhwc_activations():
    opts = Options(conv_channels=[4, 4, 8], hidden=16)
    model = CNN(opts, (3, 32, 32), 10, seeds=[0, 1]).double()
    seen = []
    for conv in model.convs:
        conv.register_forward_pre_hook(lambda module, args: seen.append(
            args[0].is_contiguous(memory_format=torch.channels_last)))
    x = torch.randn(2, 3, 3, 32, 32, dtype=torch.float64)
    default = model(x, train=False)
    model.channels_last = True
    torch.testing.assert_close(model(x, train=False), default, rtol=RTOL, atol=ATOL)
    assert seen == [False] * 3 + [True] * 3


def test_switches_change_no_run_id():
    """Run ids name what a run computes; these switches change how, as the device does (which
    is no part of a run id either). A run trained with them is the run trained without."""
    base = mlp_experiment()
    switched = mlp_experiment(**dict.fromkeys(SWITCHES, True))
    assert [r.run_id for g in plan(switched) for r in g.runs] == [
        r.run_id for g in plan(base) for r in g.runs]
    assert [g.group_id for g in plan(switched)] == [g.group_id for g in plan(base)]
    assert config_digest(switched) == config_digest(base)
    # nor the digest of a config that never names them (the committed results' configs)
    dumped = json.dumps(_config_dump(base))
    assert not [name for name in SWITCHES if name in dumped]
    # while a setting that changes the curves does change them
    other = mlp_experiment(dtype="float32")
    assert plan(other)[0].runs[0].run_id != plan(base)[0].runs[0].run_id


def test_a_checkpoint_written_eagerly_resumes_compiled(mnist, tmp_path):
    eager = mlp_experiment()
    compiled = mlp_experiment(compile_optimizer=True, compile_model=True)
    group = plan(eager)[0]
    whole = train_group(eager, group, mnist)
    path = tmp_path / "group.ckpt.pt"
    with pytest.raises(BudgetSpent):
        train_group(eager, group, mnist, checkpoint=GroupCheckpoint(path, 1, Budget(0.0)))
    seen = []
    resumed = train_group(compiled, group, mnist, on_pass=seen.append,
                          checkpoint=GroupCheckpoint(path, 10))
    assert seen == [1, 2, 3], "the group did not go on from its checkpoint"
    assert_same_curves(resumed, whole, "resumed compiled")


def test_the_loss_check_tells_rounding_from_a_difference():
    losses = torch.rand(20, 4, dtype=torch.float64) + 1.0
    quiet = losses * (1 + 1e-9)  # a control whose rounding differences stay tiny
    assert compare(losses * (1 + 1e-7), losses, quiet, "float32")["same_losses"]
    assert not compare(losses * (1 + 1e-3), losses, quiet, "float32")["same_losses"]
    assert not compare(torch.where(losses > 1.5, torch.nan, losses), losses, quiet,
                       "float32")["same_losses"]
    # where rounding alone grows (the control drifts by 1e-3 from step 10), so may the
    # variant from then on, and not before
    drifting = losses.clone()
    drifting[10:] *= 1 + 1e-3
    late = losses.clone()
    late[15:] *= 1 + 5e-3
    assert compare(late, losses, drifting, "float32")["same_losses"]
    early = losses.clone()
    early[5] *= 1 + 5e-3
    assert not compare(early, losses, drifting, "float32")["same_losses"]
    # and run by run: a run whose rounding stays small is held to it
    one_drifts = losses.clone()
    one_drifts[10:, 0] *= 1 + 1e-3
    assert compare(late, losses, one_drifts, "float32")["same_losses"] is False
    late_in_run_0 = losses.clone()
    late_in_run_0[15:, 0] *= 1 + 5e-3
    assert compare(late_in_run_0, losses, one_drifts, "float32")["same_losses"]


def test_the_float64_check_tells_a_switch_from_other_arithmetic(cifar):
    """The same arithmetic in another order (channels_last) agrees in float64 over the
    check's steps; another minibatch size, with dropout masks drawn alike, does not."""
    exp = cnn_experiment(2, 0.2)
    (group,) = seeds_together(plan(exp))
    halved = exp.model_copy(update={"training": exp.training.model_copy(
        update={"batch_size": 32})})
    checks = float64_check({"plain": variant_experiment(exp, "plain"),
                            "channels_last": variant_experiment(exp, "channels_last"),
                            "halved": halved}, group, cifar)
    assert checks["plain"]["float64_max_relative_difference"] == 0
    assert checks["channels_last"]["float64_same"]
    assert 0 < checks["channels_last"]["float64_max_relative_difference"] < 1e-12
    assert not checks["halved"]["float64_same"]
    assert checks["halved"]["float64_max_relative_difference"] > 1e-4


def test_the_precision_variants_time_a_coarser_precision_against_float32(data_dir):
    """tf32 and bf16 time what a faster `training.precision` buys per step. The plain loop
    is float32 whatever the config says; bf16 moves the float32 step losses (by design: its
    verdict is `other precision`, a pass) while its float64 steps are the plain loop's; tf32
    is left out where there are no TF32 units (a CPU)."""
    exp = mlp_experiment("float32").model_copy(update={"training": mlp_experiment(
        "float32").training.model_copy(update={"precision": "bf16"})})
    assert variant_experiment(exp, "plain").training.precision == "fp32"
    assert variant_experiment(exp, "compile_model").training.precision == "fp32"
    assert variant_experiment(exp, "tf32").training.precision == "tf32"
    data = load_data(exp, data_dir, torch.device("cpu"))
    result = bench_kernels(exp, data, torch.device("cpu"), ["tf32", "bf16"], steps=3,
                           repeats=1)
    rows = {row["variant"]: row for row in result["rows"]}
    assert list(rows) == ["plain", "bf16"]
    assert rows["plain"]["verdict"] == "same" and rows["plain"]["max_relative_difference"] == 0
    bf16 = rows["bf16"]
    assert bf16["verdict"] == "other precision" and passed(bf16["verdict"])
    assert bf16["float64_same"] and bf16["float64_max_relative_difference"] == 0
    # bfloat16's 8-bit mantissa: far beyond float32's rounding from the first steps
    assert bf16["max_relative_difference"] > 1e-4 and not bf16["same_losses"]
    assert not passed("float32 only") and not passed("DIFFERENT")


def test_bench_kernels_script_times_every_switch(tmp_path, data_dir):
    """On the CPU at smoke scale, a few steps: the rows, the machine and the loss check. The
    CNN is Fig. 3's config with narrow layers (any config serves; the full one takes ~3 s a
    step here)."""
    config = yaml.safe_load((REPO / "configs" / "cnn_cifar10.yaml").read_text())
    config["model"].update(conv_channels=[8, 8, 16], hidden=32)
    narrow = tmp_path / "cnn_narrow.yaml"
    narrow.write_text(yaml.safe_dump(config))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "bench_kernels.py"), "logreg_mnist",
         str(narrow), "--device", "cpu", "--scale", "smoke", "--steps", "2", "--repeats", "2",
         "--threads", "1", "--out", str(tmp_path), "--data-dir", str(data_dir),
         "--unverified-data", "--variants", "compile_optimizer", "channels_last"],
        env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "load average" in done.stdout and torch.__version__ in done.stdout
    assert "(1 torch thread)" in done.stdout  # one, not "1 ... threads"
    logreg = pd.read_csv(tmp_path / "kernels" / "logreg_mnist-cpu-smoke.csv")
    cnn = pd.read_csv(tmp_path / "kernels" / "cnn_cifar10-cpu-smoke.csv")
    # channels_last only where there are convolutions; no CUDA-graph row on a CPU
    assert list(logreg["variant"]) == ["plain", "compile_optimizer"]
    assert list(cnn["variant"]) == ["plain", "compile_optimizer", "channels_last"]
    for frame in (logreg, cnn):
        assert frame["same_losses"].all() and (frame["verdict"] == "same").all()
        assert frame["float64_same"].all() and (frame["float64_steps"] == 8).all()
        # the float64 check ran: the plain loop against itself is exact, a switch is not
        assert frame["float64_max_relative_difference"].iloc[0] == 0
        assert (frame["float64_max_relative_difference"].iloc[1:] < 1e-9).all()
        assert (frame["step_ms"] > 0).all() and (frame["warmup_seconds"] > 0).all()
        assert (frame["threads"] == 1).all() and (frame["device"] == "cpu").all()
        for column in ("hardware", "torch_version", "load_average_before", "commit", "date",
                       "rounding_floor"):
            assert frame[column].notna().all(), column
    assert (logreg["method"] == "adam").all() and (logreg["group_size"] == 7).all()
    # which runs were timed, and of which config: the group's seeds and the config's digest
    from adamrepro.config import load_experiment

    smoke = load_experiment(REPO / "configs" / "logreg_mnist.yaml").at_scale("smoke")
    assert (logreg["config_digest"] == config_digest(smoke)).all()
    assert (logreg["seeds"].astype(str) == ";".join([str(smoke.seed)] * 7)).all()  # 7 lrs


def test_the_fused_objective_variant_times_it_where_the_plain_loop_does_not_fuse(data_dir):
    """`fused_objective` times logreg's fused objective against the plain loop where that
    one trains through autograd: a GPU's `auto`, or here a CPU told `fused_objective:
    false`. Its float64 steps are autograd's and its float32 losses within rounding (same);
    where the plain loop fuses already (a CPU's `auto`), or a model has none (the MLP), it
    is left out."""
    def logreg(fused):
        return parse_experiment({
            "name": "kernels", "title": "fused == autograd",
            "dataset": {"name": "mnist", "train_size": 1024, "test_size": 256},
            "model": {"name": "logreg", "l2": 1e-3, "fused_objective": fused},
            "training": {"batch_size": 128, "epochs": 1},
            "seeds": 1, "seed": 0,
            "methods": {"adam": {"optimizer": "adam", "grid": {"lr": [1e-3, 1e-1]}}},
        }, "test")

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    auto = pick_group(logreg("auto"), None)
    assert applicable(["fused_objective"], auto, cpu) == []
    assert applicable(["fused_objective"], auto, cuda) == ["fused_objective"]
    assert applicable(["fused_objective"], pick_group(mlp_experiment(), None), cuda) == []
    exp = logreg(False)
    data = load_data(exp, data_dir, cpu)
    result = bench_kernels(exp, data, cpu, ["fused_objective"], steps=4, repeats=1)
    rows = {row["variant"]: row for row in result["rows"]}
    assert list(rows) == ["plain", "fused_objective"], result["failed"]
    fused = rows["fused_objective"]
    assert fused["verdict"] == "same" and fused["float64_same"]
    # another summation order, not the plain loop itself
    assert 0 < fused["float64_max_relative_difference"] < 1e-12
    assert 0 < fused["max_relative_difference"] < 1e-4


def test_a_precision_variant_passes_only_where_its_float64_steps_are_the_plain_loops():
    """`other precision` excuses the coarser rounding of tf32 and bf16 in float32 alone: one
    whose float64 steps differ from the plain loop's (other arithmetic) is DIFFERENT, one that
    could not train in float64 is `float64 failed`, and neither passes the bench."""
    for name in ("tf32", "bf16"):  # tf32 too, which trains on a GPU alone
        row = {"variant": name, "same_losses": False, "float64_same": True}
        assert verdict(row) == "other precision" and passed(verdict(row))
        assert verdict({**row, "float64_same": False}) == "DIFFERENT"
        failed = {**row, "float64_same": False, "float64_error": "RuntimeError: no kernel"}
        assert verdict(failed) == "float64 failed"
    switch = {"variant": "compile_model", "same_losses": False, "float64_same": True}
    assert verdict(switch) == "float32 only"
    assert verdict({**switch, "same_losses": True}) == "same"
    assert not any(passed(v) for v in ("float32 only", "DIFFERENT", "float64 failed"))


CUDA = torch.device("cuda")
# Not the accuracies: one test image whose logits are that close flips a whole percent
# (as bench/same_curves.py's CHECK_METRICS leaves them out).
CUDA_COLUMNS = [c.name for c in CLASSIFIER.columns() if not c.percent] + ["max_step_ratio"]


# On a GPU too the switches are compared in float64: in float32, fused (Triton) and eager
# kernels, and cuDNN's NHWC and NCHW algorithms (some nondeterministic), round differently,
# and a CNN's float32 losses drift apart by 1e-4 within ten steps, the size of a real
# difference; in float64 only a wrong mask, lr or minibatch moves them beyond RTOL.
@pytest.mark.cuda
def test_compiled_step_under_cuda_graphs_traces_the_eager_curves(data_dir):
    eager = mlp_experiment("float64")
    compiled = mlp_experiment("float64", compile_optimizer=True, compile_model=True)
    data = load_data(eager, data_dir, CUDA)
    for group in plan(eager):
        expected = train_group(eager, group, data, cuda_graphs=True)
        for graphs in (True, False):
            assert_same_curves(train_group(compiled, group, data, cuda_graphs=graphs),
                               expected, f"compiled, graphs {graphs}", columns=CUDA_COLUMNS)


# cuDNN convolves float64 in NCHW whatever the layout (it has no NHWC kernels for it): in
# float64 the test checks our layout code; NHWC's own kernels run in float32, compared with
# TF32 off (cudnn.allow_tf32, on by default, rounds to 10 mantissa bits) and a tolerance 10x
# the 1e-4 that float32 rounding drifts a CNN's losses by within ten steps.
NHWC_FLOAT32_RTOL = 1e-3


@pytest.mark.cuda
@pytest.mark.parametrize("dtype, rtol, atol", [("float64", RTOL, ATOL),
                                               ("float32", NHWC_FLOAT32_RTOL, 1e-6)])
def test_channels_last_on_a_gpu_traces_the_nchw_curves(data_dir, dtype, rtol, atol):
    default = cnn_experiment(2, 0.2, dtype, channels_last=False)
    data = load_data(default, data_dir, CUDA)
    (group,) = seeds_together(plan(default))
    tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        expected = train_group(default, group, data)
        for switches in ({"channels_last": True}, dict.fromkeys(SWITCHES, True)):
            switched = cnn_experiment(2, 0.2, dtype, **switches)
            assert_same_curves(train_group(switched, group, data), expected, str(switches),
                               rtol=rtol, atol=atol, columns=CUDA_COLUMNS)
    finally:
        torch.backends.cudnn.allow_tf32 = tf32


@pytest.mark.cuda
def test_on_a_gpu_the_kernel_bench_times_tf32_and_bf16_beside_the_graphs(data_dir):
    """On a GPU both precision variants apply, train under CUDA graphs (bf16's autocast
    inside the captured step), are the plain loop in float64 and pass; bf16's 8-bit mantissa
    moves the float32 step losses beyond float32 rounding."""
    exp = mlp_experiment("float32")
    data = load_data(exp, data_dir, CUDA)
    result = bench_kernels(exp, data, CUDA, ["no_cuda_graphs", "tf32", "bf16"], steps=3,
                           repeats=1)
    rows = {row["variant"]: row for row in result["rows"]}
    assert list(rows) == ["plain", "no_cuda_graphs", "tf32", "bf16"], result["failed"]
    for name in ("tf32", "bf16"):
        assert rows[name]["verdict"] == "other precision" and rows[name]["float64_same"]
        assert rows[name]["step_ms"] > 0
    assert rows["bf16"]["max_relative_difference"] > 1e-4
    assert rows["no_cuda_graphs"]["verdict"] == "same"
