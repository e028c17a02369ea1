"""Reading `adamrepro run --dry-run`'s table, for the tests that check it against what a
command trained or what another command says."""

from __future__ import annotations


def dry_run_total(text: str) -> dict[str, int]:
    """The numbers of `run --dry-run`'s total row."""
    total = next(line.split() for line in text.splitlines() if line.split()[:1] == ["total"])
    runs, finished, left, groups, run_passes = map(int, total[1:])
    return {"runs": runs, "finished": finished, "left": left, "groups": groups,
            "run_passes": run_passes}
