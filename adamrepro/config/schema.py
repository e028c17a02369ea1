"""The config's schema: an experiment, its training, selection, plot, scales and methods, as
frozen pydantic models; what pydantic alone can judge (types, ranges, unknown keys) is
judged here, what needs the registries in checks.py."""

from __future__ import annotations

import itertools
import math
import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    Field,
    StrictInt,
    field_validator,
    model_validator,
)

from adamrepro.errors import UserError
from adamrepro.options import (
    AutoOrBool,
    Frozen,
)

SCALES = ("smoke", "quick", "paper")
# At most this many seeds per grid point, and runs in one experiment at one scale: plans
# are built whole, in memory, before the first step (a typo of --seeds 10000000000 would
# otherwise fill the host's memory, even under --dry-run).
MAX_SEEDS = 10_000
MAX_RUNS = 100_000
# training.precision (runner/precision.py): what each means is said at TrainingSpec.
PRECISIONS = ("fp32", "tf32", "bf16")


class TrainingSpec(Frozen):
    batch_size: StrictInt = Field(128, gt=0)
    epochs: StrictInt = Field(gt=0)
    # The last, incomplete minibatch of a pass is dropped so that every step of every run in a
    # batched group has the same shape (ours; 60000 = 468·128 + 96 drops 96 samples a pass,
    # a different 96 each pass since the order is reshuffled).
    drop_last: bool = True
    eval_batch_size: StrictInt = Field(10000, gt=0)
    # float64 exists for exactness tests (batched == one-by-one); experiments use float32.
    dtype: Literal["float32", "float64"] = "float32"
    # How float32 training computes (runner/precision.py): fp32, IEEE float32 throughout;
    # tf32, TF32 matmuls and convolutions on CUDA (as fp32 on a CPU, which has no TF32
    # units); bf16, bfloat16 autocast around each step's forward pass and loss, parameters,
    # gradients and optimizer state in float32. Evaluation is float32 at every precision.
    # fp32 until each experiment's curves are measured at the others (scripts/
    # measure_precision.sh); only tf32 and bf16 enter run ids (plan.py).
    precision: Literal[PRECISIONS] = "fp32"
    # Also record the mean minibatch objective of every block of `log_every` steps (steps.csv),
    # for figures that show detail within the first passes (Fig. 3 left). None: per pass only.
    log_every: StrictInt | None = Field(None, gt=0)
    # Keep each run's final parameters as runs/<run_id>.pt (for pictures such as the VAE's
    # samples). Not part of a run's identity: it changes no curve.
    save_params: bool = False
    # Save the state of a group every `checkpoint_every` passes (runs/<group_id>.ckpt.pt), so
    # that a group cut off mid-way goes on from there (runner/checkpoint.py). None: no
    # periodic checkpoints (`run --time-budget` still saves one where it stops a group). Not
    # part of a run's identity: it changes no curve.
    checkpoint_every: StrictInt | None = Field(None, gt=0)
    # At most this many runs per group, for every method (a memory cap; a method's own
    # `max_group_size` also applies). Not part of a run's identity: like the automatic split
    # of a group that does not fit in device memory, it changes how runs are grouped (and
    # so the dropout masks a run draws, and the time it records), not which runs they are.
    max_group_size: StrictInt | None = Field(None, gt=0)
    # How a step is computed, never what: each switch changes the curves by float rounding
    # alone, so none is part of a run's identity (runner/plan.py). Measured in the README's
    # "Kernels" (scripts/bench_kernels.py); off until a measurement says they pay.
    # The optimizer's update as one torch.compile'd function (optimizers that declare
    # themselves graphable: no host sync, no data-dependent control flow).
    compile_optimizer: bool = False
    # The training step's objective (forward and backward) through torch.compile.
    compile_model: bool = False
    # Convolutions on channels-last (NHWC) activations; no effect on a model without any.
    # auto: on a CPU, where oneDNN's NHWC grouped convolutions are 1.3-2.3x faster than its
    # NCHW ones (Fig. 3's CNN at quick scale: 247 -> 120 s), off on a GPU until measured
    # there (README, "Kernels"); runner/group.py's `channels_last_on` resolves it.
    channels_last: AutoOrBool = "auto"


