"""Where a diffusion prior's validation loss falls below the autoregressive one's, as training
compute grows, on one unique-data fraction (Prabhudesai et al. 2025; Ni et al. 2025).

A study trains each prior many times (data fraction x model size x budget x seed); every run
("cell") leaves a validation curve, read here as `CurvePoint`s. Two readings turn one prior's
points into a loss per training compute C:

- frontier: per seed, the best validation loss of any point (any size, budget, step) that spent
  at most C training FLOPs: early stopping allowed, the compute-optimal envelope;
- equal budget: per seed, at each budget, the best over sizes of the final points of the runs
  trained for exactly that budget: no early stopping.

The gap is reference - challenger (bits/token; positive: the challenger, a diffusion prior, has
the lower loss), with an interval from a bootstrap over each prior's seeds (independently) in
which every point is also perturbed by its standard error. The challenger is significantly below
at C where the interval's lower end is above 0. `crossover` states one of four outcomes:
"crossover", "ahead throughout", "none within budget" or "cannot tell".

Pure functions of numbers (numpy only); the study pipeline calls them and writes `to_dict()`
into metrics.json. Imports the project's interval type and nothing above it.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Literal, Sequence

import numpy as np

from ..intervals import LEVEL, Interval

Family = Literal["exact", "bound"]
Reading = Literal["frontier", "equal-budget"]
Status = Literal["crossover", "ahead throughout", "none within budget", "cannot tell"]

GRID_POINTS = 40  # default grid: log-spaced over the compute both priors cover
BUDGET_RTOL = 1e-3  # two budgets this close (relative) are the same budget
OVERFIT_SE = 2.0  # final above best by more than this many standard errors: overfits

READINGS: dict[str, str] = {
    "frontier": "frontier (best validation loss at or below this compute)",
    "equal-budget": "equal budget (each trained for exactly this budget)",
}
FAMILY_WORDS = {"exact": "exact NLL", "bound": "bound (ELBO)"}


@dataclass(frozen=True)
class CurvePoint:
    """One point of one cell's validation curve."""
    prior: str  # prior key in the recipe, e.g. "gpt"
    family: str  # "exact" (autoregressive) or "bound" (diffusion): how `loss` is to be read
    fraction: float  # unique-data fraction of the training split
    size: str  # model-size name
    seed: int
    budget: float  # the cell's training budget in FLOPs (the run's lr schedule ends there)
    flops: float  # training FLOPs spent at this point (> 0)
    epochs: float  # passes over the unique training sequences so far
    loss: float  # validation bits/token
    se: float  # its standard error (>= 0)
    final: bool  # the cell's last point: trained for exactly its budget

    def __post_init__(self) -> None:
        if self.family not in FAMILY_WORDS:
            raise ValueError(f"CurvePoint.family must be 'exact' or 'bound', got {self.family!r}")
        if not (self.flops > 0 and math.isfinite(self.flops)):
            raise ValueError(f"CurvePoint.flops must be finite and > 0, got {self.flops!r}")
        if not (self.se >= 0 and math.isfinite(self.se)):
            raise ValueError(f"CurvePoint.se must be finite and >= 0, got {self.se!r}")
        if not math.isfinite(self.loss):
            raise ValueError(f"CurvePoint.loss must be finite, got {self.loss!r}")

    @property
    def cell(self) -> tuple[str, float, str, int, float]:
        """The run this point belongs to."""
        return (self.prior, self.fraction, self.size, self.seed, self.budget)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CurvePoint:
        return cls(str(d["prior"]), str(d["family"]), float(d["fraction"]), str(d["size"]),
                   int(d["seed"]), float(d["budget"]), float(d["flops"]), float(d["epochs"]),
                   float(d["loss"]), float(d["se"]), bool(d["final"]))


# -- one prior's points as arrays ---------------------------------------------------------------
@dataclass
class _Seed:
    """One seed's points of one prior at one fraction, sorted by FLOPs."""
    flops: np.ndarray  # [P]
    loss: np.ndarray  # [P]
    se: np.ndarray  # [P]
    epochs: np.ndarray  # [P]
    budget: np.ndarray  # [P]
    final: np.ndarray  # [P] bool
    cell: np.ndarray  # [P] index of the point's run among this seed's runs
    n_cells: int


