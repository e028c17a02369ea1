"""An experiment folder's tidy tables: curves.csv (one row per run per pass), steps.csv, best.csv
and config.json, made from the stored runs' records (`curves_frame`, `steps_frame`) and read
back (`read_results`), each checked whole and against the others before anything uses it: a
damaged or hand-edited table is one line saying what and how to make it again."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from adamrepro.errors import UserError
from adamrepro.metrics import metric_set

if TYPE_CHECKING:
    from adamrepro.config.schema import Experiment

HPARAM_COLUMNS = {"betas": ("beta1", "beta2")}
# curves.csv, best.csv, config.json: its "config" the frozen `Experiment` where read_results
# was given a check (`ConfigCheck`), as every reader of the settings reads it; else the JSON
Tables = tuple[pd.DataFrame, pd.DataFrame, dict]


# The files of an experiment's folder that `write_tables` writes as one set, and those of
# them every reader needs (read_results).
TABLES = ("curves.csv", "best.csv", "steps.csv", "config.json")
NEEDED_FILES = ("curves.csv", "best.csv", "config.json")

# The owner of a folder where no sweep has finished yet (ResultStore.claim).
OWNER = ".sweep-owner.json"


def check_results_folder(out: Path, fix: str | None = None) -> None:
    """`--out` names the folder that holds the experiments' folders. An experiment's own folder
    (it holds config.json) would nest a run's results one level down, and leave plot and
    report finding none: refused, naming the folder above it (or `fix`, for a command whose
    --out is a folder of its own). A file is named as one."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder; " + (
            fix or "pass a folder of results (where 'adamrepro run --out' writes them)"))
    for name in ("config.json", OWNER):
        if (out / name).is_file():
            raise UserError(f"--out {out} is an experiment's own folder (it holds {name}); "
                            + (fix or f"pass the results folder above it: --out {out.parent}"))
    # nor inside one (its runs/, say): the experiment's own files, and a copy or removal of
    # its folder, would carry another sweep's results with them
    for above in Path(os.path.abspath(out)).parents:
        if (above / OWNER).is_file() or ((above / "config.json").is_file()
                                         and (above / "runs").is_dir()):
            raise UserError(f"--out {out} is inside the experiment folder {above}; "
                            + (fix or f"pass a results folder outside it, such as --out "
                                      f"{above.parent}"))


def recorded_precision(meta: dict) -> str:
    """The training precision a config.json (or OWNER) records, read as `config_in` reads
    it (fp32 for tables older than it)."""
    training = config_in(meta).get("training")
    return training.get("precision", "fp32") if isinstance(training, dict) else "fp32"


def config_in(meta: dict) -> dict:
    """The config a config.json (or OWNER) records, {} where a hand edit left no object:
    read_results judges such a file; the writers only look for what they can find."""
    config = meta.get("config")
    return config if isinstance(config, dict) else {}


# pandas before 3.0 parses floats with a fast parser that is not exact: 1 in 7 of the committed
# tables' numbers came back a few units in the last place off (0.45060603594423365 as
# ...336), so two runs a unit apart could compare "identical, bit for bit". pandas 3.0 parses
# exactly by default and deprecates the option (pyproject admits pandas 2 for Python 3.10).
EXACT_FLOATS = {} if int(pd.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}


def read_table(path: Path | io.BytesIO) -> pd.DataFrame:
    """A table this package wrote, every number exactly as written. Only an empty cell is
    missing (pandas writes NaN so): a name such as `nan`, `NA` or `null` (an experiment, a
    method) stays the string it is."""
    return pd.read_csv(path, keep_default_na=False, na_values=[""], **EXACT_FLOATS)


# What plot, report and compare give read_results to judge the config a config.json records
# (config/checks.py `recorded_config`; the runner's own reads need none): the config and the
# folder's metric columns in (the training objective's first), the validated, frozen config
# out, defaults filled in; ValueError saying what is wrong.
ConfigCheck = Callable[[dict, list[str]], "Experiment"]


