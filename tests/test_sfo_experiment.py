"""Fig. 2b end to end on real MNIST: SFO through the runner (fixed subfunctions, closures,
one run per group), Adam trained alone and batched, the memory sweep, the figure and the
report's verdicts."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from adamrepro.runner.group import subfunction_split

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "mlp_sfo.yaml"


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
