"""What a workload measures, and the table columns that follow from it.

A model declares its metrics (a name and whether lower is better) and which one is its
training objective. Every other part of adamrepro (the runner, the tidy tables, the
selection, config validation, the figures and the report) derives the columns from that
declaration, so no list of metric names is written twice. The columns, per pass:

    train_<objective>       the mean minibatch objective of the pass, as trained (noise such
                            as dropout included, plus the model's penalty): the paper's
                            "training cost"
    train_<objective>_full  the objective on the whole training set after the pass, in
                            evaluation mode, plus the penalty
    test_<metric>           every declared metric on the test set, without the penalty

A leaf module (no torch), so that tables can be read without building a model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Metric:
    name: str
    lower_is_better: bool = True
    percent: bool = False  # shown as a percentage (a rate in [0, 1])
    label: str = ""  # words for axes and tables; defaults to the name


@dataclass(frozen=True)
class Column:
    """One metric column of curves.csv."""

    name: str
    metric: str
    split: str  # "train" (as trained, per pass), "train_full" or "test"
    lower_is_better: bool
    percent: bool
    label: str


@dataclass(frozen=True)
class MetricSet:
    """A model's declaration: its metrics and the name of the training objective."""

    metrics: tuple[Metric, ...]
    objective: str

    def __post_init__(self) -> None:
        names = [m.name for m in self.metrics]
        if self.objective not in names or len(set(names)) != len(names):
            raise ValueError(f"objective {self.objective!r} must be one of the distinct "
                             f"metrics {names}")

    @property
    def objective_metric(self) -> Metric:
        return next(m for m in self.metrics if m.name == self.objective)

    def columns(self) -> tuple[Column, ...]:
        obj = self.objective_metric
        words = obj.label or obj.name
        return (
            Column(f"train_{obj.name}", obj.name, "train", obj.lower_is_better, obj.percent,
                   f"training {words} (mean minibatch objective of the pass)"),
            Column(f"train_{obj.name}_full", obj.name, "train_full", obj.lower_is_better,
                   obj.percent, f"training {words} (full training set)"),
            *(Column(f"test_{m.name}", m.name, "test", m.lower_is_better, m.percent,
                     f"test {m.label or m.name}") for m in self.metrics),
        )

    @property
    def train_column(self) -> str:
        return f"train_{self.objective}"

    def to_json(self) -> dict:
        return {"objective": self.objective, "metrics": [asdict(m) for m in self.metrics]}

    @classmethod
    def from_json(cls, payload: dict) -> MetricSet:
        return cls(tuple(Metric(**m) for m in payload["metrics"]), payload["objective"])


# The labelled classifiers' declaration (logistic regression, the MLP, the CNN).
CLASSIFIER = MetricSet(
    (Metric("loss", label="loss"), Metric("acc", lower_is_better=False, percent=True,
                                          label="accuracy")),
    objective="loss",
)


def metric_set(meta: dict) -> MetricSet:
    """The declaration stored in a results folder's config.json. Folders written before
    models declared their metrics hold classifiers."""
    payload = meta.get("metrics")
    return MetricSet.from_json(payload) if payload else CLASSIFIER


def column_of(meta: dict, name: str) -> Column:
    return next(c for c in metric_set(meta).columns() if c.name == name)
