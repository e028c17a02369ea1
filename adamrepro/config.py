"""Experiment configs: YAML parsed once into validated, frozen objects.

An experiment names a dataset, a model, the training settings and, per *method* (a label such
as `adam` or `adam+dropout`: just a name), an optimizer with fixed hyperparameters, a grid,
and optionally a `variant` (data such as `dropout` or `nobias`, from which line styles and
the report's claim pairs are derived) with per-method `model` overrides. Scales
(`smoke`, `quick`, `paper`) override epochs and data sizes. Unknown keys are errors; every
error names the file and the key and says what is wrong.
"""

from __future__ import annotations

import functools
import itertools
import math
import re
import site
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    Field,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from adamrepro import wording
from adamrepro.errors import UserError
from adamrepro.options import (
    AutoOrBool,
    Frozen,
    location,
    message,
    number_as_text,
    text_not_number,
)

SCALES = ("smoke", "quick", "paper")
# At most this many seeds per grid point, and runs in one experiment at one scale: plans
# are built whole, in memory, before the first step (a typo of --seeds 10000000000 would
# otherwise fill the host's memory, even under --dry-run).
MAX_SEEDS = 10_000
MAX_RUNS = 100_000
# training.precision (runner/precision.py): what each means is said at TrainingSpec.
PRECISIONS = ("fp32", "tf32", "bf16")


def bundled_config_dir(package: Path | None = None, prefix: Path | None = None) -> Path:
    """The bundled experiments' folder: the checkout's `configs/` beside the package (a clone,
    an editable install), else where a wheel installs them (pyproject's data-files:
    <prefix>/share/adamrepro/configs), so `pip install adamrepro` still runs them by name."""
    package = package or Path(__file__).resolve().parent
    beside = package.parent / "configs"
    if beside.is_dir():
        return beside
    share = Path("share") / "adamrepro" / "configs"
    # pip puts a wheel's data files under the scheme's prefix: this interpreter's (a venv),
    # or the one site-packages lies in (pip --prefix, --user, a system /usr/local install):
    # <prefix>/lib/pythonX.Y/site-packages, or <prefix>/Lib/site-packages on Windows.
    roots = [prefix or Path(sys.prefix), *package.parents[2:4], Path(site.getuserbase())]
    return next((root / share for root in roots if (root / share).is_dir()), beside)


CONFIG_DIR = bundled_config_dir()


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


# The columns of the results tables (results/store.py's curves and steps, results/select.py's
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
        return scaled

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


class StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (PyYAML would keep the
    last one silently; a careful user calls that a mistake). Merge keys (`<<`) may still be
    overridden, as YAML intends."""


def _construct_mapping(loader: StrictLoader, node: yaml.MappingNode, deep: bool = False):
    first: dict[Any, yaml.Mark] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            mark = first.setdefault(key, key_node.start_mark)
        except TypeError:  # an unhashable key: construct_mapping says so below
            continue
        if mark is not key_node.start_mark:
            raise yaml.constructor.ConstructorError(
                "while reading a mapping", node.start_mark,
                f"duplicate key {key!r} (first given at line {mark.line + 1})",
                key_node.start_mark)
    return loader.construct_mapping(node, deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _refuse_base_60(construct):
    """YAML 1.1 reads `1:30` as the base-60 number 90 (and `1:30.5` as 90.5): `epochs: 1:30`
    trained 90 passes without a word. A number written so is refused, with its value."""
    def constructor(loader: StrictLoader, node: yaml.ScalarNode):
        value = construct(loader, node)
        if ":" in str(node.value):
            raise yaml.constructor.ConstructorError(
                None, None, f"{node.value} is a base-60 number to YAML 1.1 ({value!r}); write "
                f"{value!r}, or quote it for text", node.start_mark)
        return value
    return constructor


for _tag, _construct in (("int", yaml.SafeLoader.construct_yaml_int),
                         ("float", yaml.SafeLoader.construct_yaml_float)):
    StrictLoader.add_constructor(f"tag:yaml.org,2002:{_tag}", _refuse_base_60(_construct))


def _check_registries(exp: Experiment, where: str) -> Experiment:
    """Names and values that only the registries can judge: fail at load, not mid-sweep.
    Returns the experiment with the metric defaults filled in from the model's declaration."""
    _check_batch_fits_every_scale(exp, where)  # before any grid point is built
    shape = _dataset_feature_shape(exp, where)
    trained = {label: _check_method(exp, label, method, shape, where)
               for label, method in exp.methods.items()}
    _check_distinct_runs(exp, where)
    _check_scale_overrides(exp, shape, where)
    _check_input_range(exp, shape, where)
    _check_figures(exp, set(trained.values()), where)
    return _with_metric_defaults(exp, trained, where)


