"""The end-of-run table printed to the terminal."""

from __future__ import annotations

import textwrap
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


MIN_SET = 100  # samples per set below which distances and shares say little (docs/protocol.md)


def _num(v: float, spec: str) -> str:
    """`v` formatted; three significant digits never turn into an exponent (3090, not 3.09e+03)."""
    if v is None:
        return "?"
    if spec.endswith("g") and abs(v) >= 10 ** int(spec[1:-1] or 6):
        return f"{v:.0f}"
    return format(v, spec)


def interval_cell(d: dict[str, Any] | None, spec: str = ".3g", scale: float = 1.0, pct: bool = False) -> str:
    """`value [lo, hi]` of an interval dict (scaled; as percentages with `pct`), or "-"."""
    if not d or d.get("value") is None:
        return "-"
    f = (lambda v: None if v is None else v * (100 if pct else scale))
    spec = ".0f" if pct else spec
    unit = "%" if pct else ""
    return (f"{_num(f(d['value']), spec)}{unit} [{_num(f(d.get('lo')), spec)}, "
            f"{_num(f(d.get('hi')), spec)}]")


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.0f}%"


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{1000 * v:.1f}"


def _sig(v: dict[str, float] | None) -> str:
    if v is None:
        return "-"
    if v.get("lo") is not None and v.get("hi") is not None:
        return f"{v['mean']:.3g} [{v['lo']:.3g}, {v['hi']:.3g}]"
    return f"{v['mean']:.3g}"


def _nll(p: dict[str, Any]) -> str:
    nll = p.get("nll")
    if nll:
        return f"{nll['bits_per_token']:.3f} ±{1.96 * nll['se']:.3f} ({p['nll_kind']})"
    v = p.get("nll_bits_per_token")
    return f"{v:.3f} ({p['nll_kind']})" if v is not None else "- (none)"


def _compute(c: dict[str, Any] | None) -> list[str]:
    """Training FLOPs and epochs over the unique training sequences (runs made before they
    were recorded: -)."""
    if not c:
        return ["-", "-"]
    return [f"{c['flops']:.2g}", f"{c['epochs']:.3g}"]


def _copies(m: dict[str, Any] | None) -> str:
    """Exact token copies of training sequences, and near-copies in judge features, with the
    same shares of held-out real data in brackets."""
    if not m:
        return "-"

    def share(key: str) -> str:  # with its interval where the run has one
        iv = m.get(key.replace("_share", ""))
        return interval_cell(iv, pct=True) if iv else f"{100 * m[key]:.0f}%"

    out = f"{share('token_copy_share')} ({100 * m['token_copy_share_real']:.0f}%)"
    if m.get("feature_near_copy_share") is not None:
        out += (f" / {share('feature_near_copy_share')} "
                f"({100 * m['feature_near_copy_share_real']:.0f}%)")
    return out


def _entropy(e: dict[str, Any] | None) -> str:
    """Mean per-token entropy of the samples (bits, with its interval over seeds) and of as
    many real test sequences: far below real means samples collapse onto few tokens."""
    if not e:
        return "-"
    return f"{interval_cell(e['samples'], '.2f')} ({e['real']:.2f})"


def signal_names(metrics: dict[str, Any]) -> list[str]:
    """The modality's signal metrics in this run (empty when it has none)."""
    return list(next(iter((metrics.get("signal") or {}).values()), {}))


def prior_header(metrics: dict[str, Any]) -> list[str]:
    """PRIOR_HEADER with the modality's signal metrics after the token entropy."""
    at = PRIOR_HEADER.index("entropy bits (real)") + 1
    return [*PRIOR_HEADER[:at], *signal_names(metrics), *PRIOR_HEADER[at:]]


def reference_names(metrics: dict[str, Any]) -> list[str]:
    """The floor rows (real data, tokenizer reconstructions) the run has figures for."""
    judge_ref = (metrics.get("judge") or {}).get("reference") or {}
    return list(dict.fromkeys([*judge_ref, *(metrics.get("signal") or {})]))


