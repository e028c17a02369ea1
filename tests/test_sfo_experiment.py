"""Fig. 2b end to end on real MNIST: SFO through the runner (fixed subfunctions, closures,
one run per group), Adam trained alone and batched, the memory sweep, the figure and the
report's verdicts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from adamrepro.data.base import TensorDataset
from adamrepro.optim.sfo import SFO
from adamrepro.runner.group import SubfunctionPass, subfunction_split

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "configs" / "mlp_sfo.yaml"


def test_fig2b_smoke_run_plot_and_report(cli, data_dir, tmp_path):
    code, _, err = cli("run", CONFIG, "--scale", "smoke", "--out", tmp_path, "--quiet",
                       "--data-dir", data_dir)
    assert code == 0, err
    folder = tmp_path / "mlp_sfo"
    curves, best = pd.read_csv(folder / "curves.csv"), pd.read_csv(folder / "best.csv")
    assert set(best["method"]) == {"adam", "adam+batched", "sfo", "sfo+dropout", "sfo+memory"}
    sizes = curves.groupby("method")["group_size"].max()
    assert sizes["adam+batched"] == 4 and sizes.drop("adam+batched").eq(1).all()
    # SFO learned on the deterministic cost: its full training objective fell
    sfo = curves[curves["point_id"] == best.set_index("method").loc["sfo", "point_id"]]
    assert sfo["train_loss_full"].iloc[-1] < 0.9 * sfo["train_loss_full"].iloc[0]
    # its memory grows with the number of subfunctions, Adam's is fixed by the parameters
    memory = curves[curves["method"] == "sfo+memory"].groupby("num_subfunctions")[
        "state_bytes"].max()
    assert list(memory.index) == [8, 16, 32] and memory.is_monotonic_increasing
    assert memory.iloc[-1] > 2 * memory.iloc[0]
    adam = curves[curves["method"] == "adam"]
    assert adam["state_bytes"].max() < memory.iloc[0]

    assert cli("plot", "mlp_sfo", "--out", tmp_path)[0] == 0
    assert (folder / "sfo.png").stat().st_size > 0
    assert cli("report", "--out", tmp_path)[0] == 0
    report = (tmp_path / "report.md").read_text()
    rows = [line for line in report.splitlines() if line.startswith("| fig2b-")]
    assert len(rows) == 5
    assert not any("not run yet" in row or "not measurable" in row for row in rows), rows
    assert "trained alone" in report and "R² = " in report


def test_subfunctions_are_a_fixed_partition_of_the_training_set():
    parts = subfunction_split(seed=3, n=1000, count=7, device=torch.device("cpu"))
    assert len(parts) == 7 and {len(p) for p in parts} <= {142, 143}
    assert torch.cat(parts).sort().values.tolist() == list(range(1000))
    again = subfunction_split(seed=3, n=1000, count=7, device=torch.device("cpu"))
    assert all(torch.equal(a, b) for a, b in zip(parts, again, strict=True))


class Quadratics(torch.nn.Module):
    """f_i(θ) = ½(θ - x_i)², one parameter: the model interface SubfunctionPass calls,
    counting its objective's calls."""

    def __init__(self) -> None:
        super().__init__()
        self.theta = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
        self.calls = 0

    def regularized_objective(self, batch) -> torch.Tensor:
        self.calls += 1
        return 0.5 * (self.theta - batch["x"]).square().sum(-1)


def test_a_pass_is_n_subfunction_evaluations_rejected_ones_included():
    """A pass of SFO ends once it has evaluated N subfunctions, a rejected step's second
    evaluation counted, not after N steps. On f_i = ½(θ - x_i)², x = (1, -1, 0), from 0 with
    hessian_init 0.01 (worked out in tests/optim/test_sfo.py), step 0 overshoots to 100 and
    step 1 is rejected (two evaluations, both f_0 = ½ at 0, then θ = ½): the first pass is
    those two steps. The second is three steps of one evaluation each (f_1 at ½ and at 1/6,
    f_2 at 1/27), ending at θ = 4/729."""
    centres = torch.tensor([1.0, -1.0, 0.0], dtype=torch.float64)
    data = TensorDataset({"x": centres}, {"x": centres})
    model = Quadratics()
    optimizer = SFO(list(model.parameters()), 3, hessian_init=0.01, init_active=3)
    split = [torch.tensor([i]) for i in range(3)]
    train_pass = SubfunctionPass(model, optimizer, data, split)

    first = train_pass()
    assert (model.calls, train_pass.evaluations) == (3, 3)
    assert optimizer.state[model.theta]["rejected_steps"] == 1
    assert float(first) == pytest.approx(0.5, rel=1e-12)
    assert float(model.theta.detach()) == pytest.approx(0.5, rel=1e-12)

    second = train_pass()
    assert (model.calls, train_pass.evaluations) == (6, 6)
    losses = (0.5 * 1.5**2, 0.5 * (7 / 6) ** 2, 0.5 * (1 / 27) ** 2)
    # each loss as SFO.step reports it, in the parameters' float64 (float32 rounded it)
    assert float(second) == pytest.approx(sum(losses) / 3, rel=1e-12)
    assert float(model.theta.detach()) == pytest.approx(4 / 729, rel=1e-12)