# The settings above that choose how a step is computed, never what: not part of a run's
# identity (runner/plan.py), free to differ between folders `compare` measures
# (results/compare.py), and timed one by one by scripts/bench_kernels.py.
KERNEL_SWITCHES = ("compile_optimizer", "compile_model", "channels_last")


class SelectionSpec(Frozen):
    """Which run of a method's grid is 'best': the best mean over seeds of `metric` (lowest,
    or highest for a metric declared higher-is-better), a run's value being the metric at the
    last pass (`rule: final`) or its mean over passes 1..N (`rule: mean`, the area under the
    curve / N). `metric` is a column of the model's declared metrics (metrics.py); the
    default is the training objective's `train_<objective>`, filled in when the config is
    loaded. The report judges every claim under both rules (results/select.py)."""

    metric: str | None = None
    rule: Literal["final", "mean"] = "final"
    # When a method's selected point sits at the smallest or largest value of a positive,
    # real-valued grid axis (a step size), the sweep trains the next point beyond it (the
    # same log step as the grid's last one there), and again while the selection stays at
    # the new edge: at most this many points per edge (runner/sweep.py). 0: off.
    extend_edges: StrictInt = Field(0, ge=0, le=20)


DEFAULT_FIGURES = ("curves", "sensitivity")


class PlotSpec(Frozen):
    y: str | None = None  # a column of the model's metrics; default train_<objective>
    # Which figures `adamrepro plot` draws (names of adamrepro.figures.FIGURES).
    figures: list[str] = list(DEFAULT_FIGURES)
    logy: bool = False
    band: Literal["std", "minmax"] = "std"
    # The passes of early_and_all's left panel (Fig. 3 left shows the first 3; None: 3). Every
    # other figure draws every pass: the test metrics beside the cost matter most late.
    max_epoch: float | None = Field(None, gt=0)


# The columns of the results tables (results/tables.py's curves and steps, results/select.py's
# best.csv) beside a run's hyperparameters, which are columns too: a hyperparameter named
# like one would overwrite it without a word (a `seed` of 7 in place of the run's seed).
TABLE_COLUMNS = frozenset({
    "experiment", "scale", "method", "optimizer", "variant", "run_id", "point_id", "seed",
    "epoch", "seconds", "train_seconds", "diverged", "group_size", "state_bytes",
    "peak_memory_bytes", "max_step_ratio", "commit", "torch_version", "device", "precision",
    "date",
    "step", "epoch_fraction", "n_seeds", "run_ids", "seeds", "epochs", "selected_by",
    "selection_rule", "at_grid_edge", "extended"})
METRIC_PREFIXES = ("train_", "test_")  # metrics.py's columns


def _no_table_column(values: dict[str, Any]) -> dict[str, Any]:
    for key in values:
        if key in TABLE_COLUMNS or key.startswith(METRIC_PREFIXES):
            what = ("a column of the results tables" if key in TABLE_COLUMNS else
                    f"named like the metrics' columns ({', '.join(METRIC_PREFIXES)}...)")
            raise ValueError(f"{key!r} is {what}, which a hyperparameter of that name would "
                             f"overwrite in the tables; name the optimizer's argument "
                             f"otherwise")
    return values


def _grid_lists_valid(grid: dict[str, list[Any]]) -> dict[str, list[Any]]:
    _no_table_column(grid)
    for key, values in grid.items():
        if len(values) == 0:
            raise ValueError(f"grid.{key} is empty: give at least one value")
        _grid_values_distinct(values, key)
    return grid


# A grid: hyperparameter -> the values to try (at least one each).
Grid = Annotated[dict[str, list[Any]], AfterValidator(_grid_lists_valid)]