def _check_input_range(exp: Experiment, shape: tuple[int, ...], where: str) -> None:
    """A model that reads its inputs as probabilities (the VAE's Bernoulli likelihood) gets
    features in [0, 1] at every scale: grey levels of 0-255 gave it a cross-entropy of no
    meaning, and trained. Judged with the model's options at each scale (a binarising
    likelihood takes any input)."""
    from adamrepro.data import DATASETS
    from adamrepro.models import MODELS

    for scale in SCALES:
        scaled = exp.at_scale(scale)
        models = [_method_model(scaled.model, method.model, shape, f"{where}: model")
                  for method in scaled.methods.values()]
        readers = sorted({name for name, opts in models if MODELS[name].unit_inputs(opts)})
        if not readers:
            continue
        module = DATASETS[scaled.dataset["name"]]
        problem = module.outside_unit_range(module.options(
            {k: v for k, v in scaled.dataset.items() if k != "name"}, f"{where}: dataset"))
        if problem is not None:
            raise UserError(f"{where}: model {readers[0]} reads each input as a probability "
                            f"in [0, 1], and dataset {scaled.dataset['name']} at scale {scale} "
                            f"gives others: {problem}")


def _check_batch_fits_every_scale(exp: Experiment, where: str) -> None:
    """Every scale applies to the experiment, asks for no more examples than the official
    splits hold, and leaves a batch no larger than the training set."""
    for scale in SCALES:
        try:
            scaled = exp.at_scale(scale)
        except UserError as err:
            raise UserError(f"{where}: {err}") from None
        _check_split_sizes(scaled, scale, where)
        size, batch = scaled.dataset.get("train_size"), scaled.training.batch_size
        if type(size) is int and 0 < size < batch:  # the dataset's options judge the rest
            raise UserError(
                f"{where}: training.batch_size {batch} is more than the {size} training "
                f"examples at scale {scale} (dataset.train_size): every step would be one "
                f"full batch; give a batch_size of at most {size}, or more examples")


def _official_sizes(scaled: Experiment) -> dict[str, int]:
    """The official splits' sizes of the experiment's dataset (`SPLIT_SIZES`), or {} where
    they say nothing of it: an unknown name (said by _dataset_feature_shape), or a copy read
    with `verify: false`, which may be another size (its load judges it)."""
    from adamrepro.data import DATASETS

    name = scaled.dataset.get("name")
    if not isinstance(name, str) or name not in DATASETS or scaled.dataset.get("verify") is False:
        return {}
    return DATASETS[name].SPLIT_SIZES


def _check_split_sizes(scaled: Experiment, scale: str, where: str) -> None:
    """No train_size or test_size above the official split's: known without the data, so a
    dry run refuses it too, where it was found only once the data was read."""
    name = scaled.dataset.get("name")
    for key, most in _official_sizes(scaled).items():
        asked = scaled.dataset.get(key)
        if type(asked) is int and asked > most:
            raise UserError(
                f"{where}: dataset.{key} {asked} at scale {scale} (the dataset's, or that "
                f"scale's under scales:) is more than the {most:,} examples of {name}'s "
                f"{key.removesuffix('_size')} split; give at most {most}, or leave it out "
                f"for all")


def _dataset_feature_shape(exp: Experiment, where: str) -> tuple[int, ...]:
    """The shape of one example of the experiment's dataset, its name and options checked."""
    from adamrepro.data import DATASETS

    dataset = exp.dataset.get("name")
    if not isinstance(dataset, str) or dataset not in DATASETS:
        raise UserError(
            f"{where}: dataset.name: unknown dataset {dataset!r}; known: {', '.join(DATASETS)}"
        )
    return DATASETS[dataset].feature_shape(DATASETS[dataset].options(
        {k: v for k, v in exp.dataset.items() if k != "name"}, f"{where}: dataset"))


