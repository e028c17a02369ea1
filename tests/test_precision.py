"""`training.precision` (runner/precision.py) and `adamrepro compare` (results/compare.py), on
real MNIST on the CPU: bf16 reaches every training path and moves the curves a little; tf32
runs as fp32 where there are no TF32 units and says so; fp32 keeps every run id; the CUDA
flags never leak out of a group; the comparison's numbers are those of the tables.
"""

from __future__ import annotations

import itertools
import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from adamrepro.cli import main
from adamrepro.config import load_experiment, parse_experiment, with_precision
from adamrepro.errors import UserError
from adamrepro.models.base import dropout
from adamrepro.runner.executors import load_data
from adamrepro.runner.extend import stored_extensions
from adamrepro.runner.group import (
    MinibatchOrder,
    TrainStep,
    build_model,
    build_optimizer,
    train_group,
)
from adamrepro.runner.plan import plan
from adamrepro.runner.precision import Precision, float32_math

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "configs"
CPU = torch.device("cpu")
# bf16 rounds every matmul input to 8 significant bits (relative error up to 2^-9 ≈ 0.2%);
# a pass's mean loss moved by 1% would be more than a few such roundings, while another seed
# moves these curves by 5% to 185% (measured: 3e-4 for Adam, 2.4e-3 for SGD at lr 1).
BF16_BOUND = 1e-2


def flags() -> tuple[bool, bool]:
    return torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32


def experiment(model: dict, methods: dict, precision: str = "fp32", layout: str = "flat",
               epochs: int = 2, train_size: int = 512):
    return parse_experiment({
        "name": "precision", "title": "precision",
        "dataset": {"name": "mnist", "train_size": train_size, "test_size": 256,
                    "layout": layout},
        "model": model,
        "training": {"batch_size": 128, "epochs": epochs, "precision": precision},
        "seed": 1, "methods": methods,
    }, "test")


def train(exp, data_dir) -> list[list[dict]]:
    data = load_data(exp, data_dir, CPU)
    return [curve.rows for group in plan(exp) for curve in train_group(exp, group, data)]


def largest_change(a: list[list[dict]], b: list[list[dict]], column: str) -> float:
    """max |b − a| / |a| over runs and passes where `a` has a value."""
    return max(abs(rb[column] - ra[column]) / abs(ra[column])
               for runs_a, runs_b in zip(a, b, strict=True)
               for ra, rb in zip(runs_a, runs_b, strict=True) if math.isfinite(ra[column]))


# ---------------------------------------------------------------------------------------------
# The setting


def test_precision_is_checked_on_load():
    good = {"name": "p", "title": "p", "dataset": {"name": "mnist"},
            "model": {"name": "logreg"}, "training": {"epochs": 1},
            "methods": {"adam": {"optimizer": "adam"}}}
    assert parse_experiment(good, "t").training.precision == "fp32"
    bad = json.loads(json.dumps(good))
    bad["training"]["precision"] = "fp16"
    with pytest.raises(UserError, match=r"t: training.precision: Input should be 'fp32'"):
        parse_experiment(bad, "t")
    for precision in ("tf32", "bf16"):
        both = json.loads(json.dumps(good))
        both["training"].update(precision=precision, dtype="float64")
        with pytest.raises(UserError, match=f"{precision} is reduced float32 arithmetic and "
                                            f"contradicts training.dtype: float64"):
            parse_experiment(both, "t")
        float64 = parse_experiment({**good, "training": {"epochs": 1, "dtype": "float64"}},
                                   "t")
        with pytest.raises(UserError, match="--precision: training.precision"):
            with_precision(float64, precision, "--precision")


