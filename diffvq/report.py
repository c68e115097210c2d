"""`report.html`: the comparison table (best of each column marked), quality-vs-cost plots, a
gallery per prior and sampling setting, the finding at matched quality, the recipe and package
versions. One self-contained file: images and audio are embedded, nothing is fetched."""

from __future__ import annotations

import base64
import html
import io
import mimetypes
from pathlib import Path
from typing import Any

from . import finding, summary
from .containment import inside
from .errors import UserError

# table columns: (header, direction) where direction is "min", "max" or None (not ranked); a
# modality's signal metrics come after "distinct", ranked by closeness to real data ("real")
COLUMNS: list[tuple[str, str | None]] = [
    ("prior", None), ("kind", None), ("params", None), ("NLL bits/token", "min-kind"),
    ("sampling", None), ("NFE", "min"), ("KID", "min"), ("FD", "min"), ("acc", "max"),
    ("prec", "max"), ("recall", "max"), ("distinct", "max"), ("entropy bits (real)", None),
    ("copies tok/feat (real)", "min"),
    ("ms 1-at-a-time", "min"), ("ms/sample batch", "min"), ("MB/sample", "min"),
    ("train s", None), ("train FLOPs", None), ("epochs", None)]
assert [c for c, _ in COLUMNS] == summary.PRIOR_HEADER


def columns(metrics: dict[str, Any]) -> list[tuple[str, str | None]]:
    """COLUMNS with this run's signal metrics in their place."""
    known = dict(COLUMNS)
    return [(c, known.get(c, "real")) for c in summary.prior_header(metrics)]

CSS = """
body{font:15px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1400px;color:#222;padding:0 1em}
h1{font-size:1.6em} h2{margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:13px;margin:1em 0}
th,td{padding:4px 8px;border-bottom:1px solid #eee;text-align:right;white-space:nowrap}
th{background:#f5f5f5;position:sticky;top:0}
td:nth-child(-n+2),th:nth-child(-n+2){text-align:left} .wide{overflow-x:auto}
tr.reference td{color:#666;font-style:italic} td.best{font-weight:bold;background:#e3f4e3}
.flag{color:#a33;font-weight:bold} .finding{background:#fff8e0;border-left:4px solid #e0b000;padding:.6em 1em;margin:1em 0}
.gallery{display:flex;flex-wrap:wrap;gap:1em} .gallery figure{margin:0}
figcaption{font-size:13px;color:#555} img{max-width:100%} pre{background:#f7f7f7;padding:1em;
overflow:auto;font-size:12px}
"""


def data_uri(path: Path) -> str:
    mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode()}"


def _number(cell: str) -> float | None:
    """The leading number of a table cell ("12.3 ± 0.4", "91%", "3.13 (exact)"), or None."""
    head = cell.split(" ")[0].rstrip("%M")
    try:
        return float(head)
    except ValueError:
        return None


def _kind(cell: str) -> str:
    """The kind in brackets at the end of a cell ("3.10 ±0.01 (exact)" -> "exact")."""
    return cell.rsplit("(", 1)[-1].rstrip(")") if cell.endswith(")") else ""


