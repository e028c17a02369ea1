"""From an experiment to runs and groups.

A *run* is one grid point of one method with one seed; its id is a hash of everything that
determines its curve, so re-running a command skips it once finished. A *group* is the runs
of one method that can train together as one batched computation: one seed, the same model
settings and the same non-numeric hyperparameters (numbers vary per run as tensors), at most the
method's `max_group_size` and `training.max_group_size` of them (a group that does not fit in
device memory is halved by the executor). An optimizer that is not batchable (capabilities.py) gets
a group of its own for every run.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from adamrepro.config import KERNEL_SWITCHES, Experiment
from adamrepro.hparams import kind
from adamrepro.models import what_it_computes
from adamrepro.optim import OPTIMIZERS
from adamrepro.optim.resolve import Resolved, defining_files, resolve

# Training settings that never enter run ids: they change no curve (`save_params`,
# `checkpoint_every`), only how runs are grouped (`max_group_size`, a memory cap), or how a
# step is computed (the kernel switches: float rounding alone, as the device does, which
# does not enter run ids either; tests/test_kernels.py bounds the difference).
NOT_IDENTITY = {"save_params", "checkpoint_every", "max_group_size", *KERNEL_SWITCHES}


def training_identity(exp: Experiment) -> dict[str, Any]:
    """The training settings as they enter run ids: `log_every` only when set, and
    `precision` only when not fp32 (tf32 and bf16 trace other curves), so that the runs of
    configs written before they existed keep their ids; those of `NOT_IDENTITY` never."""
    training = exp.training.model_dump(exclude=NOT_IDENTITY)
    if training.get("log_every") is None:
        training.pop("log_every", None)
    if training.get("precision") == "fp32":
        training.pop("precision")
    return training


# Scale settings added since results were first committed, left out at their defaults so
# that the digests of configs written before them stay the same.
NEW_SCALE_KEYS = ("model", "grid", "log_every")
# Selection settings added since, left out at their defaults for the same reason.
NEW_SELECTION_DEFAULTS = {"rule": "final", "extend_edges": 0}


def _config_dump(exp: Experiment, **kwargs) -> dict[str, Any]:
    dumped = {**exp.model_dump(**kwargs), "training": training_identity(exp)}
    for scale in dumped.get("scales", {}).values():
        for key in NEW_SCALE_KEYS:
            if key in scale and not scale[key]:
                del scale[key]
        for key in ("seeds", "extend_edges", "title"):  # added later still; None: not set
            if key in scale and scale[key] is None:
                del scale[key]
    selection = dumped.get("selection", {})
    for key, default in NEW_SELECTION_DEFAULTS.items():
        if key in selection and selection[key] == default:
            del selection[key]
    return dumped


def _digest(payload: Any) -> str:
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class RunSpec:
    experiment: str
    method: str
    optimizer: str
    hparams: dict[str, Any]
    model: dict[str, Any]
    seed: int
    run_id: str
    point_id: str
    variant: str | None = None
    # The run's id with `training.precision` left out: the run id of its fp32 twin (its own
    # at fp32). Dropout masks are seeded from it, so that a tf32 or bf16 run draws the masks
    # of its fp32 twin and the two differ by their arithmetic alone.
    noise_id: str = ""


@dataclass(frozen=True)
class Group:
    method: str
    optimizer: str
    model: dict[str, Any]
    runs: tuple[RunSpec, ...]
    group_id: str = field(default="")
    closure: bool | None = None  # the config's `closure:` (capabilities.py)

    @property
    def seeds(self) -> list[int]:
        return [run.seed for run in self.runs]

    @property
    def noise_id(self) -> str:
        """What seeds the group's noise (models/base.py `noise_identity`): its group id at
        fp32, so the same at every precision, and equal to `group_id` at fp32."""
        return _digest([run.noise_id or run.run_id for run in self.runs])

    @property
    def size(self) -> int:
        return len(self.runs)

    @property
    def resolved(self) -> Resolved:
        """The optimizer's class and declared capabilities."""
        return resolve(self.optimizer, OPTIMIZERS, self.closure)


def seeds_of(exp: Experiment) -> list[int]:
    return [exp.seed + i for i in range(exp.seeds)]


def plan(exp: Experiment) -> list[Group]:
    """Every run of the experiment, grouped for batched training, in a stable order."""
    return [group for label, method in exp.methods.items()
            for group in method_groups(exp, label, method.points())]


