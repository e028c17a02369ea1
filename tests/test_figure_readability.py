"""What a reader can read off a figure, checked on figures drawn from copies of committed
tables: a linear cost axis not stretched by the first pass (and the figure saying what lies
above it), Adam's line under the others rather than over them, Fig. 2b's table in a readable
font, and legend lines long enough to show their dash patterns."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from test_figures import RESULTS, _drawn


def _means(curves: pd.DataFrame, best: pd.DataFrame, column: str, x: str = "epoch"):
    """Each selected run's mean over seeds at each x, one column per method."""
    chosen = curves[curves["point_id"].isin(best["point_id"])]
    return chosen.groupby(["method", x])[column].mean().unstack("method")


def _title(fig) -> str:
    return " ".join(fig._suptitle.get_text().split())


def test_fig_1s_linear_cost_axis_is_cut_above_the_passes_after_the_first(tmp_path,
                                                                        monkeypatch):
    """Fig. 1 left is on a linear axis (as the paper's): SGD's first pass (1.11) stretched
    it to 1.37, every method pressed into its bottom fifth. It ends just above the highest
    mean or band (±1 std over seeds) after the first pass (a band at pass 2 reached above
    a cut made from the means alone), and the line under the title names each method above
    it with its first-pass mean. The test loss, which no first pass stretches so, is left
    as it was."""
    fig, curves, best, config = _drawn(monkeypatch, tmp_path, "logreg_mnist", "curves")
    assert not config["plot"]["logy"] and config["plot"]["band"] == "std"
    ax_cost, ax_test, _ = fig.axes
    column = config["plot"]["y"]
    train = _means(curves, best, column)
    after = train[train.index > 1]
    chosen = curves[curves["point_id"].isin(best["point_id"])]
    spread = chosen.groupby(["method", "epoch"])[column].std().unstack("method").fillna(0.0)
    highest = max(after.max().max(), (train + spread)[train.index > 1].max().max())
    low, top = ax_cost.get_ylim()
    assert ax_cost.get_yscale() == "linear"
    span = highest - train.min().min()
    assert highest < top < highest + 0.1 * span  # 0.40, was 1.37
    assert low <= train.min().min()
    first = train.loc[1]
    above = first[first > top]
    assert "sgd_nesterov" in above.index
    line = _title(fig)
    assert f"training loss: axis cut at {top:.3g}, above it in the first pass: " in line
    for method, value in above.items():
        assert f"{method} ({value:.3g})" in line
    for method in first[first <= top].index:
        assert f"{method} (" not in line.split("axis cut at")[1]
    test = _means(curves, best, "test_loss").loc[1:]  # test panels start at pass 1
    assert ax_test.get_ylim()[1] > test.max().max()  # every test-loss mean shown


def test_a_log_cost_axis_is_never_cut(tmp_path, monkeypatch):
    """Fig. 1 right is on a log axis: SGD's first pass (5.5) fits on it with the rest, and
    it is left to show every mean."""
    fig, curves, best, config = _drawn(monkeypatch, tmp_path, "logreg_imdb", "curves")
    ax_cost = fig.axes[0]
    train = _means(curves, best, config["plot"]["y"])
    assert ax_cost.get_yscale() == "log"
    assert ax_cost.get_ylim()[1] > train.max().max() > 5
    assert "axis cut" not in _title(fig)


def test_fig_3s_early_panel_is_cut_as_fig_1s(tmp_path, monkeypatch):
    """Fig. 3's first passes: the first steps (up to 6.7) stretched the linear axis to 8.5,
    the curves squeezed into 1.7-2.3 for the rest. It is cut as Fig. 1's, by the same rule,
    and says so; the every-pass panel keeps its log axis."""
    fig, curves, best, config = _drawn(monkeypatch, tmp_path, "quick-cpu/cnn_cifar10",
                                       "early_and_all")
    ax_early, ax_all = fig.axes
    early = config["plot"]["max_epoch"]
    steps = pd.read_csv(RESULTS / "quick-cpu" / "cnn_cifar10" / "steps.csv")
    steps = steps[steps["epoch_fraction"] <= early]
    within = _means(steps, best, config["plot"]["y"], "epoch_fraction")
    after = within[within.index > 1].max().max()
    low, top = ax_early.get_ylim()
    assert after < top < 2.5 < within.max().max()  # 2.33, was 8.46
    assert low <= within.min().min()
    assert re.search(rf"first {early:g} passes: axis cut at {top:.3g}, above it in the "
                     rf"first pass: every method \(highest: \S+, {within.max().max():.3g}\)",
                     _title(fig))
    assert ax_all.get_yscale() == "log"
    assert ax_all.get_ylim()[1] > _means(curves, best, config["plot"]["y"]).max().max()
    # six bands over its blocks had run into one grey area: none there, and said so; the
    # every-pass panel has the spread, and its markers are the legend's keys
    assert not ax_early.collections and ax_all.collections or ax_all.containers
    assert f"no band on the first {early:g} passes' blocks" in _title(fig)
    keys = {handle.get_marker() for handle in fig.legends[0].legend_handles}
    assert "None" not in keys and keys <= {line.get_marker() for line in ax_all.lines}