def _check_method(exp: Experiment, label: str, method: MethodSpec, shape: tuple[int, ...],
                  where: str) -> str:
    """The name of the model the method trains, once its model and optimizer are known and
    the optimizer accepts every grid point of every scale."""
    from adamrepro.models import MODELS
    from adamrepro.optim import OPTIMIZERS
    from adamrepro.optim.resolve import resolve

    key = f"methods.{label}"
    # a method without model keys of its own trains the top-level `model`: name that
    model, model_opts = _method_model(exp.model, method.model, shape,
                                      f"{where}: {key}.model" if method.model
                                      else f"{where}: model")
    sourced = _points_at_every_scale(exp, label, method)
    points = [point for _, point in sourced]
    try:
        found = resolve(method.optimizer, OPTIMIZERS, method.closure)
    except ValueError as err:
        raise UserError(f"{where}: {key}.optimizer: {err}") from None
    for source, point in sourced:
        _check_point_numbers(point, f"{where}: {key}{source}")
        named = f"{where}: {key}{source}: {method.optimizer}"
        if not found.builtin:  # ours say so themselves ("lr must be a number, got True")
            _check_types_against_signature(found.cls, point, named)
        _check_no_list_for_a_number(found.cls, point, set(method.grid), named)
        _check_noise_allowed(found, MODELS[model], model_opts, point, named)
        _check_optimizer_accepts(found, point, exp.training.dtype, named,
                                 {name: point[name] for name in method.grid if name in point})
    if found.capabilities.subfunctions:
        _check_subfunctions_fit(exp, label, f"{where}: {key}: {method.optimizer}")
    if found.capabilities.batchable and not found.builtin and not found.capabilities.subfunctions:
        from adamrepro.optim.batching import batching_problem

        problem = batching_problem(found.cls, points, found.capabilities.needs_closure)
        if problem is not None:
            raise UserError(f"{where}: {key}: {method.optimizer} trains a group of runs "
                            f"batched, and they are not independent: {problem}")
    if label in OPTIMIZERS and found.cls is not OPTIMIZERS[label]:
        # the report names methods by label and the paper's claims by optimizer: a label
        # that is another optimizer's name makes "no runs of sgd_nesterov (it has
        # sgd_nesterov)" of it
        raise UserError(f"{where}: {key}: {label!r} is the name of a built-in optimizer, but "
                        f"this method trains {method.optimizer}; give it another label")
    return model


def _check_subfunctions_fit(exp: Experiment, label: str, where: str) -> None:
    """No more subfunctions (fixed minibatches) than training examples at any scale: a typo
    of 100000 would otherwise build a state of 100,000 models and take the host's memory. A
    scale without a train_size has the official split's (a copy read with `verify: false`
    is judged once loaded, `runner/group.py`)."""
    for scale in SCALES:
        scaled = exp.at_scale(scale)
        size, which = scaled.dataset.get("train_size"), "dataset.train_size"
        official = _official_sizes(scaled)
        if size is None and official:
            size, which = official["train_size"], "the whole training set"
        if type(size) is not int:
            continue
        for point in scaled.methods[label].points():
            count = point.get("num_subfunctions")
            if type(count) is int and count > size:
                raise UserError(f"{where}: num_subfunctions {count} is more than the {size:,} "
                                f"training examples at scale {scale} ({which}); give at most "
                                f"{size}")


def _points_at_every_scale(exp: Experiment, label: str,
                           method: MethodSpec) -> list[tuple[str, dict]]:
    """The method's grid points, then those of each scale that sets a grid of its own, each
    after where it comes from ("" for the method's own grid): a value of a scale's grid
    refused under the method's name alone sent the user to a grid that did not hold it."""
    return [("", point) for point in method.points()] + [
        (f" at scale {scale} (scales.{scale}.grid)", point)
        for scale in exp.scales if exp.scales[scale].grid
        for point in exp.at_scale(scale).methods[label].points()]


def _check_point_numbers(point: dict[str, Any], where: str) -> None:
    """Every number of a grid point is finite, and none is text YAML did not read as one."""
    for name, value in point.items():
        for number in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(number, (dict, list, tuple)):
                # a table has one cell per hyperparameter: a mapping went through training
                # and failed only when the tables were written
                kind = "mapping" if isinstance(number, dict) else "list"
                raise UserError(f"{where}: {name}: a {kind} nested in a "
                                f"hyperparameter is no value the tables can hold; give a "
                                f"number, a string, a boolean or a list of those, or split it "
                                f"into hyperparameters of its own")
            if isinstance(number, (int, float)) and not _finite(number):
                raise UserError(f"{where}: {name} must be finite, got {number!r:.30}")
            if isinstance(number, str) and number_as_text(number):
                raise UserError(f"{where}: {name}: {text_not_number(number)}")