def _judge_cells(j: dict[str, Any] | None) -> list[str]:
    """KID, FD, acc, prec, recall on the test split, each with its interval (older runs:
    FD mean ± std over seeds)."""
    t = (j or {}).get("test")
    if t is None:
        fd = f"{j['fd_mean']:.2f} ± {j['fd_std']:.2f}" if j else "-"
        return ["-", fd, _pct(j and j.get("accuracy")), _pct(j and j.get("precision")),
                _pct(j and j.get("recall"))]
    return [interval_cell(t.get("kid")), interval_cell(t.get("fd"), ".3g"), interval_cell(t.get("accuracy"), pct=True),
            interval_cell(t.get("precision"), pct=True), interval_cell(t.get("recall"), pct=True)]


def prior_rows(metrics: dict[str, Any]) -> list[list[str]]:
    """One row per prior and sampling variant (cells in `prior_header` order), with the floor
    rows of real data first."""
    rows = []
    names = signal_names(metrics)
    judge_ref = (metrics.get("judge") or {}).get("reference") or {}
    signal_ref = metrics.get("signal") or {}
    for name in reference_names(metrics):
        ref, sig = judge_ref.get(name), signal_ref.get(name, {})
        rows.append([SHORT.get(name, name), "", "", "", "", "", *_judge_cells(ref), "", "",
                     *(_sig(sig.get(n)) for n in names), "", "", "", "", "", "", ""])
    for key, p in metrics["priors"].items():
        for i, s in enumerate(p["sampling"]):
            first = i == 0
            sig = s.get("signal") or {}
            distinct = interval_cell(s.get("distinct"), pct=True) if s.get("distinct") else \
                _pct(s.get("distinct_share"))
            rows.append([
                key if first else "", p["name"] if first else "",
                f"{p['parameters'] / 1e6:.2f}M" if first else "",
                _nll(p) if first else "",
                s["variant"] or "-", str(s["nfe"]), *_judge_cells(s.get("judge")),
                distinct, _entropy(s.get("token_entropy")), *(_sig(sig.get(n)) for n in names),
                _copies(s.get("memorisation")),
                _ms(s.get("seconds_per_sample_latency")), _ms(s["seconds_per_sample"]),
                _fmt(s.get("peak_memory_mb_per_sample"), ".2f"),
                f"{p['train_time_s']:.0f}" if first else "",
                *(_compute(p.get("compute")) if first else ["", ""])])
    return rows


SHORT = {"tokenizer reconstructions": "reconstructed data"}  # floor rows, as the table names them

PRIOR_HEADER = ["prior", "kind", "params", "NLL bits/token", "sampling", "NFE", "KID",
                "FD", "acc", "prec", "recall", "distinct", "entropy bits (real)",
                "copies tok/feat (real)", "ms 1-at-a-time", "ms/sample batch", "MB/sample",
                "train s", "train FLOPs", "epochs"]

# the terminal drops columns in this order until the table fits (report.html has them all)
DROP_ORDER = ["train FLOPs", "epochs", "train s", "MB/sample", "kind", "params", "entropy bits (real)", "recall", "prec",
              "distinct", "FD",
              "ms/sample batch", "copies tok/feat (real)", "NLL bits/token"]


def fit(header: list[str], rows: list[list[str]], width: int
        ) -> tuple[list[str], list[list[str]], list[str]]:
    """Drop columns (signal metrics first, then DROP_ORDER) until the table is at most `width`
    characters wide; also the names of the dropped columns."""
    keep = list(range(len(header)))
    dropped: list[str] = []

    def shown() -> tuple[list[str], list[list[str]]]:
        return [header[i] for i in keep], [[r[i] for i in keep] for r in rows]

    for name in [h for h in header if h not in PRIOR_HEADER] + DROP_ORDER:
        if max(map(len, table(*shown()).splitlines())) <= width:
            break
        if name in header and header.index(name) in keep:
            keep.remove(header.index(name))
            dropped.append(name)
    return (*shown(), dropped)