def test_adams_line_lies_wider_and_beneath_every_other_curve(tmp_path, monkeypatch):
    """Fig. 1 right: adagrad_constant+dropout's curve lies on adam+dropout's, which hid it.
    Adam's (the black reference) is wider and beneath every other method's line (and above
    the bands), so that a curve on it shows, edged in black; in the legend too."""
    from adamrepro.figures.palette import COLORS

    fig, *_ = _drawn(monkeypatch, tmp_path, "logreg_imdb", "curves")
    for ax in fig.axes:
        (adam,) = [line for line in ax.lines if line.get_label().startswith("adam+dropout")]
        others = [line for line in ax.lines if line is not adam]
        assert adam.get_color() == COLORS["adam"] and others
        assert all(adam.get_zorder() < line.get_zorder() for line in others)
        assert all(adam.get_linewidth() > line.get_linewidth() for line in others)
        assert all(band.get_zorder() < adam.get_zorder() for band in ax.collections)
    handles = {text.get_text(): handle for text, handle in
               zip(fig.legends[0].get_texts(), fig.legends[0].legend_handles, strict=True)}
    widths = {label.split(" (")[0]: handle.get_linewidth() for label, handle in handles.items()}
    assert widths["adam+dropout"] == max(widths.values()) > widths["adagrad_constant+dropout"]


def test_only_adams_own_lines_are_the_reference():
    """Adam without bias correction is RMSProp with momentum, drawn in RMSProp's color: not
    the black reference, so drawn as any other method."""
    from adamrepro.figures.palette import REFERENCE_LINE, style

    assert REFERENCE_LINE.items() <= style("adam", "dropout").items()
    for optimizer, variant in (("adam", "nobias"), ("adagrad", ""), ("sgd_nesterov", "")):
        assert not {"linewidth", "zorder"} & set(style(optimizer, variant)), optimizer


def test_fig_2bs_table_is_in_a_readable_font_in_columns_its_width(tmp_path, monkeypatch):
    """Fig. 2b's table under the panels was in 6-point type, matplotlib's shrinking to fit
    five columns each a fifth of the figure: 9 points, each column as wide as its widest
    text and a margin."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig, *_ = _drawn(monkeypatch, tmp_path, "quick-cpu/mlp_sfo", "sfo")
    canvas = FigureCanvasAgg(fig)
    canvas.draw()  # a table sizes its font and columns as it is drawn
    renderer = canvas.get_renderer()
    cells = fig.axes[-1].tables[0].get_celld()
    assert {cell.get_text().get_fontsize() for cell in cells.values()} == {9}
    for column in {c for _, c in cells}:
        mine = [cell for (_, c), cell in cells.items() if c == column]
        text = max(cell.get_text().get_window_extent(renderer).width for cell in mine)
        width = mine[0].get_window_extent(renderer).width
        assert text < width < 1.5 * text, (column, text, width)


# Matplotlib's dash patterns of its named line styles, at a line width of 1 (rcParams).
NAMED = {"--": "lines.dashed_pattern", "-.": "lines.dashdot_pattern",
         ":": "lines.dotted_pattern"}


def _period(linestyle, width: float) -> float:
    """The length in points of one repeat of a line style's dash pattern (0: solid)."""
    from matplotlib import rcParams

    if isinstance(linestyle, tuple):
        return sum(linestyle[1]) * width
    return sum(rcParams[NAMED[linestyle]]) * width if linestyle in NAMED else 0.0


@pytest.mark.parametrize(("source", "figure"), [
    ("logreg_imdb", "sensitivity"), ("logreg_imdb", "curves"), ("logreg_mnist", "sensitivity"),
    ("logreg_mnist", "curves"), ("quick-cpu/mlp", "sensitivity"), ("quick-cpu/mlp_sfo", "sfo")])
