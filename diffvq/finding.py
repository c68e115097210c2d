"""The quality-matched speed comparison as an equivalence test: does a diffusion prior reach the
autoregressive prior's quality, and is it faster there, one sample at a time and in batches? Or
can this sample size not tell them apart?

For each non-autoregressive prior: its sampling variant is chosen on the *validation* split (the
fewest network evaluations whose validation interval of the difference to the reference lies
inside ±tolerance, else its best validation figure), then the *test* split decides, once:

- "equivalent": the test interval of (B − A)/A lies inside ±tolerance (TOST-like; with 95 %
  intervals this is the conservative 2.5 %-per-side test);
- "better" / "worse": the interval excludes 0 (and is not inside the band);
- "cannot tell": it holds 0 and crosses the band: the samples are too few to say.

Speed-ups are ratios of median seconds per sample with a bootstrap interval over repeated
timings. The metric is a distance (lower is better): the headline judge distance."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, Sequence

from .intervals import Interval, difference, mean_interval, ratio_of_medians

TOLERANCE = 0.10
HEADLINE = "kid"  # the least biased judge distance at n of 100-1,000 (docs/protocol-distance.md)
METRIC_NAMES = {"kid": "judge KID", "fd": "judge FD"}

Outcome = Literal["equivalent", "better", "worse", "cannot tell"]
ChosenOn = Literal["validation", "test", "only"]


@dataclass(frozen=True)
class Variant:
    """One sampling setting of a prior with what the finding needs of it."""
    name: str  # "steps-8"; "" for a prior's single default setting
    nfe: int | None  # network evaluations per sample
    validation: Interval | None  # the headline distance on the validation split
    test: Interval | None  # ... on the test split
    latency_s: tuple[float, ...] = ()  # repeated timings, seconds per sample one at a time
    batch_s: tuple[float, ...] = ()  # repeated timings, seconds per sample in batches
    batch_size: int | None = None

    @property
    def label(self) -> str:
        return self.name or "default"


@dataclass(frozen=True)
class PriorFigures:
    key: str  # the recipe's key ("gpt")
    name: str  # the component ("autoregressive")
    variants: tuple[Variant, ...]


@dataclass(frozen=True)
class Verdict:
    """The finding for one prior B against the reference A, decided on test."""
    prior: str
    name: str
    reference: str
    variant: Variant  # B's chosen setting
    reference_variant: Variant  # A's chosen setting
    chosen_on: ChosenOn  # which split chose B's setting ("only": there was one)
    difference: Interval | None  # (B − A)/A on test; None where either lacks an interval
    outcome: Outcome
    tolerance: float
    latency_speedup: Interval | None  # A's seconds per sample / B's (> 1: B faster)
    batch_speedup: Interval | None


def outcome(diff: Interval | None, tolerance: float) -> Outcome:
    """The equivalence decision on an interval of the relative difference (lower is better)."""
    if diff is None or not (math.isfinite(diff.lo) and math.isfinite(diff.hi)):
        return "cannot tell"
    if -tolerance < diff.lo and diff.hi < tolerance:
        return "equivalent"
    if diff.hi < 0:
        return "better"
    if diff.lo > 0:
        return "worse"
    return "cannot tell"


def _relative(a: Interval | None, b: Interval | None) -> Interval | None:
    if a is None or b is None or not a.value > 0:
        return None  # no band can be drawn around a reference of 0 or below
    return difference(a, b, relative=True)


def _best(variants: Sequence[Variant], split: str) -> Variant:
    return min(variants, key=lambda v: getattr(v, split).value)


def choose_variant(prior: Sequence[Variant], reference: Variant,
                   tolerance: float = TOLERANCE) -> tuple[Variant, ChosenOn]:
    """B's setting, never looking at test when validation figures exist: the fewest NFE that is
    equivalent to or better than the reference on validation, else the best on validation.
    Without validation figures (a run from before the split) the same rule runs on test, and
    the verdict says so."""
    if len(prior) == 1:
        return prior[0], "only"
    split: ChosenOn = "validation" if all(v.validation for v in prior) and reference.validation \
        else "test"
    rows = [v for v in prior if getattr(v, split) is not None]
    good = [v for v in rows if outcome(_relative(getattr(reference, split), getattr(v, split)),
                                       tolerance) in ("equivalent", "better")]
    if good:
        return min(good, key=lambda v: (v.nfe if v.nfe is not None else math.inf,
                                         getattr(v, split).value)), split
    return _best(rows, split), split


def _speedup(a: Sequence[float], b: Sequence[float]) -> Interval | None:
    return ratio_of_medians(a, b) if a and b else None


def compare(reference: PriorFigures, prior: PriorFigures,
            tolerance: float = TOLERANCE) -> Verdict:
    """B = `prior` against A = `reference`: choose each setting on validation, decide on test."""
    ref_rows = [v for v in reference.variants if v.test is not None]
    ref_split = "validation" if all(v.validation for v in ref_rows) else "test"
    ref = _best(ref_rows, ref_split) if len(ref_rows) > 1 else ref_rows[0]
    chosen, on = choose_variant([v for v in prior.variants if v.test is not None], ref, tolerance)
    diff = _relative(ref.test, chosen.test)
    return Verdict(prior.key, prior.name, reference.key, chosen, ref, on, diff,
                   outcome(diff, tolerance), tolerance, _speedup(ref.latency_s, chosen.latency_s),
                   _speedup(ref.batch_s, chosen.batch_s))


# -- reading metrics.json ----------------------------------------------------------------------
def _interval(judge: dict[str, Any], split: str, metric: str) -> Interval | None:
    d = (judge.get(split) or {}).get(metric)
    if d is not None:
        return Interval.from_dict(d)
    if split == "test" and metric == "fd" and judge.get("fd_per_seed"):
        return mean_interval(judge["fd_per_seed"])  # a run from before intervals: t over seeds
    return None


def _timings(row: dict[str, Any], key: str, legacy: str) -> tuple[float, ...]:
    reps = (row.get("timing") or {}).get(key)
    if reps:
        return tuple(float(t) for t in reps)
    return (float(row[legacy]),) if row.get(legacy) is not None else ()


def variant_from_row(row: dict[str, Any], metric: str = HEADLINE) -> Variant:
    """A metrics.json sampling row: quality at `row["judge"][split][metric]` as
    {"value", "lo", "hi"} for split "validation" and "test"; repeated timings (seconds per
    sample) at `row["timing"]["latency_s"]` and `["batch_s"]`, else the single medians
    `seconds_per_sample_latency` and `seconds_per_sample` (a speed-up without interval)."""
    judge = row.get("judge") or {}
    return Variant(row.get("variant") or "", row.get("nfe"),
                   _interval(judge, "validation", metric), _interval(judge, "test", metric),
                   _timings(row, "latency_s", "seconds_per_sample_latency"),
                   _timings(row, "batch_s", "seconds_per_sample"), row.get("batch_size"))


def priors_from_metrics(metrics: dict[str, Any], metric: str = HEADLINE) -> list[PriorFigures]:
    return [PriorFigures(key, p["name"], tuple(variant_from_row(r, metric) for r in p["sampling"]))
            for key, p in metrics["priors"].items()]


def headline_metric(metrics: dict[str, Any]) -> str:
    """KID where the run measured it, FD for runs from before it."""
    for p in metrics["priors"].values():
        for row in p["sampling"]:
            judge = row.get("judge") or {}
            if any(HEADLINE in (judge.get(s) or {}) for s in ("validation", "test")):
                return HEADLINE
    return "fd"


def quality_matched(metrics: dict[str, Any], tolerance: float = TOLERANCE,
                    metric: str | None = None) -> list[Verdict]:
    """One Verdict per non-autoregressive prior with test figures; [] without an autoregressive
    prior with test figures (or without a judge)."""
    metric = metric or headline_metric(metrics)
    priors = [p for p in priors_from_metrics(metrics, metric)
              if any(v.test is not None for v in p.variants)]
    refs = [p for p in priors if p.name == "autoregressive"]
    if not refs:
        return []
    return [compare(refs[0], p, tolerance) for p in priors if p.name != "autoregressive"]


# -- sentences ---------------------------------------------------------------------------------
def _pct(iv: Interval) -> str:
    return f"{iv.value:+.0%} [{iv.lo:+.0%}, {iv.hi:+.0%}]".replace("%", " %")


def _times(iv: Interval) -> str:
    if not math.isfinite(iv.hi):
        return f"{iv.value:.1f}x (one timing, no interval)"
    return f"{iv.value:.1f}x [{iv.lo:.1f}, {iv.hi:.1f}]"


def _speed(v: Verdict) -> str:
    parts = []
    for iv, regime in ((v.latency_speedup, "one at a time"),
                       (v.batch_speedup, f"in batches of {v.variant.batch_size}")):
        if iv is None:
            continue
        if iv.value >= 1:
            parts.append(f"{v.prior} is {_times(iv)} faster {regime}")
        else:
            inv = Interval(1 / iv.value, 1 / iv.hi if iv.hi else math.inf,
                           1 / iv.lo if iv.lo else math.inf)
            parts.append(f"{v.reference} is {_times(inv)} faster {regime}")
    return "; ".join(parts) + "." if parts else "Not timed."


def sentence(v: Verdict, metric: str = HEADLINE) -> str:
    """One plain paragraph for the report and the terminal."""
    what = METRIC_NAMES.get(metric, metric)
    chosen = {"validation": "chosen on validation",
              "test": "chosen on test: no validation figures, so optimistic",
              "only": "its only setting"}[v.chosen_on]
    b = f"{v.prior} ({v.variant.label}, NFE {v.variant.nfe}, {chosen})"
    a = f"{v.reference} ({v.reference_variant.label})"
    band = f"±{v.tolerance:.0%}".replace("%", " %")
    if v.difference is None:
        return (f"Cannot tell {b} from {a}: the test {what} lacks an interval, or {a}'s is not "
                f"above 0. {_speed(v)}")
    d = f"test {what} difference {_pct(v.difference)}"
    figures = (f"({v.variant.test.format('.3g')} against "
               f"{v.reference_variant.test.format('.3g')})")
    if v.outcome == "equivalent":
        head = f"{b} is within {band} of {a}: {d} {figures}."
    elif v.outcome == "cannot tell":
        head = (f"Cannot tell {b} from {a} at this sample size: {d} {figures} crosses the "
                f"{band} band.")
    else:
        win, lose = (b, a) if v.outcome == "better" else (a, b)
        beyond = (v.difference.lo > v.tolerance if v.outcome == "worse"
                  else v.difference.hi < -v.tolerance)
        where = f"outside the {band} band" if beyond else f"not shown within the {band} band"
        head = f"{win} is better than {lose} at this sample size: {d} {figures}, {where}."
    return f"{head} {_speed(v)}"


def describe(metrics: dict[str, Any], tolerance: float = TOLERANCE) -> list[str]:
    """Plain sentences, one paragraph per diffusion prior, for the report and the terminal."""
    where = f"On this machine ({metrics.get('device', '?')}, {metrics.get('precision', '?')}): "
    metric = headline_metric(metrics)
    return [where + sentence(v, metric) for v in quality_matched(metrics, tolerance, metric)]
