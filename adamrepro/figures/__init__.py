"""Figures by name: each draws from a results folder's tables and returns the files it
wrote: `draw(folder, tables=None, data_dir=None)`. One figure reads more, as what it shows
is not a curve: `vae_samples` pictures the selected VAE's samples and reconstructions, from
the run's saved parameters (runs/<id>.pt, loaded with weights_only) and the test images of
the data folder `data_dir` (as `run --data-dir`). A config's `plot.figures` names which to
draw (default: curves and sensitivity)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from adamrepro.figures import (
    bias_correction,
    curves,
    early_and_all,
    sensitivity,
    sfo,
    step_bound,
    vae_samples,
)

FIGURES: dict[str, Callable[..., list[Path]]] = {
    "curves": curves.draw,
    "sensitivity": sensitivity.draw,
    "sfo": sfo.draw,
    "early_and_all": early_and_all.draw,
    "bias_correction": bias_correction.draw,
    "vae_samples": vae_samples.draw,
    "step_bound": step_bound.draw,
}