@functools.cache
def _parameters(cls: type) -> Mapping[str, Any]:
    """`cls`'s signature's parameters, read once a class (every grid point of every scale is
    checked against them twice); none where it has no signature to read (the class decides
    alone)."""
    import inspect

    try:
        return inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return {}


def _taken(cls: type, point: dict[str, Any]):
    """(name, value, the signature's parameter) of each of `point`'s hyperparameters that
    `cls` names in its signature."""
    parameters = _parameters(cls)
    return [(name, value, parameters[name]) for name, value in point.items()
            if name in parameters]


def _check_types_against_signature(cls: type, point: dict[str, Any], where: str) -> None:
    """A boolean where a class not ours takes a number, anything but a boolean where it takes
    a switch, and one number where it takes a list (its default, or its annotation, says
    which): torch's optimizers take `lr=True` as a step of 1.0 and `amsgrad="no"` as AMSGrad
    on, without a word, and `betas=0.9` as a TypeError that names neither."""
    for name, value, taken in _taken(cls, point):
        default, annotation = taken.default, taken.annotation
        shown = f" (its default is {default!r})" if default is not taken.empty else ""
        if isinstance(value, bool):
            numeric = (isinstance(default, (int, float)) and not isinstance(default, bool)
                       or annotation in (int, float, "int", "float"))
            if numeric:
                raise UserError(f"{where}: {name}: {value!r} is a boolean, where "
                                f"{cls.__name__} takes a number{shown}; write a number")
        elif isinstance(default, (tuple, list)) and not isinstance(value, (tuple, list)):
            # a grid over a list-valued setting lists lists: `betas: [0.9, 0.99]` is two
            # points, 0.9 and 0.99
            raise UserError(f"{where}: {name}: {value!r} is not a list, where {cls.__name__} "
                            f"takes one{shown}; a grid of them is a list of lists, e.g. "
                            f"[{list(default)!r}]")
        elif (value is not None or default is not None) and _is_switch(default, annotation):
            raise UserError(f"{where}: {name}: {value!r} is not a boolean, where "
                            f"{cls.__name__} takes a switch{shown}; write true or false "
                            f"(unquoted)")


def _check_no_list_for_a_number(cls: type, point: dict[str, Any], grid: set[str],
                                where: str) -> None:
    """A list where the optimizer takes one number (its default says so): `grid: {lr:
    [[0.1, 0.2]]}` is one point whose lr is a list, and reached our optimizers as a tuple of
    the batch's tensors, which their message then showed."""
    for name, value, taken in _taken(cls, point):
        default = taken.default
        if (isinstance(value, (list, tuple)) and isinstance(default, (int, float))
                and not isinstance(default, bool)):
            fix = (f"a grid lists its numbers once: {name}: {list(value)!r}, not "
                   f"[{list(value)!r}]" if name in grid else
                   "give one number in hparams, or the values to try in grid")
            raise UserError(f"{where}: {name}: {list(value)!r} is a list, where "
                            f"{cls.__name__} takes one number (its default is {default!r}); "
                            f"{fix}")


def _is_switch(default: Any, annotation: Any) -> bool:
    """Whether a parameter takes only a boolean (or None): `amsgrad: bool = False`,
    `fused: bool | None = None`."""
    import typing

    if isinstance(default, bool) or annotation in (bool, "bool"):
        return True
    if isinstance(annotation, str):
        return annotation.replace(" ", "") in ("bool|None", "None|bool", "Optional[bool]")
    members = typing.get_args(annotation)
    return bool(members) and bool in members and set(members) <= {bool, type(None)}


def _check_noise_allowed(found, model, model_opts: Any, point: dict[str, Any],
                         where: str) -> None:
    """An optimizer that assumes a deterministic objective trains a model that draws noise
    only where the point says `allow_stochastic: true`."""
    if (found.capabilities.subfunctions and model.stochastic(model_opts)
            and point.get("allow_stochastic") is not True):
        raise UserError(
            f"{where} assumes a deterministic objective, "
            f"but this model draws noise in training (dropout, sampling); remove the "
            f"noise, or set "
            f"hparams.allow_stochastic: true to run it anyway")


