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


def _fd(j: dict[str, Any] | None) -> str:
    return f"{j['fd_mean']:.2f} ± {j['fd_std']:.2f}" if j else "-"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.0f}%"


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{1000 * v:.1f}"


def _sig(v: dict[str, float] | None) -> str:
    return "-" if v is None else f"{v['mean']:.3g} ±{v['std']:.2g}"


def signal_names(metrics: dict[str, Any]) -> list[str]:
    """The modality's signal metrics in this run (empty when it has none)."""
    return list(next(iter((metrics.get("signal") or {}).values()), {}))


def prior_header(metrics: dict[str, Any]) -> list[str]:
    """PRIOR_HEADER with the modality's signal metrics after "distinct"."""
    at = PRIOR_HEADER.index("distinct") + 1
    return [*PRIOR_HEADER[:at], *signal_names(metrics), *PRIOR_HEADER[at:]]


def reference_names(metrics: dict[str, Any]) -> list[str]:
    """The floor rows (real data, tokenizer reconstructions) the run has figures for."""
    judge_ref = (metrics.get("judge") or {}).get("reference") or {}
    return list(dict.fromkeys([*judge_ref, *(metrics.get("signal") or {})]))


def prior_rows(metrics: dict[str, Any]) -> list[list[str]]:
    """One row per prior and sampling variant (cells in `prior_header` order), with the floor
    rows of real data first."""
    rows = []
    names = signal_names(metrics)
    judge_ref = (metrics.get("judge") or {}).get("reference") or {}
    signal_ref = metrics.get("signal") or {}
    for name in reference_names(metrics):
        ref, sig = judge_ref.get(name), signal_ref.get(name, {})
        rows.append([name, "", "", "", "", "", _fd(ref), _pct(ref and ref.get("accuracy")),
                     _pct(ref and ref["precision"]), _pct(ref and ref["recall"]), "",
                     *(_sig(sig.get(n)) for n in names), "", "", "", ""])
    for key, p in metrics["priors"].items():
        nll = p["nll_bits_per_token"]
        for i, s in enumerate(p["sampling"]):
            first = i == 0
            j, sig = s.get("judge"), s.get("signal") or {}
            rows.append([
                key if first else "", p["name"] if first else "",
                f"{p['parameters'] / 1e6:.2f}M" if first else "",
                (f"{nll:.3f} ({p['nll_kind']})" if nll is not None else "- (none)") if first else "",
                s["variant"] or "-", str(s["nfe"]), _fd(j), _pct(j and j.get("accuracy")),
                _pct(j and j["precision"]), _pct(j and j["recall"]),
                _pct(s.get("distinct_share")), *(_sig(sig.get(n)) for n in names),
                _ms(s.get("seconds_per_sample_latency")), _ms(s["seconds_per_sample"]),
                _fmt(s.get("peak_memory_mb_per_sample"), ".2f"),
                f"{p['train_time_s']:.0f}" if first else ""])
    return rows


PRIOR_HEADER = ["prior", "kind", "params", "NLL bits/token", "sampling", "NFE", "judge FD",
                "acc", "prec", "recall", "distinct", "ms 1-at-a-time", "ms/sample batch",
                "MB/sample", "train s"]


TOKENIZER_KEYS = {"name", "codebook_size", "grid_shape", "recon_mse", "codebook_usage", "perplexity",
                  "parameters", "train_steps", "train_time_s"}


def tokenizer_table(t: dict[str, Any]) -> str:
    """The tokenizer's figures, with whatever reconstruction metrics its modality reports
    (PSNR for images, log-mel L1 and spectral convergence for audio)."""
    extra = [k for k in t if k not in TOKENIZER_KEYS and isinstance(t[k], (int, float))]
    row = [t["name"], "x".join(map(str, t["grid_shape"])), str(t["codebook_size"]),
           *(_fmt(t[k], ".3f") for k in extra), _fmt(t.get("recon_mse"), ".4f"),
           f"{100 * t['codebook_usage']:.1f}%", _fmt(t["perplexity"], ".1f")]
    return table(["tokenizer", "grid", "codes", *extra, "MSE (model space)", "usage",
                  "perplexity"], [row])


def format_summary(metrics: dict[str, Any], run_dir: Path) -> str:
    judge = metrics.get("judge")
    judge_line = (f"judge: {100 * judge['test_accuracy']:.1f}% on the real test split; FD of "
                  f"{next(iter(judge['reference'].values()))['n_per_set']} signals per seed "
                  f"against the real test split" if judge else
                  "judge: none (unlabelled data, no judge for this modality, or evaluate.judge "
                  "off)")
    return "\n".join([
        f"run {metrics['run']} ({metrics['device']}, {metrics['precision']}): {run_dir}",
        "",
        tokenizer_table(metrics["tokenizer"]),
        "",
        judge_line,
        table(prior_header(metrics), prior_rows(metrics)),
        "",
        f"samples: {run_dir / 'samples'}/<prior>/   metrics: {run_dir / 'metrics.json'}",
    ])
