"""The study's answer as one picture: validation loss against training compute, one column per
unique-data fraction, each prior's frontier with its band, where a diffusion prior crosses the
autoregressive one (with its interval), and sample quality below.

Pure drawing: takes the curve points and crossovers of `diffvq.evaluate.crossover` and writes a
PNG (matplotlib, Agg). Colours are the Okabe-Ito palette (colour-blind safe), one per prior, the
same in every panel.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .crossover import READINGS, Crossover, CurvePoint, budgets_of, format_epochs, frontier_band

WIDTH_PX = 1600
DPI = 100
# Okabe & Ito (2008): blue, vermillion, bluish green, reddish purple, orange, sky blue
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9")
SIZE_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
FAMILY_WORDS = {"exact": "exact NLL", "bound": "bound (ELBO)"}


@dataclass(frozen=True)
class QualityPoint:
    """One sample-quality figure of one run, placed at the compute it was drawn at."""
    prior: str
    fraction: float
    flops: float  # training FLOPs of the weights the samples came from
    value: float
    lo: float | None  # its interval (None: none)
    hi: float | None
    label: str  # the metric's name, as the axis shows it ("KID x1e3")
    point: str = ""  # which weights: "best" (hollow marker), "final" (filled) or ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _priors(points: Sequence[CurvePoint]) -> list[tuple[str, str]]:
    """(prior, family), exact priors first, then by name: the colour order."""
    seen = {(p.prior, p.family) for p in points}
    return sorted(seen, key=lambda pf: (pf[1] != "exact", pf[0]))


def _sizes(points: Sequence[CurvePoint]) -> list[str]:
    """Size names, smallest first (by their median compute per epoch: a proxy for parameters)."""
    per: dict[str, list[float]] = {}
    for p in points:
        if p.epochs > 0:
            per.setdefault(p.size, []).append(p.flops / p.epochs)
    names = sorted({p.size for p in points})
    return sorted(names, key=lambda s: (float(np.median(per[s])) if s in per else math.inf, s))


def _fmt_flops(x: float) -> str:
    if not math.isfinite(x):
        return "beyond the budget"
    m, e = f"{x:.1e}".split("e")
    return f"{m.rstrip('0').rstrip('.')}e{int(e)}"


def _column_title(f: float, pts: Sequence[CurvePoint], unique: Mapping[float, int] | None,
                  narrow: bool) -> str:
    parts = [f"data fraction {f:g}"]
    n = next((v for k, v in (unique or {}).items() if math.isclose(k, f)), None)
    if n is not None:
        parts.append(f"{n:,} unique sequences")
    ep = [p.epochs for p in pts if p.epochs > 0]
    if ep:
        parts.append(f"{format_epochs(min(ep))}–{format_epochs(max(ep))} epochs")
    if narrow:
        return "\n".join(parts)
    return "\n".join([parts[0], " · ".join(parts[1:])]) if len(parts) > 1 else parts[0]


def _crossing_text(x: Crossover, narrow: bool) -> str:
    """The outcome in a panel's corner; two lines where the panel is narrow."""
    sep = "\n" if narrow else " "
    if x.status == "crossover":
        ep = f" ({format_epochs(x.epochs)} epochs)" if x.epochs is not None else ""
        return f"{x.challenger} < {x.reference}{sep}from {_fmt_flops(x.flops)} FLOPs{ep}"
    if x.status == "ahead throughout":
        return f"{x.challenger} < {x.reference}{sep}throughout"
    return f"{x.challenger} vs {x.reference}:{sep}{x.status}"