class ScaleSpec(Frozen):
    epochs: StrictInt | None = Field(None, gt=0)
    # Steps per logged block (training.log_every): a pass has fewer steps on a subset.
    log_every: StrictInt | None = Field(None, gt=0)
    train_size: StrictInt | None = Field(None, gt=0)
    test_size: StrictInt | None = Field(None, gt=0)
    # Model options for this scale only (e.g. narrower layers so that a smoke test of a
    # memory-hungry optimizer stays small); merged over `model`.
    model: dict[str, Any] = {}
    # A smaller grid for this scale: replaces the values of these keys in every method
    # whose grid has them (a method without the key keeps its grid).
    grid: Grid = {}
    # Seeds per grid point at this scale (the command line's --seeds still wins).
    seeds: StrictInt | None = Field(None, gt=0, le=MAX_SEEDS)
    # selection.extend_edges at this scale (e.g. 0 for smoke runs that test the plumbing).
    extend_edges: StrictInt | None = Field(None, ge=0, le=20)
    # The title at this scale, where its overrides change what the title names (e.g. the
    # layer widths of a narrower network): every figure and the report print it.
    title: str | None = None


class MethodSpec(Frozen):
    # A built-in name, an import path (`torch.optim.SGD`, `mypkg.module:MyOpt`) or an
    # entry point of group `adamrepro.optimizers` (optim/resolve.py).
    optimizer: str
    # What sets this method apart from the plain optimizer (`dropout`, `nobias`, ...): the
    # figures draw it in the optimizer's color with the variant's line style, and the report
    # finds a claim's methods by (optimizer, variant), never by parsing the label.
    variant: str | None = None
    # For an optimizer from elsewhere whose `step` needs a closure (capabilities.py).
    closure: bool | None = None
    # At most this many runs train batched together (1: every run alone, as a user's own
    # script would, for honest per-run seconds). The curves are the same either way.
    max_group_size: StrictInt | None = Field(None, gt=0)
    hparams: Annotated[dict[str, Any], AfterValidator(_no_table_column)] = {}
    grid: Grid = {}
    model: dict[str, Any] = {}


    @model_validator(mode="after")
    def _fixed_or_searched(self) -> MethodSpec:
        both = sorted(set(self.hparams) & set(self.grid))
        if both:  # the grid's values would win without a word
            raise ValueError(f"{both[0]!r} is in both hparams and grid; give it in one of "
                             f"them (hparams: one value, grid: the values to try)")
        return self

    def points(self) -> list[dict[str, Any]]:
        """Every grid point, merged over the fixed hyperparameters, in a stable order."""
        keys = sorted(self.grid)
        return [
            {**self.hparams, **dict(zip(keys, values, strict=True))}
            for values in itertools.product(*(self.grid[k] for k in keys))
        ]


def _folder_name(name: str) -> str:
    """An experiment's name is the folder its results go to (OUT/<name>): one plain path
    component, never `..`, a separator or empty."""
    if len(name) > MAX_NAME:
        raise ValueError(f"{name[:20]!r}... is {len(name)} characters long: give at most "
                         f"{MAX_NAME} (it names files, such as compare's .<name>.csv.*.tmp)")
    if not FOLDER_NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not a folder name: use letters, digits and _ - . +, "
                         f"starting with a letter or digit (e.g. my_experiment)")
    if name in OTHER_FOLDERS:
        raise ValueError(f"{name!r} is what {OTHER_FOLDERS[name]} writes in a results "
                         f"folder; name the experiment otherwise")
    return name


FOLDER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")
MAX_NAME = 100  # a file name holds 255 bytes, the longest we make of a name ~30 more
# What the other commands write beside the experiments' folders in a results folder: an
# experiment named so made a folder where `report` then could not write its file.
OTHER_FOLDERS = {"bench": "adamrepro bench", "compare": "adamrepro compare",
                 "report.md": "adamrepro report", "report.html": "adamrepro report"}


def _grid_values_distinct(values: list[Any], key: str) -> None:
    seen = []
    for value in values:
        if value in seen:
            raise ValueError(f"grid.{key} lists {value!r} twice: each value once")
        seen.append(value)


