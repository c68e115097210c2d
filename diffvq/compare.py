"""`diffvq compare`: one table, one report, for the priors of one recipe or of finished runs
that share a token cache (runs over different tokens are not comparable and are refused)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
                        f"diffvq compare: {metrics['run']}")


def _load(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "metrics.json"
    if not path.is_file():
        raise UserError(f"{run_dir}: not a finished run (no metrics.json); run it with "
                        f"`diffvq run` or `diffvq compare RECIPE` first")
    return storage.read_json(inside(run_dir, "metrics.json", run_dir, action="read"))


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
    merged = {k: v for k, v in first.items() if k != "priors"}
    merged["run"] = " + ".join(m["run"] for _, m in runs)
    merged["runs"] = [str(d) for d, _ in runs]
    for field in ("device", "precision"):
        values = sorted({str(m.get(field)) for _, m in runs})
        merged[field] = values[0] if len(values) == 1 else "mixed: " + ", ".join(values)
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
