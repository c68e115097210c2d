"""The end-of-run table printed to the terminal."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _fmt(v: Any, spec: str = "") -> str:
    if v is None:
        return "-"
    return format(v, spec) if spec else str(v)


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def format_summary(metrics: dict[str, Any], run_dir: Path) -> str:
    t = metrics["tokenizer"]
    tok_rows = [[t["name"], "x".join(map(str, t["grid_shape"])), str(t["codebook_size"]),
                 _fmt(t.get("psnr_db"), ".2f"), _fmt(t.get("recon_mse"), ".4f"),
                 f"{100 * t['codebook_usage']:.1f}%", _fmt(t["perplexity"], ".1f")]]
    prior_rows = []
    for key, p in metrics["priors"].items():
        nll = p["nll_bits_per_token"]
        for i, s in enumerate(p["sampling"]):
            first = i == 0
            prior_rows.append([
                key if first else "", p["name"] if first else "",
                f"{p['parameters'] / 1e6:.2f}M" if first else "",
                (f"{nll:.3f} ({p['nll_kind']})" if nll is not None else "- (none)") if first else "",
                s["variant"] or "-", str(s["nfe"]), f"{1000 * s['seconds_per_sample']:.1f}",
                f"{p['train_steps']}" if first else "", f"{p['train_time_s']:.0f}" if first else ""])
    return "\n".join([
        f"run {metrics['run']} ({metrics['device']}, {metrics['precision']}): {run_dir}",
        "",
        table(["tokenizer", "grid", "codes", "PSNR dB", "MSE", "usage", "perplexity"], tok_rows),
        "",
        table(["prior", "kind", "params", "NLL bits/token", "sampling", "NFE", "ms/sample",
               "steps", "train s"], prior_rows),
        "",
        f"samples: {run_dir / 'samples'}/<prior>/   metrics: {run_dir / 'metrics.json'}",
    ])