def test_fp32_keeps_every_run_id_and_tf32_bf16_have_their_own():
    for path in sorted(CONFIGS.glob("*.yaml")):
        base = load_experiment(path)
        for scale in ("smoke", "paper"):
            exp = base.at_scale(scale)
            runs = {name: [r for g in plan(with_precision(exp, name, "t")) for r in g.runs]
                    for name in ("fp32", "tf32", "bf16")}
            default = [r for g in plan(exp) for r in g.runs]
            assert [r.run_id for r in runs["fp32"]] == [r.run_id for r in default], path
            ids = {name: {r.run_id for r in found} for name, found in runs.items()}
            for a, b in itertools.combinations(ids, 2):
                assert not ids[a] & ids[b], (path, a, b)
            # every precision draws the noise of the fp32 run
            assert ({r.noise_id for r in runs["bf16"]} == {r.noise_id for r in runs["tf32"]}
                    == ids["fp32"]), path
    # the committed paper-scale tables are still those of their configs' runs (the grid's,
    # and the points its edge extension added)
    for name in ("logreg_mnist", "logreg_imdb"):
        curves = pd.read_csv(REPO / "results" / name / "curves.csv")
        exp = load_experiment(CONFIGS / f"{name}.yaml").at_scale("paper")
        planned = {r.run_id for g in plan(exp) for r in g.runs}
        assert set(curves["run_id"]) <= planned | stored_extensions(exp, curves), name


def test_the_reference_loop_trains_in_full_float32_whatever_torch_s_defaults(data_dir):
    """torch's default lets cuDNN run convolutions in TF32 (`cudnn.allow_tf32` is True): the
    bench's reference loop, said to be fp32, ran its CNN faster than float32 on a GPU, and
    the ratio came out smaller than it is. It trains with both flags off, as a group does,
    and leaves them as they were."""
    from adamrepro.bench.reference import train_run

    exp = experiment({"name": "logreg"}, {"adam": {"optimizer": "adam",
                                                   "grid": {"lr": [1e-3]}}}, epochs=1)
    data = load_data(exp, data_dir, CPU)
    run = plan(exp)[0].runs[0]
    saved = flags()
    seen = []
    try:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        train_run(exp, run, data, on_pass=lambda epoch: seen.append(flags()))
        assert seen == [(False, False)] and flags() == (True, True), seen
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def test_float32_math_sets_the_cuda_flags_and_restores_them():
    before = flags()
    for tf32 in (True, False):
        with float32_math(tf32):
            assert flags() == (tf32, tf32)
        assert flags() == before
    with pytest.raises(RuntimeError, match="inside"), float32_math(True):
        raise RuntimeError("inside")
    assert flags() == before
    # on a CPU nothing is touched (no TF32 units); tf32 is recorded as what ran, fp32
    assert Precision("tf32", "cpu").applied == "fp32"
    assert Precision("tf32", "cuda").applied == "tf32"
    assert Precision("fp32", "cpu", torch.float64).applied == "fp64"


def test_run_says_that_tf32_runs_as_fp32_off_a_gpu(cli, tmp_path):
    """A CPU has no TF32 units: a tf32 config trains in fp32 there (and records fp32), which
    `run` says on stderr before it trains, as it says nothing for fp32."""
    args = ("run", "logreg_mnist", "--dry-run", "--device", "cpu", "--out", tmp_path / "o")
    code, out, err = cli(*args, "--precision", "tf32")
    assert code == 0, err
    assert ("adamrepro: note: training.precision tf32 runs as fp32 on cpu (no TF32 units "
            "there); the runs record precision fp32") in err and "note" not in out
    code, out, err = cli(*args)
    assert code == 0 and "tf32" not in err, err


def test_a_float64_sweep_records_fp64_whatever_its_precision_says(cli, tmp_path, data_dir):
    """The arithmetic recorded is the one the runs had: float64 parameters are fp64 (the
    precision setting, fp32 by default, switches float32 kernels only), or a float64 proof
    run would read as an fp32 one beside it in `compare`."""
    raw = yaml.safe_load((CONFIGS / "logreg_mnist.yaml").read_text())
    raw["training"]["dtype"] = "float64"
    raw["methods"] = {"adam": raw["methods"]["adam"]}
    config = tmp_path / "logreg_mnist.yaml"
    config.write_text(yaml.safe_dump(raw))
    code, _, err = cli("run", config, "--scale", "smoke", "--quiet", "--data-dir", data_dir,
                       "--out", tmp_path / "out")
    assert code == 0, err
    curves = pd.read_csv(tmp_path / "out" / "logreg_mnist" / "curves.csv")
    assert set(curves["precision"]) == {"fp64"}