def table_html(metrics: dict[str, Any]) -> str:
    """The summary table as HTML; in each ranked column the best prior row is marked."""
    rows = summary.prior_rows(metrics)
    cols = columns(metrics)
    n_ref = len(summary.reference_names(metrics))
    real = rows[0] if n_ref and rows[0][0] == "real data" else None
    best: dict[int, float] = {}
    best_by_kind: dict[tuple[int, str], float] = {}  # exact NLL and bounds are never ranked together
    for i, (_, direction) in enumerate(cols):
        values = [v for r in rows[n_ref:] if (v := _number(r[i])) is not None]
        if direction == "real":  # closest to the real data's value
            target = _number(real[i]) if real else None
            if target is not None and values:
                best[i] = min(values, key=lambda v: abs(v - target))
        elif direction == "min-kind":
            for r in rows[n_ref:]:
                v, kind = _number(r[i]), _kind(r[i])
                if v is not None and v < best_by_kind.get((i, kind), float("inf")):
                    best_by_kind[(i, kind)] = v
        elif direction and values:
            best[i] = min(values) if direction == "min" else max(values)
    out = ["<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c, _ in cols) + "</tr>"]
    for r, row in enumerate(rows):
        cls = ' class="reference"' if r < n_ref else ""
        cells = []
        for i, cell in enumerate(row):
            mark = r >= n_ref and (
                (i in best and _number(cell) == best[i])
                or best_by_kind.get((i, _kind(cell))) == _number(cell) is not None)
            cells.append(f'<td{" class=best" if mark else ""}>{html.escape(cell)}</td>')
        out.append(f"<tr{cls}>{''.join(cells)}</tr>")
    out.append("</table>")
    return "\n".join(out)


HEADLINE_NAME = "KID"


def _headline(judge: dict[str, Any]) -> tuple[float, float, float]:
    """(value, lo, hi) of the headline distance on test (older runs: FD mean ± std)."""
    iv = (judge.get("test") or {}).get("kid")
    if iv and iv.get("value") is not None:
        v = iv["value"]
        return v, iv.get("lo") if iv.get("lo") is not None else v, \
            iv.get("hi") if iv.get("hi") is not None else v
    return judge["fd_mean"], judge["fd_mean"] - judge["fd_std"], judge["fd_mean"] + judge["fd_std"]


def plot_png(metrics: dict[str, Any]) -> bytes | None:
    """Judge KID (with its 95 % interval) against NFE, against ms per sample one at a time and
    in batches: one line per prior across its sampling settings (a point for a single setting),
    the floor as lines."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [("nfe", "network evaluations per sample", 1),
          ("seconds_per_sample_latency", "ms per sample, one at a time", 1000),
          ("seconds_per_sample", "ms per sample, in batches", 1000)]
    series = [(k, p, [v for v in p["sampling"] if v.get("judge")]) for k, p in metrics["priors"].items()]
    series = [s for s in series if s[2]]
    if not series:
        return None
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4), constrained_layout=True)
    refs = (metrics.get("judge") or {}).get("reference") or {}
    for ax, (key, label, scale) in zip(axes, xs):
        for name, p, rows in series:
            pts = sorted((v[key] * scale, *_headline(v["judge"]))
                         for v in rows if v.get(key) is not None)
            if not pts:
                continue
            x, y, lo, hi = zip(*pts)
            style = "s" if p["name"] == "autoregressive" else "o-"
            ax.errorbar(x, y, yerr=[[a - b for a, b in zip(y, lo)], [b - a for a, b in zip(y, hi)]],
                        fmt=style, capsize=3, markersize=7 if len(x) == 1 else 5,
                        label=f"{name} ({p['name']})")
        for (ref_name, ref), ls in zip(refs.items(), (":", "--")):
            ax.axhline(_headline(ref)[0], color="grey", ls=ls, lw=1, label=ref_name)
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel(label)
        ax.set_ylabel(f"judge {HEADLINE_NAME} (lower is better), 95 % interval")
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def _media(path: Path, caption: str) -> str:
    if not path.is_file():
        return f"<p>missing: {html.escape(str(path))}</p>"
    uri = data_uri(path)
    ext = path.suffix.lower()
    if ext in (".png", ".jpg", ".jpeg", ".gif", ".svg"):
        body = f'<img src="{uri}" alt="{html.escape(caption)}">'
    elif ext in (".wav", ".flac", ".ogg", ".mp3"):
        body = f'<audio controls preload="none" src="{uri}"></audio>'
        caption = f"{path.stem} · {caption}"
    else:
        body = f'<a download="{html.escape(path.name)}" href="{uri}">{html.escape(path.name)}</a>'
    return f"<figure>{body}<figcaption>{html.escape(caption)}</figcaption></figure>"


def gallery_html(metrics: dict[str, Any], run_dirs: dict[str, Path]) -> str:
    """Every prior's files per sampling setting; `run_dirs` maps a prior key to its run dir.
    The files named in metrics.json are read only from inside that run dir (`inside`)."""
    parts = []
    for key, p in metrics["priors"].items():
        parts.append(f"<h3>{html.escape(key)} <small>({html.escape(p['name'])})</small></h3>")
        figs = []
        source = run_dirs[key] / "metrics.json"
        for v in p["sampling"]:
            j = v.get("judge")
            cap = (f"{v['variant'] or 'default'} · NFE {v['nfe']}"
                   + (f" · judge {HEADLINE_NAME} {_headline(j)[0]:.3g}" if j else ""))
            files = v.get("files", [])
            if not isinstance(files, list):
                raise UserError(f"{source}: 'files' of prior {key} is {type(files).__name__}, "
                                f"not a list of paths inside the run directory")
            figs += [_media(inside(run_dirs[key], f, source), cap) for f in files]
        parts.append(f'<div class="gallery">{"".join(figs)}</div>')
    return "\n".join(parts)


def write_report(metrics: dict[str, Any], run_dirs: dict[str, Path], out: Path,
                 recipes: dict[str, str], title: str, study_dir: Path | None = None) -> Path:
    """Write the self-contained report to `out`. `recipes`: run name -> resolved recipe text;
    `study_dir`: the run whose study (`metrics["study"]`) the report shows."""
    from .storage import atomic_write_text

    atomic_write_text(out, report_page(metrics, run_dirs, recipes, title, study_dir))
    return out


def study_html(metrics: dict[str, Any], run_dir: Path | None) -> list[str]:
    """The study section (`diffvq.study.describe`), its map read only from inside the run."""
    study = metrics.get("study")
    if not study or run_dir is None:
        return []
    from .study.describe import html_section

    path = inside(run_dir, study.get("map"), run_dir / "metrics.json")
    return [html_section(study, data_uri(path))]


def report_page(metrics: dict[str, Any], run_dirs: dict[str, Path], recipes: dict[str, str],
                title: str, study_dir: Path | None = None) -> str:
    """The report as one HTML string, every embedded file already read: a run that names a
    file outside itself is refused here, before anything is written."""
    tok = summary.tokenizer_table(metrics["tokenizer"])
    judge = metrics.get("judge")
    if judge:
        ref = next(iter(judge["reference"].values()))
        judge_txt = (f"Judge: a classifier trained on the real training split, "
                     f"{100 * judge['test_accuracy']:.1f}% accurate on the real test split. "
                     f"KID (the headline: unbiased at these set sizes) and FD compare its "
                     f"penultimate features of each set with those of the real test split (not "
                     f"Inception: no downloaded weights); every figure carries a 95 % bootstrap "
                     f"interval over seeds and samples. {summary.judge_line(metrics)}. "
                     f"The grey rows are the floor: sets of real training signals ({ref['n_per_set']} "
                     f"per set, {ref['sets']} seeds), and their tokenizer reconstructions (their "
                     f"accuracy is on the real test split and its reconstructions). "
                     f"Precision/recall: k-NN manifolds in judge features. Copies: the share of "
                     f"samples that repeat a training token sequence exactly, and that come "
                     f"closer to a training signal in judge features than all but the closest "
                     f"held-out real signals (evaluate.copy_quantile); held-out real data's "
                     f"shares in brackets. The protocol: "
                     f"docs/protocol.md.")
    else:
        judge_txt = "No judge: unlabelled data, or a modality without one; FD and accuracy are absent."
    nll_note = ("NLL is bits per token on the held-out test split, computed in float32, ± its "
                "95 % half-width (standard error over sequences, which for a bound includes its "
                "Monte-Carlo noise): exact for autoregressive priors, an upper bound (ELBO) for "
                "discrete diffusion, none for continuous latent diffusion (a density over "
                "vectors is not a likelihood of tokens). Exact values and bounds are marked best "
                "only within their kind.")
    notes = metrics.get("signal_notes") or {}
    signal_txt = " ".join(f"{name}: {notes.get(name, 'a measure of the signals')}."
                          for name in summary.signal_names(metrics))
    if signal_txt:
        signal_txt = ("The modality's own measures of the decoded signals, mean ± std over "
                      "sampling seeds (the same set sizes as judge FD); the target is the real "
                      "data's value, and the green cell is the closest to it. " + signal_txt)
    plot = plot_png(metrics)
    findings = finding.describe(metrics)
    env = metrics.get("environment") or {}
    body = [
        f"<h1>{html.escape(title)}</h1>",
        f"<p>device {html.escape(str(metrics.get('device')))}, precision "
        f"{html.escape(str(metrics.get('precision')))}; data {html.escape(metrics['data']['name'])}"
        f" ({metrics['data'].get('train', '?')} train / "
        f"{metrics['data'].get('validation', '?')} validation / "
        f"{metrics['data'].get('test', '?')} test)</p>",
        *(f'<div class="finding">{html.escape(s)}</div>' for s in findings),
        *study_html(metrics, study_dir),
        *(["<h2>Priors</h2>", f'<div class="wide">{table_html(metrics)}</div>']
          if metrics["priors"] else []),
        *(f'<p class="flag">{html.escape(f)}</p>' for f in summary.flags(metrics)),
        f"<p>{html.escape(judge_txt)}</p>",
        *([f"<p>{html.escape(signal_txt)}</p>"] if signal_txt else []),
        f"<p>{html.escape(nll_note)} Best value of each column in green.</p>",
        *(["<h2>Quality against cost</h2>",
           (f'<img alt="judge FD against cost" src="data:image/png;base64,'
            f'{base64.b64encode(plot).decode()}">' if plot
            else "<p>No judge figures to plot.</p>")] if metrics["priors"] else []),
        "<h2>Tokenizer</h2>", f"<pre>{html.escape(tok)}</pre>",
        *(["<h2>Samples</h2>", gallery_html(metrics, run_dirs)] if metrics["priors"] else []),
        "<h2>Recipe and versions</h2>",
        *(f"<h3>{html.escape(name)}</h3><pre>{html.escape(text)}</pre>"
          for name, text in recipes.items()),
    ]
    if env:
        body.append(f"<pre>{html.escape(str(env))}</pre>")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title><style>{CSS}</style></head><body>{''.join(body)}</body></html>")