def _check_optimizer_accepts(found, point: dict[str, Any], dtype_name: str,
                             where: str, searched: dict[str, Any] | None = None) -> None:
    """The optimizer builds with the point's settings in the training dtype; a refusal says
    whether the rounding to that dtype is what it refused, and, for a class not ours (whose
    error may not name the value), at which of the grid's values (`searched`)."""
    import torch

    from adamrepro.optim.base import UnknownKeyword

    dtype = getattr(torch, dtype_name)
    try:
        _build_optimizer(found, point, dtype)
    except _refusals(found) as err:
        rounded = (dtype != torch.float64 and not isinstance(err, _RoundedAway)
                   and _accepted(found, point, torch.float64))
        raise UserError(
            f"{where}: "
            + (str(err) if found.builtin or isinstance(err, UnknownKeyword)
               else f"{type(err).__name__}: {err}"
               + (" (at " + ", ".join(f"{k}={v!r}" for k, v in searched.items()) + ")"
                  if searched else "") + _raised_in_their_code(found, err))
            + (f" once rounded to training.dtype {dtype_name} (unrounded "
               f"it is accepted)" if rounded else "")) from None


def _raised_in_their_code(found, err: BaseException) -> str:
    """` (in __init__, file:line)`: where in a user's optimizer a refusal that is no
    ValueError was raised (a KeyError or a TypeError is more likely a bug of theirs than a
    refused value, and its place is the fix), as an error in training says it; "" else."""
    import traceback

    from adamrepro.optim.resolve import user_code

    if isinstance(err, ValueError) or found.cls.__module__.split(".")[0] == "torch":
        return ""  # a refused value; torch's code is no place to fix
    theirs = user_code(found.cls)
    frames = [frame for frame in traceback.extract_tb(err.__traceback__)
              if theirs(Path(frame.filename).resolve())]
    return f" (in {frames[-1].name}, {frames[-1].filename}:{frames[-1].lineno})" if frames else ""


def _check_scale_overrides(exp: Experiment, shape: tuple[int, ...], where: str) -> None:
    """Each scale's grid replaces keys the methods' grids have, and each scale's model builds
    under every method."""
    for scale, over in exp.scales.items():
        keys = {key for method in exp.methods.values() for key in method.grid}
        unused = sorted(set(over.grid) - keys)
        if unused:  # it would replace nothing: a misspelt key trains the whole grid
            raise UserError(f"{where}: scales.{scale}.grid: {unused[0]!r} is in no method's "
                            f"grid (the grids have {', '.join(sorted(keys)) or 'no keys'}); "
                            f"spell it as a method's grid does, or remove it")
        # What trains at that scale: the scale's model over the experiment's, and each
        # method's over both (as at_scale and the runner merge them).
        for label, method in exp.methods.items() if over.model else ():
            _method_model({**exp.model, **over.model}, method.model, shape,
                          f"{where}: methods.{label} at scale {scale}: scales.{scale}.model")


def _check_figures(exp: Experiment, trained: set[str], where: str) -> None:
    """Every figure asked for exists and can be drawn from the models trained."""
    from adamrepro.figures import FIGURES

    if not exp.plot.figures:  # `plot` read an empty list as "the defaults"
        raise UserError(f"{where}: plot.figures is empty; name the figures to draw (known: "
                        f"{', '.join(FIGURES)}), or leave it out for "
                        f"{', '.join(DEFAULT_FIGURES)}")
    unknown = [f for f in exp.plot.figures if f not in FIGURES]
    if unknown:
        raise UserError(f"{where}: plot.figures: unknown figure {unknown[0]!r}; known: "
                        f"{', '.join(FIGURES)}")
    if "vae_samples" in exp.plot.figures and trained != {"vae"}:  # else refused after training
        raise UserError(f"{where}: plot.figures: vae_samples draws a VAE's samples, and this "
                        f"experiment trains {', '.join(sorted(trained))}; remove it")


def _with_metric_defaults(exp: Experiment, trained: dict[str, str], where: str) -> Experiment:
    """The experiment with selection.metric and plot.y defaulting to the train column of the
    metrics every method's model (`trained`: model name by method label) declares, and
    checked against them."""
    from adamrepro.models import MODELS

    declared = {label: MODELS[model].METRICS for label, model in trained.items()}
    metrics = set(declared.values())
    if len(metrics) > 1:
        raise UserError(f"{where}: methods: every method must train a model with the same "
                        f"metrics; these differ: {', '.join(declared)}")
    columns = [c.name for c in next(iter(metrics)).columns()]
    default = next(iter(metrics)).train_column
    selection = exp.selection.metric or default
    y = exp.plot.y or default
    for field, value in (("selection.metric", selection), ("plot.y", y)):
        if value not in columns:
            raise UserError(f"{where}: {field}: {value!r} is not a metric of this model; "
                            f"choose one of {', '.join(columns)}")
    return exp.model_copy(update={
        "selection": exp.selection.model_copy(update={"metric": selection}),
        "plot": exp.plot.model_copy(update={"y": y}),
    })


