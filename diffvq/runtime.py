"""Where and in what precision work runs: CPU by default, CUDA when present, bf16 where the
hardware does it fast (on CPUs with AVX512-BF16 or AMX a bf16 matmul runs ~3-4x the fp32 one)."""

from __future__ import annotations

import contextlib
import os
import random
from functools import lru_cache
from typing import Iterator, Literal

import numpy as np
import torch

DeviceName = Literal["auto", "cpu", "cuda"]
Precision = Literal["auto", "fp32", "bf16"]


def select_device(name: DeviceName = "auto") -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        from .errors import UserError
        raise UserError("device: 'cuda' was asked for but no CUDA device is available")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@lru_cache(maxsize=None)
def cpu_has_fast_bf16() -> bool:
    """True when the CPU has native bf16 matrix instructions (Linux /proc/cpuinfo flags)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: Precision, device: torch.device) -> Literal["fp32", "bf16"]:
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_fast_bf16() else "fp32"


def autocast(device: torch.device, precision: Literal["fp32", "bf16"]) -> contextlib.AbstractContextManager:
    """Mixed precision for forward passes (weights and optimizer state stay fp32)."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextlib.contextmanager
def no_autocast(device_type: str) -> Iterator[None]:
    """Run a block in fp32 even inside an autocast region (codebook distances, EMA stats)."""
    with torch.autocast(device_type, enabled=False):
        yield


_TORCH_DEFAULT_THREADS = torch.get_num_threads()  # physical cores, or $OMP_NUM_THREADS


def default_threads() -> int:
    """Intra-op threads when a recipe does not say: `$DIFFVQ_THREADS`, else `$OMP_NUM_THREADS`
    as torch read it, else half the physical cores (at least 1).

    Why half: on this project's 2-core machines (`python bench/threads.py`) two threads train
    the quickstart tokenizer 1.55x faster than one on an idle machine, but 1.9x slower with two
    busy processes beside them and 9.5x slower with eight (threads wait for each other while
    other processes hold the cores); one thread is never far from the best. A fixed number,
    not one that follows the load, because results depend on the thread count (reductions
    split differently): the same recipe must give the same tokens on the same machine."""
    env = os.environ.get("DIFFVQ_THREADS", "").strip()
    if env:
        try:
            n = int(env)
        except ValueError:
            n = 0
        if n < 1:
            from .errors import UserError
            raise UserError(f"DIFFVQ_THREADS={env!r}: a positive whole number of threads, please")
        return n
    if os.environ.get("OMP_NUM_THREADS", "").strip():
        return _TORCH_DEFAULT_THREADS
    return max(1, _TORCH_DEFAULT_THREADS // 2)


def set_threads(n: int) -> None:
    """Use `n` intra-op threads from now on (more threads than free cores make each step
    wait for the slowest: see bench/threads.py)."""
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
