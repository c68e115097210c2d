"""Mean per-token entropy: how varied a set of token sequences is, position by position.

Beside the quality columns it shows what a prior's sampler does to diversity: strong guidance
and cut-offs lower it, and so does float32 Gumbel noise, silently (Zheng et al. 2024); the same
figure for real tokens is the mark to read it against. Imports only NumPy.

The estimate is the plug-in (empirical) entropy, biased low by about (m - 1) / (2 n ln 2) bits
at a position where m distinct tokens occur among n sequences (Miller 1955), and never above
log2(n): compare sets of equal n, which `beside_real` arranges.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def position_entropy(tokens: Any, vocab_size: int) -> np.ndarray:
    """Empirical entropy in bits of the token at each position, `[L]`, of sequences
    `tokens` `[n, *grid]` (NumPy or torch integers in [0, vocab_size); the grid is flattened)."""
    t = np.asarray(tokens.cpu() if hasattr(tokens, "cpu") else tokens)
    if t.ndim < 2 or t.shape[0] == 0:
        raise ValueError(f"token entropy needs sequences [n, *grid] with n >= 1, got shape "
                         f"{t.shape}")
    t = t.reshape(t.shape[0], -1).astype(np.int64)  # [n, L]
    n, L = t.shape
    if t.min() < 0 or t.max() >= vocab_size:
        raise ValueError(f"tokens must lie in [0, {vocab_size}), got {t.min()}..{t.max()}")
    cells = t + vocab_size * np.arange(L)  # [n, L]: (position, token) as one index
    counts = np.bincount(cells.ravel(), minlength=L * vocab_size).reshape(L, vocab_size)
    p = counts / n  # [L, V]
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, -p * np.log2(p), 0.0)
    return terms.sum(axis=1)


def mean_token_entropy(tokens: Any, vocab_size: int) -> float:
    """Mean over positions of the empirical entropy (bits) of the token there, for sequences
    `tokens` `[n, *grid]`: 0 when every sequence is the same, log2(V) at most."""
    return float(position_entropy(tokens, vocab_size).mean())


def beside_real(samples: Any, real: Any, vocab_size: int, seed: int = 0
                ) -> dict[str, float | int]:
    """Mean per-token entropy of `samples` `[n, *grid]` and of real token sequences `[m,
    *grid]`, at the same n: when there are more real sequences than samples, n of them drawn
    without replacement (with `seed`), since the plug-in estimate grows with n. Returns
    `{"samples": bits, "real": bits, "n": n}`; with fewer real sequences than samples, both
    use min(n, m)."""
    s = np.asarray(samples.cpu() if hasattr(samples, "cpu") else samples)
    r = np.asarray(real.cpu() if hasattr(real, "cpu") else real)
    if s.shape[1:] != r.shape[1:]:
        raise ValueError(f"samples {s.shape} and real tokens {r.shape} differ in grid")
    n = min(len(s), len(r))
    rng = np.random.default_rng(seed)

    def pick(x: np.ndarray) -> np.ndarray:
        return x if len(x) == n else x[np.sort(rng.choice(len(x), n, replace=False))]

    return {"samples": mean_token_entropy(pick(s), vocab_size),
            "real": mean_token_entropy(pick(r), vocab_size), "n": n}
