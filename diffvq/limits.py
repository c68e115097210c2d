"""What a recipe needs in memory, checked before any work, in bounded time.

A component is first built on PyTorch's meta device (shapes only, no memory) under a time
limit, and its parameters are counted: training keeps about four copies of them (weights,
gradients, two AdamW moments). Only then is it built for real, and one training step on a batch
of one and of three examples, counted op by op, gives the activation memory per example that
the recipe's batch sizes multiply. Sums over the available memory are refused with the recipe
key to change. The estimates err on the high side, so a recipe they pass fits.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import threading
import time
from typing import Any, Callable, Iterator

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

BUILD_SECONDS = 2.0  # a legitimate component builds on the meta device in well under a second
TRAIN_BYTES_PER_PARAM = 16  # fp32 weights, gradients, and AdamW's two moments


class TooSlow(BaseException):
    """Raised by `time_limit`; a BaseException, so that no `except Exception` in the code it
    interrupts can swallow it."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise `TooSlow` in this block after `seconds` (main thread only; elsewhere no limit).

    A signal's exception can be lost where Python cannot raise it (a weakref callback, a
    `__del__`: "Exception ignored in ..."), so the alarm repeats every 0.1 s until one lands,
    and a block that ends past its deadline raises `TooSlow` on the way out all the same.
    An alarm can also land between a context manager's setting and its `with` body (inside
    `torch.no_grad().__enter__`), where nothing restores it: torch's grad mode is restored here,
    or every training after it would fail."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise TooSlow

    deadline = time.monotonic() + seconds
    grad = torch.is_grad_enabled()
    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds, 0.1)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        torch.set_grad_enabled(grad)
    if time.monotonic() > deadline:  # it fired, and something swallowed it
        raise TooSlow


def size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1024 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.0f} B"


def available_memory(device: torch.device) -> int:
    """Bytes that can still be allocated: free GPU memory on CUDA; on the CPU the kernel's
    MemAvailable, capped by a cgroup memory limit where one is set."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    avail = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
    except OSError:
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            avail = 2**40
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        with open("/sys/fs/cgroup/memory.current") as f:
            used = int(f.read().strip())
        if limit != "max":
            avail = min(avail, int(limit) - used)
    except (OSError, ValueError):
        pass
    return avail


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters()) + sum(b.numel() for b in module.buffers())


def one_line(exc: BaseException, limit: int = 200) -> str:
    """An exception as one short line (torch's C++ errors carry stack frames)."""
    text = str(exc).strip().splitlines()
    return text[0][:limit] if text else type(exc).__name__


def too_large(build: Callable[[dict[str, Any]], nn.Module], params: dict[str, Any],
              defaults: dict[str, Any], available: int, prefix: str) -> str | None:
    """Why `build(params)` cannot be built and trained in `available` bytes, or None when it
    can: its parameters are counted on the meta device in bounded time (a constructor's
    refusal is returned as it is, before any real allocation), and when they are too many (or
    take too long to build) each numeric key set above its default is tried at its default,
    and named if that alone brings the component within the limits."""
    budget = available // TRAIN_BYTES_PER_PARAM

    def count(p: dict[str, Any], seconds: float) -> int | None:
        with time_limit(seconds), torch.device("meta"):
            return parameter_count(build(p))

    try:
        n = count(params, BUILD_SECONDS)
    except TooSlow:
        n = None
    except (ValueError, TypeError) as exc:  # the constructor's own refusal, said as it is
        return one_line(exc, 500)
    except RuntimeError as exc:
        if "overflow" not in str(exc).lower():
            return None  # an op the meta device lacks: the real build is the judge
        n = budget + 1  # a tensor larger than any index: far too large
    if n is not None and n <= budget:
        return None

    def fits(key: str) -> bool:
        try:
            m = count({**params, key: defaults[key]}, 1.0)
        except (TooSlow, Exception):  # noqa: BLE001 - not this key alone
            return False
        return m is not None and m <= budget

    suspects = sorted((k for k, v in params.items() if _number(v) and _number(defaults.get(k))
                       and v > defaults[k]), key=lambda k: -params[k] / max(defaults[k], 1))
    blamed = [k for k in suspects if fits(k)]
    keys = ", ".join(f"{prefix}.{k}" for k in blamed or suspects) or f"the sizes in {prefix}"
    if n is None:
        return (f"building it takes over {BUILD_SECONDS:.0f} s, so its sizes are far too large; "
                f"lower {keys}")
    if n == budget + 1:
        return f"its sizes make tensors larger than any memory; lower {keys}"
    return (f"{n:,} parameters need about {size(n * TRAIN_BYTES_PER_PARAM)} to train, and "
            f"{size(available)} is available; lower {keys}")


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


class _CountBytes(TorchDispatchMode):
    """Adds up the bytes of every tensor the ops in its block produce."""

    def __init__(self) -> None:
        super().__init__()
        self.bytes = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self.bytes += t.numel() * t.element_size()
        return out


def activation_bytes(module: nn.Module, batch: Callable[[int], dict[str, torch.Tensor]]) -> int:
    """Bytes produced per example by one `training_loss` forward (an upper bound of what
    autograd keeps for the backward pass), from batches of 1 and 3 after a warm-up call on a
    batch of 32 (which may initialise codebooks by k-means, and wants many vectors)."""
    from .measure import stderr_silenced  # libraries' warnings about made-up data

    counts = []
    with torch.random.fork_rng(), torch.no_grad(), stderr_silenced():
        module.train()
        module.training_loss(batch(32))
        for n in (1, 3):
            with _CountBytes() as counter:
                module.training_loss(batch(n))
            counts.append(counter.bytes)
    return max(0, (counts[1] - counts[0]) // 2)
