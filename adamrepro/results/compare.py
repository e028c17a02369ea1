"""How far one results folder's curves move from another's, against the spread between seeds.

Made to measure `training.precision` (the same config at fp32 and at tf32 or bf16), but it
compares any two folders written by one config (two devices, two torch versions), or by
one config with its kernel switches set otherwise (`training.channels_last`, ...). For each
experiment present in both BASE and OTHER:

- the runs compared are those BASE selected (best.csv: every seed of each method's selected
  grid point), each matched in OTHER by method, hyperparameters and seed (run ids differ
  across precisions, so they cannot be matched by id);
- the curve compared is one metric's, by default the experiment's selection metric (for the
  bundled configs the training cost `train_loss` or `train_neg_elbo`), at every pass both
  recorded (a pass where the metric has no value in either, such as the minibatch cost
  before the first pass, is left out);
- `deviation`: the largest |other − base| / |base| over those runs and passes;
- `seed_spread`: the largest |a − b| / |b| between two seeds of the same selected point in
  BASE at the same pass, over every ordered pair of seeds (so the smaller of two values is
  the denominator) and every pass;
- `verdict`: `within` when the deviation is below the seed spread (the other setting moves
  the curve less than another seed does), else `beyond`. A run that diverged in OTHER (it has
  no finite value where BASE has one) has an infinite deviation.

A method's row names its selected point, the number of seeds and passes, and where each
maximum was found (pass and seed). One row per method; `adamrepro compare` prints the rows
and writes them per experiment as CSV.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from adamrepro.config import KERNEL_SWITCHES, Experiment, recorded_config
from adamrepro.errors import UserError, note
from adamrepro.metrics import metric_set
from adamrepro.models import MODELS
from adamrepro.results.select import ORIGIN
from adamrepro.results.tables import in_config_order, read_results, variant_of

VERDICTS = ("within", "beyond")
# A model's options that choose how it computes, not what (`IMPLEMENTATION_OPTIONS`: logreg's
# sparse_input and fused_objective), as a kernel switch does
MODEL_SWITCHES = tuple(sorted({name for model in MODELS.values()
                               for name in model.IMPLEMENTATION_OPTIONS}))
# Config keys that may differ between the two folders: what is being compared (the
# precision, a kernel switch or a model's implementation option, which move the curves by
# rounding alone: README, "Kernels"), the number of seeds (OTHER may hold more), and the
# title.
MAY_DIFFER = (("training", "precision"), *(("training", name) for name in KERNEL_SWITCHES),
              *(("model", name) for name in MODEL_SWITCHES), ("seeds",), ("title",))


@dataclass
class Comparison:
    """The rows of one experiment, and the settings the two folders ran."""

    experiment: str
    metric: str
    rows: pd.DataFrame
    base_precision: str
    other_precision: str
    # the kernel switches that differ between the two configs, as each side set them
    # ("channels_last off"), or "" where none does
    base_switches: str = ""
    other_switches: str = ""
    notes: list[str] = field(default_factory=list)
    # where each side's curves came from: commit, torch version, device (curves.csv's columns)
    provenance: dict[str, str] = field(default_factory=dict)

    def setting(self, side: str) -> str:
        """What one side (`base` or `other`) ran: its precision, and the kernel switches
        that differ from the other side's ("fp32, channels_last off")."""
        switches = getattr(self, f"{side}_switches")
        precision = getattr(self, f"{side}_precision")
        return f"{precision}, {switches}" if switches else precision


def experiments_in(folder: Path) -> list[str]:
    """The experiments with results under `folder` (subfolders holding curves.csv)."""
    return sorted(p.parent.name for p in Path(folder).glob("*/curves.csv"))