def read_results(folder: Path, check_config: ConfigCheck | None = None) -> Tables:
    """The tables of one experiment folder; what figures and the report are drawn from.
    With `check_config`, config.json's config is judged by it too (and replaced by the
    `Experiment` it returns)."""
    paths = [folder / name for name in NEEDED_FILES]
    if not any(p.exists() for p in paths) and (folder / OWNER).is_file():
        # a sweep cut off (a time budget, a kill) before it wrote any table: no table was
        # lost, and --force would not help
        raise UserError(f"{folder} holds no tables yet: its sweep has not finished (a "
                        f"--time-budget or an interruption stopped it); run the same "
                        f"'adamrepro run' command again to finish it")
    for path in paths:
        if not path.exists():
            if any(p.exists() for p in paths) or (folder / "runs").is_dir():
                # one table of a set lost: the set is written again from the run records,
                # at the folder's scale (a bare `run` would train the paper's into it)
                raise UserError(f"{path} is missing; {_rewrite_fix(folder)}")
            raise UserError(f"{path} is missing; run 'adamrepro run' on the config of "
                            f"{folder.name} with --out {folder.parent} first")
    contents = {path.name: path.read_bytes() for path in paths}
    fix = _rewrite_fix(folder, contents["config.json"])
    curves, best = (_parsed(path, contents[path.name], fix) for path in paths[:2])
    meta, config = _checked_meta(paths[2], contents["config.json"], fix, check_config)
    _check_tables(paths, curves, best, meta, config, fix)
    _check_one_set(folder, meta, contents)
    return curves, best, meta if config is None else {**meta, "config": config}


def read_meta(folder: Path, check_config: ConfigCheck | None = None) -> dict:
    """An experiment folder's config.json alone, checked as read_results checks it."""
    data = (folder / "config.json").read_bytes()
    meta, config = _checked_meta(folder / "config.json", data, _rewrite_fix(folder, data),
                                 check_config)
    return meta if config is None else {**meta, "config": config}


def _checked_meta(path: Path, data: bytes, fix: str,
                  check_config: ConfigCheck | None) -> tuple[dict, Experiment | None]:
    """config.json (the bytes `data` of `path`) as read: an object with a config,
    provenance and metrics; and the `Experiment` that `check_config`, where given, judges
    its config to be (a hand edit that broke it is one line here, not a traceback in a
    figure), else None."""
    def damaged(what: str) -> UserError:
        return UserError(f"{path} is damaged ({what}); {fix}")

    meta = _parsed(path, data, fix)
    missing = [key for key in META_NEEDED if key not in meta]
    if missing:
        raise damaged(f"no {missing[0]!r}")
    for key in META_NEEDED:
        if not isinstance(meta[key], dict):
            raise damaged(f"its {key!r} is not an object")
    folder, experiment = path.parent, meta.get("experiment")
    if isinstance(experiment, str) and experiment != folder.name:
        # a folder copied or renamed: the report would judge one experiment's claims on
        # another's runs (Fig. 2a's on a logistic regression), and say they hold
        raise UserError(f"{folder} holds results of {experiment} (its config.json says so), "
                        f"not of {folder.name}; move it back to {folder.parent / experiment}")
    try:
        metrics = [c.name for c in metric_set(meta).columns()]
    except (KeyError, TypeError, ValueError):
        raise damaged("its 'metrics' declares no metrics") from None
    if check_config is None:
        return meta, None
    try:
        return meta, check_config(meta["config"], metrics)
    except ValueError as err:
        raise damaged(f"config.{err}") from None


def _parsed(path: Path, data: bytes, fix: str) -> pd.DataFrame | dict:
    """The table (CSV) or object (JSON) `data` of `path` holds; UserError naming `fix` for
    bytes that are no such thing, or a CSV cut short (pandas would read its first lines)."""
    try:
        table = read_table(io.BytesIO(data)) if path.suffix == ".csv" else json.loads(data)
    except ValueError as err:  # not text, not CSV, not JSON, or empty
        raise UserError(f"{path} is damaged ({type(err).__name__}); {fix}") from None
    if not isinstance(table, (pd.DataFrame, dict)):  # JSON, but no object
        raise UserError(f"{path} is damaged (not a JSON object); {fix}")
    if path.suffix == ".csv" and data and not data.endswith(b"\n"):
        raise UserError(f"{path} is damaged (cut short: its last line is unfinished); {fix}")
    return table


