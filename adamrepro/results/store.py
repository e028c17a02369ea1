"""The results folder of one experiment, `<out>/<experiment>/`:

    runs/<run_id>.json   one finished run: its spec, provenance and curve (written atomically)
    runs/<run_id>.pt     its final parameters, for configs with training.save_params
    runs/<group_id>.ckpt.pt  a group's state mid-way (training.checkpoint_every, run
                         --time-budget; runner/checkpoint.py), removed once its runs are
                         stored, or once a sweep completes if its group is not in the plan
                         (sweep.remove_stale_checkpoints)
    curves.csv           tidy: one row per run per pass, for the runs of the last command
    steps.csv            with `training.log_every`: one row per run per block of that many
                         steps (the mean minibatch objective of the block)
    best.csv             the selected grid point per method (see select.py)
    config.json          the resolved config that ran, with provenance
    .lock                held while a command writes here

Every file is written to a temporary name and renamed, so none is ever half-written, and a
killed sweep resumes from the runs that finished.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import io
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from adamrepro.atomic import atomic_file, atomic_set, atomic_torch_save, atomic_write
from adamrepro.errors import UserError, note
from adamrepro.metrics import metric_set
from adamrepro.stopping import signals_deferred

HPARAM_COLUMNS = {"betas": ("beta1", "beta2")}
Tables = tuple[pd.DataFrame, pd.DataFrame, dict]  # curves.csv, best.csv, config.json


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


def check_writable(folder: Path) -> None:
    """Fail before any work is done if `folder` (given by --out) cannot be made or written."""
    path = folder
    while not path.exists():
        path = path.parent
    if not path.is_dir() or not os.access(path, os.W_OK | os.X_OK):
        raise UserError(
            f"cannot write results to {folder}: {path} is not a writable folder; pass "
            f"--out to a writable folder"
        )
    if path != folder:  # to be made: some folders say yes to access() and no to mkdir (/proc)
        try:
            os.rmdir(tempfile.mkdtemp(prefix=".adamrepro-probe-", dir=path))
        except OSError as err:
            raise UserError(f"cannot write results to {folder}: {path} takes no new folder "
                            f"({err.strerror}); pass --out to a writable folder") from None


def recorded_precision(meta: dict) -> str:
    """The training precision a config.json records (fp32 for tables older than it)."""
    training = _recorded_config(meta).get("training")
    return training.get("precision", "fp32") if isinstance(training, dict) else "fp32"


def _recorded_config(meta: dict) -> dict:
    """The config a config.json (or OWNER) records, {} where a hand edit left no object:
    read_results judges such a file; the writers only look for what they can find."""
    config = meta.get("config")
    return config if isinstance(config, dict) else {}


def read_table(path: Path | io.BytesIO) -> pd.DataFrame:
    """A table this package wrote. Only an empty cell is missing (pandas writes NaN so): a
    name such as `nan`, `NA` or `null` (an experiment, a method) stays the string it is."""
    return pd.read_csv(path, keep_default_na=False, na_values=[""])


# What plot, report and compare give read_results to judge the config a config.json records
# (config/checks.py `recorded_config`; the runner's own reads need none): the config and the
# folder's metric columns in (the training objective's first), the validated config out,
# defaults filled in; ValueError saying what is wrong.
ConfigCheck = Callable[[dict, list[str]], dict]


def read_results(folder: Path, check_config: ConfigCheck | None = None) -> Tables:
    """The tables of one experiment folder; what figures and the report are drawn from.
    With `check_config`, config.json's config is judged by it too (and replaced by what it
    returns)."""
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
    meta = _checked_meta(paths[2], contents["config.json"], fix, check_config)
    _check_tables(paths, curves, best, meta, fix)
    _check_one_set(folder, meta, contents)
    return curves, best, meta


def read_meta(folder: Path, check_config: ConfigCheck | None = None) -> dict:
    """An experiment folder's config.json alone, checked as read_results checks it."""
    data = (folder / "config.json").read_bytes()
    return _checked_meta(folder / "config.json", data, _rewrite_fix(folder, data), check_config)