def test_tf32_on_a_cpu_is_fp32_to_the_last_bit(data_dir, one_thread):
    model = {"name": "mlp", "hidden": [32], "input_dropout": 0.2, "hidden_dropout": 0.5}
    methods = {"adam": {"optimizer": "adam", "grid": {"lr": [1e-3, 1e-2]}}}
    before = flags()
    fp32 = train(experiment(model, methods), data_dir)
    tf32 = train(experiment(model, methods, "tf32"), data_dir)
    assert flags() == before
    for run_tf32, run_fp32 in zip(tf32, fp32, strict=True):
        pd.testing.assert_frame_equal(
            pd.DataFrame(run_tf32).drop(columns=["seconds", "train_seconds"]),
            pd.DataFrame(run_fp32).drop(columns=["seconds", "train_seconds"]),
            check_exact=True)


# ---------------------------------------------------------------------------------------------
# bf16 reaches every training path


LOGREG = {"name": "logreg"}
PATHS = {
    # eager minibatch steps, one input shared by the runs (a single matmul)
    "logreg": (LOGREG, {"adam": {"optimizer": "adam", "grid": {"lr": [1e-3, 1e-2]}}}, "flat"),
    # dropout masks drawn in float32 from bfloat16 activations
    "mlp-dropout": ({"name": "mlp", "hidden": [64, 64], "input_dropout": 0.2,
                     "hidden_dropout": 0.5},
                    {"rmsprop": {"optimizer": "rmsprop", "grid": {"lr": [1e-3]}}}, "flat"),
    # an optimizer's closure
    "lbfgs-closure": (LOGREG, {"lbfgs": {"optimizer": "torch.optim.LBFGS",
                                         "hparams": {"max_iter": 2}, "grid": {"lr": [0.5]}}},
                      "flat"),
    # convolutions (grouped and shared), pooling, hidden dropout
    "cnn": ({"name": "cnn", "conv_channels": [4, 8], "hidden": 16, "hidden_dropout": 0.5},
            {"adam": {"optimizer": "adam", "grid": {"lr": [1e-3]}}}, "image"),
    # the latent noise of the VAE (drawn in the parameters' float32)
    "vae": ({"name": "vae", "hidden": 64, "latent": 8},
            {"adam": {"optimizer": "adam", "grid": {"lr": [3e-3]}}}, "flat"),
}


@pytest.mark.parametrize("case", sorted(PATHS))
def test_bf16_moves_every_training_path_a_little(case, data_dir, one_thread):
    model, methods, layout = PATHS[case]
    fp32 = train(experiment(model, methods, layout=layout), data_dir)
    bf16 = train(experiment(model, methods, "bf16", layout=layout), data_dir)
    objective = "train_neg_elbo" if case == "vae" else "train_loss"
    change = largest_change(fp32, bf16, objective)
    # the VAE barely leaves its N(0, 0.01²) start in 2 passes: its logits, and so their
    # rounding, are tiny; it still moves
    assert (1e-7 if case == "vae" else 1e-5) < change < BF16_BOUND, change
    # evaluation is float32: at the initial weights every evaluated metric is the same
    for run_fp32, run_bf16 in zip(fp32, bf16, strict=True):
        start = {k: v for k, v in run_fp32[0].items() if k.endswith("_full") or
                 k.startswith("test_")}
        assert start == {k: run_bf16[0][k] for k in start}


def test_bf16_through_sfo_subfunction_passes(data_dir, one_thread):
    """SFO's closure runs under autocast too. Its quasi-Newton model is built from gradient
    differences, which bfloat16 rounding swamps: the first pass overshoots by 10-100x
    (measured on this data), so only the change, not its size, is asserted."""
    methods = {"sfo": {"optimizer": "sfo", "grid": {"max_history": [5]}}}
    fp32 = train(experiment(LOGREG, methods), data_dir)
    bf16 = train(experiment(LOGREG, methods, "bf16"), data_dir)
    assert largest_change(fp32, bf16, "train_loss") > 1e-3