def recorded_config(config: dict, metrics: list[str]) -> dict:
    """The config a results folder's config.json records, validated as a config file is
    (strict types, defaults filled in), with figures that exist and a plotted and a selection
    metric among the folder's `metrics` (metrics.py's columns, the training objective's
    first: the metric of each that names none, as a config file's load fills it in): what
    plot, report and compare read it through (results/store.py `ConfigCheck`). ValueError
    "<key>: <problem>" otherwise."""
    from adamrepro.figures import FIGURES

    try:
        exp = Experiment.model_validate(config)
    except ValidationError as err:
        first = err.errors()[0]
        raise ValueError(f"{location(first)}: {message(first)}") from None
    unknown = [name for name in exp.plot.figures if name not in FIGURES]
    if unknown:
        raise ValueError(f"plot.figures: unknown figure {unknown[0]!r}")
    for field, name in (("plot.y", exp.plot.y), ("selection.metric", exp.selection.metric)):
        if name is not None and name not in metrics:
            raise ValueError(f"{field}: {name!r} is not one of its metrics, {', '.join(metrics)}")
    exp = exp.model_copy(update={  # a figure or the report would look for a column None
        "plot": exp.plot.model_copy(update={"y": exp.plot.y or metrics[0]}),
        "selection": exp.selection.model_copy(
            update={"metric": exp.selection.metric or metrics[0]})})
    return exp.model_dump(mode="json")


def _method_model(model: dict[str, Any], method_model: dict[str, Any],
                  feature_shape: tuple[int, ...], where: str) -> tuple[str, Any]:
    """The name and checked options of the model a method trains: its own `model` keys over
    the experiment's (or a scale's), for the dataset's examples of `feature_shape`. Raises
    UserError naming `where`."""
    from adamrepro.models import MODELS

    merged = {**model, **method_model}
    name = merged.get("name")
    if not isinstance(name, str) or name not in MODELS:
        raise UserError(f"{where}.name: unknown model {name!r}; known: {', '.join(MODELS)}")
    opts = MODELS[name].options({k: v for k, v in merged.items() if k != "name"}, where)
    problem = MODELS[name].input_problem(opts, feature_shape)
    if problem is not None:
        raise UserError(f"{where}: model {name}: {problem}")
    return name, opts


def _build_optimizer(found, point: dict[str, Any], dtype) -> None:
    """Build the optimizer of one grid point on a one-number parameter, as the runner will
    build it: a batched optimizer gets its numbers as one-run tensors of the training dtype
    (in float32, beta2 = 0.99999999 is 1.0). Raises what the optimizer raises."""
    import torch

    from adamrepro.hparams import plain, stacked
    from adamrepro.optim import check_keywords

    for name, value in point.items():
        for number in value if isinstance(value, (list, tuple)) else [value]:
            _check_horizon(name, number, dtype)
    param = torch.zeros(1, dtype=dtype, requires_grad=True)
    values = stacked([point], dtype) if found.capabilities.batchable else plain(point)
    if found.capabilities.subfunctions:
        # the runner passes the number of fixed minibatches (capabilities.py)
        values.setdefault("num_subfunctions", 1)
    check_keywords(found.cls, [param], values)  # a config mistake, not a TypeError inside
    optimizer = found.cls([param], **values)
    if found.cls.__module__.startswith("torch.optim"):
        # some refuse only at their first step (SparseAdam's dense gradients, Adam's
        # differentiable=True on a leaf): one step here, not a traceback mid-sweep
        def closure():
            optimizer.zero_grad()
            loss = (param * param).sum()
            loss.backward()
            return loss

        if found.capabilities.needs_closure:
            optimizer.step(closure)
        else:
            closure()
            optimizer.step()


# How far rounding to the training dtype may move 1 − x for a setting x just below 1 (a decay
# rate: β2, averaging, RMSProp's alpha), whose horizon is 1/(1 − x): 1%. float32 keeps
# 0.99999 to 0.14%, and makes 0.999999 1.3% off and 0.9999999 19% off.
HORIZON_TOLERANCE = 0.01


class _RoundedAway(ValueError):
    """A setting the training dtype cannot hold (its message says so whole)."""