def _checked_meta(path: Path, data: bytes, fix: str, check_config: ConfigCheck | None) -> dict:
    """config.json (the bytes `data` of `path`): an object with a config, provenance and
    metrics, the config judged by `check_config` where given (a hand edit that broke it is
    one line here, not a traceback in a figure)."""
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
        return meta
    try:
        return {**meta, "config": check_config(meta["config"], metrics)}
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
        scale, seeds = meta.get("scale"), _recorded_config(meta).get("seeds")
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
                  fix: str) -> None:
    """What the figures, the report and `compare` compute with, so that a damaged table is
    one line here, not a traceback or a wrong number later: the columns this package writes
    for the folder's metrics and hyperparameters, numbers where numbers go, and tables that
    agree (every run complete up to the last pass or its divergence, with its cost at every
    pass; every selected point among the runs)."""
    curves_path, best_path, meta_path = paths

    def damaged(path: Path, what: str) -> UserError:
        return UserError(f"{path} is damaged ({what}); {fix}")

    metrics = [c.name for c in metric_set(meta).columns()]  # _checked_meta judged it
    hparams = meta.get("hparam_columns", [])
    if not (isinstance(hparams, list) and all(isinstance(c, str) for c in hparams)):
        raise damaged(meta_path, "its 'hparam_columns' is not a list of column names")
    config = meta["config"]  # an object (_checked_meta); a config if a check judged it
    named = [c for c in (_setting(config, "plot", "y"), _setting(config, "selection", "metric"))
             if isinstance(c, str)]
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
    for path, table, numbers, integers in (
            (curves_path, curves, measured, ("seed", "epoch")),
            (best_path, best, [c for c in best.columns if c.startswith(("final_", "mean_"))],
             ("n_seeds", "epochs"))):
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
            (best_path, best, "selection_rule", _setting(config, "selection", "rule"))):
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


def _setting(config: dict, section: str, key: str):
    """config[section][key], or None where a config.json no config check judged lacks it."""
    part = config.get(section)
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
    """A table's rows (best.csv's, a figure's, a comparison's) in the config's order of
    methods: every figure's legend and table alike, not in whichever order selection found
    them."""
    order = list(meta["config"].get("methods", {}))
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


def _same_file(handle, path: Path) -> bool:
    """Whether the open `handle` is still the file at `path` (not removed or replaced)."""
    try:
        return os.path.samestat(os.fstat(handle.fileno()), os.stat(path))
    except FileNotFoundError:
        return False