def test_bf16_keeps_parameters_gradients_and_state_in_float32(data_dir):
    exp = experiment(PATHS["mlp-dropout"][0], PATHS["mlp-dropout"][1], "bf16")
    data = load_data(exp, data_dir, CPU)
    (group,) = plan(exp)
    model = build_model(exp, group, data, CPU)
    optimizer = build_optimizer(group, list(model.parameters()), torch.float32)
    order = MinibatchOrder(group.seeds, len(data.train_x), CPU)
    step = TrainStep(model, optimizer, order, data, 128, group.size,
                     precision=Precision("bf16", "cpu"))
    step.new_pass(order.new_pass())
    seen = []
    hook = model.layers[0].register_forward_hook(lambda m, i, out: seen.append(out.dtype))
    step(128)
    hook.remove()
    assert seen == [torch.bfloat16]  # the matmul ran in bfloat16...
    for p in model.parameters():  # ...and everything that persists is float32
        assert p.dtype == p.grad.dtype == torch.float32
        assert all(v.dtype == torch.float32 for v in optimizer.state[p].values()
                   if torch.is_tensor(v) and v.is_floating_point())
    assert not torch.is_autocast_enabled("cpu")  # and the autocast ended with the step


def test_dropout_draws_the_same_masks_from_bfloat16_activations():
    x = torch.rand(3, 64, 100) + 0.5  # no zeros: a dropped unit is exactly a zero
    masks = [dropout(x.to(dtype), 0.5, torch.Generator().manual_seed(7)) == 0
             for dtype in (torch.float32, torch.bfloat16)]
    assert torch.equal(*masks) and 0.4 < masks[0].float().mean() < 0.6


@pytest.mark.cuda
def test_on_a_gpu_graphs_tf32_and_bf16(data_dir):
    """A graphed bf16 step replays what the eager one computes; tf32 moves the MLP's curves
    (a TF32 matmul rounds its inputs to 10 bits) and leaves the flags as they were."""
    cuda = torch.device("cuda")
    model, methods, _ = PATHS["mlp-dropout"]
    curves = {}
    before = flags()
    for name in ("fp32", "tf32", "bf16"):
        exp = experiment(model, methods, name, train_size=2048)
        data = load_data(exp, data_dir, cuda)
        (group,) = plan(exp)
        curves[name] = [c.rows for c in train_group(exp, group, data, cuda_graphs=True)]
        if name == "bf16":
            eager = [c.rows for c in train_group(exp, group, data, cuda_graphs=False)]
            assert largest_change(eager, curves[name], "train_loss") < 1e-6
        assert flags() == before
    assert 0 < largest_change(curves["fp32"], curves["tf32"], "train_loss") < BF16_BOUND
    assert 0 < largest_change(curves["fp32"], curves["bf16"], "train_loss") < BF16_BOUND


# ---------------------------------------------------------------------------------------------
# `run --precision` and `adamrepro compare` on a 2-seed smoke run of logreg_mnist


def smoke_config(folder: Path) -> Path:
    """The bundled logreg_mnist at smoke scale (2 passes over 2,048 digits), two methods of
    two step sizes each, to keep the CPU time small."""
    config = yaml.safe_load((CONFIGS / "logreg_mnist.yaml").read_text())
    config["methods"] = {"adam": config["methods"]["adam"],
                         "sgd_nesterov": config["methods"]["sgd_nesterov"]}
    config["methods"]["adam"]["grid"]["lr"] = [1e-3, 1e-2]
    config["methods"]["sgd_nesterov"]["grid"]["lr"] = [1e-1, 1.0]
    path = folder / "logreg_mnist.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def results(tmp_path_factory, data_dir):
    """fp32 and bf16 (2 seeds), tf32 on this CPU (2 seeds), fp32 with 1 seed."""
    root = tmp_path_factory.mktemp("precision")
    config = smoke_config(root)
    for name, precision, seeds in (("fp32", "fp32", 2), ("bf16", "bf16", 2),
                                   ("tf32", "tf32", 2), ("one-seed", "fp32", 1)):
        assert main(["run", str(config), "--scale", "smoke", "--seeds", str(seeds),
                     "--precision", precision, "--out", str(root / name), "--quiet",
                     "--data-dir", str(data_dir)]) == 0
    return root


