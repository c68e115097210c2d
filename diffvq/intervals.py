"""95 % intervals for every figure the protocol reports, so that a gap between two priors can be
read against the noise of measuring it.

Two kinds: a bootstrap over sampling seeds and the samples within each seed's set (for judge
distances, accuracy, precision/recall, distinct share, signal metrics), and a normal interval
from an estimator's standard error (Monte-Carlo NLL bounds, means over seeds). Everything is
deterministic: the bootstrap draws from a generator seeded by the caller.

The real reference (the test split's features) is held fixed: it is shared by every prior it
judges, so its own noise cancels between them, and it is many times larger than a sample set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Literal, Sequence

import numpy as np
from scipy import stats as sps

from .stats import KernelDistance, frechet_distance, mean_cov

LEVEL = 0.95
RESAMPLES = 200  # FD of 3 sets of 250 against a fixed reference: ~2 s (docs/protocol-distance.md)

Method = Literal["centred", "percentile"]


@dataclass(frozen=True)
class Interval:
    """A figure and its interval at `level`: `lo <= value <= hi` for the methods here."""
    value: float
    lo: float
    hi: float
    level: float = LEVEL

    def to_dict(self) -> dict[str, float | None]:
        """The form metrics.json holds: {"value", "lo", "hi", "level"}; an unbounded side
        (one seed: no spread to estimate) is null, which JSON can hold."""
        bound = (lambda b: b if math.isfinite(b) else None)
        return {"value": self.value, "lo": bound(self.lo), "hi": bound(self.hi),
                "level": self.level}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Interval:
        lo, hi = d.get("lo"), d.get("hi")
        return cls(float(d["value"]), -math.inf if lo is None else float(lo),
                   math.inf if hi is None else float(hi), float(d.get("level", LEVEL)))

    def clipped(self, lo: float, hi: float) -> Interval:
        """The interval kept within what the figure can be (a share: [0, 1]); a centred
        bootstrap interval can step outside."""
        return Interval(self.value, max(self.lo, lo), min(self.hi, hi), self.level)

    def contains(self, x: float) -> bool:
        return self.lo <= x <= self.hi

    def scaled(self, factor: float) -> Interval:
        """The same interval in other units (factor > 0): seconds to ms, a share to a percentage."""
        return Interval(self.value * factor, self.lo * factor, self.hi * factor, self.level)

    def format(self, spec: str = ".2f") -> str:
        return f"{self.value:{spec}} [{self.lo:{spec}}, {self.hi:{spec}}]"


def _from_replicates(value: float, reps: np.ndarray, level: float, method: Method) -> Interval:
    """Percentile interval of bootstrap replicates, or the same spread centred on `value`.

    "centred" moves the replicates' median onto the estimate: a set statistic such as FD or KID
    is biased upwards by the repeated rows a resample holds (FD by about a third more 1/n bias,
    KID by the k(x, x) of repeated pairs), which shifts the plain percentile interval off the
    figure it belongs to; the spread is still the estimator's."""
    reps = reps[np.isfinite(reps)]
    if len(reps) == 0:
        return Interval(value, math.nan, math.nan, level)
    a = (1 - level) / 2
    lo, mid, hi = np.quantile(reps, [a, 0.5, 1 - a])
    if method == "centred":
        lo, hi = value - (mid - lo), value + (hi - mid)
    return Interval(float(value), float(min(lo, value)), float(max(hi, value)), level)


def _draws(sizes: Sequence[int], resamples: int, seed: int,
           within: bool) -> list[list[tuple[int, np.ndarray]]]:
    """Per replicate, the drawn sets as (set number, row indices): seeds with replacement, then
    (`within`) each drawn set's rows with replacement."""
    rng = np.random.default_rng(seed)
    k, out = len(sizes), []
    for _ in range(resamples):
        picked = rng.integers(0, k, k)
        out.append([(int(i), rng.integers(0, sizes[i], sizes[i]) if within
                     else np.arange(sizes[i])) for i in picked])
    return out


def bootstrap(statistic: Callable[[list[Any]], float], sets: Sequence[Any], *,
              resamples: int = RESAMPLES, level: float = LEVEL, seed: int = 0,
              within: bool = True, method: Method = "centred") -> Interval:
    """Interval of `statistic(sets)` over sampling seeds and the samples of each seed.

    `sets`: one indexable per seed (a `[n, ...]` array or tensor; rows are samples). Each
    replicate draws the seeds with replacement, then (`within`) each drawn set's rows with
    replacement, and evaluates `statistic` on the list of resampled sets: a two-stage bootstrap
    that counts both the spread between seeds and the finiteness of each set. `within=False`
    resamples seeds only, for statistics that repeated rows distort (k-NN precision/recall: a
    repeat is its own nearest neighbour)."""
    if not len(sets):
        raise ValueError("bootstrap needs at least one set")
    value = float(statistic(list(sets)))
    reps = np.array([statistic([sets[i][rows] for i, rows in draw])
                     for draw in _draws([len(s) for s in sets], resamples, seed, within)])
    return _from_replicates(value, reps, level, method)


