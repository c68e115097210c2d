"""The quality-matched speed comparison: at equal quality, which prior samples faster, one
sample at a time and in batches? A finding users can act on, computed from metrics.json.

For each non-autoregressive prior: the fewest network evaluations whose judge FD is within
`tolerance` (10 %) of the autoregressive prior's, and the ratio of seconds per sample there in
both regimes. Nothing is claimed where no step count reached that quality."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

TOLERANCE = 0.10


@dataclass
class Match:
    prior: str  # key of the diffusion prior
    name: str  # its component name
    reference: str  # key of the autoregressive prior
    reference_fd: float
    reference_variant: dict[str, Any]  # the autoregressive prior's (best) sampling row
    variant: dict[str, Any] | None  # the cheapest sampling variant within tolerance, or None
    best: dict[str, Any]  # the variant with the lowest FD (what to report when none matched)

    @property
    def latency_speedup(self) -> float | None:
        """Autoregressive seconds per sample / this prior's, one sample at a time (>1: faster)."""
        return _ratio(self, "seconds_per_sample_latency")

    @property
    def batch_speedup(self) -> float | None:
        return _ratio(self, "seconds_per_sample")


def _ratio(m: Match, key: str) -> float | None:
    if m.variant is None or m.variant.get(key) is None or m.reference_variant.get(key) is None:
        return None
    return m.reference_variant[key] / m.variant[key]


def _fd(variant: dict[str, Any]) -> float | None:
    j = variant.get("judge")
    return j["fd_mean"] if j else None


def quality_matched(metrics: dict[str, Any], tolerance: float = TOLERANCE) -> list[Match]:
    """One Match per non-autoregressive prior with judge figures; [] without an autoregressive
    prior or without a judge."""
    priors = metrics["priors"]
    refs = [k for k, p in priors.items() if p["name"] == "autoregressive"
            and p["sampling"] and _fd(p["sampling"][0]) is not None]
    if not refs:
        return []
    ref_key = refs[0]
    ref = min(priors[ref_key]["sampling"], key=_fd)  # its best variant, if it has several
    ref_fd = _fd(ref)
    out = []
    for key, p in priors.items():
        if p["name"] == "autoregressive":
            continue
        rows = [v for v in p["sampling"] if _fd(v) is not None]
        if not rows:
            continue
        ok = [v for v in rows if _fd(v) <= (1 + tolerance) * ref_fd]
        cheapest = min(ok, key=lambda v: (v["nfe"], _fd(v))) if ok else None
        out.append(Match(key, p["name"], ref_key, ref_fd, ref, cheapest, min(rows, key=_fd)))
    return out


def _speed_sentence(speedup: float | None, regime: str, m: Match, key: str) -> str:
    if speedup is None:
        return f"{regime}: not timed."
    assert m.variant is not None
    ours, theirs = 1000 * m.variant[key], 1000 * m.reference_variant[key]
    if speedup >= 1:
        return (f"{regime}: {ours:.1f} ms against {theirs:.1f} ms per sample, "
                f"{m.prior} is {speedup:.1f}x faster.")
    return (f"{regime}: {ours:.1f} ms against {theirs:.1f} ms per sample, "
            f"{m.reference} (autoregressive) is {1 / speedup:.1f}x faster.")


def describe(metrics: dict[str, Any], tolerance: float = TOLERANCE) -> list[str]:
    """Plain sentences, one paragraph per diffusion prior, for the report and the terminal."""
    where = f"On this machine ({metrics.get('device', '?')}, {metrics.get('precision', '?')})"
    lines = []
    for m in quality_matched(metrics, tolerance):
        if m.variant is None:
            b = m.best
            lines.append(f"{where}, no sampling setting of {m.prior} ({m.name}) tried came within "
                         f"{tolerance:.0%} of {m.reference}'s judge FD {m.reference_fd:.2f}; its "
                         f"best was {_fd(b):.2f} at NFE {b['nfe']} ({b['variant'] or 'default'}). "
                         f"At matched quality the autoregressive prior wins; try more steps or "
                         f"longer training.")
            continue
        v = m.variant
        lines.append(
            f"{where}, {m.prior} ({m.name}) matches {m.reference}'s judge FD within "
            f"{tolerance:.0%} at NFE {v['nfe']} ({v['variant'] or 'default'}: FD {_fd(v):.2f} vs "
            f"{m.reference_fd:.2f}). "
            + _speed_sentence(m.latency_speedup, "One sample at a time", m,
                              "seconds_per_sample_latency") + " "
            + _speed_sentence(m.batch_speedup, f"In batches of {v.get('batch_size')}", m,
                              "seconds_per_sample"))
    return lines
