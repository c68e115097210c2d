"""A study's figures in words and tables, for the terminal and the report: the crossover of each
diffusion prior with the autoregressive reference per data fraction (both readings), where each
prior starts to overfit, and each cell's frontier figures with sample quality and copies."""

from __future__ import annotations

import html
from typing import Any

from ..summary import interval_cell, table


def _flops(v: float | None) -> str:
    return "-" if v is None else f"{v:.3g}"


def crossover_rows(study: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    header = ["data", "diffusion prior", "reading", "status", "crossover FLOPs [95 %]",
              "its epochs (AR's)"]
    rows = []
    for c in study["crossovers"]:
        iv = c.get("interval") or {}
        at = "-"
        if c.get("flops") is not None:
            hi = _flops(iv.get("hi")) if iv.get("hi") is not None else "beyond budget"
            at = f"{_flops(c['flops'])} [{_flops(iv.get('lo'))}, {hi}]"
        epochs = "-" if c.get("epochs") is None else \
            f"{c['epochs']:.3g} ({_flops(c.get('reference_epochs'))})"
        rows.append([f"{100 * c['fraction']:g} %", c["challenger"], c["reading"], c["status"],
                     at, epochs])
    return header, rows


def overfit_rows(study: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    header = ["prior", "data", "size", "epochs to best", "best bits/token", "final (epochs)",
              "overfits"]
    rows = []
    for r in study["epochs_to_best"]:
        rows.append([r["prior"], f"{100 * r['fraction']:g} %", r["size"],
                     f"{r['best_epochs']:.3g}", f"{r['best_loss']:.3f}",
                     f"{r['final_loss']:.3f} ({r['final_epochs']:.3g})",
                     "yes" if r["overfits"] else "no"])
    return header, rows


def cell_rows(study: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """One row per prior, fraction, size and budget: seed means of the validation loss at the
    best point and the end, with KID and copy shares of the seed-0 samples."""
    header = ["prior", "data", "size", f"budget {study['unit']}", "epochs", "best bits/token", "at FLOPs",
              "final bits/token", "KID best", "KID final", "copies best/final"]
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for c in study["cells"]:
        groups.setdefault((c["prior"], c["fraction"], c["size"], c["budget"]), []).append(c)
    rows = []
    for (prior, frac, size, budget), cells in groups.items():
        mean = (lambda xs: sum(xs) / len(xs))
        first = min(cells, key=lambda c: c["seed"])
        q = first.get("quality") or {}
        copies = "/".join(interval_cell((q.get(w) or {}).get("memorisation", {})
                                        .get("token_copy"), pct=True) for w in ("best", "final"))
        rows.append([prior, f"{100 * frac:g} %", size, _flops(budget),
                     f"{mean([c['epochs'] for c in cells]):.3g}",
                     f"{mean([c['best']['loss'] for c in cells]):.3f}",
                     _flops(mean([c["best"]["flops"] for c in cells])),
                     f"{mean([c['final']['loss'] for c in cells]):.3f}",
                     interval_cell((q.get("best") or {}).get("kid")),
                     interval_cell((q.get("final") or {}).get("kid")), copies])
    return header, rows


def statements(study: dict[str, Any], reading: str | None = None) -> list[str]:
    """Each crossover's one-line statement (of one reading, or of both)."""
    return [f"{100 * c['fraction']:g} % of the data, {c['challenger']} against "
            f"{c['reference']}: {c['statement']}" for c in study["crossovers"]
            if reading is None or c["reading"] == reading]


def text(study: dict[str, Any]) -> str:
    """The study for the terminal."""
    parts = ["study: validation loss against training compute "
             f"({len(study['cells'])} runs; map: {study['map']})",
             table(*crossover_rows(study)), "", "where each prior starts to overfit "
             "(largest budget, seed means):", table(*overfit_rows(study))]
    return "\n".join(parts)


def html_section(study: dict[str, Any], image_uri: str) -> str:
    """The study for report.html: the map, the statements, and the three tables."""
    def tab(header: list[str], rows: list[list[str]]) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>"
                       for r in rows)
        return f'<div class="wide"><table><tr>{head}</tr>{body}</table></div>'

    fams = ", ".join(f"{k}: {'exact NLL' if f == 'exact' else 'an upper bound (ELBO)' if f == 'bound' else f}"
                     for k, f in study["families"].items())
    return "".join([
        "<h2>Where diffusion overtakes autoregression</h2>",
        f"<p>Validation loss in bits per token against training FLOPs, for each share of the "
        f"unique training data ({fams}; a bound compared with an exact NLL is conservative for "
        f"diffusion). Faint points: every validation point of every run; lines: each prior's "
        f"frontier (best loss at or below that compute, mean over seeds, with its 95 % band). "
        f"Bottom: judge KID on the validation split of samples from each run's best and final "
        f"weights.</p>",
        f'<img alt="the study map" src="{image_uri}">',
        *(f'<div class="finding">{html.escape(s)}</div>' for s in statements(study)),
        "<h3>Crossovers</h3>",
        "<p>Frontier: best validation loss at or below a compute (early stopping allowed). "
        "Equal budget: each run trained for exactly its budget (its schedule ends there). "
        "Intervals: bootstrap over training seeds and the validation standard errors.</p>",
        tab(*crossover_rows(study)),
        "<h3>Where each prior starts to overfit</h3>", tab(*overfit_rows(study)),
        "<h3>Every cell</h3>", "<p>Seed means; KID (95 % interval) and exact token copies "
        "(share of samples repeating a training sequence of the run's own subset) are of the "
        "first seed's samples.</p>", tab(*cell_rows(study)),
    ])
