"""The machine a bench runs on: its measured matmul peak, its peak memory, its name."""

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
        scale = 1 if platform.system() == "Darwin" else 1024  # bytes on macOS, KiB on Linux
        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale)


def children_peak_rss() -> int:
    """The largest peak resident set of this process's finished children (bytes)."""
    scale = 1 if platform.system() == "Darwin" else 1024
    return int(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * scale)