@dataclass
class _Prior:
    name: str
    family: str
    fraction: float
    seeds: list[int]
    tables: list[_Seed]


def _one(points: Sequence[CurvePoint], what: str) -> _Prior:
    """The points of one prior at one fraction, per seed; anything else is a caller's error."""
    if not points:
        raise ValueError(f"{what}: no curve points")
    keys = {(p.prior, p.fraction) for p in points}
    if len(keys) != 1:
        raise ValueError(f"{what} takes one prior at one data fraction, got "
                         f"{sorted(keys)}")
    families = {p.family for p in points}
    if len(families) != 1:
        raise ValueError(f"{what}: prior {points[0].prior!r} has points of both families")
    seeds = sorted({p.seed for p in points})
    tables = []
    for s in seeds:
        pts = sorted((p for p in points if p.seed == s), key=lambda p: (p.flops, p.budget))
        cells = {c: i for i, c in enumerate(dict.fromkeys(p.cell for p in pts))}
        tables.append(_Seed(
            np.array([p.flops for p in pts], np.float64), np.array([p.loss for p in pts]),
            np.array([p.se for p in pts], np.float64), np.array([p.epochs for p in pts]),
            np.array([p.budget for p in pts], np.float64), np.array([p.final for p in pts]),
            np.array([cells[p.cell] for p in pts]), len(cells)))
    return _Prior(points[0].prior, points[0].family, points[0].fraction, seeds, tables)