def _text_in_numbers(table: pd.DataFrame, columns: list[str]) -> str | None:
    """The first of `columns` that holds text, not numbers (or True/False), if any."""
    return next((column for column in columns
                 if not (pd.api.types.is_numeric_dtype(table[column])
                         or pd.api.types.is_bool_dtype(table[column]))), None)


def _rewrite_fix(folder: Path, meta: bytes | None = None) -> str:
    """What to do about a damaged table of `folder`, whose config.json holds `meta` (None:
    read it here)."""
    if meta is None:
        with contextlib.suppress(OSError):
            meta = (folder / "config.json").read_bytes()
    return (f"run 'adamrepro run' on its config with --out {folder.parent}"
            f"{_scale_and_seeds(meta or b'')} and --force: the tables are written again from "
            f"the records in {folder / 'runs'}")


def _scale_and_seeds(data: bytes) -> str:
    """The flags that give the folder's own scale and seeds, as far as its config.json (the
    bytes `data`) still says them: the fix must not train another scale, or drop seeds, into
    the folder."""
    try:
        meta = json.loads(data)
        scale, seeds = meta.get("scale"), config_in(meta).get("seeds")
    except (ValueError, AttributeError):
        scale = seeds = None
    flags, unknown = "", []
    for flag, value, known in (("--scale", scale, isinstance(scale, str) and scale.isalpha()),
                               ("--seeds", seeds, type(seeds) is int and seeds > 0)):
        if known:
            flags += f" {flag} {value}"
        else:
            unknown.append(flag)
    return flags + (f", the {' and '.join(unknown)} it ran with," if unknown else "")


STEPS_NEEDED = ("run_id", "point_id", "seed", "step", "epoch_fraction")


def read_steps(folder: Path, meta: dict) -> pd.DataFrame | None:
    """steps.csv of a folder whose config.json is `meta` (read_results), or None when the
    folder has none of this set: a steps.csv that config.json does not list is an earlier
    command's (one with `training.log_every`), not of these runs. Checked as the other
    tables are: one line for a mix of two sets or a damaged file, never a wrong figure."""
    path = folder / "steps.csv"
    listed = meta.get("tables")
    if not path.exists() or (isinstance(listed, dict) and "steps.csv" not in listed):
        return None
    data = path.read_bytes()
    _check_one_set(folder, meta, {"steps.csv": data})
    fix = _rewrite_fix(folder)
    steps = _parsed(path, data, fix)
    missing = [column for column in STEPS_NEEDED if column not in steps]
    if missing:
        raise UserError(f"{path} is damaged (no {missing[0]!r}); {fix}")
    text = _text_in_numbers(steps, [c for c in steps.columns
                                    if c.startswith(("train_", "test_"))
                                    or c in ("step", "epoch_fraction")])
    if text is not None:
        raise UserError(f"{path} is damaged (text in {text!r}, a column of numbers); {fix}")
    return steps


def _check_one_set(folder: Path, meta: dict, contents: dict[str, bytes]) -> None:
    """The tables are the ones config.json lists (`write_tables`), not a mix of two
    commands' (one cut off between renames, or one writing them now). Tables written
    before config.json listed them are taken as they are (and not hashed)."""
    listed = meta.get("tables")
    if not isinstance(listed, dict):
        return
    for name, data in contents.items():
        if name in listed and listed[name] != hashlib.sha256(data).hexdigest():
            raise UserError(f"{folder / name} is not the {name} its config.json lists: the "
                            f"tables are a mix of two commands' (one was cut off while writing "
                            f"them, or is writing them now), or it was edited since; "
                            f"{_rewrite_fix(folder)} (or wait for the one running)")


