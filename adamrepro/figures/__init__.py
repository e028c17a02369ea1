"""Figures by name: each draws from a results folder's tables and returns the files it
wrote: `draw(folder, tables=None, data_dir=None)`. One figure reads more, as what it shows
is not a curve: `vae_samples` pictures the selected VAE's samples and reconstructions, from
the run's saved parameters (runs/<id>.pt, loaded with weights_only) and the test images of
the data folder `data_dir` (as `run --data-dir`). A config's `plot.figures` names which to
draw (default: curves and sensitivity).

common.py holds what every figure shares (bands, legends, axes, saving with the tables'
digest); palette.py decides every color."""

from __future__ import annotations

import contextlib
import importlib
import re
import warnings
from pathlib import Path

from adamrepro.errors import note

# Each figure's module in this package, imported only when it draws: a config's load checks
# `plot.figures` against these names without importing matplotlib (a third of a second).
FIGURES: dict[str, str] = {
    "curves": "curves",
    "sensitivity": "sensitivity",
    "sfo": "sfo",
    "early_and_all": "early_and_all",
    "bias_correction": "bias_correction",
    "vae_samples": "vae_samples",
    "step_bound": "step_bound",
}


def draw(name: str, folder: Path, tables=None, data_dir: Path | None = None) -> list[Path]:
    """Draw the figure `name` (a key of FIGURES) from the results folder `folder`; `tables`
    saves reading it again (results/tables.py `read_results`)."""
    module = importlib.import_module(f"{__name__}.{FIGURES[name]}")
    return module.draw(folder, tables, data_dir=data_dir)


# matplotlib's words for a character its font cannot draw (it draws a box instead)
MISSING_GLYPH = re.compile(r"Glyph (\d+) .* missing from font\(s\) (.+)\.$")


@contextlib.contextmanager
def glyphs_noted():
    """Characters the figures' font lacks (emoji, CJK in a method's name or a title) are one
    note for the command, not a UserWarning with its source line per character per figure."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.filterwarnings("always", message=MISSING_GLYPH.pattern)  # every figure's
        yield
    missing, fonts = {}, set()
    for warning in caught:
        found = MISSING_GLYPH.match(str(warning.message))
        if found is None:  # not ours to judge: shown as it would have been
            warnings.warn_explicit(warning.message, warning.category, warning.filename,
                                   warning.lineno)
            continue
        missing[int(found[1])] = None
        fonts.add(found[2])
    if missing:
        characters = " ".join(chr(code) for code in sorted(missing))
        note(f"the figures' font ({', '.join(sorted(fonts))}) has no glyph for {characters} "
             f"(in a method's name or the title): each is drawn as a box; install a font that "
             f"has them and name it in matplotlib's font.family (matplotlibrc)")