class Experiment(Frozen):
    name: Annotated[str, AfterValidator(_folder_name)]
    title: str
    dataset: dict[str, Any]
    model: dict[str, Any]
    training: TrainingSpec
    methods: dict[str, MethodSpec] = Field(min_length=1)
    selection: SelectionSpec = SelectionSpec()
    plot: PlotSpec = PlotSpec()
    # numpy's range of seeds; a run's streams are seed·1,000,003 + stream (seeding.py), and
    # torch's generators take 64 bits: a larger seed failed mid-sweep, not here
    seed: StrictInt = Field(0, ge=0, lt=2**32)
    seeds: StrictInt = Field(1, gt=0, le=MAX_SEEDS)
    scales: dict[Literal[SCALES], ScaleSpec] = {}

    @field_validator("methods")
    @classmethod
    def _labels_named(cls, methods: dict[str, MethodSpec]) -> dict[str, MethodSpec]:
        for label in methods:
            if not label.strip() or label != label.strip():
                # an empty label is an empty cell of every table, read back as missing
                raise ValueError(f"{label!r} is not a method label: give a name without "
                                 f"spaces at its ends (e.g. adam_dropout)")
        return methods

    def at_scale(self, scale: str, seeds: int | None = None) -> Experiment:
        """The experiment with one scale's overrides applied (the config that actually runs)."""
        over = self.scales.get(scale, ScaleSpec())
        training = self.training.model_copy(update={
            **({"epochs": over.epochs} if over.epochs else {}),
            **({"log_every": over.log_every} if over.log_every else {}),
        })
        dataset = dict(self.dataset)
        for key in ("train_size", "test_size"):
            if getattr(over, key) is not None:
                dataset[key] = getattr(over, key)
        methods = {label: method.model_copy(update={"grid": {
            key: over.grid.get(key, values) for key, values in method.grid.items()}})
            for label, method in self.methods.items()}
        update = {"training": training, "dataset": dataset, "scales": {}, "methods": methods}
        if over.model:
            update["model"] = {**self.model, **over.model}
        if seeds is not None or over.seeds is not None:
            update["seeds"] = seeds if seeds is not None else over.seeds
        if over.title is not None:
            update["title"] = over.title
        if over.extend_edges is not None:
            update["selection"] = self.selection.model_copy(
                update={"extend_edges": over.extend_edges})
        scaled = self.model_copy(update=update)
        scaled.check_size(scale)
        scaled.check_last_seed(scale)
        return scaled

    def check_last_seed(self, scale: str) -> None:
        """The seeds run from `seed` to seed + seeds - 1, and the last must be a seed too
        (below 2^32, as `seed`): seed 4294967295 with 2 seeds trained a seed 2^32."""
        last = self.seed + self.seeds - 1
        if last >= 2**32:
            raise UserError(
                f"seed {self.seed} with {self.seeds:,} seeds at scale {scale} runs seeds up to "
                f"{last:,}, beyond the largest, 2^32 - 1 = {2**32 - 1:,}; give a seed of at "
                f"most {2**32 - self.seeds:,}, or fewer seeds (seeds:, --seeds)")

    def check_size(self, scale: str) -> None:
        """Raise UserError where the plan would hold more than MAX_RUNS runs (counted, not
        built: the plan of 10^9 runs is what must not be built)."""
        points = sum(math.prod(len(values) for values in method.grid.values())
                     for method in self.methods.values())
        if points * self.seeds > MAX_RUNS:
            raise UserError(
                f"{points:,} grid points x {self.seeds:,} seeds at scale {scale} make "
                f"{points * self.seeds:,} runs, more than one sweep trains ({MAX_RUNS:,}); "
                f"give fewer seeds (seeds:, --seeds) or a smaller grid")

    def with_epochs(self, epochs: int) -> Experiment:
        """The same experiment trained for `epochs` passes, checked as a config's epochs are
        (model_copy alone would take -3)."""
        training = TrainingSpec.model_validate({**self.training.model_dump(), "epochs": epochs})
        return self.model_copy(update={"training": training})


REQUIRED = tuple(name for name, field in Experiment.model_fields.items() if field.is_required())