def runs_by_point(folder: Path) -> pd.DataFrame:
    curves = pd.read_csv(folder / "logreg_mnist" / "curves.csv")
    return curves.set_index(["method", "lr", "seed", "epoch"]).sort_index()


def test_run_precision_is_recorded_and_bf16_curves_stay_close(results, cli):
    fp32, bf16, tf32 = (runs_by_point(results / n) for n in ("fp32", "bf16", "tf32"))
    assert set(fp32["precision"]) == {"fp32"} and set(bf16["precision"]) == {"bf16"}
    # tf32 on a CPU ran as fp32, and its table says so; its curves are fp32's
    assert set(tf32["precision"]) == {"fp32"}
    pd.testing.assert_series_equal(tf32["train_loss"], fp32["train_loss"])
    for folder, name in ((results / "bf16", "bf16"), (results / "tf32", "tf32")):
        meta = json.loads((folder / "logreg_mnist" / "config.json").read_text())
        assert meta["config"]["training"]["precision"] == name
        assert meta["provenance"]["precision"] == ("fp32" if name == "tf32" else name)
    assert not set(fp32["run_id"]) & set(bf16["run_id"])
    assert len(fp32) == len(bf16) == 8 * 3  # 4 points x 2 seeds, passes 0-2
    trained = fp32["train_loss"].notna()
    change = ((bf16["train_loss"] - fp32["train_loss"]).abs() / fp32["train_loss"])[trained]
    assert 1e-5 < change.max() < BF16_BOUND, change.max()
    # bf16 runs may not be mixed into the fp32 folder: their config differs
    code, _, err = cli("run", smoke_config(results), "--scale", "smoke", "--seeds", "2",
                       "--precision", "bf16", "--out", results / "fp32", "--quiet")
    assert code == 2 and "holds fp32 results of logreg_mnist, and this run is bf16" in err
    assert "its own --out, then 'adamrepro compare'" in err


def test_compare_measures_deviation_and_seed_spread(results, cli):
    code, out, err = cli("compare", results / "fp32", results / "bf16")
    assert code == 0, err
    assert "bf16 against fp32" in out and "within the seed spread for" in out
    assert "bit for bit" not in out  # bf16 moves every curve
    table = pd.read_csv(results / "bf16" / "compare" / "logreg_mnist.csv")
    best = pd.read_csv(results / "fp32" / "logreg_mnist" / "best.csv")
    config = json.loads((results / "fp32" / "logreg_mnist" / "config.json").read_text())
    # in the config's order, as the figures' legends (it was best.csv's, selection's order)
    assert list(table["method"]) == [m for m in config["config"]["methods"]
                                     if m in set(best["method"])]
    assert list(best["method"]) != list(table["method"])  # else this checks nothing
    # every row says where both sides' curves came from, as their curves.csv recorded it
    for side in ("fp32", "bf16"):
        recorded = pd.read_csv(results / side / "logreg_mnist" / "curves.csv")
        column = "base_commit" if side == "fp32" else "other_commit"
        assert set(table[column]) == set(recorded["commit"])
    fp32, bf16 = runs_by_point(results / "fp32"), runs_by_point(results / "bf16")
    for _, row in table.iterrows():
        lr = best.set_index("method").loc[row["method"], "lr"]
        base = fp32.loc[(row["method"], lr)]["train_loss"].unstack("seed")  # epoch x seed
        other = bf16.loc[(row["method"], lr)]["train_loss"].unstack("seed")
        deviation = ((other - base).abs() / base.abs()).max().max()
        spread = max(((base[a] - base[b]).abs() / base[b].abs()).max()
                     for a, b in itertools.permutations(base.columns, 2))
        assert row["deviation"] == pytest.approx(deviation, rel=1e-12)
        assert row["seed_spread"] == pytest.approx(spread, rel=1e-12)
        assert row["verdict"] == ("within" if deviation < spread else "beyond")
        assert (row["seeds"], row["passes"], row["metric"]) == (2, 2, "train_loss")
        assert (row["base_precision"], row["other_precision"]) == ("fp32", "bf16")
        assert f"lr={float(lr):g}" in row["point"]
    # a folder against itself: nothing moves
    code, out, err = cli("compare", results / "fp32", results / "fp32", "--out",
                       results / "self")
    assert code == 0, err
    itself = pd.read_csv(results / "self" / "logreg_mnist.csv")
    assert (itself["deviation"] == 0).all() and (itself["verdict"] == "within").all()
    assert f"train_loss identical, bit for bit, for {len(itself)};" in out
    # and says why: a zero by construction measures nothing
    assert err.startswith("adamrepro: note: BASE and OTHER are the same folder"), err


