"""How a claim is judged: its rule (rules.py) decided on an experiment's tables under both
selection rules, on the training cost, with the spread over seeds and the grid edges said
beside the verdict. The claims themselves are data, in claims.py."""

from __future__ import annotations

from adamrepro.report.claims import Claim
from adamrepro.report.rules import (
    DEPENDS,
    FAILS,
    HOLDS,
    NOT_MEASURABLE,
    NOT_RUN,
    AllOf,
    Rule,
    Verdict,
    signed_percent,
)
from adamrepro.results.measures import Measured


def judge(claim: Claim, measured: dict[str, Measured]) -> Verdict:
    """The verdict on one claim, given the experiments found in the results folder."""
    found = measured.get(claim.experiment)
    if found is None:
        return Verdict(NOT_RUN, f"no results for {claim.experiment}")
    return judge_rule(claim.rule, found, claim.experiment)


def judge_rule(rule: Rule, found: Measured, experiment: str) -> Verdict:
    """The verdict of `rule` on one experiment's tables (`experiment`: its name, for the
    numbers), under both selection rules, on the training cost."""
    found = found.on_training_cost()
    unclear = {str(m): found.ambiguous(m) for m in rule.methods if found.ambiguous(m)}
    if unclear:
        return Verdict(NOT_MEASURABLE, "; ".join(
            f"several methods in {experiment} are {name} ({', '.join(labels)}) and none is "
            f"labelled {name}: label the one the paper's claims mean {name}, or give the "
            f"others a variant" for name, labels in unclear.items()))
    missing = [str(m) for m in rule.methods if found.label(m) is None]
    if missing:
        lacking = (f"no runs of {', '.join(missing)} in {experiment} "
                   f"(it has {', '.join(sorted(found.methods))})")
        failed = _failed_part(rule, found)
        if failed is not None:  # what was run decides: the missing part cannot save it
            return Verdict(FAILS, f"{failed.numbers}; {lacking}", failed.seeds_disagree)
        return Verdict(NOT_RUN, lacking)
    verdict = _judged(rule, found)
    others = {name: _judged(rule, found.under(name)) for name in found.other_rules()}
    decided = {v.status for v in (verdict, *others.values())}
    if verdict.status in (HOLDS, FAILS) and decided <= {HOLDS, FAILS} and len(decided) > 1:
        parts = [f"selected by {name} {SELECTED_BY[name]}: {v.status}: {v.numbers}"
                 for name, v in ((found.rule, verdict), *others.items())]
        return Verdict(DEPENDS, " | ".join(parts))
    return _only_selected_caveat(_with_other_rules_at_edges(verdict, others, rule, found),
                                 found)


def _only_selected_caveat(verdict: Verdict, found: Measured) -> Verdict:
    """Results of `run --only-selected` hold one grid point a method (another run's
    selection): no other selection rule can disagree and no grid edge show, and a rule over
    the whole grid (Fig. 4's cells) sees those points alone. The verdict says so rather than
    read as firm as one on a grid search."""
    source = found.meta.get("points_selected_in")
    if not source or verdict.status not in (HOLDS, FAILS):
        return verdict
    return Verdict(verdict.status, f"{verdict.numbers}; caution: trained only the points "
                                   f"selected in {source} (run --only-selected): no grid here "
                                   f"to select from, nor edges", verdict.seeds_disagree)


def _with_other_rules_at_edges(verdict: Verdict, others: dict[str, Verdict], rule: Rule,
                               found: Measured) -> Verdict:
    """Where the selection rules agree, the verdict shows the table's rule's numbers; where
    another rule selects a method at a grid edge that the table's does not, the verdict
    rests on that point as much, so that rule's numbers, with their caution, follow."""
    if verdict.status not in (HOLDS, FAILS):
        return verdict
    own = _at_grid_edges(found, rule.selected_methods)
    parts = [verdict.numbers]
    for name, other in others.items():
        if set(_at_grid_edges(found.under(name), rule.selected_methods)) - set(own):
            parts.append(f"selected by {name} {SELECTED_BY[name]}, the same verdict: "
                         f"{other.numbers}")
    return Verdict(verdict.status, " | ".join(parts), verdict.seeds_disagree)


# The selection rules (results/select.py) in words, for a verdict that depends on them.
SELECTED_BY = {"final": "(cost at the last pass)", "mean": "(mean cost over passes)"}


def _failed_part(rule: Rule, found: Measured) -> Verdict | None:
    """A part of an AllOf whose methods were all run and that fails under every selection
    rule, or None: Fig. 3's claim failed without dropout, and read "not run yet" because
    its dropout runs were missing."""
    if not isinstance(rule, AllOf):
        return None
    for part in rule.rules:
        if all(found.label(m) is not None for m in part.methods):
            verdict = _judged(part, found)
            if verdict.status == FAILS and all(
                    _judged(part, found.under(other)).status == FAILS
                    for other in found.other_rules()):
                return verdict
    return None