def _check_horizon(name: str, number: Any, dtype) -> None:
    """Raise ValueError where the training dtype would round a setting just below 1 so far
    that 1 − x, the horizon it sets, is not the one written (float32 stores 0.9999999 as
    0.99999988: a horizon 19% shorter, without a word)."""
    import torch

    if not isinstance(number, float) or not 0.5 < number < 1 or dtype == torch.float64:
        return
    rounded = torch.tensor(number, dtype=dtype).item()
    off = abs((1 - rounded) - (1 - number)) / (1 - number)
    if off > HORIZON_TOLERANCE:
        raise _RoundedAway(f"{name} {number!r} is {rounded:.9g} in {str(dtype).split('.')[-1]}, "
                         f"which makes 1 − {name} {off:.0%} off what was written; set "
                         f"training.dtype: float64, or choose a value farther from 1")


def _refusals(found) -> tuple[type[BaseException], ...]:
    """What building an optimizer may raise for a bad grid point. A user's optimizer may say
    so with any exception: whatever its __init__ raises is a config problem to name in one
    line. A built-in raises ValueError (`_build_optimizer` turns a keyword it does not take
    into one too); anything else from it, a TypeError included, is a bug of ours, whose
    traceback must show."""
    return (ValueError, OverflowError) if found.builtin else (Exception,)


def _accepted(found, point: dict[str, Any], dtype) -> bool:
    try:
        _build_optimizer(found, point, dtype)
    except _refusals(found):
        return False
    return True


def accepts(exp: Experiment, label: str, point: dict[str, Any]) -> bool:
    """Whether method `label`'s optimizer accepts the grid point `point`, judged as config
    validation judges the grid's own points (finite numbers; the optimizer builds)."""
    import torch

    from adamrepro.optim import OPTIMIZERS
    from adamrepro.optim.resolve import resolve

    method = exp.methods[label]
    for value in point.values():
        for number in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(number, (int, float)) and not _finite(number):
                return False
    found = resolve(method.optimizer, OPTIMIZERS, method.closure)
    return _accepted(found, point, getattr(torch, exp.training.dtype))


def _check_distinct_runs(exp: Experiment, where: str) -> None:
    """Two methods that train the same runs (same optimizer, model and grid point, grouped
    alike) would share their run ids, and so their records: refuse them."""
    import json

    seen: dict[str, str] = {}
    for label, method in exp.methods.items():
        model = {**exp.model, **method.model}
        for point in method.points():
            key = json.dumps([method.optimizer, model, point, method.max_group_size,
                              method.closure], sort_keys=True, default=str)
            other = seen.setdefault(key, label)
            if other != label:
                raise UserError(f"{where}: methods {other!r} and {label!r} train identical "
                                f"runs (same optimizer, hyperparameters and model): make them "
                                f"differ or drop one")


