"""`run --only-selected`: each method's selected point rebuilt from a best.csv exactly (the
point id it recorded), grid values keeping their type, a point beyond the grid (an edge
extension) rebuilt from its number, and a point the config does not train refused."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from adamrepro.config import load_experiment
from adamrepro.errors import UserError
from adamrepro.results.tables import hparam_columns
from adamrepro.runner.only_selected import points_of
from adamrepro.runner.plan import method_groups

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def _best(tmp_path: Path, exp, chosen: dict[str, dict]) -> pd.DataFrame:
    """A best.csv of `chosen` points, read back as `run --only-selected` reads one."""
    rows = [{"experiment": exp.name, "method": label,
             "point_id": method_groups(exp, label, [point])[0].runs[0].point_id,
             **hparam_columns(point)} for label, point in chosen.items()]
    pd.DataFrame(rows).to_csv(tmp_path / "best.csv", index=False)
    return pd.read_csv(tmp_path / "best.csv")


def _extending(exp, edges: int):
    return exp.model_copy(update={"selection": exp.selection.model_copy(
        update={"extend_edges": edges})})


def test_selected_points_are_rebuilt_exactly_in_and_beyond_the_grid(tmp_path):
    exp = _extending(load_experiment(CONFIGS / "mlp_sfo.yaml").at_scale("quick"), 2)
    chosen = {
        # an int axis, read back as a float column (NaN in the other rows): stays an int
        "sfo+memory": {**exp.methods["sfo+memory"].hparams, "num_subfunctions": 16},
        # a list-valued hyperparameter (betas -> beta1, beta2) and an lr beyond the grid:
        # the second point the extension adds below 1e-4 (grid step 3 there)
        "adam": {**exp.methods["adam"].hparams, "lr": 1.11111e-05},
    }
    best = _best(tmp_path, exp, chosen)
    assert best["num_subfunctions"].dtype == float
    points = points_of(exp, best, "fp32", "test")
    assert points == {label: [point] for label, point in chosen.items()}
    assert type(points["sfo+memory"][0]["num_subfunctions"]) is int
    # in the config's order, as a whole grid's plan (best.csv's rows came the other way)
    assert list(best["method"]) == ["sfo+memory", "adam"] and list(points) == [
        "adam", "sfo+memory"]


def test_a_point_the_config_does_not_train_is_refused(tmp_path):
    exp = load_experiment(CONFIGS / "vae_bias_correction.yaml").at_scale("smoke")
    point = {**exp.methods["adam"].hparams, "betas": [0.9, 0.999], "lr": 1.0e-3}
    best = _best(tmp_path, exp, {"adam": point})
    assert points_of(exp, best, "fp32", "test") == {"adam": [point]}
    # a point id that is not the point's, or a base said to be bf16 (precision enters
    # ids): either way not the point this config trains
    with pytest.raises(UserError, match="is not one this config trains"):
        points_of(exp, best.assign(point_id="0" * 12), "fp32", "test")
    with pytest.raises(UserError, match="is not one this config trains"):
        points_of(exp, best, "bf16", "test")


@pytest.mark.parametrize("lr, edges", [
    (5.0e-4, 2),  # inside the grid's range, not a grid value: another grid
    (3.33333e-05, 0),  # an extension point, where this config extends no edge
    (3.7e-06, 2),  # beyond the two points an edge may add
])
def test_a_number_this_config_s_grid_cannot_give_is_refused(lr, edges, tmp_path):
    """The point id alone would accept it (ids come from the hyperparameters): the grid,
    and how far its extension reaches, say whether this config trains it."""
    exp = _extending(load_experiment(CONFIGS / "mlp_sfo.yaml").at_scale("quick"), edges)
    best = _best(tmp_path, exp, {"adam": {**exp.methods["adam"].hparams, "lr": lr}})
    with pytest.raises(UserError, match=f"selected lr = {lr:g} there, which this config's "
                                        f"grid .* does not train"):
        points_of(exp, best, "fp32", "test")