def _judged(rule: Rule, found: Measured) -> Verdict:
    """The rule's verdict on the selected runs (mean over seeds), with the grid-edge caution
    and, with several seeds, whether it holds in each."""
    verdict = _with_caveat(rule(found), found, rule.selected_methods)
    if verdict.status in (HOLDS, FAILS) and len(found.seeds) > 1:
        note, disagree = seed_note(rule, found, verdict.status)
        verdict = Verdict(verdict.status, f"{verdict.numbers}; {note}", disagree)
    elif verdict.status in (HOLDS, FAILS):  # the row says itself how little it rests on
        verdict = Verdict(verdict.status, f"{verdict.numbers}; {ONE_SEED}")
    return verdict


ONE_SEED = "one seed: its spread over seeds is not measured"


def seed_note(rule: Rule, found: Measured, on_mean: str) -> tuple[str, bool]:
    """Whether the verdict is the same in every seed alone (at the grid points selected over
    all seeds), and the spread of the compared gap over seeds where the rule has one; and
    whether some seed alone contradicts `on_mean`, the verdict on the mean over seeds. A rule
    of several conditions (as fast at every checkpoint; lower, but by little) can hold on
    the mean while every seed fails a different one: the seeds then agree with each other,
    not with the mean, and that is a disagreement the summary counts."""
    seeds = found.seeds
    alone = [found.for_seed(seed) for seed in seeds]  # each seed's runs, once
    per_seed = {seed: rule(runs) for seed, runs in zip(seeds, alone, strict=True)}
    holds = [seed for seed, v in per_seed.items() if v.status == HOLDS]
    n = len(per_seed)
    if len(holds) in (0, n):
        # "fails in n/n", not "does not hold in every seed", which reads as "in some".
        note = f"holds in every seed ({n}/{n})" if holds else f"fails in every seed ({n}/{n})"
        if bool(holds) != (on_mean == HOLDS):
            note += ", unlike the mean over seeds"
    else:
        note = (f"changes between seeds: holds in {len(holds)}/{n} (seeds "
                f"{', '.join(map(str, holds))})")
    # a claim on several pairs (Fig. 3's, with and without dropout): each pair's spread
    parts = rule.rules if isinstance(rule, AllOf) else (rule,)
    for part in parts:
        note += _gap_spread(part, found, alone, len(parts) > 1)
    return f"seeds: {note}", len(holds) != (n if on_mean == HOLDS else 0)


def _gap_spread(rule: Rule, found: Measured, alone: list[Measured], name_pair: bool) -> str:
    """'; gap over seeds -10.5% to -6.8%' for a rule with a gap, from each seed's runs
    `alone` (`name_pair`: followed by the pair it compares), or ''."""
    gaps = [g for g in (rule.gap(runs) for runs in alone) if g is not None]
    if len(gaps) < 2:
        return ""
    pair = (f" ({' vs '.join(found.called(m) for m in rule.methods)})"
            if name_pair and len(rule.methods) == 2 else "")
    if rule.gap_is_relative:
        return (f"; gap over seeds {signed_percent(min(gaps), rule.thresholds)} to "
                f"{signed_percent(max(gaps), rule.thresholds)}{pair}")
    # a difference in the column's own units (accuracy: a rate)
    return f"; difference over seeds {min(gaps):+.4g} to {max(gaps):+.4g}{pair}"


def _with_caveat(verdict: Verdict, found: Measured, methods) -> Verdict:
    if verdict.status in (HOLDS, FAILS):
        caveat = grid_edge_caveat(found, methods)
        if caveat:
            return Verdict(verdict.status, f"{verdict.numbers}; {caveat}")
    return verdict


def grid_edge_caveat(found: Measured, methods) -> str:
    """A verdict that rests on a grid point selected at the edge of its grid is weaker: a
    wider grid might select another point. Name each such method and value."""
    edges = _at_grid_edges(found, methods)
    return f"caution: selected at a grid edge: {'; '.join(edges)}" if edges else ""


def _at_grid_edges(found: Measured, methods) -> list[str]:
    """Each of `methods` selected at an edge of its grid, with the values at the edge."""
    parts = []
    for method in methods:
        edges = found.grid_edges(method)
        if not edges:
            continue
        label = found.label(method)
        row = found.best[found.best["method"] == label].iloc[0]
        values = ", ".join(f"{name}={_short(row.get(name))}" for name in edges)
        parts.append(f"{label} ({values})")
    return parts


def _short(value) -> str:
    return f"{value:g}" if isinstance(value, (int, float)) else str(value)
