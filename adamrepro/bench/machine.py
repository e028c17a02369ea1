"""The machine a bench runs on: its measured matmul peak, its peak memory, its name, and
how much of it other processes took while a phase was timed."""

from __future__ import annotations

import math
import os
import platform
import resource
import time
from pathlib import Path

import torch

from adamrepro.provenance import cpu_name
from adamrepro.wording import count


def measure_peak_flops(device: torch.device, dtype: torch.dtype, repeats: int = 5) -> dict:
    """Best-of-`repeats` speed of one large square matmul in `dtype`: the ceiling that
    'fraction of peak' divides by (measured, not the datasheet's)."""
    size = 8192 if device.type == "cuda" else 2048
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    best = math.inf
    for _ in range(repeats + 1):  # the first is a warm-up
        synchronize(device)
        start = time.perf_counter()
        torch.mm(a, b)
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return {"flops_per_s": 2 * size**3 / best, "matmul": f"{size}x{size} {dtype}".replace(
        "torch.", "")}


def hardware_name(device: torch.device) -> str:
    """'NVIDIA H100 80GB HBM3' or 'AMD EPYC (family 26 model 2, AVX512), 2 cores, 2 threads
    in use'."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return (f"{cpu_name()}, {count(os.cpu_count() or 1, 'core')}, "
            f"{count(torch.get_num_threads(), 'thread')} in use")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PeakMemory:
    """Peak memory of one phase: CUDA's max_memory_allocated on a GPU; on a CPU the process's
    peak resident set (getrusage), reset before the phase where Linux allows it."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.kind = "cuda_max_memory_allocated" if device.type == "cuda" else "peak_rss"

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        try:  # "5" resets the peak RSS (Linux >= 4.0); elsewhere the peak is since start
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            self.kind = "peak_rss_since_start"

    def read(self) -> int:
        """The peak since `reset` (bytes); right after `reset`, the level it starts from."""
        if self.device.type == "cuda":
            return int(torch.cuda.max_memory_allocated(self.device))
        return own_peak_rss()


def own_peak_rss() -> int:
    """This process's peak resident set (bytes)."""
    return _peak_rss(resource.RUSAGE_SELF)


def children_peak_rss() -> int:
    """The largest peak resident set of this process's finished children (bytes)."""
    return _peak_rss(resource.RUSAGE_CHILDREN)


def _peak_rss(who: int) -> int:
    scale = 1 if platform.system() == "Darwin" else 1024  # bytes on macOS, KiB on Linux
    return int(resource.getrusage(who).ru_maxrss * scale)


def cpu_seconds() -> tuple[float, float] | None:
    """(the seconds of CPU time this machine's cores have been busy, this process's and its
    finished children's): the difference over a phase, less ours, is what other processes
    took, and `steal` (time the hypervisor gave this VM's cores to another) counts as
    theirs. None where /proc/stat cannot be read or parsed (not Linux). A phase's worker
    processes count as ours once reaped, which `worker_pool` does before the phase ends."""
    try:
        with open("/proc/stat") as stat:
            fields = stat.readline().split()
        # cpu user nice system idle iowait irq softirq steal (guest time is within user's);
        # a kernel or an emulated /proc may stop before steal, or before iowait: 0 then
        numbers = [int(field) for field in fields[1:9]]
    except (OSError, ValueError):
        return None
    if fields[:1] != ["cpu"] or len(numbers) < 4:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = numbers + [0] * (8 - len(numbers))
    busy = (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    ours = os.times()
    return busy, ours.user + ours.system + ours.children_user + ours.children_system


def other_cores(before: tuple[float, float] | None, after: tuple[float, float] | None,
                seconds: float) -> float:
    """How many cores other processes took on average over `seconds` between two
    `cpu_seconds`; NaN where they could not be read. Never below 0: /proc/stat counts in
    ticks (10 ms), os.times more finely."""
    if before is None or after is None or seconds <= 0:
        return math.nan
    return max(0.0, ((after[0] - before[0]) - (after[1] - before[1])) / seconds)