def se_interval(value: float, se: float, level: float = LEVEL) -> Interval:
    """value ± z·se: for an estimator with a known standard error (a Monte-Carlo NLL bound:
    the standard deviation of its per-draw values over sqrt(draws))."""
    z = float(sps.norm.ppf(0.5 + level / 2))
    return Interval(float(value), float(value - z * se), float(value + z * se), level)


def mean_interval(values: Sequence[float], level: float = LEVEL) -> Interval:
    """Student-t interval of the mean of independent values (one figure per seed); a single
    value has no spread to estimate, so its interval is unbounded."""
    v = np.asarray(values, dtype=np.float64)
    m = float(v.mean())
    if len(v) < 2:
        return Interval(m, -math.inf, math.inf, level)
    half = float(sps.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))
    return Interval(m, m - half, m + half, level)


def fd_interval(sets: Sequence[np.ndarray], mu: np.ndarray, cov: np.ndarray, **kw: Any) -> Interval:
    """Judge FD of each `[n, F]` feature set against the reference Gaussian `(mu, cov)`, averaged
    over sets (the table's figure), with its bootstrap interval."""
    return bootstrap(lambda s: float(np.mean([frechet_distance(*mean_cov(x), mu, cov)
                                              for x in s])), sets, **kw)


def kid_interval(sets: Sequence[np.ndarray], reference: KernelDistance, *,
                 resamples: int = RESAMPLES, level: float = LEVEL, seed: int = 0,
                 method: Method = "centred") -> Interval:
    """KID of each `[n, F]` feature set against `reference`, averaged over sets, with the same
    two-stage bootstrap as `bootstrap`; kernels are computed once and replicates look rows up
    (200 replicates of 3 sets of 250 take well under a second)."""
    parts = [reference.parts(x) for x in sets]
    value = float(np.mean([reference.from_parts(*p) for p in parts]))
    reps = np.array([np.mean([reference.from_parts(*parts[i], rows=rows) for i, rows in draw])
                     for draw in _draws([len(x) for x in sets], resamples, seed, True)])
    return _from_replicates(value, reps, level, method)


def share_interval(flags: Sequence[np.ndarray], **kw: Any) -> Interval:
    """A share (accuracy: the judge agrees with the asked class; a near-copy share) from one
    `[n]` boolean array per seed: the mean of the per-set shares, with its bootstrap interval."""
    return bootstrap(lambda s: float(np.mean([np.mean(f) for f in s])),
                     [np.asarray(f, dtype=np.float64) for f in flags], **kw).clipped(0.0, 1.0)


def difference(a: Interval, b: Interval, relative: bool = False) -> Interval:
    """Interval of b − a (or (b − a)/a with `relative`) from the two figures' own intervals, for
    independent estimates (different priors' samples against one fixed reference).

    MOVER (Zou & Donner 2008): each side of the difference combines the matching half-widths in
    quadrature, keeping the asymmetry of each interval. Relative: divided by a's value, so the
    band ±tolerance·a is fixed by the reference's estimate."""
    d = b.value - a.value
    lo = d - math.hypot(b.value - b.lo, a.hi - a.value)
    hi = d + math.hypot(b.hi - b.value, a.value - a.lo)
    out = Interval(d, lo, hi, min(a.level, b.level))
    if relative:
        if not a.value > 0:
            raise ValueError(f"a relative difference needs a positive reference, got {a.value}")
        out = out.scaled(1 / a.value)
    return out


def ratio_of_medians(numerator: Sequence[float], denominator: Sequence[float], *,
                     resamples: int = 2000, level: float = LEVEL, seed: int = 0) -> Interval:
    """median(numerator) / median(denominator) of repeated timings (a speed-up: the reference's
    seconds per sample over this prior's), with a percentile bootstrap over the repeats of each.
    One repeat on either side gives the bare ratio with an unbounded interval."""
    x = np.asarray(numerator, dtype=np.float64)
    y = np.asarray(denominator, dtype=np.float64)
    value = float(np.median(x) / np.median(y))
    if len(x) < 2 or len(y) < 2:
        return Interval(value, 0.0, math.inf, level)
    rng = np.random.default_rng(seed)
    reps = (np.median(x[rng.integers(0, len(x), (resamples, len(x)))], axis=1)
            / np.median(y[rng.integers(0, len(y), (resamples, len(y)))], axis=1))
    return _from_replicates(value, reps, level, "percentile")
