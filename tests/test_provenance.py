"""A result's commit: '+dirty' when the code differs from it, not when the run's own outputs
(the committed results/) or file modes (a copy to another machine) do."""

from __future__ import annotations

import subprocess
from pathlib import Path

from adamrepro.provenance import commit_of


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True,
                          text=True).stdout.strip()


def test_only_code_changes_make_a_commit_dirty(tmp_path):
    for path in ("adamrepro/core.py", "results/mlp/curves.csv", "scripts/run.sh"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("1\n")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", ".")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c")
    head = git(tmp_path, "rev-parse", "HEAD")
    assert commit_of(tmp_path) == head
    (tmp_path / "results/mlp/curves.csv").write_text("2\n")  # the run rewrote its table
    (tmp_path / "scripts/run.sh").chmod(0o755)  # a copy with other file modes
    (tmp_path / "untracked.txt").write_text("x")
    assert commit_of(tmp_path) == head
    (tmp_path / "adamrepro/core.py").write_text("2\n")
    assert commit_of(tmp_path) == head + "+dirty"


def test_outside_a_checkout_the_commit_is_unknown(tmp_path):
    assert commit_of(tmp_path) == "unknown"


def test_a_checkout_another_user_owns_still_gives_its_commit(tmp_path, monkeypatch):
    """git reads nothing in a repository another user owns ("dubious ownership"), as a lab's
    shared checkout is: every result recorded commit 'unknown'. git's own test switch
    GIT_TEST_ASSUME_DIFFERENT_OWNER makes this checkout look so, for any user."""
    (tmp_path / "adamrepro").mkdir()
    (tmp_path / "adamrepro/core.py").write_text("1\n")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", ".")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c")
    head = git(tmp_path, "rev-parse", "HEAD")
    monkeypatch.setenv("GIT_TEST_ASSUME_DIFFERENT_OWNER", "1")
    refused = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True,
                             text=True)
    assert refused.returncode != 0 and "dubious ownership" in refused.stderr
    assert commit_of(tmp_path) == head
    (tmp_path / "adamrepro/core.py").write_text("2\n")
    assert commit_of(tmp_path) == head + "+dirty"