def draw_map(points: Sequence[CurvePoint], crossovers: Sequence[Crossover],
             quality: Sequence[QualityPoint] | None, out_png: str | os.PathLike[str], *,
             title: str = "Validation loss against training compute",
             unique: Mapping[float, int] | None = None, reading: str = "frontier",
             n_boot: int = 400, seed: int = 0) -> Path:
    """Write the map to `out_png` (atomically) and return its path.

    Columns: data fractions, ascending (titled with the fraction, `unique[fraction]` unique
    sequences where given, and the epochs range of its points). Top row: every curve point
    faintly (a marker per model size), each prior's `reading` (mean over seeds, as the
    crossover compares them: the frontier as steps, or the equal-budget losses at each budget)
    with its band (bootstrap over seeds and standard errors), each crossover of that reading
    as a dashed vertical line in the challenger's colour with its interval shaded, or its
    outcome as text. Bottom row (when `quality` holds anything): each QualityPoint with its
    interval. Log compute on x; 1600 px wide."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    if not points:
        raise ValueError("draw_map: no curve points to draw")
    if reading not in READINGS:
        raise ValueError(f"draw_map: reading must be one of {', '.join(READINGS)}, "
                         f"got {reading!r}")
    crossovers = [x for x in crossovers if x.reading == reading]
    quality = list(quality or [])
    fractions = sorted({p.fraction for p in points})
    priors = _priors(points)
    colour = {name: PALETTE[i % len(PALETTE)] for i, (name, _) in enumerate(priors)}
    family = dict(priors)
    for q in quality:
        colour.setdefault(q.prior, PALETTE[len(colour) % len(PALETTE)])
    sizes = _sizes(points)
    marker = {s: SIZE_MARKERS[i % len(SIZE_MARKERS)] for i, s in enumerate(sizes)}
    rows = 2 if quality else 1
    ncol = len(fractions)
    narrow = ncol >= 3
    height = 6.6 if rows == 1 else 9.6
    fig, axes = plt.subplots(rows, ncol, figsize=(WIDTH_PX / DPI, height), squeeze=False,
                             sharex="col", sharey="row", layout="constrained",
                             gridspec_kw={"height_ratios": [3, 2] if rows == 2 else [1]})
    columns: list[list[tuple[float, float]]] = []  # per column, its frontiers' (compute, top)
    # the y range: the lowest band, up to the part of each reading that matters (below);
    # early training losses are many bits above the floor and would squash what the map is
    # about. The crossovers' computes are kept in view too.
    ylo, focus = math.inf, -math.inf
    for col, f in enumerate(fractions):
        ax = axes[0][col]
        here = [p for p in points if math.isclose(p.fraction, f)]
        drawn: list[tuple[float, float]] = []  # (compute, band top) of this column's frontiers
        for name, fam in priors:
            mine = [p for p in here if p.prior == name]
            if not mine:
                continue
            for s in sizes:
                pts = [p for p in mine if p.size == s]
                if pts:
                    ax.scatter([p.flops for p in pts], [p.loss for p in pts], s=18,
                               marker=marker[s], color=colour[name], alpha=0.3, lw=0,
                               zorder=1)
            seeds = {p.seed for p in mine}
            start = max(min(p.flops for p in mine if p.seed == s) for s in seeds)
            end = max(p.flops for p in mine)
            if not start < end and reading == "frontier":
                continue
            if reading == "frontier":
                # the frontier changes only at a point's compute: read it there, as steps
                grid = np.array(sorted({start, end} | {p.flops for p in mine
                                                       if start <= p.flops <= end}))
                style: dict[str, Any] = {"drawstyle": "steps-post"}
            else:
                grid = budgets_of(mine)
                style = {"marker": "o", "ms": 6}
            centre, lo, hi = frontier_band(mine, grid, reading=reading, n_boot=n_boot,
                                           seed=seed)
            ax.fill_between(grid, lo, hi, color=colour[name], alpha=0.2, lw=0, zorder=2,
                            step="post" if reading == "frontier" else None)
            ax.plot(grid, centre, color=colour[name], lw=2.2, zorder=3, **style)
            ok = np.isfinite(centre)
            if ok.any():
                ylo = min(ylo, float(np.nanmin(lo[ok])))
                # frontier: from the middle of its log-compute range on; equal budget: the
                # budgets up to its lowest loss (where it rises again, it may leave the top)
                mid = (grid >= math.sqrt(start * end) if reading == "frontier"
                       else grid <= grid[int(np.nanargmin(np.where(ok, centre, np.inf)))])
                focus = max(focus, float(np.nanmax(hi[ok & mid])) if (ok & mid).any()
                            else float(np.nanmax(hi[ok])))
                drawn += list(zip(grid[ok], hi[ok]))
        ax.set_xscale("log")
        last = max(p.flops for p in here)
        texts = []
        for x in (c for c in crossovers if math.isclose(c.fraction, f)):
            c = colour.get(x.challenger, "black")
            if x.status == "crossover" and x.flops is not None:
                lo_c = x.interval.lo if x.interval is not None else x.flops
                hi_c = (x.interval.hi if x.interval is not None
                        and math.isfinite(x.interval.hi) else x.flops)
                focus = max([focus] + [v for c, v in drawn if lo_c <= c <= hi_c])
                iv = x.interval
                right = iv.hi if iv is not None and math.isfinite(iv.hi) else last * 1e3
                if iv is not None:
                    ax.axvspan(iv.lo, right, color=c, alpha=0.13, lw=0, zorder=0)
                ax.axvline(x.flops, color=c, ls="--", lw=1.6, zorder=4)
            texts.append((_crossing_text(x, narrow), c))
        step = 0.12 if narrow else 0.075
        for i, (t, c) in enumerate(texts):
            ax.text(0.98, 0.97 - step * i, t, transform=ax.transAxes, ha="right", va="top",
                    fontsize=9.5 if narrow else 10.5, color=c, fontweight="bold",
                    linespacing=1.1,
                    bbox={"facecolor": "white", "alpha": 0.8, "lw": 0, "pad": 1.5})
        ax.set_xlim(min(p.flops for p in here) / 1.6, last * 1.6)
        columns.append(drawn)
        ax.set_title(_column_title(f, here, unique, narrow), fontsize=12)
        ax.grid(alpha=0.3, which="major")
        ax.tick_params(labelsize=10)
        if col == 0:
            ax.set_ylabel("validation loss (bits/token)", fontsize=11)
        if rows == 1:
            ax.set_xlabel("training FLOPs", fontsize=11)
    if math.isfinite(ylo) and math.isfinite(focus):
        pad = 0.08 * (focus - ylo) or 0.1
        axes[0][0].set_ylim(ylo - pad, focus + pad)
        # x from where the first frontier comes into view (and any quality point) to the end
        for col, f in enumerate(fractions):
            inside = [c for c, v in columns[col] if v <= focus + pad]
            inside += [q.flops for q in quality if math.isclose(q.fraction, f)]
            ends = [p.flops for p in points if math.isclose(p.fraction, f)]
            if inside:
                axes[0][col].set_xlim(min(inside) / 1.6, max(max(ends), max(inside)) * 1.6)

    if rows == 2:
        labels = sorted({q.label for q in quality})
        names = [n for n, _ in priors] + sorted({q.prior for q in quality} - set(family))
        for col, f in enumerate(fractions):
            ax = axes[1][col]
            here = [q for q in quality if math.isclose(q.fraction, f)]
            for i, name in enumerate(names):
                mine = [q for q in here if q.prior == name]
                shift = 1.06 ** (i - (len(names) - 1) / 2)  # side by side at one compute
                for kind in sorted({q.point for q in mine}):
                    qs = [q for q in mine if q.point == kind]
                    xs = np.array([q.flops * shift for q in qs])
                    ys = np.array([q.value for q in qs])
                    lo = np.array([q.value - (q.lo if q.lo is not None else q.value) for q in qs])
                    hi = np.array([(q.hi if q.hi is not None else q.value) - q.value for q in qs])
                    ax.errorbar(xs, ys, yerr=[lo, hi], fmt=marker_for(kind), ms=6, capsize=2.5,
                                lw=1.1, color=colour[name],
                                mfc="white" if kind == "best" else colour[name], zorder=3)
            if not here:
                ax.text(0.5, 0.5, "no sample quality measured", transform=ax.transAxes,
                        ha="center", va="center", fontsize=11, color="#666")
            ax.set_xscale("log")
            ax.grid(alpha=0.3, which="major")
            ax.tick_params(labelsize=10)
            ax.set_xlabel("training FLOPs", fontsize=11)
            if col == 0:
                ax.set_ylabel(" / ".join(labels) + " (lower is better)", fontsize=11)
    for ax in axes.flat:
        ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(numticks=12))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())

    what = ("frontier" if reading == "frontier"
            else "best final loss at each budget")
    handles: list[Any] = [Line2D([], [], color=colour[n], lw=2.2,
                                label=f"{n} ({FAMILY_WORDS.get(fam, fam)}): {what}, "
                                      f"mean over seeds")
                          for n, fam in priors]
    handles.append(Patch(color="#888", alpha=0.35, label="95 % band (seeds, standard errors)"))
    handles += [Line2D([], [], ls="", marker=marker[s], color="#777", ms=6, alpha=0.7,
                       label=f"size {s}") for s in sizes]
    if any(x.status == "crossover" for x in crossovers):
        handles.append(Line2D([], [], color="#444", ls="--", lw=1.6,
                              label="crossover (shaded: its 95 % interval)"))
    if any(q.point == "best" for q in quality):
        handles.append(Line2D([], [], ls="", marker="o", mfc="white", color="#444",
                              label="quality at best weights"))
    if any(q.point == "final" for q in quality):
        handles.append(Line2D([], [], ls="", marker="o", color="#444",
                              label="quality at final weights"))
    fig.legend(handles=handles, loc="outside lower center", ncol=min(4, len(handles)),
               fontsize=10, frameon=False)
    if title:
        fig.suptitle(title, fontsize=14)
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=out.name + ".", suffix=".png", dir=out.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, format="png", dpi=DPI)
        os.replace(tmp, out)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


def marker_for(kind: str) -> str:
    """Quality markers: a circle for best and final weights (hollow / filled), a square else."""
    return "o" if kind in ("best", "final") else "s"
