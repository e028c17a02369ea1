"""Samples and reconstructions of the best run of a VAE experiment (Fig. 4's companion
picture): the decoder's Bernoulli means at 64 draws z ~ N(0, I), and 32 test images above
their reconstructions (the decoder's means at z = μ(x)).

The best run is the grid point selected over every method (lowest mean final selection
metric); its parameters are the ones `training.save_params` kept in runs/<run_id>.pt. The
test images come from the dataset folder ($ADAMREPRO_DATA, else the default cache); without
it the picture shows the samples alone. An image grid is a reshape: (rows·cols, 28·28) ->
(rows·28, cols·28)."""

from __future__ import annotations

import math
import pickle
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

# The object-oriented API, not pyplot: no backend to choose (none is touched on import, a
# user's MPLBACKEND included) and no global figure state.
from matplotlib.figure import Figure

from adamrepro.atomic import load_intact
from adamrepro.config import recorded_config
from adamrepro.errors import UserError, note
from adamrepro.figures.common import SYMBOLS, figure_title, run_tag, save_figure
from adamrepro.figures.palette import IMAGE_CMAP
from adamrepro.metrics import column_of
from adamrepro.results.tables import Tables, read_results
from adamrepro.wording import count

if TYPE_CHECKING:  # torch is imported where used: `report` lists the figures, needs no torch
    from torch import Tensor

SAMPLES, RECONSTRUCTED, COLUMNS = 64, 32, 8
PICTURE_SEED = 0  # the latent draws of the samples: the same picture on every redraw


def image_grid(images: Tensor, columns: int, side: int = 28, pad: int = 1) -> Tensor:
    """(n, side·side) images in [0, 1] as one (rows·(side+pad), columns·(side+pad)) picture,
    row by row, separated by `pad` white pixels."""
    import torch

    rows = math.ceil(len(images) / columns)
    tiles = torch.ones(rows * columns, side + pad, side + pad)
    tiles[: len(images), :side, :side] = images.reshape(-1, side, side)
    return tiles.view(rows, columns, side + pad, side + pad).permute(0, 2, 1, 3).reshape(
        rows * (side + pad), columns * (side + pad))


def best_run(best, meta) -> dict | None:
    """The selected grid point of all methods together, or None if every one diverged:
    chosen between methods as each method's point was chosen (`selection.rule`)."""
    if best.empty:
        return None
    selection = meta["config"].selection
    lower = column_of(meta, selection.metric).lower_is_better
    ordered = best.sort_values(f"{selection.rule}_{selection.metric}", ascending=lower)
    return ordered.iloc[0].to_dict()


def load_model(folder: Path, meta: dict, chosen: dict):
    """The chosen run's VAE (one run, G = 1) with its saved final parameters (None if the
    file is missing); UserError if the file is damaged."""

    from adamrepro.models import MODELS

    config = meta["config"]
    spec = {**config.model, **config.methods[chosen["method"]].model}
    cls = MODELS[spec["name"]]
    run_id = str(chosen["run_ids"]).split(";")[0]
    path = folder / "runs" / f"{run_id}.pt"
    if not path.exists():
        return None, path
    try:
        params = load_intact(path)
        pixels = params["dec_out.bias"].shape[-1]
        model = cls(cls.options(spec, "model"), (pixels,), None, [0])
        model.load_state_dict({name: value.unsqueeze(0) for name, value in params.items()})
    except (OSError, EOFError, RuntimeError, KeyError, IndexError, AttributeError, TypeError,
            ValueError, pickle.UnpicklingError, zipfile.BadZipFile) as err:
        # torch's own text would suggest weights_only=False: never, for a file this damaged
        raise UserError(f"{path}: not the saved parameters of run {run_id} "
                        f"({type(err).__name__}); the file is damaged: remove it and "
                        f"runs/{run_id}.json, then run the experiment again to train that "
                        f"run anew") from None
    return model.eval(), path


def test_images(meta: dict, n: int, data_dir: Path | None) -> Tensor | None:
    """The first `n` test images of the experiment's dataset, or None (said on one line)
    where the default data folder does not hold them: the samples are drawn all the same. A
    `data_dir` the user named that does not hold them is a mistake (UserError): the figure
    would be drawn again without its reconstructions, and the command succeed."""
    from adamrepro.data import DATASETS
    from adamrepro.data.download import default_data_dir

    dataset = meta["config"].dataset
    module = DATASETS[dataset["name"]]
    folder = data_dir or default_data_dir()
    try:
        data = module.load(module.options(dict(dataset), "dataset"), folder)
    except (UserError, OSError):
        if data_dir is not None:
            raise UserError(f"vae_samples: --data-dir {data_dir} does not hold the "
                            f"{dataset['name']} test images; pass --data-dir with the data "
                            f"folder of the run, or leave it out to draw the samples "
                            f"without reconstructions") from None
        # the default folder: $ADAMREPRO_DATA's where set (a script around plot passes no
        # flag, and its user sets the variable), else the cache's
        note(f"vae_samples: no reconstructions drawn: the {dataset['name']} test images could "
             f"not be read from {folder}; to draw them, give plot --data-dir (or set "
             f"$ADAMREPRO_DATA to) the data folder of the run")
        return None
    return data.test_x[:n].flatten(1).float()


