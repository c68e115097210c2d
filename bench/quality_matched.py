"""Quality-matched sampling speed: at equal judge quality, is a diffusion prior faster than the
autoregressive one, one sample at a time (latency) and in batches (throughput)?

Runs (or reuses) `diffvq compare` on a recipe, then for every non-autoregressive prior prints
the finding's equivalence test (diffvq.finding: the setting chosen on validation, then on test
within ±10 %, better, worse, or cannot tell at this sample size) and the ratio of seconds per
sample in both regimes with their intervals, measured in the same run.

    python bench/quality_matched.py                       # recipes/image/mnist-compare.yaml
    python bench/quality_matched.py RECIPE [key=value ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

from diffvq import finding, recipe as recipe_mod
from diffvq.compare import report_for_run
from diffvq.pipeline import Run
from diffvq.summary import table


def main(argv: list[str]) -> int:
    path = argv[0] if argv else "recipes/image/mnist-compare.yaml"
    r, plugins = recipe_mod.load(path, argv[1:])
    run = Run(r, plugins, progress=False)
    metrics = run.execute()
    report = report_for_run(run.run_dir, metrics)
    print(f"# python bench/quality_matched.py {' '.join(argv)}".rstrip())
    print(f"# {metrics['device']}, {metrics['precision']}; judge FD over "
          f"{r.sample.seeds} seeds x {r.sample.n_per_class} per class; report: {report}")
    rows = []
    for key, p in metrics["priors"].items():
        for v in p["sampling"]:
            j = v.get("judge") or {}
            rows.append([key, v["variant"] or "-", str(v["nfe"]),
                         f"{j.get('fd_mean', float('nan')):.2f} ± {j.get('fd_std', 0):.2f}",
                         f"{1000 * v.get('seconds_per_sample_latency', float('nan')):.1f}",
                         f"{1000 * v['seconds_per_sample']:.2f}"])
    print(table(["prior", "sampling", "NFE", "judge FD", "ms 1-at-a-time", "ms/sample batch"],
                rows))
    matches = finding.quality_matched(metrics)
    if not matches:
        print("no autoregressive prior with judge figures: nothing to match against")
        return 1
    print()
    out = []
    for m in matches:
        out.append([m.prior, f"{m.variant.label} ({m.chosen_on})", m.outcome,
                    m.difference.format("+.0%") if m.difference else "-",
                    m.latency_speedup.format(".2f") if m.latency_speedup else "-",
                    m.batch_speedup.format(".2f") if m.batch_speedup else "-"])
    print(table(["prior", "setting (chosen on)", f"against {matches[0].reference}",
                 "difference [95 %]", "speed-up 1-at-a-time",
                 f"speed-up batch {r.sample.batch_size}"], out))
    print("(difference = (this prior - reference) / reference in the headline judge distance; "
          "speed-up = autoregressive seconds per sample / this prior's; > 1: this prior is faster)")
    for line in finding.describe(metrics):
        print(f"\nfinding: {line}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    raise SystemExit(main(sys.argv[1:]))
