"""Experiment configs: YAML parsed once into validated, frozen objects.

An experiment names a dataset, a model, the training settings and, per *method* (a label such
as `adam` or `adam+dropout`), an optimizer with fixed hyperparameters and a grid. Scales
(`smoke`, `quick`, `paper`) override epochs and data sizes. Unknown keys are errors; every
error names the file and the key and says what is wrong.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from adamrepro.errors import UserError

SCALES = ("smoke", "quick", "paper")
CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


class Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TrainingSpec(Frozen):
    batch_size: int = Field(128, gt=0)
    epochs: int = Field(gt=0)
    # The last, incomplete minibatch of a pass is dropped so that every step of every run in a
    # batched group has the same shape (ours; 60000 = 468·128 + 96 drops 96 samples a pass,
    # a different 96 each pass since the order is reshuffled).
    drop_last: bool = True
    eval_batch_size: int = Field(10000, gt=0)
    # float64 exists for exactness tests (batched == one-by-one); experiments use float32.
    dtype: Literal["float32", "float64"] = "float32"


class SelectionSpec(Frozen):
    """Which run of a method's grid is 'best': lowest mean over seeds of `metric` at the end."""

    metric: Literal["train_loss", "train_loss_full", "test_loss"] = "train_loss"


class PlotSpec(Frozen):
    y: Literal["train_loss", "train_loss_full"] = "train_loss"
    logy: bool = False
    band: Literal["std", "minmax"] = "std"
    # Fig. 3 (left) shows the first epochs only; None draws every pass.
    max_epoch: float | None = None


class ScaleSpec(Frozen):
    epochs: int | None = Field(None, gt=0)
    train_size: int | None = Field(None, gt=0)
    test_size: int | None = Field(None, gt=0)


