"""What only the registries can judge of a config (dataset and model names and options, each
optimizer against every grid point of every scale, figures, input ranges, split sizes),
at load rather than mid-sweep; and the config a results folder records, judged again
(`recorded_config`)."""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import (
    ValidationError,
)

from adamrepro.config.schema import (
    DEFAULT_FIGURES,
    SCALES,
    Experiment,
    MethodSpec,
    TrainingSpec,
)
from adamrepro.errors import UserError
from adamrepro.options import (
    location,
    message,
    number_as_text,
    text_not_number,
)


def check_registries(exp: Experiment, where: str) -> Experiment:
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
    from adamrepro.optim.resolve import outside_classes, resolve

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
    if not found.builtin and not found.capabilities.subfunctions and outside_classes(found.cls):
        # a user's class (torch's keep their state in state_dict): one that keeps some
        # elsewhere trained a resumed run along another curve under the same run id
        from adamrepro.optim.resuming import resume_problem

        problem = resume_problem(found.cls, points[0], found.capabilities.batchable,
                                 found.capabilities.needs_closure)
        if problem is not None:
            raise UserError(f"{where}: {key}: {method.optimizer} does not resume from a "
                            f"checkpoint as it trains: {problem}")
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


def recorded_config(config: dict, metrics: list[str]) -> Experiment:
    """The config a results folder's config.json records, validated as a config file is
    (strict types, defaults filled in), with figures that exist and a plotted and a selection
    metric among the folder's `metrics` (metrics.py's columns, the training objective's
    first: the metric of each that names none, as a config file's load fills it in): what
    plot, report and compare read it through (results/tables.py `ConfigCheck`), as the
    frozen `Experiment` it is. ValueError "<key>: <problem>" otherwise."""
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
    return exp.model_copy(update={  # a figure or the report would look for a column None
        "plot": exp.plot.model_copy(update={"y": exp.plot.y or metrics[0]}),
        "selection": exp.selection.model_copy(
            update={"metric": exp.selection.metric or metrics[0]})})


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
    import inspect

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
    # torch wraps a class's step in a profiling hook once it builds one: the function below
    step_module = getattr(inspect.unwrap(found.cls.step), "__module__", None) or ""
    if found.cls.__module__.startswith("torch.optim") or step_module.startswith("torch.optim"):
        # some refuse only at their first step (SparseAdam's dense gradients, Adam's
        # differentiable=True on a leaf): one step here, not a traceback mid-sweep; for a
        # user's subclass that keeps torch's step too, which raises in torch's code alone
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


def run_key(exp: Experiment, label: str, point: dict[str, Any]) -> str:
    """What makes method `label`'s runs at `point` the runs they are (optimizer, model, grid
    point, grouping), as their run ids have it (runner/plan.py): two methods with the same
    key would share their run ids. A model's implementation options (logreg's sparse_input)
    change how a run computes, not its curves, and no run id holds them."""
    import json

    from adamrepro.models import what_it_computes

    method = exp.methods[label]
    what = what_it_computes({**exp.model, **method.model})
    return json.dumps([method.optimizer, what, point, method.max_group_size, method.closure],
                      sort_keys=True, default=str)


def _check_distinct_runs(exp: Experiment, where: str) -> None:
    """Two methods that train the same runs (same optimizer, model and grid point, grouped
    alike) would share their run ids, and so their records: refuse them."""
    seen: dict[str, str] = {}
    for label, method in exp.methods.items():
        for point in method.points():
            other = seen.setdefault(run_key(exp, label, point), label)
            if other != label:
                raise UserError(f"{where}: methods {other!r} and {label!r} train identical "
                                f"runs (same optimizer, hyperparameters and model; a model's "
                                f"implementation options, such as sparse_input, change no "
                                f"curve and do not count): make them differ or drop one")


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