class ResultStore:
    def __init__(self, out: Path, experiment: str) -> None:
        self.root = Path(out) / experiment
        self.runs_dir = self.root / "runs"

    def check_writable(self) -> None:
        """Fail before anything is written (or trained) if the folder, or one of its tables,
        cannot be written."""
        check_writable(self.root)
        for name in TABLES:
            if (self.root / name).is_dir():
                raise UserError(f"cannot write results to {self.root}: {self.root / name} is "
                                f"a folder where a table goes; move it away, or pass --out "
                                f"to another folder")

    def _records_scale(self) -> str | None:
        """The scale of the first run record here (None: none, or none readable)."""
        first = min(self.runs_dir.glob("*.json"), default=None) if self.runs_dir.is_dir() \
            else None
        try:
            record = json.loads(first.read_text()) if first else None
        except (OSError, ValueError):
            return None
        return record.get("scale") if isinstance(record, dict) else None

    def check_owner(self, digest: str, scale: str, force: bool, run_ids: set[str],
                    extensions: Callable[[pd.DataFrame], set[str]] = lambda curves: set(),
                    only_selected: Path | None = None, precision: str = "fp32",
                    seeds: int | None = None) -> None:
        """Refuse to mix into a folder written by a different config, or to replace its
        tables with another scale's (unless forced): a quick run must not silently
        overwrite paper-scale results. A config that differs only in what does not change
        any run (a title, a variant label, options added to adamrepro since) and still trains
        every run of the folder's tables (`run_ids`, and the ids `extensions(curves)` gives
        the stored runs its grid-edge extension added) may write there. A run of the points
        `only_selected` selected (`run --only-selected`) may not write over a whole sweep's
        tables: they would hold the selected points alone. Nor may a run of fewer `seeds`
        than the tables hold (its tables would drop the others' curves), same config or not."""
        path = self.root / "config.json"
        if not path.exists():  # no sweep finished here: the one that started here, if any
            path = self.root / OWNER
            if not self._anything_trained():
                # cut off before its first record or checkpoint: nothing of it to protect
                # (it was said to "hold results of a different config"), and this command's
                # claim replaces it
                return
        if not path.exists():
            # config.json deleted by hand: its run records still say their scale, and a run
            # of another scale would write its tables over theirs
            held = self._records_scale()
            if held not in (None, scale) and not force:
                raise UserError(
                    f"{self.root} holds {held}-scale run records; write {scale}-scale ones to "
                    f"another folder (e.g. --out results/{scale}), or pass --force to replace "
                    f"its tables with them")
            return
        try:
            previous = json.loads(path.read_text())
        except (OSError, ValueError):
            previous = None
        if not isinstance(previous, dict):  # damaged since: written whole (atomic_file)
            if not force:
                raise UserError(
                    f"{path} is damaged (not the JSON object this package writes); pass "
                    + ("--force to write the folder's tables again from its run records"
                       if path.name == "config.json" else
                       "--force to go on with this command's config and scale (it says which "
                       "ones own this unfinished sweep; the run records stay)"))
            previous = {}
        if only_selected is not None and previous and "points_selected_in" not in previous:
            raise UserError(f"{self.root} holds a whole sweep of {self.root.name}; "
                            f"--only-selected {only_selected} would rewrite its tables with "
                            f"the selected points alone: give another --out")
        if only_selected is None and previous.get("points_selected_in"):
            # the other way round: the sweep took them for its own runs, trained in other
            # groups (with dropout, other masks), and `compare` no longer knew
            raise UserError(f"{self.root} holds only the points selected in "
                            f"{previous['points_selected_in']} (run --only-selected), trained "
                            f"in groups of their own; a whole sweep would take them for its "
                            f"own runs: give another --out")
        if force:
            return
        held = previous.get("experiment")
        if isinstance(held, str) and held != self.root.name:  # a folder copied or renamed
            raise UserError(f"{self.root} holds results of {held}, not of {self.root.name}; "
                            f"pass --out to another folder, or move it back to "
                            f"{self.root.parent / held}")
        within = functools.cache(lambda: self._runs_within(run_ids, extensions))
        if previous.get("base_digest") != digest and not within():
            before = recorded_precision(previous)
            if before != precision:  # the usual case: `run --precision` into the fp32 folder
                raise UserError(
                    f"{self.root} holds {before} results of {self.root.name}, and this run is "
                    f"{precision}: give it its own --out, then 'adamrepro compare' the two "
                    f"folders")
            raise UserError(
                f"{self.root} holds results of a different {self.root.name} config; pass --out "
                f"to another folder, or --force to add to it (runs are keyed by their settings)"
            )
        if previous.get("scale", scale) != scale:
            if path.name == OWNER:  # no tables yet: --force would throw its progress away
                saved = len(list(self.runs_dir.glob("*.ckpt.pt")))
                raise UserError(
                    f"{self.root} holds an unfinished {previous['scale']}-scale sweep"
                    + (f" ({saved} checkpoint{'s' if saved != 1 else ''})" if saved else "")
                    + f"; finish it with --scale {previous['scale']}, write {scale}-scale ones "
                    f"to another folder (e.g. --out results/{scale}), or pass --force to "
                    f"discard it")
            raise UserError(
                f"{self.root} holds {previous['scale']}-scale results; write {scale}-scale ones "
                f"to another folder (e.g. --out results/{scale}), or pass --force to replace "
                f"its tables with them"
            )
        # last: another config or scale is the mistake to name first, whose fix is not
        # --seeds
        held = _recorded_config(previous).get("seeds") if path.name == "config.json" else None
        if seeds is not None and isinstance(held, int) and held > seeds and not within():
            raise UserError(
                f"{self.root} holds {held} seeds per grid point, and this run trains {seeds}: "
                f"its tables would drop the others; pass --seeds {held}, or --out to another "
                f"folder")

    def claim(self, digest: str, scale: str, precision: str,
              only_selected: Path | None = None) -> None:
        """Say which config and scale this folder's runs belong to before its first table
        exists (`OWNER`): a sweep cut off before it wrote config.json (a kill, a time budget)
        still refuses a command of another scale or config, which would otherwise find no
        config.json and take its checkpoints for stale."""
        if (self.root / "config.json").exists():
            return
        owner = {"base_digest": digest, "scale": scale,
                 "config": {"training": {"precision": precision}},
                 **({"points_selected_in": str(only_selected)} if only_selected else {})}
        with atomic_file(self.root / OWNER) as f:
            f.write(json.dumps(owner) + "\n")

    @contextlib.contextmanager
    def cleaned_on_error(self):
        """On an error, this command's temporary files removed before the lock is let go: a
        worker killed while it wrote a checkpoint (the command stopping on another's error)
        left its `.NAME.*.tmp` until the next command began."""
        try:
            yield
        except BaseException:
            self.remove_temporary_files()
            raise

    def remove_temporary_files(self) -> int:
        """Remove the temporary files of writes a kill cut off (atomic_file's `.NAME.*.tmp`:
        tables, run records, parameters, checkpoints); only under the lock, which every
        command that writes these holds, so none is another command's work in progress.
        `plot` writes its figures here without the lock: theirs are left alone."""
        stale = [*(path for name in (*TABLES, OWNER) for path in self.root.glob(f".{name}.*.tmp")),
                 *self.runs_dir.glob(".*.tmp")]
        for path in stale:
            path.unlink(missing_ok=True)
        return len(stale)

    def _anything_trained(self) -> bool:
        """Whether `runs/` holds a run record or a checkpoint."""
        return any(self.runs_dir.glob("*.json")) or any(self.runs_dir.glob("*.ckpt.pt"))

    def _runs_within(self, run_ids: set[str],
                     extensions: Callable[[pd.DataFrame], set[str]]) -> bool:
        """Whether every run in the folder's curves.csv is one of `run_ids` or of
        `extensions(curves)`; before any table (a sweep cut off), whether every stored run
        record is one of `run_ids` and no group is checkpointed mid-way (its runs are not
        known here, and a config that lost them would take the checkpoint for stale)."""
        if not (self.root / "config.json").exists():
            records = {path.stem for path in self.runs_dir.glob("*.json")}
            return (bool(records) and records <= run_ids
                    and not any(self.runs_dir.glob("*.ckpt.pt")))
        try:
            curves = read_table(self.root / "curves.csv")
        except (OSError, ValueError):
            return False
        stored = set(curves["run_id"]) if "run_id" in curves else set()
        return bool(stored) and stored <= run_ids | extensions(curves)

    def prepare(self) -> None:
        try:
            self.runs_dir.mkdir(parents=True, exist_ok=True)
        except FileExistsError:  # a file where the folder of run records goes
            raise UserError(f"{self.runs_dir} is a file where the folder of run records goes; "
                            f"move it away, or pass --out to another folder") from None
        except OSError as err:
            raise UserError(
                f"cannot write results to {self.root} ({err.strerror}); pass --out to a "
                f"writable folder"
            ) from None

    def first_missing(self) -> Path | None:
        """The outermost folder of the experiment's path that does not exist yet."""
        return next((p for p in (*reversed(self.root.parents), self.root) if not p.exists()),
                    None)

    @contextlib.contextmanager
    def removed_if_left_empty(self, created: Path | None):
        """A command that fails before it records anything (a user's optimizer that raises,
        Ctrl-C in the first group) leaves no folder it created (`created`, its
        `first_missing()` before it began): nothing half-written. A folder that existed
        before, or holds a record or a checkpoint, stays as it is. Entered under the lock,
        which the lock file's removal then leaves to no one (`locked`)."""
        try:
            yield
        except BaseException:
            if created is not None:
                with signals_deferred():  # a second Ctrl-C: after the folder is gone
                    self._remove_empty(created)
            raise

    def _remove_empty(self, created: Path) -> None:
        try:
            self.runs_dir.rmdir()  # fails when it holds anything
        except FileNotFoundError:
            pass
        except OSError:
            return
        (self.root / ".lock").unlink(missing_ok=True)
        (self.root / OWNER).unlink(missing_ok=True)
        for folder in (self.root, *self.root.parents):
            try:
                folder.rmdir()
            except OSError:
                return
            if folder == created:
                return

    @contextlib.contextmanager
    def locked(self):
        """Hold an exclusive lock on the folder; a second command waits for the first. The
        first may remove the folder it created and recorded nothing in, lock file included
        (`removed_if_left_empty`): a lock then taken on the removed file keeps no one out, so
        the waiter takes one on a new file instead."""
        said = False
        while True:
            self.root.mkdir(parents=True, exist_ok=True)
            path = self.root / ".lock"
            handle = open(path, "w")
            try:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:  # say why nothing moves, then wait
                    if not said:
                        note(f"another command is writing to {self.root}; waiting for it to "
                             f"finish (its finished runs are then skipped)")
                        said = True
                    fcntl.flock(handle, fcntl.LOCK_EX)
                if _same_file(handle, path):
                    try:
                        yield
                    finally:
                        fcntl.flock(handle, fcntl.LOCK_UN)
                    return
            finally:
                handle.close()

    def run_path(self, run_id: str) -> Path:
        return self.runs_dir / f"{run_id}.json"

    def is_done(self, run_id: str) -> bool:
        return self.run_path(run_id).exists()

    def save_run(self, record: dict) -> None:
        atomic_write(self.run_path(record["run_id"]),
                     json.dumps({**record, "digest": record_digest(record)}))

    def params_path(self, run_id: str) -> Path:
        return self.runs_dir / f"{run_id}.pt"

    def save_params(self, run_id: str, params: dict) -> None:
        """A run's final parameters (training.save_params): a dict of tensors, read back
        with torch.load(path, weights_only=True)."""
        atomic_torch_save(params, self.params_path(run_id))

    def load_run(self, run_id: str, epochs: int | None = None) -> dict:
        """Run `run_id`'s record, checked to be one a run of `epochs` passes writes (when
        given): a hand edit is one line naming the record, never a table the readers then
        refuse, which `run --force` would only write again."""
        path = self.run_path(run_id)
        fix = "delete it and run the same command again, which trains that run again"
        try:
            record = json.loads(path.read_text())
        except ValueError as err:  # written whole (atomic_file): damaged since
            raise UserError(f"{path} is damaged ({type(err).__name__}); {fix}") from None
        problem = record_problem(record, run_id, epochs)
        if problem is not None:
            raise UserError(f"{path} is damaged ({problem}); {fix}")
        return record

    def write_tables(self, tables: dict[str, pd.DataFrame], meta: dict) -> None:
        """The experiment's tables and its config.json, as one set (atomic_set); config.json
        then says who owns the folder, not `OWNER`."""
        texts = {name: frame.to_csv(index=False) for name, frame in tables.items()}
        # what config.json lists, so that a reader can tell a mix of two sets (a kill
        # between the renames) from one set (read_results)
        listed = {name: hashlib.sha256(text.encode()).hexdigest() for name, text in texts.items()}
        atomic_set({**{self.root / name: text for name, text in texts.items()},
                    self.root / "config.json": json.dumps({**meta, "tables": listed}, indent=2,
                                                          default=str) + "\n"})
        # a table of an earlier set that this one has not (steps.csv of a run with
        # `training.log_every`): config.json no longer lists it, so no reader takes it
        # (read_steps) even if a kill comes first; removed so nobody else does
        for name in TABLES:
            if name != "config.json" and name not in texts and (self.root / name).is_file():
                (self.root / name).unlink(missing_ok=True)
        (self.root / OWNER).unlink(missing_ok=True)