def test_an_evaluation_past_a_pass_s_end_counts_in_the_next_pass():
    """Pass k ends at k·N evaluations, not N after the last pass ended: a rejected step that
    straddles the end of a pass (its second evaluation is the (N+1)-th) is paid for by the
    next pass, so the x-axis is evaluations / N, as the reference counts passes. On
    f_i = ½(θ - x_i)², x = (1, -1), from 0 with hessian_init 0.01: step 0 evaluates f_0
    at 0 (½), step 1 is rejected (f_0 at 100, then at 0 again): 3 evaluations in the first
    pass. The second owes one: f_1 at 0 (½), ending at 4 = 2N, not 5."""
    centres = torch.tensor([1.0, -1.0], dtype=torch.float64)
    data = TensorDataset({"x": centres}, {"x": centres})
    model = Quadratics()
    optimizer = SFO(list(model.parameters()), 2, hessian_init=0.01)
    train_pass = SubfunctionPass(model, optimizer, data, [torch.tensor([i]) for i in range(2)])

    train_pass()
    assert (model.calls, train_pass.evaluations) == (3, 3)
    assert optimizer.state[model.theta]["rejected_steps"] == 1
    second = train_pass()
    assert (model.calls, train_pass.evaluations) == (4, 4)
    assert float(second) == pytest.approx(0.5, rel=1e-12)
    for passes in (3, 4, 5):
        train_pass()
        assert train_pass.evaluations - passes * 2 in (0, 1), passes


def test_bench_times_the_batchable_methods_and_names_the_others(data_dir):
    from adamrepro.bench.timing import run_bench
    from adamrepro.config import load_experiment
    from adamrepro.runner.executors import load_data

    exp = load_experiment(CONFIG).at_scale("smoke").with_epochs(1)
    data = load_data(exp, data_dir, torch.device("cpu"))
    result = run_bench(exp, "smoke", data, torch.device("cpu"))
    assert result["not_timed"] == ["sfo", "sfo+dropout", "sfo+memory"]
    assert result["grid"]["runs"] == 8  # adam alone (4) and adam+batched (4)
    assert result["check"]["passed"]
    # an MLP is not convex: float64 judges it, its float32 curves are reported alone
    assert result["check"]["float64_prefix"]["passed"]
    assert result["check"]["float64_prefix"]["runs"] == 8
    assert not result["check"]["timed_curves"]["judged"]


def test_adam_alone_traces_the_same_curves_as_batched(data_dir):
    """The fair timing of `adam` (max_group_size: 1) costs nothing in faithfulness: in float64
    its runs trace the curves of the same runs trained batched (`adam+batched`)."""
    from adamrepro.config import load_experiment
    from adamrepro.runner.executors import load_data
    from adamrepro.runner.group import train_group
    from adamrepro.runner.plan import plan

    exp = load_experiment(CONFIG).at_scale("smoke").with_epochs(1)
    exp = exp.model_copy(update={"training": exp.training.model_copy(
        update={"dtype": "float64"})})
    data = load_data(exp, data_dir, torch.device("cpu"))
    groups = plan(exp)
    (batched,) = [g for g in groups if g.method == "adam+batched"]
    together = dict(zip([r.hparams["lr"] for r in batched.runs],
                        train_group(exp, batched, data), strict=True))
    alone = [g for g in groups if g.method == "adam"]
    assert batched.size == 4 and [g.size for g in alone] == [1, 1, 1, 1]
    for group in alone:
        (curve,) = train_group(exp, group, data)
        twin = together[group.runs[0].hparams["lr"]]
        for row, other in zip(curve.rows, twin.rows, strict=True):
            for column in ("train_loss_full", "test_loss"):
                assert row[column] == pytest.approx(other[column], rel=1e-9, abs=1e-12)


def test_bench_sfo_script_times_steps_past_a_collapse(tmp_path, data_dir):
    """scripts/bench_sfo.py on a small MLP: its warm-up fills the subspace, so the timed steps
    include a collapse; the record has the machine and the state's size. A bad flag is one
    line, exit 2, and writes nothing."""
    script = [sys.executable, str(REPO / "scripts" / "bench_sfo.py"), "--device", "cpu",
              "--out", str(tmp_path), "--data-dir", str(data_dir)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([*script, "--hidden", "16", "--subfunctions", "4", "--steps", "20"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    record = json.loads((tmp_path / "bench" / "sfo-cpu-h16-n4.json").read_text())
    assert record["dim"] == 784 * 16 + 16 + 16 * 16 + 16 + 16 * 10 + 10
    assert (record["k_min"], record["k_max"]) == (11, 17)
    assert record["collapses"] >= 1 and record["k_min"] <= record["mean_rank"] <= 17
    assert record["step_ms"] > 0 and record["evaluations_per_step"] >= 1
    assert record["basis_mib"] == pytest.approx(17 * record["dim"] * 8 / 2**20)
    assert record["state_mib"] > record["basis_mib"]
    assert record["device"].startswith("cpu") and record["torch_version"] == torch.__version__
    assert record["commit"] in done.stdout
    bad = subprocess.run([*script, "--subfunctions", "1000", "--out", str(tmp_path / "bad")],
                         env=env, capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and "at most 468" in bad.stderr
    assert not (tmp_path / "bad").exists()