def test_compare_names_a_point_as_its_config_spells_it():
    """An integer hyperparameter of one method (L-BFGS's max_iter) is read as floats when
    other methods leave its cell empty: a point still shows it as the whole number it is, and
    values read from two tables still match."""
    import numpy as np

    from adamrepro.results.compare import _text

    assert [_text(v) for v in (3.0, np.int64(3), 0.001, np.float32(0.5), True, "none")] == [
        "3", "3", "0.001", "0.5", "True", "none"]
    assert _text(float("0.1")) == _text(0.1) and _text(1e300) == repr(1e300)


def test_compare_on_the_cpu_names_tf32_as_it_ran(results, cli):
    code, out, err = cli("compare", results / "fp32", results / "tf32", "-e", "logreg_mnist")
    assert code == 0, err
    table = pd.read_csv(results / "tf32" / "compare" / "logreg_mnist.csv")
    assert set(table["other_precision"]) == {"tf32 (as fp32)"}
    assert (table["deviation"] == 0).all()
    methods = len(table)
    assert (f"for {methods} of {methods} methods; train_loss identical, bit for bit, for "
            f"{methods};") in out


@pytest.mark.parametrize(("section", "key", "written"), [("training", "channels_last", "auto"),
                                                         ("model", "fused_objective", None)])
def test_compare_accepts_another_switch_and_names_it(results, cli, tmp_path, section, key,
                                                     written):
    """A folder written with a kernel switch or a model's implementation option set
    otherwise (the committed results, made before `channels_last: auto`, say false; logreg's
    `fused_objective: false` trains through autograd on a CPU) computes the same runs up to
    rounding: compare measures them, and says which setting differs. Any other model
    setting makes another config."""
    other = tmp_path / "other"
    shutil.copytree(results / "fp32" / "logreg_mnist", other / "logreg_mnist")
    path = other / "logreg_mnist" / "config.json"
    meta = json.loads(path.read_text())
    assert meta["config"][section].get(key) == written
    meta["config"][section][key] = False
    path.write_text(json.dumps(meta))
    code, out, err = cli("compare", results / "fp32", other)
    assert code == 0, err
    assert f"fp32, {key} off within the seed spread" in out
    table = pd.read_csv(other / "compare" / "logreg_mnist.csv")
    assert set(table["base_switches"]) == {f"{key} auto"}
    assert set(table["other_switches"]) == {f"{key} off"}
    assert (table["deviation"] == 0).all()  # the same curves, copied
    meta["config"]["model"]["l2"] = 1.0
    path.write_text(json.dumps(meta))
    code, out, err = cli("compare", results / "fp32", other)
    assert code == 2 and "model.l2" in err and "differ" in err, err


@pytest.mark.parametrize("case", ["missing-base", "empty-other", "unknown-experiment",
                                  "one-seed", "unmatched-seed", "other-config",
                                  "unknown-metric", "out-is-a-file", "same-folder-one-seed"])
