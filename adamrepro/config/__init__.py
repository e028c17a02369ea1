"""Experiment configs: YAML parsed once into validated, frozen objects.

An experiment names a dataset, a model, the training settings and, per *method* (a label such
as `adam` or `adam+dropout`: just a name), an optimizer with fixed hyperparameters, a grid,
and optionally a `variant` (data such as `dropout` or `nobias`, from which line styles and
the report's claim pairs are derived) with per-method `model` overrides. Scales
(`smoke`, `quick`, `paper`) override epochs and data sizes. Unknown keys are errors; every
error names the file and the key and says what is wrong.

    schema.py   the frozen models (Experiment, TrainingSpec, MethodSpec, ...) and what
                pydantic alone judges
    checks.py   what only the registries can judge (datasets, models, optimizers against
                every grid point of every scale, figures), at load; recorded_config
    files.py    the strict YAML loader, load_experiment, the bundled configs by name

The names below are the package's API: import them from `adamrepro.config`.
"""

from adamrepro.config.checks import (
    HORIZON_TOLERANCE,
    accepts,
    check_precision,
    recorded_config,
    run_key,
    with_precision,
)
from adamrepro.config.files import (
    CONFIG_DIR,
    StrictLoader,
    bundled_config_dir,
    bundled_configs,
    bundled_names,
    load_experiment,
    parse_experiment,
    resolve_config_arg,
)
from adamrepro.config.schema import (
    DEFAULT_FIGURES,
    FOLDER_NAME,
    KERNEL_SWITCHES,
    MAX_NAME,
    MAX_RUNS,
    MAX_SEEDS,
    METRIC_PREFIXES,
    OTHER_FOLDERS,
    PRECISIONS,
    REQUIRED,
    SCALES,
    TABLE_COLUMNS,
    Experiment,
    Grid,
    MethodSpec,
    PlotSpec,
    ScaleSpec,
    SelectionSpec,
    TrainingSpec,
)

__all__ = [
    "CONFIG_DIR", "DEFAULT_FIGURES", "FOLDER_NAME", "HORIZON_TOLERANCE", "KERNEL_SWITCHES",
    "MAX_NAME", "MAX_RUNS", "MAX_SEEDS", "METRIC_PREFIXES", "OTHER_FOLDERS", "PRECISIONS",
    "REQUIRED", "SCALES", "TABLE_COLUMNS", "Experiment", "Grid", "MethodSpec", "PlotSpec",
    "ScaleSpec", "SelectionSpec", "StrictLoader", "TrainingSpec", "accepts",
    "bundled_config_dir", "bundled_configs", "bundled_names", "check_precision",
    "load_experiment", "parse_experiment", "recorded_config", "resolve_config_arg",
    "run_key", "with_precision",
]