def _finite(value: float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond the float range
        return False


def check_precision(training: TrainingSpec, where: str) -> None:
    """TF32 and bf16 are float32 arithmetic made cheaper: with float64 parameters they would
    either do nothing or silently round float64 runs; refuse the pair."""
    if training.precision != "fp32" and training.dtype != "float32":
        raise UserError(f"{where}: training.precision: {training.precision} is reduced "
                        f"float32 arithmetic and contradicts training.dtype: "
                        f"{training.dtype}; set precision fp32 or dtype float32")


def with_precision(base: Experiment, precision: str, where: str) -> Experiment:
    """The experiment with `training.precision` replaced (`run --precision`): written into
    the config that runs, so its run ids and config.json record it; checked as on load."""
    training = base.training.model_copy(update={"precision": precision})
    check_precision(training, where)
    return base.model_copy(update={"training": training})


def parse_experiment(raw: Any, where: str) -> Experiment:
    if not isinstance(raw, dict):
        raise UserError(f"{where}: the file must hold a mapping of keys (name, dataset, ...)")
    try:
        exp = Experiment.model_validate(raw)
    except ValidationError as err:
        # An unknown key is usually a typo of a known one: report it before what it left out.
        first = sorted(err.errors(), key=lambda e: e["type"] != "extra_forbidden")[0]
        more = (f" (and {wording.count(err.error_count() - 1, 'more problem')})"
                if err.error_count() > 1 else "")
        fix = ""
        if first["type"] == "missing" and len(first["loc"]) == 1:
            fix = (f"; add it (every config has {', '.join(REQUIRED)}; "
                   f"configs/logreg_mnist.yaml is an example)")
        if first["type"] == "extra_forbidden":
            known = _keys_at(Experiment, first["loc"][:-1])
            home = _section_of(str(first["loc"][-1]))
            if home and known:  # `batch_size` under a scale: not "did you mean 'test_size'?"
                fix = f"; {first['loc'][-1]} belongs under {home} (here: {', '.join(known)})"
            elif known:
                nearest = wording.did_you_mean(str(first["loc"][-1]), known)
                fix = f"; {nearest or 'it takes ' + ', '.join(known)}"
        raise UserError(f"{where}: {location(first)}: {message(first)}{fix}{more}") from None
    check_precision(exp.training, where)
    return _check_registries(exp, where)


def _section_of(key: str) -> str | None:
    """The top-level section whose keys include `key` (`training` for `batch_size`), where
    one does: a key given in the wrong section."""
    return next((section for section in ("training", "selection", "plot")
                 if key in _keys_at(Experiment, (section,))), None)


def _keys_at(model: type, loc: tuple) -> list[str]:
    """The keys a config takes at `loc` (the mapping a pydantic error's location is in):
    `("methods", "lion")` is a MethodSpec's. Empty where `loc` leads to no model."""
    import typing

    from pydantic import BaseModel

    def model_in(annotation):  # `MethodSpec | None`, `dict[str, MethodSpec]`'s value
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return annotation
        if typing.get_origin(annotation) is dict:
            return ("dict", typing.get_args(annotation)[1])
        return next((m for m in map(model_in, typing.get_args(annotation))
                     if m is not None), None)

    here = model
    for part in loc:
        if isinstance(here, tuple):  # a mapping's value, whatever its key
            here = model_in(here[1])
        elif here is not None and part in here.model_fields:
            here = model_in(here.model_fields[part].annotation)
        else:
            return []
    return list(here.model_fields) if isinstance(here, type) else []


def load_experiment(path: str | Path) -> Experiment:
    """Read and validate a config file; any problem is a UserError naming file and key."""
    path = Path(path)
    if not path.is_file():
        hint = f"; bundled configs: {bundled_names()}"
        what = ("is a folder, not a config file" if path.is_dir() else
                "is not a regular file (a device, a pipe, a socket)" if path.exists()
                else "does not exist")
        raise UserError(f"config file {path} {what}{hint}")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: not UTF-8 text (byte {err.start}); save it as UTF-8") from None
    try:
        raw = yaml.load(text, Loader=StrictLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or "malformed YAML"
        raise UserError(f"{path}: not valid YAML{at}: {problem}") from None
    except Exception as err:  # PyYAML's constructors raise ValueError, IndexError, ... on a
        # value its (implied or explicit) tag cannot hold: `2001-13-45`, `!!int ''`
        raise UserError(f"{path}: not valid YAML: a value its type cannot hold "
                        f"({type(err).__name__}: {err})") from None
    if isinstance(raw, dict) and {"config", "provenance"} <= raw.keys():
        # a results folder's config.json (JSON is YAML): the config it ran is one key of it,
        # at one scale, with the scales gone
        name = raw["config"].get("name") if isinstance(raw["config"], dict) else None
        raise UserError(f"{path} is the record of a results folder, not a config; run the "
                        f"config it was made from ({name or 'its name'}, with --scale "
                        f"{raw.get('scale', 'SCALE')} and --out {path.parent.parent})")
    return parse_experiment(raw, str(path))


def bundled_configs() -> list[Path]:
    return sorted(CONFIG_DIR.glob("*.yaml"))


def bundled_names() -> str:
    """The bundled configs' names, as a message lists them."""
    return ", ".join(p.stem for p in bundled_configs())


def resolve_config_arg(name_or_path: str) -> Path:
    """Accept `configs/x.yaml` or just `x` (a bundled experiment's name)."""
    if not name_or_path.strip():  # Path("") is ".", which would be called a folder
        raise UserError(f"no config given (an empty name); give a config file or a bundled "
                        f"config: {bundled_names()}")
    path = Path(name_or_path)
    bundled = CONFIG_DIR / f"{name_or_path}.yaml"
    # `run logreg_mnist --out .` leaves a folder `logreg_mnist` here: a folder is no config,
    # so the bare name still means the bundled one the next time
    if path.is_dir() and len(path.parts) == 1 and bundled.is_file():
        return bundled
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    if len(path.parts) > 1:  # a path without its suffix (`configs/mlp`), not a bundled name
        return path.with_name(f"{path.name}.yaml")
    return bundled
