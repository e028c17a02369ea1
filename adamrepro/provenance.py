"""Where a result came from: commit, torch version, device, date, command line."""

from __future__ import annotations

import datetime as dt
import platform
import subprocess
import sys
from contextvars import ContextVar
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where it is used: `adamrepro --help` needs none
    import torch

# The arguments of the running `adamrepro` command (set by the CLI's entry point).
COMMAND_ARGS: ContextVar[list[str] | None] = ContextVar("COMMAND_ARGS", default=None)


@cache
def git_commit() -> str:
    """The commit of the adamrepro checkout ('+dirty' as `commit_of` says)."""
    return commit_of(Path(__file__).resolve().parent.parent)


def commit_of(root: Path) -> str:
    """The commit checked out at `root`, '+dirty' if any tracked file outside results/ has
    uncommitted changes (the README and tests too, not only code; untracked files and file
    modes do not count); 'unknown' outside a git checkout."""
    # A checkout another user owns (a lab's shared one) is "dubious ownership" to git, which
    # then reads nothing: every result recorded commit 'unknown'. Its code is running here
    # already, so trusting the checkout's git config as well risks nothing more.
    git = ["git", "-c", f"safe.directory={root}"]
    try:
        commit = subprocess.run([*git, "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        # Code, not outputs: the committed results/ are rewritten by the very runs being
        # recorded, and a copy of the tree to another machine may lose executable bits.
        # --no-optional-locks: status reads, and writes no refreshed index (its index.lock
        # stopped the user's own git commands meanwhile; a write a file-size limit cut off
        # left the lock behind, and every git command after it failed).
        dirty = subprocess.run([*git, "--no-optional-locks", "-c", "core.fileMode=false",
                                "status", "--porcelain",
                                "--untracked-files=no", "--", ".", ":(exclude)results"],
                               cwd=root, capture_output=True, text=True, timeout=10).stdout
        return commit + ("+dirty" if dirty.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@cache
def cpu_name() -> str:
    """The CPU as far as its rounding goes: 'AMD EPYC (family 26 model 2, AVX512)'.

    Float32 curves are bitwise the same only on the same kind of CPU: the same code trained
    logreg_mnist's paper-scale runs on 2026-12-01 (an Intel Xeon, by the bench files of that
    evening) and 2026-12-02, and again on 2026-12-03 (an AMD EPYC), and the curves differed
    by up to 1e-6 relative from the first evaluation on, while the runs' device said only
    'x86_64'. The model name, family and model (from /proc/cpuinfo, Linux) tell such hosts
    apart, two of one name too; torch's CPU capability names the vector kernels it
    dispatches to. Elsewhere the architecture stands in for the model name."""
    import torch

    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
            if not line.strip():  # the first processor's block is enough
                break
    except OSError:
        pass
    name = fields.get("model name") or platform.processor() or platform.machine()
    details = [f"family {fields['cpu family']} model {fields['model']}"
               if "cpu family" in fields and "model" in fields else platform.machine(),
               torch.backends.cpu.get_cpu_capability()]
    return f"{name} ({', '.join(d for d in details if d)})"


def device_name(device: torch.device, workers: int = 1) -> str:
    """The GPU's name; on a CPU its name (`cpu_name`) and how the groups trained: this
    process's threads, or `workers` worker processes of one thread each
    (runner/executors.py)."""
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = cpu_name()
    if workers > 1:
        return f"cpu: {cpu} x{workers} worker processes of 1 thread"
    return f"cpu: {cpu} x{torch.get_num_threads()} threads"


def provenance(device: torch.device, workers: int = 1) -> dict:
    import torch

    return {
        "commit": git_commit(),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "device": device_name(device, workers),
        "hostname": platform.node(),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["adamrepro", *(COMMAND_ARGS.get() or sys.argv[1:])]),
    }