def test_compare_bad_inputs(case, results, cli, tmp_path):
    base, other, extra = results / "fp32", results / "bf16", []
    if case == "missing-base":
        base, fragment = tmp_path / "nowhere", "is not a folder"
    elif case == "empty-other":
        other, fragment = tmp_path, "holds no results"
    elif case == "unknown-experiment":
        extra, fragment = ["-e", "mlp"], "has no results of 'mlp'"
    elif case == "one-seed":
        base, fragment = results / "one-seed", "no seed spread to measure against"
    elif case == "unmatched-seed":
        other, fragment = results / "one-seed", "seed 1 (selected in BASE)"
    elif case == "other-config":
        other = tmp_path / "edited"
        shutil.copytree(results / "bf16" / "logreg_mnist", other / "logreg_mnist")
        path = other / "logreg_mnist" / "config.json"
        meta = json.loads(path.read_text())
        meta["config"]["training"]["epochs"] = 3
        path.write_text(json.dumps(meta))
        fragment = "ran different configs (training.epochs differ)"
    elif case == "same-folder-one-seed":  # the note of the same folder waits for a result
        base = other = results / "one-seed"
        fragment = "no seed spread to measure against"
    elif case == "out-is-a-file":  # refused before a table is printed
        (tmp_path / "a-file").write_text("")
        extra, fragment = ["--out", tmp_path / "a-file"], (
            f"--out {tmp_path / 'a-file'} is a file, not a folder; pass another folder, or "
            f"none for {Path(other) / 'compare'}")
    else:
        extra, fragment = ["--metric", "train_lost"], "has no column 'train_lost'"
    code, out, err = cli("compare", base, other, *extra)
    assert code == 2 and out == "", out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("adamrepro: error: "), err
    assert fragment in lines[0], lines[0]
    assert "Traceback" not in err


def test_run_warns_that_sfo_under_bf16_measures_bfloat16_not_sfo(tmp_path, cli, data_dir):
    config = tmp_path / "sfo_bf16.yaml"
    config.write_text(yaml.safe_dump({
        "name": "sfo_bf16", "title": "SFO in bf16",
        "dataset": {"name": "mnist", "train_size": 256, "test_size": 128},
        "model": {"name": "logreg"}, "training": {"batch_size": 128, "epochs": 1},
        "methods": {"sfo": {"optimizer": "sfo"}}}))
    args = ("run", config, "--device", "cpu", "--quiet", "--data-dir", data_dir)
    code, out, err = cli(*args, "--precision", "bf16", "--out", tmp_path / "bf16")
    assert code == 0, err
    assert "adamrepro: note: SFO under bf16 overshoots" in err and "SFO" not in out, out + err
    code, out, err = cli(*args, "--out", tmp_path / "fp32")
    assert code == 0 and "SFO" not in err, out + err


def test_compare_says_a_run_that_diverged_in_other_is_infinitely_far(results, cli, tmp_path):
    """OTHER: BASE's runs with one selected adam run's record gone non-finite at its last
    pass (a divergence there), its tables written again from the records. adam's row has an
    infinite deviation at that pass and seed, `other_diverged`, and is beyond the seed
    spread; the methods untouched are identical."""
    other = tmp_path / "other"
    shutil.copytree(results / "fp32", other)
    best = pd.read_csv(results / "fp32" / "logreg_mnist" / "best.csv").set_index("method")
    run_id = best.loc["adam", "run_ids"].split(";")[-1]
    path = other / "logreg_mnist" / "runs" / f"{run_id}.json"
    record = json.loads(path.read_text())
    record["diverged"] = True
    record["rows"][-1].update(train_loss=math.nan, diverged=True)
    # as a run that diverged writes it (an edit that keeps the old digest is refused)
    from adamrepro.results.store import record_digest

    path.write_text(json.dumps({**record, "digest": record_digest(record)}))
    code, _, err = cli("run", smoke_config(tmp_path), "--scale", "smoke", "--seeds", "2",
                       "--out", other, "--force", "--quiet")
    assert code == 0, err
    code, out, err = cli("compare", results / "fp32", other, "--out", tmp_path / "compare")
    assert code == 0, err
    table = pd.read_csv(tmp_path / "compare" / "logreg_mnist.csv").set_index("method")
    adam = table.loc["adam"]
    assert adam["deviation"] == math.inf and bool(adam["other_diverged"])
    assert adam["verdict"] == "beyond"
    assert (adam["deviation_pass"], adam["deviation_seed"]) == (record["rows"][-1]["epoch"],
                                                                record["seed"])
    untouched = table.drop(index="adam")
    assert (untouched["deviation"] == 0).all() and not untouched["other_diverged"].any()