def _check_tables(paths: list[Path], curves: pd.DataFrame, best: pd.DataFrame, meta: dict,
                  config: Experiment | None, fix: str) -> None:
    """What the figures, the report and `compare` compute with, so that a damaged table is
    one line here, not a traceback or a wrong number later: the columns this package writes
    for the folder's metrics and hyperparameters, numbers where numbers go, and tables that
    agree (every run complete up to the last pass or its divergence, with its cost at every
    pass; every selected point among the runs). `meta` is config.json as read, `config` its
    checked config (None without a check)."""
    curves_path, best_path, meta_path = paths

    def damaged(path: Path, what: str) -> UserError:
        return UserError(f"{path} is damaged ({what}); {fix}")

    metrics = [c.name for c in metric_set(meta).columns()]  # _checked_meta judged it
    hparams = meta.get("hparam_columns", [])
    if not (isinstance(hparams, list) and all(isinstance(c, str) for c in hparams)):
        raise damaged(meta_path, "its 'hparam_columns' is not a list of column names")
    named = [c for c in (_setting(meta, config, "plot", "y"),
                         _setting(meta, config, "selection", "metric")) if isinstance(c, str)]
    for path, table, needed in (
            (curves_path, curves, (*CURVES_NEEDED, *metrics, *named, *hparams)),
            (best_path, best, (*BEST_NEEDED, *(f"final_{m}" for m in metrics), *hparams))):
        missing = [column for column in dict.fromkeys(needed) if column not in table]
        if missing:
            raise damaged(path, f"no {missing[0]!r}")
    if curves.empty:
        raise damaged(curves_path, "no runs, only its header")
    measured = [c for c in curves.columns
                if c.startswith(("train_", "test_")) or c in MEASURED_COLUMNS]
    # the hyperparameters the config gives as numbers: the figures read them so (α on the
    # sensitivity figure's axis), and text there was a traceback in `plot`
    numeric = _numeric_hparams(meta, hparams)
    for path, table, numbers, integers in (
            (curves_path, curves, [*measured, *numeric], ("seed", "epoch")),
            (best_path, best, [c for c in best.columns if c.startswith(("final_", "mean_"))]
             + numeric, ("n_seeds", "epochs"))):
        if table.empty:  # best.csv when every grid point diverged: a header, no types
            continue
        text = _text_in_numbers(table, numbers)
        if text is not None:
            raise damaged(path, f"text in {text!r}, a column of numbers")
        for column in integers:
            if not pd.api.types.is_integer_dtype(table[column]):
                raise damaged(path, f"{column!r} holds a value that is no whole number")
        if not pd.api.types.is_bool_dtype(table["diverged"]):
            raise damaged(path, "'diverged' holds a value that is neither True nor False")
    # what config.json says the tables are, against what they say of themselves (the scale
    # names every verdict; the rule decides which point best.csv holds)
    for path, table, column, said in (
            (curves_path, curves, "scale", meta.get("scale")),
            (best_path, best, "selection_rule", _setting(meta, config, "selection", "rule"))):
        found = set(table[column].astype(str)) if column in table and len(table) else set()
        if said is not None and found and found != {str(said)}:
            what = f"it says {column} {said!r}, and {path.name} {', '.join(sorted(found))}"
            if column == "scale" and len(found) == 1:  # the fix trains the tables' scale
                raise UserError(f"{meta_path} is damaged ({what}); " + _rewrite_fix(
                    meta_path.parent, json.dumps({**meta, "scale": found.pop()}).encode()))
            raise damaged(meta_path, what)
    _check_runs_complete(curves, named, lambda what: damaged(curves_path, what))
    ran = set(zip(curves["method"], curves["point_id"], strict=True))
    for method, point in zip(best["method"], best["point_id"], strict=True):
        if (method, point) not in ran:
            raise damaged(best_path, f"{method}'s selected point {point} has no runs in "
                                     f"curves.csv")


def _numeric_hparams(meta: dict, columns: list[str]) -> list[str]:
    """The hyperparameter `columns` whose every value in config.json's config (the methods'
    `hparams` and `grid`) is a number (a bool is none), as the tables then hold them."""
    methods = config_in(meta).get("methods")
    given: dict[str, bool] = {}
    for spec in (methods.values() if isinstance(methods, dict) else ()):
        if not isinstance(spec, dict):
            continue
        fixed = spec.get("hparams") if isinstance(spec.get("hparams"), dict) else {}
        grid = spec.get("grid") if isinstance(spec.get("grid"), dict) else {}
        settings = [{key: value} for key, value in fixed.items()] + [
            {key: value} for key, values in grid.items()
            for value in (values if isinstance(values, list) else [values])]
        for setting in settings:
            try:
                flat = hparam_columns(setting)
            except ValueError:  # a pair of another length than its names: not ours to judge
                continue
            for column, value in flat.items():
                number = isinstance(value, (int, float)) and not isinstance(value, bool)
                given[column] = given.get(column, True) and number
    return [column for column in columns if given.get(column)]