def compare_folders(base: Path, other: Path, experiments: list[str] | None = None,
                    metric: str | None = None) -> tuple[list[Comparison], list[str]]:
    """One `Comparison` per experiment in both folders (or per named experiment), and a line
    for each experiment present in only one of them (skipped). User mistakes (a missing
    folder, a named experiment without results, nothing in common) raise UserError."""
    base, other = Path(base), Path(other)
    for name, folder in (("BASE", base), ("OTHER", other)):
        if not folder.is_dir():
            raise UserError(f"{name} {folder} is not a folder; give the --out folder of an "
                            f"'adamrepro run'")
    in_base, in_other = experiments_in(base), experiments_in(other)
    for name, folder, found in (("BASE", base, in_base), ("OTHER", other, in_other)):
        if not found:
            raise UserError(f"{name} {folder} holds no results (no <experiment>/curves.csv); "
                            f"give the --out folder of an 'adamrepro run'")
    skipped = []
    if experiments:
        for experiment in experiments:
            for name, folder, found in (("BASE", base, in_base), ("OTHER", other, in_other)):
                if experiment not in found:
                    raise UserError(f"{name} {folder} has no results of {experiment!r} "
                                    f"(it has {', '.join(found)})")
        names = list(dict.fromkeys(experiments))
    else:
        names = [e for e in in_base if e in in_other]
        if not names:
            raise UserError(f"BASE {base} ({', '.join(in_base)}) and OTHER {other} "
                            f"({', '.join(in_other)}) have no experiment in common")
        skipped = [f"{e}: only in {'BASE' if e in in_base else 'OTHER'}, not compared"
                   for e in sorted(set(in_base) ^ set(in_other))]
    return [compare_experiment(base / e, other / e, metric) for e in names], skipped


def compare_experiment(base: Path, other: Path, metric: str | None = None) -> Comparison:
    """The rows of one experiment: BASE's selected runs against their twins in OTHER."""
    base_curves, best, base_meta = read_results(base, recorded_config)
    other_curves, _, other_meta = read_results(other, recorded_config)
    _check_same_config(base, other, base_meta, other_meta)
    _check_same_groups(base, other, base_meta, other_meta)
    config = base_meta["config"]
    metric = config.selection.metric if metric is None else metric
    for folder, curves, meta in ((base, base_curves, base_meta),
                                 (other, other_curves, other_meta)):
        names = [c.name for c in metric_set(meta).columns() if c.name in curves.columns]
        if metric not in names:  # `seed`, `lr` or `diverged` is a column, not a curve
            what = (f": {metric!r} is no metric of its model" if metric in curves.columns
                    else f" has no column {metric!r}")
            raise UserError(f"{folder}/curves.csv{what}; choose --metric among the metric "
                            f"columns of its model: {', '.join(names)}")
    hparams = list(base_meta.get("hparam_columns", []))
    other_by_key: dict[tuple, str] = {}
    for run_id, key in _run_keys(other_curves, hparams).items():
        other_by_key.setdefault(key, run_id)
    base_keys = _run_keys(base_curves, hparams)
    base_series = _series(base_curves, metric)
    other_series = _series(other_curves, metric)
    rows, regrouped = [], []
    sizes = [_group_sizes(curves) for curves in (base_curves, other_curves)]
    for _, chosen in in_config_order(best, base_meta).iterrows():  # as the figures' legends
        run_ids = str(chosen["run_ids"]).split(";")
        if len(run_ids) < 2:
            raise UserError(f"{base}/best.csv: method {chosen['method']}'s selected point has "
                            f"1 seed: no seed spread to measure against; run BASE with "
                            f"--seeds 2 or more")
        pairs = []
        for run_id in run_ids:
            twin = other_by_key.get(base_keys[run_id])
            if twin is None:
                method, seed = base_keys[run_id][0], base_keys[run_id][1]
                raise UserError(f"{other}: no run of method {method} at "
                                f"{_point_text(base_keys[run_id])}, seed {seed} (selected in "
                                f"BASE); run OTHER with the same config, scale and seeds")
            pairs.append((base_keys[run_id][1], base_series[run_id], other_series[twin]))
            if sizes[0].get(run_id) != sizes[1].get(twin) and chosen["method"] not in regrouped:
                regrouped.append(chosen["method"])
        rows.append(_row(chosen, metric, pairs, base_keys[run_ids[0]]))
    if regrouped:
        note(f"{base.name}: {', '.join(regrouped)}: runs trained in groups of other sizes in "
             f"BASE and OTHER (a group halved to fit memory or time on one side): with "
             f"dropout or sampling their noise differs too, and the deviation includes it")
    lost = [m for m in config.methods if m not in set(best["method"])]
    if lost:
        note(f"{base.name}: {', '.join(lost)}: no point selected in BASE (every grid point "
             f"diverged in one seed or more): not compared")
    # a pass or seed that none was found for (no finite value) stays blank: as floats, one
    # blank turned every other row's pass into "12.0"
    frame = pd.DataFrame(rows).astype({column: "Int64" for column in
                                       ("deviation_pass", "deviation_seed", "spread_pass")})
    return Comparison(base.name, metric, frame, _precision(base_curves, config),
                      _precision(other_curves, other_meta["config"]),
                      *_switches(config, other_meta["config"]),
                      provenance={**_provenance(base_curves, "base"),
                                  **_provenance(other_curves, "other")})