def test_every_legend_line_shows_its_variants_whole_dash_pattern(tmp_path, monkeypatch,
                                                                source, figure):
    """A variant is told by its line's dash pattern, and a legend handle shorter than the
    pattern showed adagrad_constant+dropout's dash then dot-dot as a dash beside a marker.
    Each handle is long enough for its whole pattern on each side of the marker in its
    middle, the pattern taken from the palette (matplotlib scales it with the width)."""
    from adamrepro.figures.palette import LINESTYLES
    from adamrepro.results.tables import variant_of

    fig, curves, *_ = _drawn(monkeypatch, tmp_path, source, figure)
    variants = {method: variant_of(row) for method, row in
                curves.drop_duplicates("method").set_index("method").iterrows()}
    legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend())]
    checked = 0
    for legend in legends:
        length = legend.handlelength * legend.prop.get_size_in_points()
        for text, handle in zip(legend.get_texts(), legend.legend_handles, strict=True):
            method = text.get_text().split(" (")[0]
            if method not in variants:  # the memory panel's fit
                continue
            marker = handle.get_markersize() if handle.get_marker() not in ("None", "") else 0
            needed = 2 * _period(LINESTYLES[variants[method] or ""],
                                 handle.get_linewidth()) + marker
            assert length >= needed, (method, length, needed)
            checked += 1
    assert checked >= 3


def test_a_log_axis_of_less_than_a_decade_is_labelled_in_plain_numbers():
    """Fig. 1 right's cost axis read '6×10⁻¹, 4×10⁻¹, 3×10⁻¹', Fig. 3's '2.8×10⁰'; a wide
    one keeps its powers of ten below 0.001."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from adamrepro.figures.common import log_y

    def labels(low: float, high: float) -> list[str]:
        fig = Figure()
        ax = fig.subplots()
        ax.plot([1, 2], [low, high])
        log_y(ax)
        FigureCanvasAgg(fig).draw()
        # the labels drawn: matplotlib before 3.11 keeps labels for ticks beyond the view too
        low, high = ax.get_ylim()
        return [t.label1.get_text() for t in [*ax.yaxis.get_major_ticks(),
                                              *ax.yaxis.get_minor_ticks()]
                if t.label1.get_text() and low <= t.get_loc() <= high]

    narrow = labels(0.22, 0.8)
    assert {"0.3", "0.4", "0.6"} <= set(narrow) and not any("10" in t for t in narrow), narrow
    assert {"2.2", "2.5", "2.8"} <= set(labels(2.15, 2.9))
    wide = labels(1e-5, 1.0)
    assert "0.01" in wide and "1" in wide and any("10^{-5}" in t for t in wide), wide


def test_stars_selected_at_one_point_nest_and_a_star_alone_is_full_size():
    """Two methods selected at one α with about the same cost (Fig. 1 left's Adam and
    constant-α AdaGrad at α = 0.1, 0.07% apart): the second star is smaller and edged in
    white over the first, which stays a visible ring; a third elsewhere is full size."""
    from matplotlib.figure import Figure

    from adamrepro.figures.sensitivity import STAR_SIZES, _draw_stars

    fig = Figure(figsize=(8.5, 4.8))
    ax = fig.subplots()
    ax.set_xscale("log")
    ax.plot([1e-3, 1e-1, 1.0], [0.26, 0.264, 0.3])
    _draw_stars(ax, [("adam", 0.1, 0.264017, "black", 0),
                     ("adagrad_constant", 0.1, 0.264126, "orange", 1),
                     ("sgd_nesterov", 1.0, 0.3, "blue", 2)])
    stars = {line.get_label(): line for line in ax.lines if line.get_marker() == "*"}
    adam, adagrad, sgd = (stars[f"_{m} selected"]
                          for m in ("adam", "adagrad_constant", "sgd_nesterov"))
    assert adam.get_markersize() == sgd.get_markersize() == STAR_SIZES[0]
    assert adagrad.get_markersize() == STAR_SIZES[1] < STAR_SIZES[0] - 4
    assert adagrad.get_markeredgecolor() == "white" and adagrad.get_zorder() > adam.get_zorder()


@pytest.mark.parametrize("passes, ticks", [(20, [5, 10, 15, 20]), (8, list(range(1, 9))),
                                           (160, list(range(0, 161, 20)))])
def test_a_pass_axis_ticks_the_last_pass(passes, ticks):
    """Fig. 4's 20 quick passes were ticked 3, 6, ..., 18: not the last, the one the
    selection reads."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from adamrepro.figures.common import whole_passes

    fig = Figure(figsize=(5.2, 4.8))
    ax = fig.subplots()
    ax.plot([1, passes], [1.0, 0.5])
    whole_passes(ax)
    FigureCanvasAgg(fig).draw()
    low, high = ax.get_xlim()
    assert [int(t) for t in ax.get_xticks() if low <= t <= high] == ticks