def _same_budget(budgets: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """[P, G]: point p's budget is grid budget g."""
    return np.isclose(budgets[:, None], grid[None, :], rtol=BUDGET_RTOL, atol=0.0)


def _read(t: _Seed, loss: np.ndarray, grid: np.ndarray, reading: str) -> np.ndarray:
    """Loss per grid compute of one seed under `reading`, for a batch of loss vectors:
    `loss` [B, P] -> [B, G], NaN where no point counts."""
    if reading == "frontier":
        idx = np.searchsorted(t.flops, grid, side="right") - 1  # [G] last point with flops <= C
        best = np.minimum.accumulate(loss, axis=1)  # [B, P] running min
        out = best[:, np.maximum(idx, 0)]
        out[:, idx < 0] = np.nan
        return out
    mask = _same_budget(t.budget, grid) & t.final[:, None]  # [P, G]
    vals = np.where(mask[None], loss[:, :, None], np.inf).min(axis=1)  # [B, G]
    vals[np.isinf(vals)] = np.nan
    return vals


def _argbest(t: _Seed, grid: np.ndarray, reading: str) -> np.ndarray:
    """[G] index of the point that gives `_read` its value (-1: none)."""
    if reading == "frontier":
        run = np.zeros(len(t.loss), int)
        for i in range(1, len(t.loss)):
            run[i] = i if t.loss[i] < t.loss[run[i - 1]] else run[i - 1]
        idx = np.searchsorted(t.flops, grid, side="right") - 1
        return np.where(idx >= 0, run[np.maximum(idx, 0)], -1)
    mask = _same_budget(t.budget, grid) & t.final[:, None]
    vals = np.where(mask, t.loss[:, None], np.inf)
    return np.where(mask.any(axis=0), vals.argmin(axis=0), -1)


def _per_seed(prior: _Prior, grid: np.ndarray, reading: str) -> np.ndarray:
    """[S, G] the reading of each seed, unperturbed."""
    return np.stack([_read(t, t.loss[None], grid, reading)[0] for t in prior.tables])


def _epochs(prior: _Prior, grid: np.ndarray, reading: str) -> np.ndarray:
    """[G] median over seeds of the epochs of the point that gives each seed's reading."""
    rows = []
    for t in prior.tables:
        i = _argbest(t, grid, reading)
        rows.append(np.where(i >= 0, t.epochs[np.maximum(i, 0)], np.nan))
    return _nan(np.nanmedian, np.stack(rows), axis=0)


def _nan(fn, *args, **kw):
    """numpy's nan-reductions without the all-NaN warning (the result is NaN there, as wanted)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return fn(*args, **kw)


def frontier(points: Sequence[CurvePoint], grid: Sequence[float] | np.ndarray) -> np.ndarray:
    """[n_seeds, len(grid)] for one (prior, fraction): per seed (sorted by seed), the lowest
    loss among all its points (any size, budget or step) with `flops <= C`, for each C in
    `grid`; NaN where the seed has no point yet. Non-increasing in C."""
    prior = _one(points, "frontier")
    return _per_seed(prior, np.asarray(grid, np.float64), "frontier")


def budgets_of(points: Iterable[CurvePoint]) -> np.ndarray:
    """The distinct training budgets (FLOPs) of the runs' final points, ascending."""
    out: list[float] = []
    for b in sorted(p.budget for p in points if p.final):
        if not out or not math.isclose(b, out[-1], rel_tol=BUDGET_RTOL):
            out.append(b)
    return np.array(out, np.float64)


def equal_budget(points: Sequence[CurvePoint],
                 budgets: Sequence[float] | np.ndarray | None = None) -> np.ndarray:
    """[n_seeds, len(budgets)] for one (prior, fraction): per seed (sorted by seed), at each
    budget, the lowest final-point loss over sizes among the runs trained for exactly that
    budget (no early stopping); NaN where the seed has no such run. `budgets` defaults to
    `budgets_of(points)`."""
    prior = _one(points, "equal_budget")
    grid = budgets_of(points) if budgets is None else np.asarray(budgets, np.float64)
    return _per_seed(prior, grid, "equal-budget")


def default_grid(reference: Sequence[CurvePoint], challenger: Sequence[CurvePoint],
                 reading: str = "frontier", n: int = GRID_POINTS) -> np.ndarray:
    """Frontier: `n` log-spaced computes over the range every seed of both priors covers (from
    the latest first point to the earliest last point). Equal budget: the budgets both priors
    have final points for."""
    a, b = _one(reference, "crossover reference"), _one(challenger, "crossover challenger")
    if reading == "equal-budget":
        ours = budgets_of(challenger)
        grid = [x for x in budgets_of(reference)
                if np.isclose(ours, x, rtol=BUDGET_RTOL, atol=0).any()]
        if not grid:
            raise ValueError(f"equal budget: {a.name} and {b.name} share no training budget at "
                             f"fraction {a.fraction:g}")
        return np.array(grid, np.float64)
    lo = max(t.flops[0] for p in (a, b) for t in p.tables)
    hi = min(t.flops[-1] for p in (a, b) for t in p.tables)
    if not lo < hi:
        raise ValueError(f"{a.name} and {b.name} cover no common range of training FLOPs at "
                         f"fraction {a.fraction:g}")
    return np.geomspace(lo, hi, n)


# -- the bootstrap --------------------------------------------------------------------------------
def _replicates(prior: _Prior, grid: np.ndarray, reading: str, n_boot: int,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The prior's reading (mean over seeds) [G] and `n_boot` replicates of it [B, G].

    A replicate draws one normal per run and moves each of the run's points by it times the
    point's standard error (a run's points are scored on the same validation sequences, and
    independent draws would let the running minimum pick the luckiest one), then averages the
    seeds drawn with replacement. With n >= 2 seeds the replicates' spread around the estimate
    is widened by sqrt(n / (n - 1)): a resample of n values has (n - 1)/n of their variance."""
    per_seed = _per_seed(prior, grid, reading)  # [S, G]
    centre = _nan(np.nanmean, per_seed, axis=0)  # [G]
    reps = np.stack([_read(t, t.loss[None] + t.se[None] * rng.standard_normal(
        (n_boot, t.n_cells))[:, t.cell], grid, reading) for t in prior.tables])  # [S, B, G]
    n = len(prior.tables)
    if n < 2:
        return centre, reps[0]
    picks = rng.integers(0, n, (n_boot, n))  # [B, n] seeds drawn with replacement
    drawn = reps[picks, np.arange(n_boot)[:, None]]  # [B, n, G]
    mean = _nan(np.nanmean, drawn, axis=1)  # [B, G]
    return centre, centre + math.sqrt(n / (n - 1)) * (mean - centre)


def _percentiles(value: np.ndarray, reps: np.ndarray, level: float
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Percentile interval per column, widened where needed to hold the estimate; and the
    replicates' median. NaN where a column has no finite replicate."""
    a = (1 - level) / 2
    lo, med, hi = _nan(np.nanquantile, reps, [a, 0.5, 1 - a], axis=0)
    return np.fmin(lo, value), med, np.fmax(hi, value)


def frontier_band(points: Sequence[CurvePoint], grid: Sequence[float] | np.ndarray, *,
                  reading: Reading = "frontier", n_boot: int = 400, level: float = LEVEL,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One prior's reading at one fraction as `crossover` sees it: the mean over seeds [G] and
    its interval (lo [G], hi [G]) from the same resampling of seeds and standard errors; for
    drawing the frontier with its band."""
    if reading not in READINGS:
        raise ValueError(f"reading must be one of {', '.join(READINGS)}, got {reading!r}")
    prior = _one(points, "frontier_band")
    centre, reps = _replicates(prior, np.asarray(grid, np.float64), reading, n_boot,
                               np.random.default_rng(seed))
    lo, _, hi = _percentiles(centre, reps, level)
    return centre, lo, hi


def _log_interp(grid: np.ndarray, j: int, g: np.ndarray) -> float:
    """Where the gap g, <= 0 at grid[j - 1] and > 0 at grid[j], crosses 0 (linear in log C)."""
    g0, g1 = g[j - 1], g[j]
    t = 0.0 if not np.isfinite(g0) else float(-g0 / (g1 - g0))
    return float(np.exp(np.log(grid[j - 1]) + t * (np.log(grid[j]) - np.log(grid[j - 1]))))


def _crossing(grid: np.ndarray, g: np.ndarray, anchor: int, first: int) -> tuple[float, int]:
    """Where the gap curve g turns positive for the run of lead that holds grid index `anchor`
    (the first compute where the challenger is significantly below): walk back from the anchor
    while g > 0; if g is not positive at the anchor (a resample), the first upward crossing
    after it. Returns (C, index of the first positive point); (inf, -1) when g never turns
    positive from the anchor on; (grid[first], first) when it is positive from the first
    compared compute."""
    pos = g > 0  # NaN: not positive
    j = anchor
    if pos[j]:
        while j > first and pos[j - 1]:
            j -= 1
    else:
        later = np.flatnonzero(pos[anchor + 1:])
        if not len(later):
            return math.inf, -1
        j = anchor + 1 + int(later[0])
    if j == first:
        return float(grid[first]), first
    return _log_interp(grid, j, g), j


@dataclass(frozen=True)
class GapCurve:
    """The gap reference - challenger (bits/token) on the compute grid, for plotting."""
    grid: np.ndarray  # [G] training FLOPs
    value: np.ndarray  # [G] the estimate: mean over seeds of each prior's reading
    median: np.ndarray  # [G] the bootstrap replicates' median
    lo: np.ndarray  # [G] interval at `level`
    hi: np.ndarray  # [G]
    reference: np.ndarray  # [G] the reference's reading (mean over seeds)
    challenger: np.ndarray  # [G]

    def to_dict(self) -> dict[str, list[float | None]]:
        return {k: _list(getattr(self, k)) for k in
                ("grid", "value", "median", "lo", "hi", "reference", "challenger")}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GapCurve:
        return cls(*(np.array([np.nan if v is None else v for v in d[k]], np.float64) for k in
                     ("grid", "value", "median", "lo", "hi", "reference", "challenger")))


@dataclass(frozen=True)
class Crossover:
    """Where `challenger`'s loss falls below `reference`'s at one data fraction, and how sure."""
    reference: str
    challenger: str
    reference_family: str
    challenger_family: str
    fraction: float
    reading: str  # "frontier" or "equal-budget"
    status: str  # "crossover", "ahead throughout", "none within budget" or "cannot tell"
    statement: str  # one line for a reader
    # "crossover": where the challenger's reading falls below the reference's (the zero of the
    # estimated gap that starts its significant lead, interpolated in log C), with the interval
    # of that point over resamples, holding at least the grid computes on either side of it;
    # hi = inf: more than (1 - level)/2 of the resamples never cross within the budget
    flops: float | None
    interval: Interval | None
    beyond_budget: float | None  # share of resamples with no crossing within the budget
    significant_from: float | None  # first grid compute where the challenger is significantly below
    epochs: float | None  # the challenger's epochs at `flops` (its best point's, median over seeds)
    reference_epochs: float | None  # the reference's, likewise
    gap: GapCurve
    noise: str  # what the interval counts
    seeds: tuple[int, int]  # number of seeds (reference, challenger)
    level: float = LEVEL
    n_boot: int = 0
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe (no inf or NaN: null)."""
        return {"reference": self.reference, "challenger": self.challenger,
                "reference_family": self.reference_family,
                "challenger_family": self.challenger_family, "fraction": self.fraction,
                "reading": self.reading, "status": self.status, "statement": self.statement,
                "flops": _num(self.flops),
                "interval": None if self.interval is None else _interval_dict(self.interval),
                "beyond_budget": _num(self.beyond_budget),
                "significant_from": _num(self.significant_from),
                "epochs": _num(self.epochs), "reference_epochs": _num(self.reference_epochs),
                "gap": self.gap.to_dict(), "noise": self.noise, "seeds": list(self.seeds),
                "level": self.level, "n_boot": self.n_boot, "notes": list(self.notes)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Crossover:
        """Read back what `to_dict` wrote (metrics.json), to draw the map again."""
        iv = d.get("interval")
        return cls(d["reference"], d["challenger"], d["reference_family"],
                   d["challenger_family"], float(d["fraction"]), d["reading"], d["status"],
                   d["statement"], d.get("flops"), None if iv is None else Interval.from_dict(iv),
                   d.get("beyond_budget"), d.get("significant_from"), d.get("epochs"),
                   d.get("reference_epochs"), GapCurve.from_dict(d["gap"]), d["noise"],
                   tuple(d["seeds"]), float(d.get("level", LEVEL)), int(d.get("n_boot", 0)),
                   tuple(d.get("notes", ())))


def _num(x: float | None) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def _list(a: np.ndarray) -> list[float | None]:
    return [_num(float(x)) for x in np.asarray(a, np.float64)]


def _interval_dict(iv: Interval) -> dict[str, float | None]:
    d = iv.to_dict()
    return {k: (_num(v) if isinstance(v, float) else v) for k, v in d.items()}


# -- the verdict ----------------------------------------------------------------------------------
def _flops(x: float) -> str:
    """3.2e15 (no '+', no padding); inf: beyond the budget."""
    if not math.isfinite(x):
        return "beyond the budget"
    s = f"{x:.2g}"
    if "e" in s:
        m, e = s.split("e")
        return f"{m}e{int(e)}"
    return s


def _bits(value: float, lo: float, hi: float, level: float) -> str:
    return f"{value:+.3f} bits/token, {level:.0%} interval [{lo:+.3f}, {hi:+.3f}]".replace(
        "%", " %")


def _families(ref: _Prior, ch: _Prior) -> str:
    if ref.family == ch.family == "bound":
        return "Both losses are bounds (ELBO): the gap compares bounds, not likelihoods."
    if ref.family != ch.family:
        bound = ch if ch.family == "bound" else ref
        exact = ref if bound is ch else ch
        return (f"{bound.name}'s loss is a bound (ELBO) compared with {exact.name}'s exact NLL: "
                f"the comparison is conservative for {bound.name}.")
    return ""


def _noise(ref: _Prior, ch: _Prior, n_boot: int) -> str:
    n_ref, n_ch = len(ref.seeds), len(ch.seeds)
    if n_ref < 2 and n_ch < 2:
        return (f"one seed of each prior: the interval comes from the points' standard errors "
                f"alone, not from seed-to-seed variation ({n_boot} draws)")
    one = [p.name for p in (ref, ch) if len(p.seeds) < 2]
    tail = (f"; {one[0]} has one seed: only its standard errors count" if one else "")
    return (f"bootstrap over seeds ({n_ref} of {ref.name}, {n_ch} of {ch.name}) with each "
            f"point moved by its standard error, {n_boot} resamples{tail}")


def crossover(reference: Sequence[CurvePoint], challenger: Sequence[CurvePoint], *,
              reading: Reading = "frontier", grid: Sequence[float] | np.ndarray | None = None,
              n_boot: int = 2000, level: float = LEVEL, seed: int = 0) -> Crossover:
    """Where `challenger` (one diffusion prior's points at one data fraction) falls below
    `reference` (the autoregressive prior's points at the same fraction), under `reading`.

    Gap(C) = reference - challenger on `grid` (default: `default_grid`). Outcomes:
    "crossover": the challenger is first significantly below at some compute after the
    smallest (the reference led or they tied before); "ahead throughout": significantly below
    from the smallest compute compared; "none within budget": never significantly below, and
    the reference significantly below at the largest compute; "cannot tell": never
    significantly below, and no significant difference at the largest compute either."""
    if reading not in READINGS:
        raise ValueError(f"reading must be one of {', '.join(READINGS)}, got {reading!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot!r}")
    ref, ch = _one(reference, "crossover reference"), _one(challenger, "crossover challenger")
    if not math.isclose(ref.fraction, ch.fraction):
        raise ValueError(f"crossover compares one data fraction, got {ref.fraction:g} for "
                         f"{ref.name} and {ch.fraction:g} for {ch.name}")
    g_arr = (default_grid(reference, challenger, reading) if grid is None
             else np.sort(np.asarray(grid, np.float64)))
    if not (len(g_arr) and np.all(np.isfinite(g_arr)) and np.all(g_arr > 0)):
        raise ValueError("crossover: the compute grid must hold finite FLOPs > 0")
    rng = np.random.default_rng(seed)
    ref_c, ref_r = _replicates(ref, g_arr, reading, n_boot, rng)
    ch_c, ch_r = _replicates(ch, g_arr, reading, n_boot, rng)
    value, reps = ref_c - ch_c, ref_r - ch_r  # [G], [B, G]
    lo, med, hi = _percentiles(value, reps, level)
    gap = GapCurve(g_arr, value, med, lo, hi, ref_c, ch_c)
    valid = np.flatnonzero(np.isfinite(value) & np.isfinite(lo) & np.isfinite(hi))
    if not len(valid):
        raise ValueError(f"{ref.name} and {ch.name} have no compute in common on this grid "
                         f"at fraction {ref.fraction:g}")
    first, last = int(valid[0]), int(valid[-1])
    below = np.zeros(len(g_arr), bool)
    below[valid] = lo[valid] > 0
    above = np.zeros(len(g_arr), bool)
    above[valid] = hi[valid] < 0
    sig = np.flatnonzero(below)
    noise = _noise(ref, ch, n_boot)
    common = dict(reference=ref.name, challenger=ch.name, reference_family=ref.family,
                  challenger_family=ch.family, fraction=ref.fraction, reading=reading,
                  gap=gap, noise=noise, seeds=(len(ref.seeds), len(ch.seeds)), level=level,
                  n_boot=n_boot)
    where = f"At data fraction {ref.fraction:g},"
    tail = f"Reading: {READINGS[reading]}. Noise: {noise}. {_families(ref, ch)}".strip()
    last_gap = f"the gap {ref.name} - {ch.name} is {_bits(value[last], lo[last], hi[last], level)}"

    if not len(sig):
        if above[last]:
            status = "none within budget"
            text = (f"{where} {ch.name} is never significantly below {ref.name} up to "
                    f"{_flops(g_arr[last])} training FLOPs; {ref.name} is significantly below "
                    f"at the largest compute ({last_gap}).")
        else:
            status = "cannot tell"
            text = (f"{where} cannot tell {ch.name} from {ref.name}: {ch.name} is never "
                    f"significantly below, and at the largest compute "
                    f"({_flops(g_arr[last])} FLOPs) {last_gap}, which holds 0: the curves "
                    f"overlap within the noise.")
        return Crossover(status=status, statement=f"{text} {tail}", flops=None, interval=None,
                         beyond_budget=None, significant_from=None, epochs=None,
                         reference_epochs=None, **common)

    anchor = int(sig[0])
    ch_ep, ref_ep = _epochs(ch, g_arr, reading), _epochs(ref, g_arr, reading)
    notes = []
    if above[anchor:].any():
        k = anchor + int(np.flatnonzero(above[anchor:])[0])
        notes.append(f"{ref.name} is significantly below again from {_flops(g_arr[k])} FLOPs")
    elif not below[anchor:last + 1][np.isin(np.arange(anchor, last + 1), valid)].all():
        notes.append(f"{ch.name}'s lead is not significant at every larger compute")
    note = (" (" + "; ".join(notes) + ")") if notes else ""

    if anchor == first:
        e = ch_ep[first]
        text = (f"{where} {ch.name} is significantly below {ref.name} from the smallest compute "
                f"compared ({_flops(g_arr[first])} training FLOPs, {_epochs_words(e)}) on"
                f"{note}.")
        return Crossover(status="ahead throughout", statement=f"{text} {tail}",
                         flops=None, interval=None, beyond_budget=None,
                         significant_from=float(g_arr[first]), epochs=_num(e),
                         reference_epochs=_num(ref_ep[first]), notes=tuple(notes), **common)

    c_hat, j = _crossing(g_arr, value, anchor, first)
    crossings = np.array([_crossing(g_arr, r, anchor, first)[0] for r in reps])
    a = (1 - level) / 2
    c_lo, c_hi = (float(np.quantile(crossings, q, method="inverted_cdf")) for q in (a, 1 - a))
    # between two grid computes the gap is interpolated, not measured: the interval holds at
    # least the two around the estimate (with few budgets, that is most of what is known)
    lo_c, hi_c = (g_arr[j - 1], g_arr[j]) if j > first else (g_arr[first], g_arr[first])
    interval = Interval(c_hat, float(min(c_lo, lo_c)), float(max(c_hi, hi_c)), level)
    beyond = float(np.mean(np.isinf(crossings)))
    e, re = _at(ch_ep, g_arr, j, c_hat), _at(ref_ep, g_arr, j, c_hat)
    at = (f"at or before the smallest compute compared ({_flops(c_hat)} training FLOPs"
          if j == first else f"at {_flops(c_hat)} training FLOPs (")
    if math.isfinite(interval.hi):
        span = f"{level:.0%} interval {_flops(interval.lo)} to {_flops(interval.hi)}"
    else:
        span = (f"{level:.0%} interval {_flops(interval.lo)} to beyond the budget: in "
                f"{beyond:.0%} of resamples it does not fall below within "
                f"{_flops(g_arr[last])} FLOPs")
    text = (f"{where} {ch.name} falls below {ref.name} {at}{'; ' if j == first else ''}"
            f"{span}), when its best model had made {_epochs_words(e)} ({ref.name}'s best: "
            f"{format_epochs(re)}); significantly below from "
            f"{_flops(g_arr[anchor])} FLOPs on{note}.").replace("%", " %")
    return Crossover(status="crossover", statement=f"{text} {tail}", flops=c_hat,
                     interval=interval, beyond_budget=beyond,
                     significant_from=float(g_arr[anchor]), epochs=_num(e),
                     reference_epochs=_num(re), notes=tuple(notes), **common)


def _at(curve: np.ndarray, grid: np.ndarray, j: int, c: float) -> float:
    """`curve` (per grid point) at compute c in (grid[j - 1], grid[j]], linear in log C."""
    if j <= 0 or not np.isfinite(curve[j - 1]):
        return float(curve[max(j, 0)])
    t = (math.log(c) - math.log(grid[j - 1])) / (math.log(grid[j]) - math.log(grid[j - 1]))
    return float(curve[j - 1] + t * (curve[j] - curve[j - 1]))


def format_epochs(e: float) -> str:
    """0.001, 0.25, 2.1, 12, 5,000: no exponents for what a reader counts."""
    if not math.isfinite(e):
        return "?"
    return f"{e:,.0f}" if e >= 9.5 else f"{e:.2g}" if e >= 0.001 else f"{e:.1e}"


def _epochs_words(e: float) -> str:
    return (f"{format_epochs(e)} epochs over the unique data" if math.isfinite(e)
            else "unknown epochs")


def crossovers(points: Sequence[CurvePoint], *, reference: str | None = None,
               reading: Reading = "frontier", **kw: Any) -> list[Crossover]:
    """Every bound prior against the reference (default: the first exact prior by name), per
    data fraction (ascending), as `crossover` does; a fraction where a pair shares no compute
    is left out."""
    priors = sorted({(p.prior, p.family) for p in points})
    if reference is None:
        exact = [name for name, fam in priors if fam == "exact"]
        if not exact:
            raise ValueError("crossovers: no prior with an exact likelihood to compare with")
        reference = exact[0]
    out = []
    for f in sorted({p.fraction for p in points}):
        ref = [p for p in points if p.prior == reference and p.fraction == f]
        if not ref:
            continue
        for name, _ in priors:
            ch = [p for p in points if p.prior == name and p.fraction == f]
            if name == reference or not ch:
                continue
            try:
                out.append(crossover(ref, ch, reading=reading, **kw))
            except ValueError:
                continue  # no common compute (or budget) at this fraction
    return out


# -- where each prior starts to overfit -----------------------------------------------------------
@dataclass(frozen=True)
class BestEpoch:
    """One (prior, fraction, size) at its largest budget: where the seed-mean validation loss
    is lowest, against where the run ends."""
    prior: str
    family: str
    fraction: float
    size: str
    budget: float
    seeds: int
    best_flops: float
    best_epochs: float
    best_loss: float
    final_flops: float
    final_epochs: float
    final_loss: float
    difference_se: float  # standard error of final - best
    overfits: bool  # final - best > OVERFIT_SE standard errors

    def to_dict(self) -> dict[str, Any]:
        return {k: (_num(v) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def epochs_to_best(points: Sequence[CurvePoint]) -> list[BestEpoch]:
    """Per (prior, fraction, size), at that size's largest budget: the epochs and FLOPs where
    the validation loss, averaged over seeds, is lowest, the best and the final loss, and
    whether the run overfits: its final loss is above the best by more than 2 standard errors of
    the difference. That standard error adds the spread over seeds of each seed's own
    final - best (over n seeds) to the points' standard errors, which are not averaged down over
    seeds (every seed is scored on the same validation sequences).

    Points of different seeds are matched by their FLOPs (the same schedule); only the FLOPs
    every seed reached count."""
    groups: dict[tuple[str, float, str], list[CurvePoint]] = {}
    for p in points:
        groups.setdefault((p.prior, p.fraction, p.size), []).append(p)
    rows = []
    for (prior, fraction, size), pts in sorted(groups.items()):
        budget = max(p.budget for p in pts)
        pts = [p for p in pts if math.isclose(p.budget, budget, rel_tol=BUDGET_RTOL)]
        seeds = sorted({p.seed for p in pts})
        by_seed = [{_key(p.flops): p for p in pts if p.seed == s} for s in seeds]
        keys = sorted(set.intersection(*(set(d) for d in by_seed)))
        if not keys:
            continue
        loss = np.array([[d[k].loss for k in keys] for d in by_seed])  # [S, K]
        se = np.array([[d[k].se for k in keys] for d in by_seed])  # [S, K]
        mean = loss.mean(axis=0)
        b, f = int(np.argmin(mean)), len(keys) - 1
        diff = loss[:, f] - loss[:, b]  # [S]
        var = float(np.mean(se[:, f] ** 2) + np.mean(se[:, b] ** 2)) if b != f else 0.0
        if len(seeds) > 1:
            var += float(np.var(diff, ddof=1)) / len(seeds)
        d_se = math.sqrt(var)
        epochs = np.array([[d[k].epochs for k in keys] for d in by_seed]).mean(axis=0)  # [K]
        flops = [by_seed[0][k].flops for k in keys]
        rows.append(BestEpoch(prior, pts[0].family, fraction, size, budget, len(seeds),
                              flops[b], float(epochs[b]), float(mean[b]),
                              flops[f], float(epochs[f]), float(mean[f]), d_se,
                              bool(mean[f] - mean[b] > OVERFIT_SE * d_se)))
    return rows


def _key(flops: float) -> float:
    return float(f"{flops:.6g}")