def _provenance(curves: pd.DataFrame, side: str) -> dict[str, str]:
    """`<side>_commit` etc.: the values the side's runs recorded, joined when several."""
    return {f"{side}_{column}": ";".join(sorted(str(v) for v in curves[column].dropna().unique()))
            for column in ORIGIN if column in curves.columns}


def _row(chosen: pd.Series, metric: str, pairs: list[tuple[int, pd.Series, pd.Series]],
         key: tuple) -> dict:
    deviation, deviation_at, passes = 0.0, (None, None), set()
    diverged = False
    for seed, base_values, other_values in pairs:
        for epoch, value in base_values.items():
            twin = other_values.get(epoch, math.nan)
            if not math.isfinite(value):
                continue
            passes.add(epoch)
            if not math.isfinite(twin):
                diverged = True
                change = math.inf
            else:
                change = relative_difference(twin, value)
            if change > deviation or deviation_at[0] is None:
                deviation, deviation_at = change, (epoch, seed)
    table = pd.DataFrame({seed: values for seed, values, _ in pairs})
    spread, spread_at = seed_spread(table)
    return {
        "experiment": chosen["experiment"], "method": chosen["method"],
        "optimizer": chosen["optimizer"], "variant": variant_of(chosen) or "",
        "point": _point_text(key), "metric": metric, "seeds": len(pairs),
        "passes": len(passes), "deviation": deviation, "deviation_pass": deviation_at[0],
        "deviation_seed": deviation_at[1], "other_diverged": diverged,
        "seed_spread": spread, "spread_pass": spread_at,
        "verdict": "within" if deviation < spread else "beyond",
    }


def relative_difference(value: float, reference: float) -> float:
    """|value − reference| / |reference|; 0 when both are 0, inf when only the reference
    is."""
    if value == reference:
        return 0.0
    if reference == 0:
        return math.inf
    return abs(value - reference) / abs(reference)


def seed_spread(table: pd.DataFrame) -> tuple[float, int | None]:
    """The largest |a − b| / |b| between two seeds (columns) at one pass (index), over every
    ordered pair and every pass where all seeds have a finite value; and that pass."""
    best, at = -1.0, None
    for epoch, row in table.iterrows():
        values = row.to_numpy(dtype=float)
        if len(values) < 2 or not np.isfinite(values).all():
            continue
        largest = max(relative_difference(a, b) for i, a in enumerate(values)
                      for j, b in enumerate(values) if i != j)
        if largest > best:
            best, at = largest, int(epoch)
    return (best, at) if at is not None else (math.nan, None)


def _group_sizes(curves: pd.DataFrame) -> dict[str, int]:
    """Each run's group size (none recorded: {})."""
    if "group_size" not in curves.columns:
        return {}
    first = curves.drop_duplicates("run_id")
    return dict(zip(first["run_id"], first["group_size"].astype(int), strict=True))


def _series(curves: pd.DataFrame, metric: str) -> dict[str, pd.Series]:
    """Each run's metric by pass."""
    return {run_id: frame.set_index("epoch")[metric].astype(float)
            for run_id, frame in curves.groupby("run_id", sort=False)}


def _run_keys(curves: pd.DataFrame, hparams: list[str]) -> dict[str, tuple]:
    """Each run's (method, seed, ((hyperparameter, value), ...)): what a run is across
    folders whose run ids differ. Values are compared as text, so 0.001 read from two CSVs
    matches and a hyperparameter a method does not have (an empty cell) is left out."""
    first = curves.drop_duplicates("run_id")
    keys = {}
    for _, row in first.iterrows():
        point = tuple((name, _text(row[name])) for name in hparams
                      if name in row.index and not _missing(row[name]))
        keys[row["run_id"]] = (row["method"], int(row["seed"]), point)
    return keys


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _text(value) -> str:
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, float, np.integer, np.floating)):
        # a whole number as one (an integer column with an empty cell is read as floats:
        # max_iter 3 is not shown as 3.0)
        number = float(value)
        return str(int(number)) if number.is_integer() and abs(number) < 2**53 else repr(number)
    return str(value)