RECORD_NEEDED = ("experiment", "scale", "method", "optimizer", "run_id", "point_id", "seed")


def is_run_record(record) -> bool:
    """Whether `record` has what the tables are made of (`curves_frame`)."""
    return (isinstance(record, dict) and all(key in record for key in RECORD_NEEDED)
            and isinstance(record.get("hparams"), dict)
            and isinstance(record.get("provenance"), dict)
            and all(key in record["provenance"] for key in ("commit", "torch_version", "device"))
            and isinstance(record.get("rows"), list)
            and all(isinstance(row, dict) for row in record["rows"]))


def record_digest(record: dict) -> str:
    """SHA-256 of a run record without its `digest`: a record edited by hand (its curve, its
    hyperparameters) would otherwise go into the tables, and the verdicts, as measured."""
    body = {key: value for key, value in record.items() if key != "digest"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def record_problem(record, run_id: str, epochs: int | None) -> str | None:
    """What makes `record` no record of run `run_id` trained for `epochs` passes (None: not
    checked), or None: its rows are passes 0, 1, ... of numbers, up to the last pass unless
    the run diverged."""
    if not is_run_record(record):  # JSON, but not what a run writes
        return "not a run record"
    if record["run_id"] != run_id:
        return f"its run_id is {record['run_id']!r}, not the one its file name says"
    if type(record["seed"]) is not int:
        return "its seed is no whole number"
    if not isinstance(record.get("diverged", False), bool):
        return "its 'diverged' is neither true nor false"
    rows = record["rows"]
    if [row.get("epoch") for row in rows] != list(range(len(rows))) or not rows:
        return "its rows are not passes 0, 1, 2, ... in order"
    for row in rows:
        text = next((key for key, value in row.items()
                     if not (value is None or isinstance(value, (int, float)))), None)
        if text is not None or "seconds" not in row:
            return f"{text or 'no seconds'!r} at pass {row['epoch']}, not a number"
    last = len(rows) - 1
    if epochs is not None and last > epochs:  # diverging would not explain it
        return f"it ends at pass {last}, after the last of {epochs}"
    if epochs is not None and last < epochs and not record.get("diverged"):
        return f"it ends at pass {last} of {epochs} without diverging"
    if "digest" in record and record["digest"] != record_digest(record):  # older ones lack it
        return "edited since it was written: its digest does not match"
    return None


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