def trained_for(meta: dict) -> str:
    """How long the pictured model trained, which its blur mostly reflects: the quick
    scale's read as the paper's result ("after 20 passes over 2,000 digits (300 steps),
    not paper scale's training")."""
    from adamrepro.data import DATASETS

    dataset, training = meta["config"].dataset, meta["config"].training
    size = dataset.get("train_size") or getattr(DATASETS.get(dataset["name"]), "SPLIT_SIZES",
                                                {}).get("train_size")
    epochs, batch = training.epochs, training.batch_size
    text = f"after {count(epochs, 'pass', 'passes')}"
    if size:
        per_pass = size // batch if training.drop_last else -(-size // batch)
        text += f" over {size:,} images ({epochs * per_pass:,} steps)"
    return text + ("" if meta["scale"] == "paper" else ", not paper scale's training")


def draw(folder: Path, tables: Tables | None = None,
         data_dir: Path | None = None) -> list[Path]:
    """vae_samples.png/.pdf (nothing when no run has saved parameters)."""
    import torch

    curves, best, meta = tables or read_results(folder, recorded_config)
    methods = meta["config"].methods.values()
    models = {meta["config"].model["name"],
              *(method.model.get("name") for method in methods)}
    if models - {None} != {"vae"}:
        raise UserError(f"{folder}: vae_samples draws a VAE's samples, and this experiment "
                        f"trains {', '.join(sorted(models - {None}))}; remove vae_samples "
                        f"from plot.figures")
    chosen = best_run(best, meta)
    if chosen is None:
        return []
    model, path = load_model(folder, meta, chosen)
    if model is None:
        note(f"vae_samples: no picture drawn: {path} is missing (a run keeps its "
             f"parameters with training.save_params: true; set, the same 'adamrepro run' "
             f"trains again the runs that have none)")
        return []
    samples = model.sample(SAMPLES, torch.Generator().manual_seed(PICTURE_SEED))[0]
    originals = test_images(meta, RECONSTRUCTED, data_dir)
    panels = [("samples: decoder means at z ~ N(0, I)", image_grid(samples, COLUMNS))]
    if originals is not None:
        if model.opts.likelihood == "binarized":
            originals = (originals > 0.5).float()
        recon = model.reconstruct(originals.unsqueeze(0))[0]
        pairs = torch.stack([originals.view(-1, COLUMNS, originals.shape[-1]),
                             recon.view(-1, COLUMNS, recon.shape[-1])], 1)
        panels.append(("test images (odd rows) and their reconstructions (even rows)",
                       image_grid(pairs.reshape(-1, originals.shape[-1]), COLUMNS)))
    fig = Figure(figsize=(4.2 * len(panels), 4.8))
    axes = fig.subplots(1, len(panels), squeeze=False)
    for ax, (title, picture) in zip(axes[0], panels, strict=True):
        ax.imshow(picture.numpy(), cmap=IMAGE_CMAP, vmin=0.0, vmax=1.0)
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    metric = meta["config"].selection.metric
    hp = ", ".join(f"{SYMBOLS[k]}={chosen[k]:g}" for k in ("beta1", "beta2", "lr") if k in chosen)
    # the cost is the point's mean over its seeds; the picture is one run of it (load_model's)
    run_id = str(chosen["run_ids"]).split(";")[0]
    pictured = curves.loc[curves["run_id"] == run_id]
    seeds = int(chosen.get("n_seeds") or 1)
    mean = f"final {metric} {chosen[f'final_{metric}']:.2f}" + (
        f", mean over {seeds} seeds; pictured: seed {int(pictured['seed'].iloc[0])}, "
        f"{pictured.sort_values('epoch')[metric].iloc[-1]:.2f}"
        if seeds > 1 and len(pictured) else "")
    figure_title(fig, f"{meta['config'].title}: best run ({chosen['method']}, {hp}; "
                 f"{mean})", f"{run_tag(meta, curves=curves)} {trained_for(meta)}", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, folder, "vae_samples")