def _point_text(key: tuple) -> str:
    return ", ".join(f"{name}={value}" for name, value in key[2]) or "(no hyperparameters)"


def _precision(curves: pd.DataFrame, config: Experiment) -> str:
    """The config's precision, and what the runs recorded when that differs (`tf32 (as
    fp32)` on a CPU); configs written before the setting existed ran fp32 (its default)."""
    configured = config.training.precision
    recorded = (sorted(str(v) for v in curves["precision"].dropna().unique())
                if "precision" in curves.columns else [])
    if recorded and recorded != [configured]:
        return f"{configured} (as {'/'.join(recorded)})"
    return configured


def _switches(base: Experiment, other: Experiment) -> tuple[str, str]:
    """The kernel switches and model implementation options the two configs set
    differently, as text for each side ("channels_last off"; `auto` as written, the device
    column says where it ran)."""
    def text(value) -> str:
        return {True: "on", False: "off"}.get(value, str(value))

    sides = [{**{name: getattr(exp.training, name) for name in KERNEL_SWITCHES},
              **_model_switches(exp)} for exp in (base, other)]
    differ = [name for name in sides[0] if sides[0][name] != sides[1].get(name)]
    return tuple(", ".join(f"{name} {text(side.get(name))}" for name in differ)
                 for side in sides)


def _model_switches(exp: Experiment) -> dict:
    """The experiment's model's implementation options, defaults included."""
    cls = MODELS.get(exp.model.get("name"))
    if cls is None or not cls.IMPLEMENTATION_OPTIONS:
        return {}
    opts = cls.options(dict(exp.model), "model")
    return {name: getattr(opts, name) for name in cls.IMPLEMENTATION_OPTIONS}


def _check_same_config(base: Path, other: Path, base_meta: dict, other_meta: dict) -> None:
    if base_meta.get("scale") != other_meta.get("scale"):
        raise UserError(f"{base} holds {base_meta.get('scale')}-scale results and {other} "
                        f"{other_meta.get('scale')}-scale ones; compare one scale")
    # every setting, by its place in config.json: the names said are the file's keys
    differ = [key for key in _differences(base_meta["config"].model_dump(mode="json"),
                                          other_meta["config"].model_dump(mode="json"))
              if not any(tuple(key.split("."))[:len(allowed)] == allowed
                         for allowed in MAY_DIFFER)]
    if differ:
        raise UserError(f"{base} and {other} ran different configs ({', '.join(differ[:3])} "
                        f"differ); compare results of one config")


def _check_same_groups(base: Path, other: Path, base_meta: dict, other_meta: dict) -> None:
    """A side that trained only the selected points (`run --only-selected`) trained them in
    other groups than a whole sweep: with dropout a run's masks come from its group, so its
    curves differ from the sweep's by other masks, not by the setting compared."""
    selected = {name: meta.get("points_selected_in")
                for name, meta in (("BASE", base_meta), ("OTHER", other_meta))}
    if bool(selected["BASE"]) != bool(selected["OTHER"]):
        name = "BASE" if selected["BASE"] else "OTHER"
        folder, whole = (base, other) if selected["BASE"] else (other, base)
        raise UserError(f"{name} {folder} trained only the points selected in "
                        f"{selected[name]} (run --only-selected), {whole} the whole grid: "
                        f"their runs trained in other groups (with dropout, other masks); "
                        f"compare it with an --only-selected run of the same points at the "
                        f"reference setting (scripts/measure_precision.sh does)")


def _differences(a, b, prefix: str = "") -> list[str]:
    """Dotted keys where two JSON values differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for key in sorted(set(a) | set(b), key=str)
                for d in _differences(a.get(key), b.get(key), f"{prefix}{key}.")]
    return [] if json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True) else [
        prefix.rstrip(".")]


def comparison_frame(comparison: Comparison) -> pd.DataFrame:
    """The tidy table of one experiment: one row per method, with both precisions and where
    both sides' curves came from."""
    return comparison.rows.assign(base_precision=comparison.base_precision,
                                  other_precision=comparison.other_precision,
                                  base_switches=comparison.base_switches,
                                  other_switches=comparison.other_switches,
                                  **comparison.provenance)