def _setting(meta: dict, config: Experiment | None, section: str, key: str):
    """`section.key` of the checked `config` (defaults filled in); without a check, of
    config.json's config as read, which a hand edit may have left without it: None then."""
    if config is not None:
        return getattr(getattr(config, section), key)
    part = meta["config"].get(section)
    return part.get(key) if isinstance(part, dict) else None


def _check_runs_complete(curves: pd.DataFrame, costs: list[str],
                         damaged: Callable[[str], UserError]) -> None:
    """Every run has each pass once, from its first to the last pass of the folder or to the
    pass it diverged at, and a value of every cost in `costs` at each pass from 1 on until
    it diverged (a missing pass would shift every mean and final cost read from it)."""
    twice = curves[curves.duplicated(["run_id", "epoch"])]
    if len(twice):
        row = twice.iloc[0]
        raise damaged(f"run {row['run_id']} has pass {row['epoch']} twice")
    last = int(curves["epoch"].max())
    spans = curves.groupby("run_id").agg(first=("epoch", "min"), end=("epoch", "max"),
                                         passes=("epoch", "size"), diverged=("diverged", "any"))
    gaps = spans[spans["passes"] != spans["end"] - spans["first"] + 1]
    if len(gaps):
        raise damaged(f"run {gaps.index[0]} misses passes between {gaps['first'].iloc[0]} "
                      f"and {gaps['end'].iloc[0]}")
    short = spans[(spans["end"] < last) & ~spans["diverged"]]
    if len(short):
        raise damaged(f"run {short.index[0]} stops at pass {short['end'].iloc[0]} of {last} "
                      f"without diverging")
    trained = curves[(curves["epoch"] >= 1) & ~curves["diverged"]]
    for cost in dict.fromkeys(costs):
        blank = trained[trained[cost].isna()]
        if len(blank):
            row = blank.iloc[0]
            raise damaged(f"no {cost} at pass {row['epoch']} of run {row['run_id']}, which "
                          f"did not diverge")


# What every reader of an experiment's tables relies on, besides the metric and
# hyperparameter columns its config.json declares (tables written before `variant`,
# `train_seconds`, `state_bytes` or `precision` existed are read without them).
CURVES_NEEDED = ("experiment", "method", "optimizer", "run_id", "point_id", "seed", "epoch",
                 "seconds", "diverged", "group_size", "commit", "torch_version", "device")
BEST_NEEDED = ("method", "optimizer", "point_id", "run_ids", "n_seeds", "diverged", "epochs",
               "selected_by")
META_NEEDED = ("config", "provenance")  # older tables lack "metrics"
# Columns of numbers besides the measured metrics (train_*, test_*)
MEASURED_COLUMNS = ("epoch", "seconds", "train_seconds", "group_size", "state_bytes",
                    "peak_memory_bytes", "seed")


def variants(frame: pd.DataFrame) -> pd.Series:
    """Every row's variant as text, "" for none (an empty CSV cell, read back as NaN).
    Tables written before variants were config fields (and hand-made ones) have no
    `variant` column: their configs spelled a variant only as a label suffix
    (`adam+dropout`), which is read for them alone."""
    if "variant" not in frame.columns:
        return frame["method"].map(lambda label: label.split("+", 1)[1] if "+" in label else "")
    return frame["variant"].astype(object).where(frame["variant"].notna(), "")


def in_config_order(table: pd.DataFrame, meta: dict) -> pd.DataFrame:
    """A table's rows (best.csv's, a figure's, a comparison's) in the order of the methods of
    the checked config (read_results): every figure's legend and table alike, not in
    whichever order selection found them."""
    order = list(meta["config"].methods)
    rank = {m: order.index(m) if m in order else len(order) for m in table["method"]}
    return table.sort_values("method", key=lambda m: m.map(rank), kind="stable")


def variant_of(row) -> str | None:
    """A table row's variant: the CSV keeps none as an empty cell (NaN once read)."""
    value = row.get("variant") if hasattr(row, "get") else None
    return value if isinstance(value, str) and value else None


