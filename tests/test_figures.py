"""Figures do not churn: drawing the same results twice gives byte-identical PNG and PDF files,
with no date or version in their metadata."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from adamrepro.cli import main

RESULTS = Path(__file__).resolve().parent.parent / "results"


def test_plot_twice_gives_identical_files(tmp_path, monkeypatch):
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)  # not needed for reproducible files
    for name in ("logreg_mnist", "mlp_dropout"):  # committed paper-scale tables
        shutil.copytree(RESULTS / name, tmp_path / name,
                        ignore=shutil.ignore_patterns("*.png", "*.pdf", "runs"))
    assert main(["plot", "--out", str(tmp_path)]) == 0
    first = {p.name + p.parent.name: p.read_bytes() for p in tmp_path.glob("*/*.p[nd][gf]")}
    assert len(first) == 8  # curves and sensitivity, PNG and PDF, of each experiment
    time.sleep(1.1)  # PDF dates have a resolution of one second
    assert main(["plot", "--out", str(tmp_path)]) == 0
    second = {p.name + p.parent.name: p.read_bytes() for p in tmp_path.glob("*/*.p[nd][gf]")}
    assert second.keys() == first.keys()
    for key, data in second.items():
        assert data == first[key], f"{key} changed between two identical plots"
        assert b"CreationDate" not in data and b"ModDate" not in data  # PDF info dictionary
        assert b"tIME" not in data and b"Software" not in data  # PNG chunks
        assert b"Matplotlib" not in data  # no version: a matplotlib upgrade alone adds no churn


def test_figures_leave_the_matplotlib_backend_alone(tmp_path):
    """Loading a config (which checks plot.figures against the figures' registry) and drawing
    use matplotlib's Figure objects, not pyplot: a user's MPLBACKEND stays what it was, and
    the files are still written."""
    shutil.copytree(RESULTS / "logreg_mnist", tmp_path / "logreg_mnist",
                    ignore=shutil.ignore_patterns("*.png", "*.pdf", "runs"))
    script = ("import matplotlib; from adamrepro.config import load_experiment, "
              "resolve_config_arg; from adamrepro.cli import main; "
              "load_experiment(resolve_config_arg('logreg_mnist')); "
              f"assert main(['plot', '--out', {str(tmp_path)!r}]) == 0; "
              "print(matplotlib.get_backend())")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={**os.environ, "MPLBACKEND": "svg"}, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == "svg", done.stdout
    assert (tmp_path / "logreg_mnist" / "curves.png").stat().st_size > 10_000


def test_every_training_curve_has_the_test_loss_and_accuracy_beside_it():
    """PAPER.md, beyond the paper: test loss and test accuracy next to every training curve:
    a classifier's curves figure has the training cost, the test objective and the test
    accuracy; a model without accuracy (the VAE) its test objective and next metric."""
    from adamrepro.figures.common import test_columns
    from adamrepro.metrics import metric_set
    from adamrepro.models import MODELS
    from adamrepro.results.tables import read_results

    meta = read_results(RESULTS / "logreg_mnist")[2]
    assert [c.name for c in test_columns(meta)] == ["test_loss", "test_acc"]
    vae = {"metrics": MODELS["vae"].METRICS.to_json()}
    declared = metric_set(vae)
    first_other = next(m.name for m in declared.metrics if m.name != declared.objective)
    assert [c.name for c in test_columns(vae)] == [f"test_{declared.objective}",
                                                   f"test_{first_other}"]


def test_every_figure_title_says_when_the_data_was_unverified():
    from adamrepro.figures.common import run_tag

    meta = {"scale": "smoke", "provenance": {"device": "cpu", "data_verified": False}}
    assert run_tag(meta, 2) == "[smoke scale, 2 seed(s), cpu, data unverified]"
    meta["provenance"]["data_verified"] = True
    assert run_tag(meta) == "[smoke scale, cpu]"


def test_a_figure_of_runs_from_several_devices_names_each_in_its_title(tmp_path):
    """The committed Fig. 1 left mixes runs trained in two ways on its CPU (threads, worker
    processes): config.json names the last command's device alone, which every figure's
    title gave as all its runs'. The report names each device with its methods; the title
    now names each device."""
    import shutil

    from adamrepro.figures.common import run_tag
    from adamrepro.results.tables import read_results

    source = Path(__file__).resolve().parent.parent / "results" / "logreg_mnist"
    shutil.copytree(source, tmp_path / "logreg_mnist", ignore=shutil.ignore_patterns("runs"))
    curves, _, meta = read_results(tmp_path / "logreg_mnist")
    devices = sorted(curves["device"].unique())
    assert len(devices) == 2
    tag = run_tag(meta, 3, curves)
    assert f"2 devices: {devices[0]}; {devices[1]}" in tag, tag
    for device in devices:  # the runs of one device: that one, whichever command was last
        assert run_tag(meta, 3, curves[curves["device"] == device]) == (
            f"[paper scale, 3 seed(s), {device}]")
    assert meta["provenance"]["device"] in devices


def test_a_long_title_is_wrapped_inside_the_figure_not_cut_off(tmp_path):
    """A figure's title names the network, the scale, the device and whether the data was
    verified: at a CPU scale of Fig. 3 with a long device name it ran off both edges of the
    PNG. Every figure wraps it to its width: no title pixel touches the image's sides."""
    import json

    from matplotlib.image import imread

    folder = tmp_path / "cnn_cifar10"
    shutil.copytree(RESULTS / "quick-cpu" / "cnn_cifar10", folder,
                    ignore=shutil.ignore_patterns("*.png", "*.pdf", "runs"))
    config = json.loads((folder / "config.json").read_text())
    config["config"]["title"] = "Fig. 3: " + "a network of a long and descriptive name " * 4
    (folder / "config.json").write_text(json.dumps(config))
    assert main(["plot", "--out", str(tmp_path)]) == 0
    drawn = sorted(folder.glob("*.png"))
    assert [p.stem for p in drawn] == ["curves", "early_and_all", "sensitivity"]
    for path in drawn:
        pixels = imread(path)[..., :3]  # RGB in [0, 1]; the background is white
        top = pixels[: pixels.shape[0] // 5]  # the title's band
        assert top.min() < 0.5, f"{path.name}: no title drawn"
        for side in (top[:, :3], top[:, -3:]):
            assert side.min() > 0.9, f"{path.name}: the title touches the image's side"


def unlisted(folder: Path) -> None:
    """Drop the table digests a copy's config.json lists, so that a test may edit its tables
    by hand (a user's edit is refused: results/tables.py `_check_one_set`)."""
    import json

    meta = json.loads((folder / "config.json").read_text())
    meta.pop("tables", None)
    (folder / "config.json").write_text(json.dumps(meta))


def test_the_curves_figure_shows_every_pass_where_the_early_panel_shows_the_first(tmp_path):
    """Fig. 3's `plot.max_epoch: 3` is the left panel of early_and_all (the paper's first 3
    passes). The curves figure, with the test metrics beside the training cost, must still
    show every pass: at paper scale its test accuracy would otherwise stop at pass 3 of 45.
    Drawn from the committed tables (4 passes) and again without their last pass, it
    differs."""
    import pandas as pd

    source = RESULTS / "quick-cpu" / "cnn_cifar10"
    drawn = {}
    for case in ("all", "cut"):
        folder = tmp_path / case / "cnn_cifar10"
        shutil.copytree(source, folder, ignore=shutil.ignore_patterns("*.png", "*.pdf", "runs"))
        curves = pd.read_csv(folder / "curves.csv")
        assert curves["epoch"].max() == 4 and (folder / "config.json").read_text().count(
            '"max_epoch": 3') == 1
        if case == "cut":
            curves[curves["epoch"] < 4].to_csv(folder / "curves.csv", index=False)
            unlisted(folder)
        assert main(["plot", "--out", str(folder.parent)]) == 0
        drawn[case] = hash((folder / "curves.png").read_bytes())
    assert drawn["all"] != drawn["cut"], "the curves figure stops at plot.max_epoch"


def test_the_early_panel_of_a_run_of_fewer_passes_shows_those_passes(tmp_path, monkeypatch):
    """A run shorter than `plot.max_epoch` (a smoke run of 1 pass against Fig. 3's 3): the
    early panel is that pass, titled so, not an axis to 3 that is empty beyond 1; and blocks
    of one step read "of each step", not "of each 1 step"."""
    import json

    def one_pass(folder):
        curves = pd.read_csv(folder / "curves.csv")
        curves[curves["epoch"] <= 1].to_csv(folder / "curves.csv", index=False)
        steps = pd.read_csv(folder / "steps.csv")
        steps[steps["epoch_fraction"] <= 1].to_csv(folder / "steps.csv", index=False)
        meta = json.loads((folder / "config.json").read_text())
        meta["config"]["training"]["log_every"] = 1
        (folder / "config.json").write_text(json.dumps(meta))

    fig, curves, best, config = _drawn(monkeypatch, tmp_path, "quick-cpu/cnn_cifar10",
                                       "early_and_all", one_pass)
    assert config["plot"]["max_epoch"] == 3 and curves["epoch"].max() == 1
    ax_early, ax_all = fig.axes
    assert ax_early.get_xlim() == (0, 1) and ax_early.get_title() == "first pass"
    assert ax_early.get_ylabel().replace("\n", " ").endswith("objective of each step)"), \
        ax_early.get_ylabel()


def test_what_the_figures_say_of_the_committed_quick_tables(tmp_path, cli):
    """Fig. 4's legend names the β1, β2 each method was selected at (its grid searches the
    pair `betas`, which the tables hold as two columns); a ±1 std band never reaches below
    the lowest seed (SFO's first passes: std 3.18 over a mean of 2.93, a band to the edge
    of a log axis); a figure drawn for a model it does not fit is one line, not a traceback
    nor advice to delete good files."""

    import numpy as np

    from adamrepro.config import recorded_config
    from adamrepro.figures.common import band, legend_label
    from adamrepro.results.tables import read_results

    curves, best, meta = read_results(RESULTS / "quick-cpu" / "vae_bias_correction",
                                      recorded_config)
    adam = best[best["method"] == "adam"].iloc[0]
    symbols = {"beta1": "β1", "beta2": "β2", "lr": "α"}
    edges = [symbols[name] for name in str(adam["at_grid_edge"]).split(";") if name in symbols]
    assert edges  # the committed tables select Adam at an edge of its (β1, β2) grid
    assert legend_label(adam, meta) == (f"adam (β1={adam['beta1']:g}, β2={adam['beta2']:g}, "
                                        f"α={adam['lr']:g}; grid edge: {', '.join(edges)})")
    sfo, _, _ = read_results(RESULTS / "quick-cpu" / "mlp_sfo")
    runs = sfo[sfo["method"] == "sfo"]
    point = runs.groupby("point_id")["train_loss_full"].std().idxmax()
    spread = band(runs[runs["point_id"] == point], "train_loss_full", "std", log=True)
    lowest = runs[runs["point_id"] == point].groupby("epoch")["train_loss_full"].min()
    assert (spread["low"] >= lowest).all() and (spread["low"] > 0).all()
    # on a linear axis the band is ±1 std, as the line under the title says: clipped there
    # too, it sat above the curve at half the passes of three seeds
    linear = band(runs[runs["point_id"] == point], "train_loss_full", "std")
    assert (linear["low"] < lowest).any()
    assert np.allclose(linear["high"] - linear["mean"], linear["mean"] - linear["low"])
    # a figure of another model's experiment: one line (it said the file was damaged)
    _mlp_drawing(tmp_path / "vae_samples", "vae_samples")
    code, _, stderr = cli("plot", "--out", tmp_path / "vae_samples")
    assert code == 2 and stderr.count("\n") == 1, stderr
    assert "vae_samples draws a VAE's samples" in stderr, stderr


def _mlp_drawing(out: Path, figure: str) -> Path:
    """The committed H100 MLP's tables in `out`, their config drawing `figure` alone."""
    import json

    folder = out / "mlp_dropout"
    shutil.copytree(RESULTS / "mlp_dropout", folder,
                    ignore=shutil.ignore_patterns("*.png", "*.pdf", "runs"))
    config = json.loads((folder / "config.json").read_text())
    config["config"]["plot"]["figures"] = [figure]
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_figures_drawn_for_tables_they_do_not_fit(tmp_path, cli):
    """Fig. 2b's figure on tables from before `state_bytes` (the committed H100 MLP's) is
    drawn, the memory left blank; Fig. 4's on methods without betas is one line (it was a
    KeyError traceback)."""
    import pandas as pd

    for figure in ("sfo", "bias_correction"):
        folder = _mlp_drawing(tmp_path / figure, figure)
        if figure == "bias_correction":  # the methods without betas alone
            curves = pd.read_csv(folder / "curves.csv")
            kept = set(curves.loc[curves["beta1"].isna(), "method"])
            for name in ("curves.csv", "best.csv"):
                table = pd.read_csv(folder / name)
                table[table["method"].isin(kept)].to_csv(folder / name, index=False)
    assert "state_bytes" not in pd.read_csv(tmp_path / "sfo" / "mlp_dropout" / "curves.csv")
    code, stdout, stderr = cli("plot", "--out", tmp_path / "sfo")
    assert code == 0 and "sfo.png" in stdout, stderr
    code, _, stderr = cli("plot", "--out", tmp_path / "bias_correction")
    assert code == 2 and stderr.count("\n") == 1 and "no method here has betas" in stderr, stderr


def test_steps_csv_belongs_to_the_set_of_tables_it_was_written_with(tmp_path, cli, data_dir):
    """steps.csv (`training.log_every`) carries each run's provenance, as curves.csv does,
    and is one of the set config.json lists. A later run of the folder without log_every
    removes it; one left behind (a kill after config.json was renamed) is not this set's and
    is not drawn: before, Fig. 3's left panel drew an earlier command's steps, empty for
    these runs, without a word. A steps.csv that is not the one listed is one line."""
    import json

    import pandas as pd
    import yaml

    config = {"name": "steps", "title": "steps", "model": {"name": "logreg"},
              "dataset": {"name": "mnist", "train_size": 512, "test_size": 128},
              "training": {"epochs": 2, "log_every": 2},
              "plot": {"figures": ["early_and_all"]},
              "methods": {"adam": {"optimizer": "adam", "grid": {"lr": [1e-3, 1e-2]}}}}
    path = tmp_path / "steps.yaml"
    path.write_text(yaml.safe_dump(config))
    out, folder = tmp_path / "out", tmp_path / "out" / "steps"
    args = ("--out", out, "--quiet", "--device", "cpu", "--data-dir", data_dir)
    assert cli("run", path, *args)[0] == 0
    steps, curves = pd.read_csv(folder / "steps.csv"), pd.read_csv(folder / "curves.csv")
    record = json.loads(next((folder / "runs").glob("*.json")).read_text())
    for table in (steps, curves):
        for column in ("commit", "torch_version", "device", "precision", "date"):
            assert set(table[column]) == {record["provenance"][column]}, column
    earlier = (folder / "steps.csv").read_bytes()

    del config["training"]["log_every"]
    path.write_text(yaml.safe_dump(config))
    assert cli("run", path, *args, "--force")[0] == 0
    assert not (folder / "steps.csv").exists()
    assert "steps.csv" not in json.loads((folder / "config.json").read_text())["tables"]
    (folder / "steps.csv").write_bytes(earlier)  # as a kill before its removal leaves it
    from adamrepro.results.tables import read_results, read_steps

    assert read_steps(folder, read_results(folder)[2]) is None
    assert cli("plot", "steps", "--out", out)[0] == 0

    config["training"]["log_every"] = 2
    path.write_text(yaml.safe_dump(config))
    assert cli("run", path, *args, "--force")[0] == 0
    listed = read_steps(folder, read_results(folder)[2])
    assert listed is not None and set(listed["run_id"]) == set(
        pd.read_csv(folder / "curves.csv")["run_id"])
    damaged = steps.assign(train_loss=steps["train_loss"] * 2)
    damaged.to_csv(folder / "steps.csv", index=False)
    code, _, err = cli("plot", "steps", "--out", out)
    assert code == 2 and err.count("\n") == 1, err
    assert "steps.csv is not the steps.csv its config.json lists" in err


def test_method_names_and_titles_are_drawn_as_written(tmp_path, cli, data_dir, monkeypatch):
    """A method named `_adam` had no legend entry (matplotlib's mark of a hidden line), one
    named `$\\x$` made `plot` a ValueError traceback (mathtext), a title `my $race$` lost
    its dollars; a character the font lacks is one note, not a UserWarning per figure."""
    import yaml
    from matplotlib.cbook import is_math_text
    from matplotlib.figure import Figure

    config = yaml.safe_load((RESULTS.parent / "configs" / "logreg_mnist.yaml").read_text())
    methods = config["methods"]
    config["methods"] = {"_adam": methods["adam"], "$\\x$": methods["adagrad"],
                         "\U0001F680sgd": methods["sgd_nesterov"]}
    config["title"] = "my $race$"
    path = tmp_path / "odd.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True))
    out = tmp_path / "out"
    code, _, stderr = cli("run", path, "--scale", "smoke", "--out", out, "--quiet",
                          "--data-dir", data_dir)
    assert code == 0, stderr
    shown: dict[str, list[str]] = {}
    savefig = Figure.savefig

    def recording(fig, target, **kwargs):  # what each figure shows, as it is saved
        texts = [t.get_text() for legend in fig.legends + [a.get_legend() for a in fig.axes]
                 if legend is not None for t in legend.get_texts()]
        titles = [fig._suptitle.get_text()] if fig._suptitle else []
        titles += [a.get_title() for a in fig.axes]
        for text in texts + titles:  # no mathtext anywhere
            assert not is_math_text(text), text
        shown[f"{len(shown)}"] = texts + titles
        return savefig(fig, target, **kwargs)

    monkeypatch.setattr(Figure, "savefig", recording)
    code, stdout, stderr = cli("plot", "--out", out)
    assert code == 0 and "sensitivity.png" in stdout, stderr
    assert stderr.count("\n") == 1 and "has no glyph for \U0001F680" in stderr, stderr
    for texts in shown.values():  # every legend names the three, as written
        legend = [t.removeprefix("\u2060").replace("\\$", "$") for t in texts]
        for name in ("_adam", "$\\x$", "\U0001F680sgd"):
            assert any(t.startswith(name) for t in legend), (name, texts)
        assert any("my $race$" in t.replace("\\$", "$") for t in texts), texts


# --- what each figure draws, against its tables ----------------------------------------------

def _drawn(monkeypatch, tmp_path, source: str, figure: str, edit=None):
    """The figure `figure` drawn from a copy of the committed tables `source` (`edit(folder)`
    changes the copy first), captured as it is saved (and not rendered: the files are the
    other tests' concern), and the copy's tables as pandas reads them: (figure, curves,
    best, config)."""
    import json

    import pandas as pd
    from matplotlib.figure import Figure

    from adamrepro.figures import draw

    folder = tmp_path / Path(source).name
    shutil.copytree(RESULTS / source, folder,
                    ignore=shutil.ignore_patterns("*.png", "*.pdf", "runs"))
    if edit is not None:
        edit(folder)
        unlisted(folder)
    saved = []

    def recording(fig, target, **kwargs):  # once per figure, though saved as PNG and PDF
        if fig not in saved:
            saved.append(fig)

    monkeypatch.setattr(Figure, "savefig", recording)
    draw(figure, folder)
    assert len(saved) == 1
    config = json.loads((folder / "config.json").read_text())["config"]
    return (saved[0], pd.read_csv(folder / "curves.csv"), pd.read_csv(folder / "best.csv"),
            config)


def _in_config_order(best, config):
    order = [m for m in config["methods"] if m in set(best["method"])]
    assert len(order) == len(best)
    return [best.set_index("method").loc[m] for m in order]


def _seeds(runs, column: str, x: str = "epoch", kind: str = "std", log: bool = True):
    """Mean over seeds at each x, and the band: ±1 std (on a log axis, `log`, never below
    the lowest seed) or min to max; computed here from the figures' definition, not by
    adamrepro."""
    import numpy as np

    by = runs.dropna(subset=[column]).groupby(x)[column]
    mean = by.mean()
    if kind == "minmax":
        low, high = by.min(), by.max()
    else:
        std = by.std().fillna(0.0)
        low, high = mean - std, mean + std
        if log:
            low = np.maximum(low, by.min())
    return mean, low, high


def _assert_band(collection, low, high) -> float | None:
    """A fill_between's polygon spans low to high at each x, and nothing else; or, on a curve
    of a few passes, a bar from low to high at each x, every bar moved aside by one offset
    (returned: neighbouring curves' bars stand side by side)."""
    import numpy as np
    from matplotlib.collections import LineCollection

    from adamrepro.figures.common import BAR_DODGE, BARS_UP_TO

    if isinstance(collection, LineCollection):
        assert low.index.max() <= BARS_UP_TO, "bars on a curve long enough for a band"
        segments = np.array(collection.get_segments())
        assert segments.shape == (len(low), 2, 2), segments.shape
        offsets = segments[:, :, 0] - low.index.to_numpy(float)[:, None]
        assert np.ptp(offsets) < 1e-9 and abs(offsets[0, 0]) < 3 * BAR_DODGE, offsets
        np.testing.assert_allclose(segments[:, :, 1],
                                   np.column_stack([low.to_numpy(), high.to_numpy()]),
                                   rtol=1e-9)
        return float(offsets[0, 0])
    vertices = np.concatenate([p.vertices for p in collection.get_paths()])
    for x in low.index:
        at = vertices[np.isclose(vertices[:, 0], x), 1]
        assert len(at), f"no band at x={x}"
        np.testing.assert_allclose([at.min(), at.max()], [low[x], high[x]], rtol=1e-9)
    assert set(np.round(vertices[:, 0], 9)) <= set(np.round(low.index.to_numpy(float), 9))


def _label(row) -> str:
    """A legend label of an lr-only grid: the method and its α (with /√t when it decays),
    and whether α was selected at the end of its grid."""
    decay = "/√t" if row.get("lr_decay") == "sqrt" else ""
    edge = "; grid edge: α" if row.get("at_grid_edge") == "lr" else ""
    return f"{row.name} (α={row['lr']:g}{decay}{edge})"


@pytest.mark.parametrize(("source", "band"), [("quick-cpu/mlp", "std"),
                                              ("quick-cpu/cnn_cifar10", "std"),
                                              ("quick-cpu/extensions", "minmax")])
def test_the_curves_figure_draws_the_mean_and_band_of_each_selected_run(
        tmp_path, monkeypatch, source, band):
    """Each method's line is best.csv's grid point, the mean over its seeds at every pass
    (the training cost from pass 0 where the table has it, the test panels from pass 1),
    with its band; its
    legend says the α it was selected at; a variant keeps its optimizer's color in its own
    line style; the test objective shares the training cost's log axis."""
    import json

    import numpy as np
    from matplotlib.lines import Line2D

    from adamrepro.figures.palette import LINESTYLES

    def minmax(folder):
        meta = json.loads((folder / "config.json").read_text())
        meta["config"]["plot"]["band"] = "minmax"
        (folder / "config.json").write_text(json.dumps(meta))

    fig, curves, best, config = _drawn(monkeypatch, tmp_path, source, "curves",
                                       minmax if band == "minmax" else None)
    y = config["plot"]["y"]
    columns = [y, "test_loss", "test_acc"]
    assert [ax.get_ylabel().replace("\n", " ") for ax in fig.axes][1:] == ["test loss",
                                                                          "test accuracy"]
    chosen = _in_config_order(best, config)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == [_label(row) for row in chosen]
    for ax, column in zip(fig.axes, columns, strict=True):
        assert len(ax.lines) == len(chosen) and len(ax.collections) == len(chosen)
        offsets = []  # bars' (Fig. 3's 4 passes): each method's beside the others'
        for line, collection, row in zip(ax.lines, ax.collections, chosen, strict=True):
            runs = curves[curves["point_id"] == row["point_id"]]
            assert runs["seed"].nunique() == row["n_seeds"] > 1
            if column != y:
                runs = runs[runs["epoch"] > 0]
            mean, low, high = _seeds(runs, column, kind=band, log=config["plot"]["logy"]
                                     and column != "test_acc")
            has_pass_0 = runs.loc[runs["epoch"] == 0, column].notna().any()
            assert mean.index[0] == (0 if has_pass_0 else 1), (column, has_pass_0)
            assert mean.index[-1] == curves["epoch"].max()
            np.testing.assert_allclose(line.get_xydata(), np.column_stack(
                [mean.index, mean.to_numpy()]), rtol=1e-9)
            offsets.append(_assert_band(collection, low, high))
            variant = row["variant"] if isinstance(row.get("variant"), str) else ""
            assert line.get_linestyle() == Line2D([], [], linestyle=LINESTYLES[variant]) \
                .get_linestyle(), (row.name, variant)
        bars = curves["epoch"].max() <= 5
        assert offsets == [None] * len(chosen) if not bars else \
            len(set(offsets)) == len(chosen) and abs(sum(offsets)) < 1e-9, offsets
    logy = config["plot"]["logy"]
    assert [ax.get_yscale() for ax in fig.axes] == (["log", "log", "linear"] if logy
                                                    else ["linear"] * 3)
    said = " ".join(fig._suptitle.get_text().split())
    assert ("drawn as bars side by side at each pass on per-pass curves of 5 passes or "
            "fewer" in said) == bars, said


@pytest.mark.parametrize(("figure", "band", "said"), [
    ("curves", "std", "band: ±1 std over 3 seeds"),
    ("curves", "minmax", "band: min to max over 3 seeds"),
    ("early_and_all", "minmax", "band: min to max over 3 seeds")])
def test_the_line_under_the_title_names_the_band_drawn(tmp_path, monkeypatch, figure, band,
                                                      said):
    """`plot.band` draws ±1 std or the min-to-max range over seeds, and the line under the
    title is what tells a reader which: on the committed quick-scale Fig. 2a tables (3
    seeds), it names the band the config asks for and never the other."""
    import json

    def banded(folder):
        meta = json.loads((folder / "config.json").read_text())
        meta["config"]["plot"]["band"] = band
        (folder / "config.json").write_text(json.dumps(meta))

    fig, curves, _, _ = _drawn(monkeypatch, tmp_path, "quick-cpu/mlp", figure, banded)
    assert curves["seed"].nunique() == 3
    title = " ".join(fig._suptitle.get_text().split())
    other = "min to max" if band == "std" else "±1 std"
    assert said in title and other not in title, title


def test_a_method_none_of_whose_points_was_selected_is_named_with_the_seeds_rule(
        tmp_path, monkeypatch):
    """A point with a seed that diverged is never selected: with several seeds the line
    under the title says "in one seed or more" (it read as if every run diverged); and
    where no method was selected at all, the title still counts the seeds trained (it read
    "0 seed(s)")."""
    def drop(methods):
        def edit(folder):
            best = pd.read_csv(folder / "best.csv")
            best[~best["method"].isin(methods)].to_csv(folder / "best.csv", index=False)
        return edit

    fig, curves, best, config = _drawn(monkeypatch, tmp_path / "one", "quick-cpu/mlp",
                                       "curves", drop({"adagrad"}))
    seeds = curves["seed"].nunique()
    title = " ".join(fig._suptitle.get_text().split())
    assert seeds > 1 and ("not drawn, every grid point diverged (in one seed or more): "
                          "adagrad") in title, title
    fig, curves, best, config = _drawn(monkeypatch, tmp_path / "all", "quick-cpu/mlp",
                                       "curves", drop(set(curves["method"])))
    title = " ".join(fig._suptitle.get_text().split())
    assert best.empty and f"{seeds} seeds" in title and "0 seed" not in title, title


def test_the_curves_figure_leaves_sfo_s_subfunction_sweep_to_sfo_png(tmp_path, monkeypatch):
    """Fig. 2b's sweep of SFO's number of subfunctions races Adam with other minibatches at
    its best N: sfo.png leaves it out of its cost panels, and curves.png drew it, as if the
    better SFO. It is left out there too, and the line under the title says so."""
    fig, curves, best, config = _drawn(monkeypatch, tmp_path, "quick-cpu/mlp_sfo", "curves")
    sweep = set(curves.loc[curves["num_subfunctions"].notna(), "method"])
    assert sweep == {"sfo+memory"}
    drawn = [t.get_text().split(" (")[0] for t in fig.legends[0].get_texts()]
    assert drawn == [m for m in config["methods"] if m in set(best["method"]) - sweep]
    assert all(len(ax.lines) == len(drawn) for ax in fig.axes)
    assert ("not drawn, a sweep of SFO's subfunctions (sfo.png's memory panel): sfo+memory"
            in " ".join(fig._suptitle.get_text().split()))


@pytest.mark.parametrize("figure", ["curves", "sfo"])
def test_an_sfo_that_sets_its_subfunctions_once_is_a_curve_not_a_sweep(tmp_path, monkeypatch,
                                                                         figure):
    """`hparams: {num_subfunctions: 4}` (or the default written out) is one SFO, raced as
    any method: it vanished from both figures' cost panels as a "sweep" while the report
    judged it. Only a method whose grid varies N is the memory panel's alone."""
    import pandas as pd

    def fixed(folder):
        path = folder / "curves.csv"
        curves = pd.read_csv(path)
        curves.loc[curves["method"] == "sfo", "num_subfunctions"] = 23.0
        curves.to_csv(path, index=False)

    fig, curves, best, config = _drawn(monkeypatch, tmp_path, "quick-cpu/mlp_sfo", figure,
                                       edit=fixed)
    assert curves.loc[curves["method"] == "sfo", "num_subfunctions"].eq(23).all()
    legend = fig.legends[0] if figure == "curves" else fig.axes[0].get_legend()
    drawn = [t.get_text().split(" (")[0] for t in legend.get_texts()]
    assert "sfo" in drawn and "sfo+memory" not in drawn, drawn


@pytest.mark.parametrize("y", ["train_loss", "train_loss_full"])
def test_the_early_panel_ends_at_max_epoch_and_the_other_shows_every_pass(
        tmp_path, monkeypatch, y):
    """Fig. 3: left, each selected run's steps.csv up to and including pass `plot.max_epoch`
    (or its passes, for a cost steps.csv does not record: the full-pass objective, from
    pass 0), on an x-axis from 0 to it; right, every pass of curves.csv, on a log axis; each
    the mean over seeds, with its spread where drawn, a dropout variant dashed."""
    import itertools
    import json

    import numpy as np

    from adamrepro.figures.palette import LINESTYLES

    def plot_y(folder):
        meta = json.loads((folder / "config.json").read_text())
        meta["config"]["plot"]["y"] = y
        (folder / "config.json").write_text(json.dumps(meta))

    fig, curves, best, config = _drawn(monkeypatch, tmp_path, "quick-cpu/cnn_cifar10",
                                       "early_and_all", plot_y)
    early = config["plot"]["max_epoch"]
    ax_early, ax_all = fig.axes
    assert ax_early.get_xlim() == (0, early) and ax_all.get_yscale() == "log"
    chosen = _in_config_order(best, config)
    steps = pd.read_csv(RESULTS / "quick-cpu" / "cnn_cifar10" / "steps.csv")
    every = config["training"]["log_every"]
    if y in steps.columns:
        table = steps[steps["epoch_fraction"] <= early].rename(columns={"epoch_fraction": "x"})
        # what the early panel draws is steps.csv's blocks, and its label says so
        assert ax_early.get_ylabel().replace("\n", " ").endswith(
            f"objective of each {every} steps)")
    else:
        table = curves[curves["epoch"] <= early].rename(columns={"epoch": "x"})
    for ax, source in ((ax_early, table), (ax_all, curves.rename(columns={"epoch": "x"}))):
        # bars on Fig. 3's 4 quick passes; none on steps.csv's many blocks, where six bands
        # hid the curves (the every-pass panel beside them has the spread)
        banded = ax is ax_all or y not in steps.columns
        assert len(ax.lines) == len(chosen)
        assert len(ax.collections) == (len(chosen) if banded else 0)
        for line, collection, row in itertools.zip_longest(ax.lines, ax.collections, chosen):
            mean, low, high = _seeds(source[source["point_id"] == row["point_id"]], y, "x",
                                     log=ax is ax_all)
            assert mean.index[-1] == (early if ax is ax_early else curves["epoch"].max())
            assert mean.index[0] == (0 if y == "train_loss_full" else source.loc[
                source[y].notna(), "x"].min())
            np.testing.assert_allclose(line.get_xydata(), np.column_stack(
                [mean.index, mean.to_numpy()]), rtol=1e-9)
            if banded:
                assert _assert_band(collection, low, high) is not None, (ax, y)
            variant = row["variant"] if isinstance(row["variant"], str) else ""
            assert line.get_linestyle() == ("--" if variant == "dropout" else "-") and \
                LINESTYLES[variant] == line.get_linestyle()


def test_a_final_cost_above_the_untrained_one_is_a_mark_at_the_sensitivity_top_edge(
        tmp_path, monkeypatch):
    """Sec. 7's two horizons at its smallest α ends far above where it started (finite, so
    not diverged): drawn as a point it stretched the log axis to 10^4 and pressed the other
    methods into its bottom; it is a '^' at the top edge, as in Fig. 4, and the caption says
    what that is."""
    import numpy as np

    fig, curves, best, config = _drawn(monkeypatch, tmp_path, "quick-cpu/extensions",
                                       "sensitivity")
    (ax,) = fig.axes
    metric = config["selection"]["metric"]
    untrained = curves.loc[curves["epoch"] == 0, "train_loss_full"].max()
    last = curves.sort_values("epoch").groupby("run_id").tail(1)
    costs = last.groupby(["method", "lr"])[metric].mean()
    blown = costs[costs > untrained]
    assert len(blown)  # the committed tables have one
    marks = [line for line in ax.lines if line.get_marker() == "^" and len(line.get_xdata())]
    assert sorted(x for line in marks for x in line.get_xdata()) == sorted(
        blown.index.get_level_values("lr"))
    assert all(np.allclose(line.get_ydata(), 1.0) for line in marks)  # axes fraction: the top
    assert ax.get_ylim()[1] < blown.min()
    assert "^ at the top edge: a final cost above the untrained one." in " ".join(
        " ".join(text.get_text().split()) for text in fig.texts)


def test_the_sensitivity_figure_draws_each_lrs_final_cost_mean_over_seeds(tmp_path,
                                                                          monkeypatch):
    """Each method's line: per learning rate, the mean over seeds of the selection metric at
    the last pass; an 'x' at a learning rate whose every point diverged (here adam's largest,
    marked so in a copy), and the star at best.csv's grid point, whichever that is (here
    moved to adagrad's second best)."""
    import json

    import numpy as np

    def edit(folder):
        curves = pd.read_csv(folder / "curves.csv")
        adam = curves["method"] == "adam"
        gone = adam & (curves["lr"] == curves.loc[adam, "lr"].max())
        curves.loc[gone, "diverged"] = True
        curves.loc[gone & (curves["epoch"] == curves["epoch"].max()), "train_loss"] = np.nan
        curves.to_csv(folder / "curves.csv", index=False)
        best = pd.read_csv(folder / "best.csv")
        final = curves[curves["epoch"] == curves["epoch"].max()]
        points = final[final["method"] == "adagrad"].groupby(["point_id", "lr"])[
            "train_loss"].mean().sort_values()
        second, lr = points.index[1]
        best.loc[best["method"] == "adagrad", ["point_id", "lr"]] = [second, lr]
        best.to_csv(folder / "best.csv", index=False)

    fig, curves, best, config = _drawn(monkeypatch, tmp_path, "quick-cpu/mlp", "sensitivity",
                                       edit)
    (ax,) = fig.axes
    metric = config["selection"]["metric"]
    assert json.loads((tmp_path / "mlp" / "config.json").read_text())["config"]["selection"][
        "metric"] == metric
    last = curves.sort_values("epoch").groupby("run_id").tail(1)
    points = last.groupby(["method", "point_id", "lr"]).agg(
        cost=(metric, "mean"), diverged=("diverged", "any"), seeds=("seed", "nunique"))
    assert (points["seeds"] > 1).all()
    methods = [m for m in config["methods"] if m in set(curves["method"])]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == methods
    starts = [i for i, line in enumerate(ax.lines) if line.get_label() in methods]
    for method, start, end in zip(methods, starts, [*starts[1:], len(ax.lines)], strict=True):
        lines = ax.lines[start:end]  # its line and its crosses (the stars are drawn last)
        mine = points.loc[method].reset_index()
        ok = mine[~mine["diverged"]].sort_values("lr")
        (curve,) = [line for line in lines if line.get_label() == method]
        np.testing.assert_allclose(curve.get_xydata(), ok[["lr", "cost"]].to_numpy(),
                                   rtol=1e-9)
        (star,) = [line for line in ax.lines if line.get_label() == f"_{method} selected"]
        assert star.get_marker() == "*"
        selected = ok[ok["point_id"] == best.set_index("method").loc[method, "point_id"]]
        np.testing.assert_allclose(star.get_xydata(), selected[["lr", "cost"]].to_numpy(),
                                   rtol=1e-9)
        (crosses,) = [line for line in lines if line.get_marker() == "x"]
        assert list(crosses.get_xdata()) == sorted(mine.loc[mine["diverged"], "lr"])
        assert len(crosses.get_xdata()) == (method == "adam")


def test_a_sensitivity_figure_of_one_step_size_has_an_axis_around_it(tmp_path, monkeypatch):
    """Every method at one α (Sec. 7's smoke scale) and a mark at the top edge there: the
    mark's x, through the log axis and back, is a few ulps off α, and matplotlib took that
    for the axis' range. The axis was a few ulps wide: a RuntimeWarning, and neither axes nor
    points drawn. It spans a decade each side of α now, the mark and the points in view."""
    import warnings

    import numpy as np

    lr = 0.001

    def edit(folder):  # Sec. 7's quick tables at α = 0.001 alone; nadam's diverged there
        curves = pd.read_csv(folder / "curves.csv")
        curves = curves[curves["lr"] == lr].copy()
        gone = curves["method"] == "nadam"
        curves.loc[gone, "diverged"] = True
        curves.loc[gone & (curves["epoch"] == curves["epoch"].max()), "train_loss_full"] = \
            np.nan
        curves.to_csv(folder / "curves.csv", index=False)
        best = pd.read_csv(folder / "best.csv")
        best = best[best["method"].isin(set(curves["method"]) - {"nadam"})].copy()
        points = curves.drop_duplicates("method").set_index("method")["point_id"]
        best["point_id"], best["lr"] = best["method"].map(points), lr
        best.to_csv(folder / "best.csv", index=False)

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        fig, curves, _, _ = _drawn(monkeypatch, tmp_path, "quick-cpu/extensions",
                                   "sensitivity", edit)
    assert set(curves["lr"]) == {lr} and curves["method"].nunique() == 5
    (ax,) = fig.axes
    assert ax.get_xlim() == pytest.approx((lr / 10, lr * 10))
    (crosses,) = [line for line in ax.lines if line.get_marker() == "x" and
                  len(line.get_xdata())]
    assert list(crosses.get_xdata()) == [lr]
    points = [line for line in ax.lines if line.get_marker() == "o" and len(line.get_xdata())]
    assert len(points) == 4 and {x for line in points for x in line.get_xdata()} == {lr}


@pytest.mark.parametrize(("source", "logy", "yscale"), [("quick-cpu/mlp", False, "log"),
                                                       ("quick-cpu/cnn_cifar10", True, "log"),
                                                       ("quick-cpu/cnn_cifar10", False, "linear")])
def test_the_sensitivity_figure_puts_the_learning_rate_on_a_log_axis(tmp_path, monkeypatch,
                                                                    source, logy, yscale):
    """A grid of step sizes spans decades, evenly spaced in log α: the x axis is
    logarithmic, whatever the cost axis. The cost axis is logarithmic where `plot.logy` says
    so, or else where the finite costs drawn span more than a factor of 10 (Fig. 2a's quick
    grid: 20), and linear otherwise (Fig. 3's: 1.7); on the committed quick-scale tables,
    with `plot.logy` as given."""
    import json

    import numpy as np

    def with_logy(folder):
        meta = json.loads((folder / "config.json").read_text())
        meta["config"]["plot"]["logy"] = logy
        (folder / "config.json").write_text(json.dumps(meta))

    fig, curves, _, _ = _drawn(monkeypatch, tmp_path, source, "sensitivity", with_logy)
    (ax,) = fig.axes
    lrs = curves["lr"].dropna()
    assert lrs.max() / lrs.min() >= 100
    assert ax.get_xscale() == "log"
    drawn = np.concatenate([line.get_ydata() for line in ax.lines
                            if line.get_marker() == "o" and not line.get_label().startswith("_")])
    finite = drawn[np.isfinite(drawn) & (drawn > 0)]
    wide = finite.max() > 10 * finite.min()
    assert yscale == ("log" if logy or wide else "linear"), (logy, wide)  # the case's premise
    assert ax.get_yscale() == yscale


def test_above_the_untrained_cost_is_judged_on_the_whole_set_objective(tmp_path,
                                                                       monkeypatch):
    """Fig. 2a's MLP selects on the pass's mean minibatch loss, with dropout: after a pass
    that improved the whole-set cost it can sit above the untrained whole-set cost (at smoke
    scale every point did, and every point of every method was a '^' as if blown up). Here
    adam's final train_loss is raised above the untrained cost in a copy, its whole-set cost
    left as trained: its line is drawn through them, no '^'; adagrad's whole-set cost raised
    above it is a '^' though its train_loss is not."""
    import numpy as np

    state = {}

    def edit(folder):
        curves = pd.read_csv(folder / "curves.csv")
        untrained = curves.loc[curves["epoch"] == 0, "train_loss_full"].max()
        last = curves["epoch"] == curves["epoch"].max()
        adam, adagrad = curves["method"] == "adam", curves["method"] == "adagrad"
        curves.loc[last & adam, "train_loss"] = 1.5 * untrained
        curves.loc[last & adagrad, "train_loss_full"] = 2.0 * untrained
        curves.to_csv(folder / "curves.csv", index=False)
        state["untrained"] = untrained

    fig, curves, _, config = _drawn(monkeypatch, tmp_path, "quick-cpu/mlp", "sensitivity",
                                    edit)
    assert config["selection"]["metric"] == "train_loss"
    (ax,) = fig.axes
    (adam,) = [line for line in ax.lines if line.get_label() == "adam"]
    assert len(adam.get_ydata()) == curves.loc[curves["method"] == "adam", "lr"].nunique()
    np.testing.assert_allclose(adam.get_ydata(), 1.5 * state["untrained"])
    marks = [line for line in ax.lines if line.get_marker() == "^" and len(line.get_xdata())]
    assert sorted(x for line in marks for x in line.get_xdata()) == sorted(
        curves.loc[curves["method"] == "adagrad", "lr"].unique())


def test_a_method_without_an_lr_is_named_in_the_sensitivity_caption(tmp_path, monkeypatch):
    """SFO has no step size: left out of the figure, as any optimizer whose step size has
    another name, it vanished without a word (its curves and the report had it)."""
    fig, curves, _, config = _drawn(monkeypatch, tmp_path, "quick-cpu/mlp_sfo",
                                    "sensitivity")
    (ax,) = fig.axes
    without = sorted(set(curves.loc[curves["lr"].isna(), "method"]))
    assert without and not {line.get_label() for line in ax.lines} & set(without)
    text = " ".join(" ".join(t.get_text().split()) for t in fig.texts)
    assert "Not drawn, without an lr hyperparameter to plot against: " in text, text
    said = text.split("plot against: ")[1].split(".")[0].split(", ")
    # in the config's order, as every legend (it was the order of the tables' rows)
    assert said == [m for m in config["methods"] if m in without], said


def test_the_sfo_figure_draws_cost_per_pass_and_per_training_second(tmp_path, monkeypatch):
    """Fig. 2b: each selected run but the num_subfunctions sweep's, mean over seeds, against
    passes and against a run's training seconds (train_seconds, a batched run's share of its
    group's) on a log axis from the first pass (pass 0 a guide line at the mean untrained
    cost), bands on both; the table's seconds per pass; the sweep's state memory."""
    import numpy as np

    fig, curves, best, config = _drawn(monkeypatch, tmp_path, "quick-cpu/mlp_sfo", "sfo")
    ax_pass, ax_time, ax_memory, ax_table = fig.axes
    y = config["plot"]["y"]
    sweep = set(curves.loc[curves["num_subfunctions"].notna(), "method"])
    chosen = _in_config_order(best, config)
    raced = [row for row in chosen if row.name not in sweep]
    assert sweep and [t.get_text().split(" (")[0] for t in ax_pass.get_legend().get_texts()] \
        == [row.name for row in raced]
    curves = curves.assign(run_seconds=curves["train_seconds"] / curves["group_size"])
    for i, row in enumerate(raced):
        runs = curves[curves["point_id"] == row["point_id"]]
        mean, low, high = _seeds(runs, y)
        seconds = runs.groupby("epoch")["run_seconds"].mean()
        trained = mean.index[mean.index > 0]
        for ax, at, x in ((ax_pass, mean.index, mean.index),
                          (ax_time, trained, seconds[trained])):
            np.testing.assert_allclose(ax.lines[i].get_xydata(),
                                       np.column_stack([x, mean[at].to_numpy()]), rtol=1e-9)
            _assert_band(ax.collections[i], low[at].set_axis(x), high[at].set_axis(x))
    assert ax_time.get_xscale() == "log" and ax_pass.get_xscale() == "linear"
    untrained = curves.loc[(curves["epoch"] == 0) & ~curves["method"].isin(sweep), y].mean()
    guide = ax_time.lines[len(raced)]
    assert set(guide.get_ydata()) == {untrained}, guide.get_ydata()
    assert ax_time.get_legend().get_texts()[0].get_text() == \
        f"pass 0, untrained: {untrained:.3g} (mean)"
    cells = ax_table.tables[0].get_celld()
    state = {}
    for r, row in enumerate(chosen, start=1):
        runs = curves[curves["point_id"] == row["point_id"]]
        last = runs["epoch"].max()
        per_pass = runs.loc[runs["epoch"] == last, "run_seconds"].mean() / last
        assert cells[r, 0].get_text().get_text() == row.name
        assert cells[r, 2].get_text().get_text() == f"{per_pass:.3g}"
        state[row.name] = cells[r, 3].get_text().get_text()
        assert cells[r, 4].get_text().get_text() == "-"  # trained on a CPU
    # a batched run's state is its share of its group's: the same Adam's as trained alone
    # (its group of 4 holds 4 times as much), not the group's
    batched = curves[curves["point_id"] == best.set_index("method").loc["adam+batched",
                                                                          "point_id"]]
    assert set(batched["group_size"]) == {4}
    assert state["adam+batched"] == state["adam"] != "0.0", state
    # a column of '-' says why (it read as memory lost)
    assert cells[0, 4].get_text().get_text() == "peak device memory of its group (MiB; a " \
                                                "GPU's only)"
    final = curves[curves["method"].isin(sweep)].sort_values("epoch").groupby("run_id").tail(1)
    memory = final.groupby("num_subfunctions")["state_bytes"].mean() / 2**20
    np.testing.assert_allclose(ax_memory.lines[0].get_xydata(),
                               np.column_stack([memory.index, memory.to_numpy()]), rtol=1e-9)


def test_the_sfo_figure_shows_a_few_passes_spread_as_bars_as_the_curves_figure_does(
        tmp_path, monkeypatch):
    """Cut to 4 passes, the cost-per-pass panel draws bars side by side, as curves.png
    does; the seconds panel, where each method's points lie at its own times, keeps bands."""
    from matplotlib.collections import LineCollection, PolyCollection

    def short(folder):
        path = folder / "curves.csv"
        table = pd.read_csv(path)
        table[table["epoch"] <= 4].to_csv(path, index=False)

    fig, curves, best, config = _drawn(monkeypatch, tmp_path, "quick-cpu/mlp_sfo", "sfo",
                                       edit=short)
    ax_pass, ax_time, *_ = fig.axes
    assert curves["epoch"].max() == 4
    assert ax_pass.collections and all(isinstance(c, LineCollection)
                                       for c in ax_pass.collections)
    assert len({c.get_segments()[0][0][0] for c in ax_pass.collections}) == \
        len(ax_pass.collections)  # side by side at pass 0
    assert ax_time.collections and all(isinstance(c, PolyCollection)
                                       for c in ax_time.collections)
    assert "drawn as bars side by side" in " ".join(fig._suptitle.get_text().split())


def test_the_bias_correction_figure_draws_each_cells_mean_cost_at_its_pass(tmp_path,
                                                                           monkeypatch):
    """Fig. 4: a block after 10% of the passes and one after the last; in the panel of each
    (β1, β2), each method's mean cost over seeds at that pass against log10 α, a cell with a
    seed diverged by then an 'x' at its α; Adam without bias correction in RMSProp's color,
    dotted."""
    import re

    import numpy as np

    from adamrepro.figures.palette import COLORS

    fig, curves, best, config = _drawn(monkeypatch, tmp_path, "quick-cpu/vae_bias_correction",
                                       "bias_correction")
    y = config["plot"]["y"]
    passes = curves["epoch"].max()
    untrained = curves.loc[curves["epoch"] == 0, "train_neg_elbo_full"].max()
    def pass_of(half) -> str:  # "training … in pass 2 (mean minibatch objective), …"
        return re.search(r" in pass (\d+) \(mean minibatch objective\), mean over 3 seeds",
                         half._suptitle.get_text()).group(1)

    assert [pass_of(half) for half in fig.subfigs] == \
        [str(max(1, round(0.1 * passes))), str(passes)]
    # the key names what Adam without bias correction is, and only marks a panel shows
    keys = [t.get_text() for t in fig.legends[0].get_texts()]
    assert keys[:2] == ["adam", "adam+nobias (RMSProp with momentum)"]
    shown = {line.get_marker() for half in fig.subfigs for ax in half.axes
             for line in ax.lines if len(line.get_xdata())}
    assert ("diverged" in keys) == ("x" in shown)
    assert ("above the untrained cost" in keys) == ("^" in shown)
    methods = [m for m in config["methods"] if m in set(curves["method"])]
    drawn_as = {"adam": (COLORS["adam"], "-"), "adam+nobias": (COLORS["rmsprop"], ":")}
    for half in fig.subfigs:
        epoch = int(pass_of(half))
        upto = curves[curves["epoch"] <= epoch]
        gone = upto.groupby("run_id")["diverged"].any()
        at = curves[curves["epoch"] == epoch].set_index("run_id")[y]
        runs = curves.drop_duplicates("run_id").set_index("run_id")
        runs = runs.assign(cost=np.where(gone[runs.index] | ~np.isfinite(at.reindex(runs.index)),
                                         np.inf, at.reindex(runs.index)))
        cells = runs.groupby(["method", "beta1", "beta2", "lr"])["cost"].mean()
        for ax in half.axes:
            beta1, beta2 = map(float, re.findall(r"=([\d.e-]+)", ax.get_title()))
            curves_drawn = [line for line in ax.lines if line.get_marker() == "o"]
            crosses = [line for line in ax.lines if line.get_marker() == "x"]
            for method, line, cross in zip(methods, curves_drawn, crosses, strict=True):
                cost = cells.loc[(method, beta1, beta2)]
                shown = cost[np.isfinite(cost) & (cost <= untrained)]
                np.testing.assert_allclose(line.get_xydata(), np.column_stack(
                    [np.log10(shown.index), shown.to_numpy()]), rtol=1e-9)
                assert (line.get_color(), line.get_linestyle()) == drawn_as[method]
                diverged = np.log10(cost[~np.isfinite(cost)].index)
                assert np.allclose(np.round(cross.get_xdata(), 1), np.round(diverged, 1))


def test_the_step_bound_figure_draws_the_largest_ratio_over_seeds(tmp_path, monkeypatch):
    """Sec. 2.1: per method that recorded it, one line per step size (its legend's α): the
    largest max_step_ratio over the seeds at each pass."""
    import numpy as np

    fig, curves, best, config = _drawn(monkeypatch, tmp_path, "quick-cpu/extensions",
                                       "step_bound")
    tracked = curves[curves["max_step_ratio"].notna() & (curves["epoch"] > 0)]
    methods = [m for m in config["methods"] if m in set(tracked["method"])]
    assert [ax.get_title() for ax in fig.axes] == methods
    for ax, method in zip(fig.axes, methods, strict=True):
        runs = tracked[tracked["method"] == method]
        lines = [line for line in ax.lines if line.get_label().startswith("α=")]
        # the guide is the bound on |Δθ| in units of α, the axis's (it read "3.16·α" there)
        (guide,) = [line for line in ax.lines if "bound" in line.get_label()]
        assert guide.get_label() == f"Sec. 2.1 bound: |Δθ| ≤ {guide.get_ydata()[0]:.3g}·α"
        assert runs["seed"].nunique() > 1
        by_lr = list(runs.groupby("lr"))
        assert [line.get_label() for line in lines] == [f"α={lr:g}" for lr, _ in by_lr]
        for line, (_, run) in zip(lines, by_lr, strict=True):
            largest = run.groupby("epoch")["max_step_ratio"].max()
            np.testing.assert_allclose(line.get_xydata(), np.column_stack(
                [largest.index, largest.to_numpy()]), rtol=1e-9)


def test_the_step_bound_figure_draws_each_beta_cell_against_its_own_bound(tmp_path,
                                                                         monkeypatch):
    """A grid over (β1, β2) too (here adam's runs at its largest α moved to β2 = 0.99): one
    line per cell, named, and each bound named with its cells, where the maximum over the
    cells was drawn against every bound; a diverged run is named in the legend."""
    import numpy as np

    def edit(folder):
        curves = pd.read_csv(folder / "curves.csv")
        adam = curves["method"] == "adam"
        top = adam & (curves["lr"] == curves.loc[adam, "lr"].max())
        curves.loc[top, "beta2"] = 0.99
        low = adam & (curves["lr"] == curves.loc[adam, "lr"].min())
        curves.loc[low & (curves["seed"] == curves["seed"].min()), "diverged"] = True
        curves.to_csv(folder / "curves.csv", index=False)

    fig, curves, best, config = _drawn(monkeypatch, tmp_path, "quick-cpu/extensions",
                                       "step_bound", edit)
    ax = fig.axes[[a.get_title() for a in fig.axes].index("adam")]
    runs = curves[(curves["method"] == "adam") & curves["max_step_ratio"].notna()
                  & (curves["epoch"] > 0)]
    cells = list(runs.groupby(["beta1", "beta2", "lr"]))
    lines = [line for line in ax.lines if line.get_label().startswith("α=")]
    assert [line.get_label() for line in lines] == [
        f"α={lr:g}, β1={b1:g}, β2={b2:g}" for (b1, b2, lr), _ in cells]
    for line, (_, run) in zip(lines, cells, strict=True):
        largest = run.groupby("epoch")["max_step_ratio"].max()
        np.testing.assert_allclose(line.get_ydata(), largest.to_numpy(), rtol=1e-9)
    guides = sorted(line.get_label() for line in ax.lines if "bound" in line.get_label())
    b1 = runs["beta1"].iloc[0]
    assert len(guides) == 2 and all(f"β1={b1:g}, β2=" in g for g in guides), guides
    (lost,) = [line for line in ax.lines if line.get_label().startswith("diverged: ")]
    assert lost.get_label() == (f"diverged: α={runs['lr'].min():g}, β1={b1:g}, "
                                f"β2={runs.loc[runs['lr'] == runs['lr'].min(), 'beta2'].iloc[0]:g}")


def test_the_step_bound_figure_of_runs_left_at_their_default_betas(tmp_path, monkeypatch):
    """A run records the hyperparameters its config writes: runs that left Adam's betas at
    their defaults have no betas. The figure draws them against the
    defaults' bound, (1 − 0.9)/√(1 − 0.999) = 3.16, where grouping by betas it had none
    for drew no line at all (here another method set its betas, so adam's are NaN)."""
    def edit(folder):
        curves = pd.read_csv(folder / "curves.csv")
        curves.loc[curves["method"] == "adam", ["beta1", "beta2"]] = float("nan")
        curves.to_csv(folder / "curves.csv", index=False)

    fig, curves, best, config = _drawn(monkeypatch, tmp_path, "quick-cpu/extensions",
                                       "step_bound", edit)
    assert curves.loc[curves["method"] == "adam", "beta1"].isna().all()
    ax = fig.axes[[a.get_title() for a in fig.axes].index("adam")]
    runs = curves[(curves["method"] == "adam") & curves["max_step_ratio"].notna()]
    lines = [line for line in ax.lines if line.get_label().startswith("α=")]
    assert [line.get_label() for line in lines] == [f"α={lr:g}" for lr in
                                                    sorted(runs["lr"].unique())]
    (guide,) = [line for line in ax.lines if "bound" in line.get_label()]
    assert guide.get_label() == "Sec. 2.1 bound: |Δθ| ≤ 3.16·α"


def test_under_the_mean_rule_the_sensitivity_figure_draws_and_stars_the_selected_point(
        tmp_path, data_dir, monkeypatch):
    """`selection.rule: mean` with a grid over betas too: at each α the figure drew the point
    of best final cost, so at the selected α it drew another point than best.csv's, and the
    selected point had no star. Now each α's point is chosen by the rule, and every method's
    star is its selected point, at its mean final cost."""
    import numpy as np
    import yaml
    from matplotlib.figure import Figure

    from adamrepro.figures import draw

    config = yaml.safe_load((Path(__file__).parent.parent / "configs" /
                             "logreg_mnist.yaml").read_text())
    config["selection"] = {**config.get("selection", {}), "rule": "mean", "extend_edges": 0}
    config["methods"] = {
        "adam": {"optimizer": "adam", "hparams": {"eps": 1.0e-8, "lr_decay": "sqrt"},
                 "grid": {"betas": [[0.0, 0.99], [0.5, 0.99], [0.99, 0.999]],
                          "lr": [0.01, 0.03, 0.1, 0.3]}},
        "sgd_nesterov": {"optimizer": "sgd_nesterov",
                         "hparams": {"momentum": 0.9, "lr_decay": "sqrt"},
                         "grid": {"lr": [0.01, 0.1, 1.0]}}}
    config["scales"]["smoke"] = {"epochs": 2, "train_size": 2048, "test_size": 1024,
                                 "extend_edges": 0}
    path = tmp_path / "logreg_mnist.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "out"
    assert main(["run", str(path), "--scale", "smoke", "--quiet", "--data-dir", str(data_dir),
                 "--out", str(out), "--workers", "1"]) == 0
    folder = out / "logreg_mnist"
    curves, best = pd.read_csv(folder / "curves.csv"), pd.read_csv(folder / "best.csv")
    last = curves.sort_values("epoch").groupby("run_id").tail(1)
    points = last.groupby(["method", "point_id", "lr"])["train_loss"].mean()
    adam = points.loc["adam"].reset_index()
    chosen = best.set_index("method").loc["adam"]
    at_lr = adam[adam["lr"] == chosen["lr"]]
    # the case this test is for: the final rule would draw another point at that α
    assert at_lr.loc[at_lr["train_loss"].idxmin(), "point_id"] != chosen["point_id"]
    saved = []
    monkeypatch.setattr(Figure, "savefig", lambda fig, *a, **k: saved.append(fig))
    draw("sensitivity", folder)
    (ax,) = saved[0].axes
    stars = [line for line in ax.lines if line.get_marker() == "*"]
    assert len(stars) == len(best), [line.get_label() for line in ax.lines]
    expected = [[row["lr"], points.loc[(row["method"], row["point_id"], row["lr"])]]
                for _, row in best.iterrows()]
    np.testing.assert_allclose(sorted(star.get_xydata()[0].tolist() for star in stars),
                               sorted(expected), rtol=1e-9)


def test_the_sensitivity_figure_draws_a_variant_in_its_own_line_style(tmp_path, monkeypatch):
    """Fig. 3's methods with dropout are dashed beside their base method's solid line, in the
    color of their optimizer, as in every other figure (the mlp's, which the test above
    draws, has no variant)."""
    from matplotlib.lines import Line2D

    from adamrepro.figures.palette import COLORS, LINESTYLES

    fig, curves, _, _ = _drawn(monkeypatch, tmp_path, "quick-cpu/cnn_cifar10", "sensitivity")
    (ax,) = fig.axes
    kinds = curves.drop_duplicates("method").set_index("method")
    named = {line.get_label(): line for line in ax.lines if line.get_label() in kinds.index}
    assert set(named) == set(kinds.index) and kinds["variant"].notna().any()
    for method, line in named.items():
        variant = kinds.loc[method, "variant"]
        variant = variant if isinstance(variant, str) else ""
        assert line.get_linestyle() == Line2D([], [], linestyle=LINESTYLES[variant]) \
            .get_linestyle(), (method, variant)
        assert line.get_color() == COLORS[kinds.loc[method, "optimizer"]], method
