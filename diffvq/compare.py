"""`diffvq compare`: one table, one report, for the priors of one recipe or of finished runs
that share a token cache and a protocol (runs over different tokens, or measured with other
set sizes, seeds, splits, evaluation settings, precision, device or threads, are not comparable
and are refused, naming each difference)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from . import storage, tokencache
from .containment import inside
from .errors import UserError
from .report import report_page, write_report

RECIPE = "recipe.resolved.yaml"


def _recipe_text(run_dir: Path) -> str:
    """The run's resolved recipe, read only if it is inside the run directory."""
    return inside(run_dir, RECIPE, run_dir).read_text()


def report_for_run(run_dir: Path, metrics: dict[str, Any]) -> Path:
    """`run_dir/report.html` for one finished run."""
    run_dir = Path(run_dir)
    return write_report(metrics, {k: run_dir for k in metrics["priors"]}, run_dir / "report.html",
                        {metrics["run"]: _recipe_text(run_dir)},
                        f"diffvq {'compare' if metrics['priors'] else 'study'}: {metrics['run']}",
                        study_dir=run_dir)


def _load(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "metrics.json"
    if not path.is_file():
        raise UserError(f"{run_dir}: not a finished run (no metrics.json); run it with "
                        f"`diffvq run` or `diffvq compare RECIPE` first")
    return storage.read_json(inside(run_dir, "metrics.json", run_dir, action="read"))


PROTOCOL_SAMPLE = ("n_per_class", "seeds", "batch_size", "latency_samples", "measure_memory")


def protocol(run_dir: Path, metrics: dict[str, Any]) -> dict[str, Any]:
    """How a run's figures were measured, flat (`sample.seeds`, `evaluate.k`, `data.test`,
    `precision`, ...): the split sizes, sample-set sizes and seeds, every evaluation setting,
    and the precision, device and threads the samplers were timed with."""
    try:
        recipe = yaml.safe_load(_recipe_text(run_dir))
    except yaml.YAMLError as exc:
        raise UserError(f"{run_dir / RECIPE}: not readable YAML ({str(exc).splitlines()[0]})") \
            from None
    recipe = recipe if isinstance(recipe, dict) else {}
    sample = recipe.get("sample") if isinstance(recipe.get("sample"), dict) else {}
    evaluate = recipe.get("evaluate") if isinstance(recipe.get("evaluate"), dict) else {}
    data = metrics.get("data") if isinstance(metrics.get("data"), dict) else {}
    out: dict[str, Any] = {f"data.{k}": data.get(k) for k in ("train", "validation", "test")
                           if k in data}
    out.update({f"sample.{k}": sample.get(k) for k in PROTOCOL_SAMPLE})
    out.update({f"evaluate.{k}": v for k, v in evaluate.items()})
    out.update(precision=metrics.get("precision"), device=metrics.get("device"),
               threads=recipe.get("threads"))
    return out


def merge_runs(run_dirs: list[Path]) -> tuple[dict[str, Any], dict[str, Path]]:
    """Metrics of several runs as one (priors keyed `run/prior`), after checking that they
    share a token cache and a judge; also which run directory each prior's files are in."""
    if len(set(map(Path.resolve, run_dirs))) != len(run_dirs):
        raise UserError("compare: the same run directory is given twice")
    runs = [(d, _load(d)) for d in run_dirs]
    digests = {}
    for d, _ in runs:
        if not (d / "tokens").is_dir():
            raise UserError(f"{d}: has no token cache (tokens/)")
        digests[d] = tokencache.digest(d / "tokens")
    first_dir, first = runs[0]
    for d, m in runs[1:]:
        if digests[d] != digests[first_dir]:
            raise UserError(f"compare: {d} and {first_dir} have different token caches "
                            f"(digests {digests[d]} and {digests[first_dir]}): their priors "
                            f"model different tokens and cannot be compared; use runs that "
                            f"share the data and tokenizer settings")
        key_a = (m.get("judge") or {}).get("cache_dir")
        key_b = (first.get("judge") or {}).get("cache_dir")
        if Path(str(key_a)).name != Path(str(key_b)).name:
            raise UserError(f"compare: {d} and {first_dir} were measured by different judges "
                            f"({Path(str(key_a)).name} and {Path(str(key_b)).name})")
    base = protocol(first_dir, first) if len(runs) > 1 else None  # one run: nothing to match
    for d, m in runs[1:]:
        other = protocol(d, m)
        differ = [f"{k} {other.get(k)!r} vs {base.get(k)!r}"
                  for k in sorted(set(base) | set(other)) if other.get(k) != base.get(k)]
        if differ:
            raise UserError(f"compare: {d} was measured under another protocol than "
                            f"{first_dir} ({'; '.join(differ)}); figures measured differently "
                            f"cannot share one table: run both with the same settings")
    merged = {k: v for k, v in first.items() if k != "priors"}
    merged["run"] = " + ".join(m["run"] for _, m in runs)
    merged["runs"] = [str(d) for d, _ in runs]
    if base is not None:
        merged["protocol"] = base
    merged["priors"], where = {}, {}
    for d, m in runs:
        for key, p in m["priors"].items():
            name = f"{m['run']}/{key}"
            merged["priors"][name] = p
            where[name] = d
    return merged, where


def compare_runs(run_dirs: list[Path], out_dir: Path) -> tuple[dict[str, Any], Path]:
    """Merge the runs and write `out_dir/metrics.json` and `report.html`. The whole page is
    made first, so that a run naming a file outside itself leaves nothing written."""
    merged, where = merge_runs(run_dirs)
    recipes = {str(d): _recipe_text(d) for d in run_dirs if (d / RECIPE).is_file()}
    page = report_page(merged, where, recipes, f"diffvq compare: {merged['run']}")
    out_dir.mkdir(parents=True, exist_ok=True)
    storage.write_json(out_dir / "metrics.json", merged)
    path = out_dir / "report.html"
    storage.atomic_write_text(path, page)
    return merged, path