def test_compare_says_which_methods_trained_in_other_groups_or_were_not_compared(
        results, cli, tmp_path):
    """OTHER's adam runs recorded in groups of another size (a group halved to fit memory
    on one side only: with dropout, other masks), and a method BASE selected no point of
    (every grid point diverged): each is named in a note, where the table alone hid them."""
    other = tmp_path / "other"
    shutil.copytree(results / "fp32", other)
    folder = other / "logreg_mnist"
    curves = pd.read_csv(folder / "curves.csv")
    curves.loc[curves["method"] == "adam", "group_size"] = 1
    curves.to_csv(folder / "curves.csv", index=False)
    meta = json.loads((folder / "config.json").read_text())
    meta.pop("tables", None)  # a test's edit, which the digests would refuse
    (folder / "config.json").write_text(json.dumps(meta))
    code, _, err = cli("compare", results / "fp32", other, "--out", tmp_path / "compare")
    assert code == 0, err
    assert ("adamrepro: note: logreg_mnist: adam: runs trained in groups of other sizes in "
            "BASE and OTHER") in err, err
    base = tmp_path / "base"
    shutil.copytree(results / "fp32", base)
    best = pd.read_csv(base / "logreg_mnist" / "best.csv")
    best[best["method"] != "sgd_nesterov"].to_csv(base / "logreg_mnist" / "best.csv",
                                                  index=False)
    meta = json.loads((base / "logreg_mnist" / "config.json").read_text())
    meta.pop("tables", None)
    (base / "logreg_mnist" / "config.json").write_text(json.dumps(meta))
    code, _, err = cli("compare", base, results / "bf16", "--out", tmp_path / "compare2")
    assert code == 0, err
    assert ("adamrepro: note: logreg_mnist: sgd_nesterov: no point selected in BASE (every "
            "grid point diverged in one seed or more): not compared") in err, err


def test_the_seed_spread_leaves_out_a_pass_where_a_seed_has_no_finite_value():
    """Three seeds over three passes: pass 0 (a NaN, the minibatch cost before training) and
    pass 2 (an infinite value) are left out; at pass 1 the largest ratio of two seeds' gap
    to the smaller value is |3 - 2| / 2 = 0.5."""
    from adamrepro.results.compare import seed_spread

    table = pd.DataFrame({0: [math.nan, 2.0, math.inf], 1: [1.0, 3.0, 1.0],
                          2: [1.0, 2.5, 1.0]}, index=[0, 1, 2])
    assert seed_spread(table) == (0.5, 1)
    assert math.isnan(seed_spread(table.loc[[0, 2]])[0])


def test_compare_measures_the_selection_metric_not_what_the_figures_plot(cli, tmp_path):
    """By default `compare` measures the experiment's selection metric, the cost by which
    BASE selected the runs it compares (results/compare.py), whatever `plot.y` draws. On
    copies of the committed quick-scale Fig. 2a tables whose config selects by train_loss
    and plots train_loss_full, OTHER's train_loss is scaled by 1 + 1e-3 and its
    train_loss_full left as it is: every method's deviation is 1e-3, on train_loss."""
    for side in ("base", "other"):
        folder = tmp_path / side / "mlp"
        shutil.copytree(REPO / "results" / "quick-cpu" / "mlp", folder,
                        ignore=shutil.ignore_patterns("*.png", "*.pdf"))
        meta = json.loads((folder / "config.json").read_text())
        assert meta["config"]["selection"]["metric"] == "train_loss"
        meta["config"]["plot"]["y"] = "train_loss_full"
        meta.pop("tables", None)  # a test's edit, which the digests would refuse
        (folder / "config.json").write_text(json.dumps(meta))
    path = tmp_path / "other" / "mlp" / "curves.csv"
    curves = pd.read_csv(path)
    curves["train_loss"] *= 1 + 1e-3
    curves.to_csv(path, index=False)
    code, _, err = cli("compare", tmp_path / "base", tmp_path / "other", "--out",
                       tmp_path / "compare")
    assert code == 0, err
    table = pd.read_csv(tmp_path / "compare" / "mlp.csv")
    assert len(table) == 6 and set(table["metric"]) == {"train_loss"}
    assert table["deviation"].tolist() == pytest.approx([1e-3] * 6, rel=1e-9)