def method_groups(exp: Experiment, label: str, points: list[dict[str, Any]]) -> list[Group]:
    """The runs of `points` (grid points of method `label`, e.g. the grid's, or those that
    a grid-edge extension adds) with every seed, grouped for batched training. A run's id
    depends on its point alone, never on which list it came in."""
    method = exp.methods[label]
    common = {
        "experiment": exp.name,
        "dataset": exp.dataset,
        "training": training_identity(exp),
    }
    # the same at fp32: what the noise of the runs is seeded from (RunSpec.noise_id)
    at_fp32 = {**common, "training": {k: v for k, v in common["training"].items()
                                      if k != "precision"}}
    groups = []
    model = {**exp.model, **method.model}
    what = what_it_computes(model)
    found = resolve(method.optimizer, OPTIMIZERS, method.closure)
    capabilities = found.capabilities
    code = code_identity(found)
    by_kind: dict[tuple[str, int] | str, list[RunSpec]] = {}
    for point in points:
        # Grouping never changes a curve, but it does change the time a run records: a
        # method that trains its runs apart is a different run. Whether `step` gets a
        # closure may change the curve itself (an optimizer that re-evaluates with one).
        # Both only when set, so that configs without them keep their ids.
        apart = {"max_group_size": method.max_group_size} if method.max_group_size else {}
        told = {"closure": method.closure} if method.closure is not None else {}
        settings = {"model": what, "optimizer": method.optimizer, "hparams": point, **apart,
                    **told, **code}
        point_id = _digest({**common, **settings})
        fp32_point_id = _digest({**at_fp32, **settings})
        same = _digest(kind(point))
        for seed in seeds_of(exp):
            run_id = _digest({"point": point_id, "seed": seed})
            run = RunSpec(exp.name, label, method.optimizer, point, model, seed, run_id,
                          point_id, method.variant,
                          _digest({"point": fp32_point_id, "seed": seed}))
            # One seed a group: a group's noise (dropout masks, the VAE's ε) is seeded by its
            # identity, so a group of every seed would give a run other masks at `--seeds 3`
            # than at `--seeds 1`, and seeds added to a folder would train in halves of it.
            by_kind.setdefault((same, seed) if capabilities.batchable else run_id,
                               []).append(run)
    for kind_runs in by_kind.values():
        caps = [c for c in (method.max_group_size, exp.training.max_group_size) if c]
        chunk = min(caps, default=len(kind_runs))
        for start in range(0, len(kind_runs), chunk):
            runs = kind_runs[start : start + chunk]
            groups.append(Group(label, method.optimizer, model, tuple(runs),
                                group_id_of(runs), method.closure))
    return groups


def code_identity(found: Resolved) -> dict[str, str]:
    """For a user's optimizer, a digest of the source files that define its class and the
    classes it inherits from outside torch and adamrepro: a run traced by other code is
    another run, so an edited optimizer trains again rather than keep its old curves. Nothing
    for adamrepro's and torch's, whose code the provenance names (commit, torch version), so
    that their run ids stay what they were."""
    if found.builtin:
        return {}
    files = defining_files(found.cls)
    if not files:
        return {}
    return {"optimizer_code": hashlib.sha1(b"".join(
        hashlib.sha1(file.read_bytes()).digest() for file in files)).hexdigest()[:12]}


def code_provenance(found: Resolved) -> dict:
    """What a run record says of a user's optimizer's code: the digest its run id was traced
    by (`code_identity`) and the files it was taken from, so that a curve names the version
    of the optimizer that drew it (the commit names adamrepro's and torch's)."""
    code = code_identity(found)
    if not code:
        return {}
    return {**code, "optimizer_source": [str(file) for file in defining_files(found.cls)]}


def group_id_of(runs) -> str:
    return _digest([run.run_id for run in runs])


def halves(group: Group) -> list[Group]:
    """A group cut in two (the first half the larger), each with its own identity: what
    the executor trains instead of a group that does not fit in device memory."""
    middle = -(-group.size // 2)
    return [replace(group, runs=part, group_id=group_id_of(part))
            for part in (group.runs[:middle], group.runs[middle:])]


def unfinished(group: Group, done: Callable[[str], bool],
               trained_in: Callable[[str], str]) -> list[Group]:
    """What is left to train of `group`, given which runs are finished (`done(run_id)`) and
    the group each finished run was trained in (`trained_in(run_id)`: its record's group
    id, asked only of a group partly finished).

    Nothing, when every run is finished; the group itself, when none is, or when a finished
    run was trained in this very group (a command killed while it wrote the group's records:
    trained again whole, its runs retrace the same curves, since a group's noise is seeded
    from its identity). Otherwise the group was split (it did not fit in memory, or in the
    time budget) and part of it finished: what is left of each of its halves, so that the
    runs left train as the half they belonged to, with its identity, its noise, and its
    checkpoint if it left one, instead of the whole group training again.
    """
    finished = [run.run_id for run in group.runs if done(run.run_id)]
    if not finished:
        return [group]
    if len(finished) == group.size:
        return []
    if group.size == 1 or any(trained_in(run_id) == group.group_id for run_id in finished):
        return [group]
    return [part for half in halves(group) for part in unfinished(half, done, trained_in)]


def config_digest(exp: Experiment) -> str:
    return _digest(_config_dump(exp))


def base_digest(base: Experiment) -> str:
    """Identity of a config file's content, whatever scale or number of seeds runs it."""
    dumped = _config_dump(base, exclude={"seeds"})
    for scale in dumped.get("scales", {}).values():
        scale.pop("seeds", None)
    return _digest(dumped)