def _legend_texts(fig) -> list[str]:
    legends = [ax.get_legend() for ax in fig.axes] + list(fig.legends)
    return [text.get_text() for legend in legends if legend for text in legend.get_texts()]


@pytest.mark.parametrize("figure", ["curves", "sfo", "sensitivity"])
def test_a_curve_that_lies_on_another_says_whose_it_is(tmp_path, monkeypatch, figure):
    """Fig. 2b's adam+batched trains as adam does and differs only in its seconds: its line
    lay exactly on Adam's, a legend entry with no line to be seen. Its entry names the curve
    it lies on, and no other does; moved by a hair, it is a curve of its own again."""
    import pandas as pd

    fig, curves, best, _ = _drawn(monkeypatch, tmp_path, "quick-cpu/mlp_sfo", figure)
    chosen = best.set_index("method")["point_id"]
    per_pass = {method: curves[curves["point_id"] == chosen[method]]
                .groupby("epoch")["train_loss_full"].mean() for method in ("adam", "adam+batched")}
    assert per_pass["adam"].equals(per_pass["adam+batched"])  # the committed runs agree
    said = [text for text in _legend_texts(fig) if "the same curve as" in text]
    assert len(said) == 1 and said[0].startswith("adam+batched ("), said
    assert said[0].endswith("the same curve as adam)")

    def nudged(folder):
        table = pd.read_csv(folder / "curves.csv")
        batched = table["method"] == "adam+batched"
        table.loc[batched, "train_loss_full"] *= 1 + 1e-9
        table.to_csv(folder / "curves.csv", index=False)

    fig, *_ = _drawn(monkeypatch, tmp_path / "nudged", "quick-cpu/mlp_sfo", figure, nudged)
    assert not [text for text in _legend_texts(fig) if "the same curve as" in text]


def test_an_accuracy_is_drawn_in_percent_as_the_report_gives_it(tmp_path, monkeypatch):
    """The report says 92.54%; the figure's axis said 0.925. A rate's axis is in percent,
    and a loss's is not."""
    fig, *_ = _drawn(monkeypatch, tmp_path, "quick-cpu/mlp", "curves")
    _, ax_loss, ax_accuracy = fig.axes
    assert ax_accuracy.get_ylabel() == "test accuracy"
    low, high = ax_accuracy.get_ylim()
    assert 0.5 < low < high <= 1.0  # the values are rates: only their labels change
    label = ax_accuracy.yaxis.get_major_formatter()(0.925, 0)
    assert label.endswith("%") and float(label.rstrip("%")) == 92.5
    assert not ax_loss.yaxis.get_major_formatter()(0.25, 0).endswith("%")


def test_the_sensitivity_legend_names_a_method_selected_at_its_grid_edge(tmp_path,
                                                                         monkeypatch):
    """Fig. 2a's Adam and RMSProp were selected at the smallest α tried, which curves.png's
    legend and the report say; the sensitivity figure, whose x-axis is that α, said nothing."""
    fig, _, best, _ = _drawn(monkeypatch, tmp_path, "mlp_dropout", "sensitivity")
    texts = {text.split(" (")[0]: text for text in _legend_texts(fig)}
    edges = best.set_index("method")["at_grid_edge"].fillna("")
    assert set(edges[edges == "lr"].index) == {"adam", "rmsprop"}  # the committed tables
    for method, edge in edges.items():
        assert texts[method].endswith("(grid edge: α)") == (edge == "lr"), texts[method]


def test_two_methods_that_draw_no_line_do_not_share_one():
    """Two methods whose every point diverged draw nothing on the sensitivity figure: the
    second's legend said it was "the same curve as" the first."""
    from adamrepro.figures.common import same_curve

    nothing = pd.Series([], dtype=float)
    assert same_curve(nothing, {"adagrad": nothing}) is None
    line = pd.Series([0.5, 0.25], index=[1e-3, 1e-2])
    assert same_curve(line.copy(), {"adagrad": nothing, "adam": line}) == "adam"