class MethodSpec(Frozen):
    optimizer: str
    hparams: dict[str, Any] = {}
    grid: dict[str, list[Any]] = {}
    model: dict[str, Any] = {}

    @field_validator("grid")
    @classmethod
    def _grid_lists_not_empty(cls, grid: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in grid.items():
            if len(values) == 0:
                raise ValueError(f"grid.{key} is empty: give at least one value")
        return grid

    def points(self) -> list[dict[str, Any]]:
        """Every grid point, merged over the fixed hyperparameters, in a stable order."""
        keys = sorted(self.grid)
        return [
            {**self.hparams, **dict(zip(keys, values, strict=True))}
            for values in itertools.product(*(self.grid[k] for k in keys))
        ]


class Experiment(Frozen):
    name: str
    title: str
    dataset: dict[str, Any]
    model: dict[str, Any]
    training: TrainingSpec
    methods: dict[str, MethodSpec] = Field(min_length=1)
    selection: SelectionSpec = SelectionSpec()
    plot: PlotSpec = PlotSpec()
    seed: int = 0
    seeds: int = Field(1, gt=0)
    scales: dict[Literal["smoke", "quick", "paper"], ScaleSpec] = {}

    def at_scale(self, scale: str, seeds: int | None = None) -> Experiment:
        """The experiment with one scale's overrides applied (the config that actually runs)."""
        over = self.scales.get(scale, ScaleSpec())
        training = self.training.model_copy(
            update={"epochs": over.epochs} if over.epochs else {}
        )
        dataset = dict(self.dataset)
        for key in ("train_size", "test_size"):
            if getattr(over, key) is not None:
                dataset[key] = getattr(over, key)
        update = {"training": training, "dataset": dataset, "scales": {}}
        if seeds is not None:
            update["seeds"] = seeds
        return self.model_copy(update=update)

    def with_epochs(self, epochs: int) -> Experiment:
        """The same experiment trained for `epochs` passes."""
        return self.model_copy(update={"training": self.training.model_copy(
            update={"epochs": epochs})})


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


def _location(err: dict) -> str:
    return ".".join(str(part) for part in err["loc"]) or "(top level)"


def _check_registries(exp: Experiment, where: str) -> None:
    """Names and values that only the registries can judge: fail at load, not mid-sweep."""
    import torch

    from adamrepro.data import DATASETS
    from adamrepro.models import MODELS
    from adamrepro.optim import OPTIMIZERS, build

    dataset = exp.dataset.get("name")
    if not isinstance(dataset, str) or dataset not in DATASETS:
        raise UserError(
            f"{where}: dataset.name: unknown dataset {dataset!r}; known: {', '.join(DATASETS)}"
        )
    model = exp.model.get("name")
    if not isinstance(model, str) or model not in MODELS:
        raise UserError(
            f"{where}: model.name: unknown model {model!r}; known: {', '.join(MODELS)}"
        )
    for label, method in exp.methods.items():
        key = f"methods.{label}"
        if method.optimizer not in OPTIMIZERS:
            raise UserError(
                f"{where}: {key}.optimizer: unknown optimizer {method.optimizer!r}; "
                f"known: {', '.join(OPTIMIZERS)}"
            )
        for point in method.points():
            for name, value in point.items():
                if isinstance(value, (int, float)) and not _finite(value):
                    raise UserError(f"{where}: {key}: {name} must be finite, got {value!r:.30}")
            try:
                build(method.optimizer, [torch.zeros(1, requires_grad=True)], **point)
            except (ValueError, TypeError, OverflowError) as err:
                raise UserError(f"{where}: {key}: {err}") from None
            # The runner hands every value over in the training dtype: check it as the runner
            # will see it (in float32, beta2 = 0.99999999 becomes 1.0).
            dtype = getattr(torch, exp.training.dtype)
            try:
                build(method.optimizer, [torch.zeros(1, dtype=dtype, requires_grad=True)],
                      **_in_dtype(point, dtype))
            except (ValueError, TypeError, OverflowError) as err:
                raise UserError(f"{where}: {key}: {err} once rounded to training.dtype "
                                f"{exp.training.dtype}") from None
        MODELS[model].options({**{k: v for k, v in exp.model.items() if k != "name"},
                               **method.model}, f"{where}: {key}.model")
    DATASETS[dataset].options(
        {k: v for k, v in exp.dataset.items() if k != "name"}, f"{where}: dataset"
    )


def _finite(value: float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond the float range
        return False


def _in_dtype(point: dict, dtype) -> dict:
    """Numbers (alone or in pairs) as the one-run tensors of `dtype` the runner makes."""
    import torch

    def convert(value):
        if isinstance(value, (list, tuple)):
            return tuple(convert(v) for v in value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return torch.tensor([float(value)], dtype=dtype)
        return value

    return {name: convert(value) for name, value in point.items()}


def parse_experiment(raw: Any, where: str) -> Experiment:
    if not isinstance(raw, dict):
        raise UserError(f"{where}: the file must hold a mapping of keys (name, dataset, ...)")
    try:
        exp = Experiment.model_validate(raw)
    except ValidationError as err:
        # An unknown key is usually a typo of a known one: report it before what it left out.
        first = sorted(err.errors(), key=lambda e: e["type"] != "extra_forbidden")[0]
        more = f" (and {err.error_count() - 1} more problems)" if err.error_count() > 1 else ""
        raise UserError(f"{where}: {_location(first)}: {first['msg']}{more}") from None
    _check_registries(exp, where)
    return exp


def load_experiment(path: str | Path) -> Experiment:
    """Read and validate a config file; any problem is a UserError naming file and key."""
    path = Path(path)
    if not path.is_file():
        hint = f"; bundled configs: {', '.join(p.stem for p in bundled_configs())}"
        raise UserError(f"config file {path} does not exist{hint}")
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
    return parse_experiment(raw, str(path))


def bundled_configs() -> list[Path]:
    return sorted(CONFIG_DIR.glob("*.yaml"))


def resolve_config_arg(name_or_path: str) -> Path:
    """Accept `configs/x.yaml` or just `x` (a bundled experiment's name)."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    return CONFIG_DIR / f"{name_or_path}.yaml"


def options_model(cls: type[BaseModel], values: dict[str, Any], where: str) -> BaseModel:
    """Validate a registry entry's own options (dataset or model) into its frozen object."""
    try:
        return cls.model_validate(values)
    except ValidationError as err:
        first = err.errors()[0]
        raise UserError(f"{where}.{_location(first)}: {first['msg']}") from None
