"""Measuring a sampler: wall time with the device synchronised, and peak tensor memory.

Timing is warm and repeated (`time_calls`): the first call of a sampler pays for lazy imports,
scheduler construction, kernel selection and allocator growth, none of which a user pays per
sample, so it is run untimed; the figure is the median of several calls with its spread. The
pipeline and `bench/` time through the same function, so their figures agree.

Peak memory is what the sampler's own tensors need at most while it runs: on CUDA the caching
allocator's peak above what was already allocated; on the CPU the running sum of the profiler's
allocation events (a process RSS would mostly measure the Python interpreter and libraries)."""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch


@contextlib.contextmanager
def stderr_silenced() -> Iterator[None]:
    """Point file descriptor 2 at /dev/null meanwhile: the profiler's C++ side logs
    "profiler_start/stop" lines straight to it (no setting turns them off), and libraries warn
    about made-up data. Python exceptions still propagate as objects."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[Any, float]:
    """(`fn()`, seconds it took), with queued device work counted."""
    synchronize(device)
    t0 = time.perf_counter()
    out = fn()
    synchronize(device)
    return out, time.perf_counter() - t0


@dataclass(frozen=True)
class Timing:
    """Seconds per call over warm repeats: `median_s` is the figure, `lo_s`/`hi_s` (the
    fastest and slowest repeat) its spread, `times` every repeat in order."""

    median_s: float
    lo_s: float
    hi_s: float
    repeats: int
    times: tuple[float, ...]

    def per(self, k: int) -> "Timing":
        """The same timing per item of a call that made `k` items (seconds per sample)."""
        return Timing(self.median_s / k, self.lo_s / k, self.hi_s / k, self.repeats,
                      tuple(t / k for t in self.times))

    def as_dict(self) -> dict[str, Any]:
        return {"median_s": self.median_s, "lo_s": self.lo_s, "hi_s": self.hi_s,
                "repeats": self.repeats, "times": list(self.times)}


def time_calls(fn: Callable[[], Any], device: torch.device, repeats: int = 5,
               warmup: int = 1) -> Timing:
    """Call `fn` `warmup` times untimed, then time `repeats` calls (each with queued device work
    counted) and return their median and range. Anything `fn` returns is dropped: draw the
    samples you keep separately, or from the same seeded generator before timing."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got {repeats} and {warmup}")
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = tuple(timed(fn, device)[1] for _ in range(repeats))
    return Timing(float(statistics.median(times)), min(times), max(times), repeats, times)


def peak_memory_bytes(fn: Callable[[], Any], device: torch.device) -> int:
    """Peak of live tensor bytes allocated while `fn` runs (above what was live before)."""
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        synchronize(device)
        return int(torch.cuda.max_memory_allocated(device) - base)
    from torch.profiler import ProfilerActivity, profile

    with stderr_silenced(), profile(activities=[ProfilerActivity.CPU],
                                            profile_memory=True) as prof:
        fn()
    events = sorted((e for e in prof.events() if e.self_cpu_memory_usage),
                    key=lambda e: e.time_range.start)
    live = peak = 0
    for e in events:
        live += e.self_cpu_memory_usage
        peak = max(peak, live)
    return int(peak)