def hparam_columns(hparams: dict) -> dict:
    """Flatten hyperparameters into CSV columns (betas -> beta1, beta2)."""
    out = {}
    for name, value in hparams.items():
        if isinstance(value, (list, tuple)):
            names = HPARAM_COLUMNS.get(name, tuple(f"{name}_{i}" for i in range(len(value))))
            out.update(dict(zip(names, value, strict=True)))
        else:
            out[name] = value
    return out


def integer_columns(records: list[dict]) -> list[str]:
    """The hyperparameter columns of `records` whose every value, in the runs that have
    one, is an int (a bool is no int here) that a float holds exactly: pandas holds such a
    column as floats where another method lacks it (an empty cell)."""
    kinds: dict[str, bool] = {}
    for record in records:
        for column, value in hparam_columns(record["hparams"]).items():
            whole = type(value) is int and abs(value) < 2**53
            kinds[column] = kinds.get(column, True) and whole
    return sorted(column for column, whole in kinds.items() if whole)


def with_integers(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """`frame` to write, with `columns` (integer_columns) as nullable integers: `max_iter: 3`
    is written 3, not 3.0, and a run without it an empty cell. Read back (read_table), such
    a column with an empty cell is floats again, as every reader has always taken it; a
    float given as one (`lr: 1.0`) keeps its column floats."""
    return frame.astype({column: "Int64" for column in columns if column in frame.columns})


PROVENANCE = ("commit", "torch_version", "device", "precision", "date")


def provenance_columns(record: dict) -> dict:
    """Where a run came from, as the columns of each of its rows in curves.csv and steps.csv:
    commit, torch version, device, and, where the record has them (runs stored before they
    were recorded leave the cells empty), the arithmetic it trained in
    (runner/precision.py) and the date it was trained."""
    return {key: record["provenance"][key] for key in PROVENANCE
            if key in record["provenance"]}  # commit, torch_version, device: is_run_record


def curves_frame(records: list[dict], columns: list[str]) -> pd.DataFrame:
    """The tidy table: one row per run per pass, with hyperparameters and provenance;
    `columns` are the metric columns the model declares (metrics.py)."""
    rows = []
    for record in records:
        fixed = {
            "experiment": record["experiment"],
            "scale": record["scale"],
            "method": record["method"],
            "optimizer": record["optimizer"],
            "variant": record.get("variant") or "",
            "run_id": record["run_id"],
            "point_id": record["point_id"],
            "seed": record["seed"],
        }
        extra = {**hparam_columns(record["hparams"]), **provenance_columns(record),
                 # a user's optimizer's code (runner/plan.py code_provenance)
                 **({"optimizer_code": record["optimizer_code"]}
                    if "optimizer_code" in record else {})}
        for row in record["rows"]:
            rows.append({**fixed, **row, **extra})
    frame = pd.DataFrame(rows)
    first = ["experiment", "scale", "method", "optimizer", "variant", "run_id", "point_id",
             "seed", "epoch", *columns, "seconds", "train_seconds", "diverged", "group_size",
             "state_bytes", "peak_memory_bytes"]
    # a run stored before a column existed (resumed into a newer table) has it empty (NaN)
    return frame.reindex(columns=first + [c for c in frame.columns if c not in first])


STEP_KEYS = ["experiment", "scale", "method", "optimizer", "variant", "run_id", "point_id",
             "seed"]


def steps_frame(records: list[dict], train_column: str) -> pd.DataFrame | None:
    """The tidy table of the within-pass records (`training.log_every`): one row per run per
    logged block of steps, `step` (steps since the start, at the block's end),
    `epoch_fraction` and `train_column`; None when no run has them."""
    rows = []
    for record in records:
        fixed = {key: (record.get(key) or "") if key == "variant" else record[key]
                 for key in STEP_KEYS}
        provenance = provenance_columns(record)
        rows.extend({**fixed, **row, **provenance} for row in record.get("steps", []))
    if not rows:
        return None
    frame = pd.DataFrame(rows)
    return frame[[*STEP_KEYS, "step", "epoch_fraction", train_column,
                  *(c for c in PROVENANCE if c in frame.columns)]]
