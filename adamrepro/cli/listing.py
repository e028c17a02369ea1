"""`adamrepro list optimizers|experiments|models|datasets`: what can be named in a config."""

from __future__ import annotations

import inspect
from enum import Enum
from typing import Annotated

import typer


class Listable(str, Enum):
    optimizers = "optimizers"
    experiments = "experiments"
    models = "models"
    datasets = "datasets"


def _defaults(cls) -> str:
    params = inspect.signature(cls.__init__).parameters.values()
    return ", ".join(
        f"{p.name}={p.default!r}" for p in params if p.default is not inspect.Parameter.empty
    )


def _sizes(base) -> str:
    """Runs x passes at each scale with its default seeds, as `run` plans them; grid-edge
    points, which the results decide, are named but not counted."""
    from adamrepro.config import SCALES
    from adamrepro.runner.plan import plan

    sizes, extended = [], []
    for scale in SCALES:
        exp = base.at_scale(scale)
        runs = sum(len(group.runs) for group in plan(exp))
        seeds = f" ({exp.seeds} seeds)" if exp.seeds > 1 else ""
        sizes.append(f"{scale} {runs} x {exp.training.epochs}{seeds}")
        if exp.selection.extend_edges:
            extended.append(scale)
    edges = f"; grid-edge points may follow at {' and '.join(extended)}" if extended else ""
    return "runs x passes: " + ", ".join(sizes) + edges


def list_things(
    what: Annotated[Listable, typer.Argument(help="What to list.")] = Listable.optimizers,
) -> None:
    """List optimizers (with defaults), experiments, models or datasets."""
    if what is Listable.optimizers:
        from adamrepro.optim import OPTIMIZERS
        from adamrepro.optim.resolve import ENTRY_POINT_GROUP, registered, resolve, shadowed

        names = [*OPTIMIZERS, *(n for n in registered() if n not in OPTIMIZERS)]
        for name in names:
            try:
                found = resolve(name, OPTIMIZERS)
            except ValueError as err:  # one broken package must not hide the others
                typer.echo(f"{name:20s} [cannot be used] {err}")
                continue
            kind = "batched" if found.capabilities.batchable else "one run per group"
            if found.capabilities.needs_closure:
                kind += ", closure"
            origin = "" if found.builtin else " (entry point)"
            typer.echo(f"{name:20s} [{kind}]{origin} {_defaults(found.cls)}")
        for name in shadowed(OPTIMIZERS):
            typer.echo(f"{name:20s} [ignored] an entry point of group {ENTRY_POINT_GROUP!r} "
                       f"({registered()[name].value}) has a built-in's name, which wins; "
                       f"register it under another name")
        typer.echo("...or any torch.optim.Optimizer by import path: torch.optim.SGD, "
                   "mypkg.module:MyOptimizer")
    elif what is Listable.experiments:
        from adamrepro.config import bundled_configs, load_experiment

        for path in bundled_configs():
            base = load_experiment(path)
            typer.echo(f"{base.name:20s} {base.title or ''} ({path})\n{'':20s} {_sizes(base)}")
    elif what is Listable.models:
        from adamrepro.models import MODELS

        for name, cls in MODELS.items():
            declared = cls.METRICS
            metrics = ", ".join(f"{m.name} ({'lower' if m.lower_is_better else 'higher'} is "
                                f"better)" for m in declared.metrics)
            typer.echo(f"{name:20s} metrics: {metrics}; objective: {declared.objective}")
    else:
        from adamrepro.data import DATASETS

        for name in DATASETS:
            typer.echo(name)
