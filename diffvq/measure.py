"""Measuring a sampler: wall time with the device synchronised, and peak tensor memory.

Peak memory is what the sampler's own tensors need at most while it runs: on CUDA the caching
allocator's peak above what was already allocated; on the CPU the running sum of the profiler's
allocation events (a process RSS would mostly measure the Python interpreter and libraries)."""

from __future__ import annotations

import contextlib
import os
import sys
import time
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