def flags(metrics: dict[str, Any]) -> list[str]:
    """Where a set is too small for its figures to mean much, said in words (the table and
    report print these under the rows)."""
    out = []
    judge = metrics.get("judge") or {}
    refs = judge.get("reference") or {}
    prior_n = {s.get("n") for p in metrics["priors"].values() for s in p["sampling"]}
    for name, ref in refs.items():
        if prior_n and ref.get("n_per_set") not in prior_n:
            out.append(f"{name}: sets of {ref.get('n_per_set')} signals, while the priors' "
                       f"sets hold {', '.join(map(str, sorted(n for n in prior_n if n)))}: "
                       f"not comparable (too few real signals per class)")
        if (ref.get("fd_std") == 0.0 and (ref.get("sets") or 0) > 1):
            out.append(f"{name}: every seed drew the same real signals (± 0): the floor "
                       f"has no spread to show")
    small = sorted({n for n in prior_n if n and n < MIN_SET})
    if small:
        out.append(f"sets of {', '.join(map(str, small))} samples are below {MIN_SET}: "
                   f"distances and shares are rough; intervals say how rough")
    if any((s.get("seeds") or 0) < 2 for p in metrics["priors"].values() for s in p["sampling"]):
        out.append("one sampling seed: no spread between seeds in the intervals")
    for key, p in metrics["priors"].items():
        for s in p["sampling"]:
            m = s.get("memorisation") or {}
            if m and m["token_copy_share"] > max(0.5, 2 * m["token_copy_share_real"]):
                out.append(f"{key} {s['variant'] or ''}: {100 * m['token_copy_share']:.0f}% of "
                           f"its samples copy a training sequence exactly (held-out data: "
                           f"{100 * m['token_copy_share_real']:.0f}%): it memorises")
    return out


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


def judge_line(metrics: dict[str, Any]) -> str:
    """What the judge columns are, with the n each row used."""
    judge = metrics.get("judge")
    if not judge:
        return ("judge: none (unlabelled data, no judge for this modality, or evaluate.judge "
                "off)")
    ref = next(iter(judge["reference"].values()))
    sets = {(s.get("n"), s.get("seeds")) for p in metrics["priors"].values()
            for s in p["sampling"]}
    priors = ", ".join(f"{n} x {k} seeds" for n, k in sorted(sets, key=str))
    return (f"judge: {100 * judge['test_accuracy']:.1f}% on the real test split; KID (headline, "
            f"unbiased) and FD of each set against the test split, 95 % intervals; priors: "
            f"{priors}; floor rows: {ref['n_per_set']} x {ref['sets']} seeds")


def format_summary(metrics: dict[str, Any], run_dir: Path, width: int | None = None) -> str:
    """The end-of-run text: the tokenizer, the table (fitted to the terminal's width), the
    small-data flags and the finding."""
    import shutil

    from . import finding

    width = width or shutil.get_terminal_size((120, 24)).columns
    wrap = (lambda text, indent="": textwrap.fill(text, width, subsequent_indent=indent))
    lines = [f"run {metrics['run']} ({metrics['device']}, {metrics['precision']}): {run_dir}",
             "", tokenizer_table(metrics["tokenizer"])]
    if metrics["priors"]:
        header, rows, dropped = fit(prior_header(metrics), prior_rows(metrics), width)
        lines += ["", wrap(judge_line(metrics)), table(header, rows)]
        if dropped:
            lines.append(wrap(f"(not shown at this width: {', '.join(dropped)}; see report.html "
                              f"or metrics.json)"))
        lines += [wrap(f"! {f}", "  ") for f in flags(metrics)]
        lines += ["", *(wrap(f) for f in finding.describe(metrics))]
        lines += ["", f"samples: {run_dir / 'samples'}/<prior>/   metrics: "
                      f"{run_dir / 'metrics.json'}"]
    if metrics.get("study"):
        from .study.describe import statements, text

        lines += ["", text(metrics["study"]), "",
                  *(wrap(f) for f in statements(metrics["study"], "frontier"))]
    return "\n".join(lines)
