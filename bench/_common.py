"""Shared helpers of the benchmark scripts in bench/ (not part of the dlmap package).

The scripts put their own folder on ``sys.path`` (Python does so when a script is run), so
they import this module as ``_common``.
"""

from __future__ import annotations

import gc
import os
import re
import statistics
import time
from collections.abc import Callable

import torch

from dlmap.priors.base import CallablePrior

MIB = 2**20


def setup_torch(threads: int = 2, seed: int = 0) -> None:
    """Fix the CPU thread count (benchmarks compare runs of one machine) and seed torch."""
    torch.set_num_threads(threads)
    torch.manual_seed(seed)


def busy_cores(seconds: float = 0.5) -> float | None:
    """How many CPUs the machine keeps busy right now (from /proc/stat), or None."""

    def sample():
        with open("/proc/stat") as stat:
            fields = [int(value) for value in stat.readline().split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields), idle

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    if total1 <= total0:
        return None
    return (os.cpu_count() or 1) * (1 - (idle1 - idle0) / (total1 - total0))


def load_warning(threads: int, device="cpu") -> str | None:
    """A warning line when other processes keep the CPUs busy, else None.

    OpenMP threads that wait for each other at every barrier slow down enormously (we saw
    100x) when another process holds one of their cores: then use fewer threads.
    """
    if torch.device(device).type != "cpu":
        return None
    busy = busy_cores()
    cores = os.cpu_count() or 1
    if busy is not None and busy + threads > cores + 0.25:
        return (
            f"WARNING: other processes keep {busy:.1f} of {cores} CPUs busy, competing with "
            f"the {threads} torch threads; times are unreliable (try --threads 1)"
        )
    return None


def _proc_status_kib(key: str) -> int:
    with open("/proc/self/status") as status:
        match = re.search(rf"^{key}:\s+(\d+)\s+kB", status.read(), re.MULTILINE)
    if match is None:
        raise RuntimeError(f"/proc/self/status has no {key} line")
    return int(match.group(1))


class PeakMemory:
    """Peak memory of a block above the memory in use just before it, in bytes.

    CPU: resident set size from /proc/self/status (VmRSS before, VmHWM after) with the
    high-water mark reset by writing 5 to /proc/self/clear_refs (Linux >= 4.0).
    CUDA: torch.cuda.max_memory_allocated after reset_peak_memory_stats, minus
    memory_allocated before.

        with PeakMemory("cpu") as peak:
            work()
        peak.bytes
    """

    def __init__(self, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.baseline = 0
        self.peak = 0

    @property
    def kind(self) -> str:
        return "CUDA max_memory_allocated" if self.device.type == "cuda" else "CPU RSS (VmHWM)"

    def __enter__(self) -> PeakMemory:
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            self.baseline = torch.cuda.memory_allocated(self.device)
        else:
            self.baseline = _proc_status_kib("VmRSS") * 1024
            with open("/proc/self/clear_refs", "w") as clear_refs:
                clear_refs.write("5")
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self.peak = _proc_status_kib("VmHWM") * 1024

    @property
    def bytes(self) -> int:
        return self.peak - self.baseline


def synchronize(device: str | torch.device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: str | torch.device = "cpu") -> float:
    """Wall seconds of one call of fn (synchronising CUDA around it)."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def median_time(fn: Callable[[], object], repeats: int, device="cpu") -> float:
    """Median wall seconds over ``repeats`` calls of fn."""
    return statistics.median(timed(fn, device) for _ in range(repeats))


def ratio_line(label: str, value: float, target: str) -> str:
    """One parseable result line, e.g. ``ours peak(T=40)/peak(T=5) = 1.02 (target <= 1.25)``."""
    return f"{label} = {value:.2f} ({target})"


class TimedPrior(CallablePrior):
    """A prior that records the time of every call: the solver calls it once per iteration,
    so the time between consecutive calls is one whole iteration."""

    def __init__(self, prior: CallablePrior, device):
        super().__init__(prior, prior.info)
        self.device = device
        self.calls: list[float] = []

    def forward(self, images):
        synchronize(self.device)
        self.calls.append(time.perf_counter())
        return self.function(images)
