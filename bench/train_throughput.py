"""Training throughput of the quickstart's tokenizer and prior, as achieved FLOP/s against the
fp32 (and bf16) matrix-multiply peak measured in the same run, plus the quickstart's peak memory.

    python bench/train_throughput.py                  # all of it (about 5 minutes on 2 cores)
    python bench/train_throughput.py --no-quickstart  # throughput only (under a minute)

FLOPs per step are counted by torch.utils.flop_counter (matmuls and convolutions, forward and
backward); the step time includes everything else (norms, the quantizer, the optimizer), so the
ratio says how much of the machine a real training step uses.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from diffvq import recipe as recipe_mod
from diffvq.interfaces import TokenSpec
from diffvq.runtime import autocast, resolve_precision, select_device
from diffvq.trainer import make_optimizer

ROOT = Path(__file__).resolve().parent.parent


def matmul_peak(dtype: torch.dtype, device: torch.device, n: int = 2048, reps: int = 8) -> float:
    """Best-of-`reps` FLOP/s of an n x n matrix multiply."""
    a = torch.randn(n, n, dtype=dtype, device=device)
    b = torch.randn(n, n, dtype=dtype, device=device)
    best = float("inf")
    for _ in range(reps + 2):
        t = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def step_flops(module, batch, device, precision) -> float:
    opt = make_optimizer(module, recipe_mod.TrainConfig())
    with FlopCounterMode(display=False) as counter:
        with autocast(device, precision):
            loss, _ = module.training_loss(batch)
        loss.backward()
    opt.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def step_time(module, batch, device, precision, steps: int) -> float:
    opt = make_optimizer(module, recipe_mod.TrainConfig())
    for i in range(steps + 5):
        if i == 5:
            t = time.perf_counter()
        with autocast(device, precision):
            loss, _ = module.training_loss(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t) / steps


def quickstart_memory(recipe: Path) -> dict[str, float]:
    """Run the quickstart in a child process; report its wall time and peak RSS."""
    with tempfile.TemporaryDirectory() as runs:
        t = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "diffvq", "run", str(recipe), "--runs-dir",
                               runs, "--quiet"], capture_output=True, text=True)
        wall = time.perf_counter() - t
    if done.returncode:
        raise SystemExit(f"quickstart failed:\n{done.stderr}")
    rss_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # Linux: KiB
    return {"wall_time_s": wall, "peak_rss_mib": rss_kib / 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default=str(ROOT / "recipes/quickstart.yaml"))
    ap.add_argument("--steps", type=int, default=30, help="timed steps per model")
    ap.add_argument("--no-quickstart", action="store_true", help="skip the peak-memory run")
    args = ap.parse_args()

    recipe, plugins = recipe_mod.load(args.recipe)
    device = select_device(recipe.device)
    precision = resolve_precision(recipe.precision, device)
    peak32 = matmul_peak(torch.float32, device)
    peak16 = matmul_peak(torch.bfloat16, device)

    dataset = recipe.data.cls(**recipe.data.params)
    info = dataset.info()
    modality = recipe.modality.cls(info=info, **recipe.modality.params)
    torch.manual_seed(0)
    tok = recipe.tokenizer.cls(input_shape=modality.model_shape(), **recipe.tokenizer.params)
    tok.to(device)
    bs = recipe.tokenizer_train.batch_size
    x = torch.rand(bs, *modality.model_shape(), device=device) * 2 - 1
    rows = [("tokenizer " + recipe.tokenizer.name, tok, {"x": x}, bs)]
    spec = TokenSpec(tuple(tok.grid_shape), tok.codebook_size, info.n_classes)
    for key, p in recipe.priors.items():
        prior = p.cls(spec=spec, **p.params).to(device)
        b = p.train.batch_size
        batch = {"tokens": torch.randint(0, spec.vocab_size, (b, spec.seq_len), device=device),
                 "labels": torch.randint(0, max(spec.n_classes, 1), (b,), device=device)}
        rows.append((f"prior {key} ({p.name})", prior, batch, b))

    results = []
    for name, module, batch, b in rows:
        module.train()
        flops = step_flops(module, batch, device, precision)
        sec = step_time(module, batch, device, precision, args.steps)
        results.append({"model": name, "batch": b, "gflop_per_step": flops / 1e9,
                        "s_per_step": sec, "achieved_gflops": flops / sec / 1e9,
                        "fraction_of_fp32_peak": flops / sec / peak32,
                        "fraction_of_bf16_peak": flops / sec / peak16})

    cmd = "python bench/train_throughput.py" + (" --no-quickstart" if args.no_quickstart else "")
    print(f"# {cmd}")
    print(f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, device {device}, training precision {precision}")
    print(f"matmul peak (2048^2): fp32 {peak32 / 1e9:.0f} GFLOP/s, bf16 {peak16 / 1e9:.0f} GFLOP/s")
    print(f"{'model':32} {'batch':>5} {'GFLOP/step':>10} {'s/step':>8} {'GFLOP/s':>8} "
          f"{'of fp32 peak':>12} {'of bf16 peak':>12}")
    for r in results:
        print(f"{r['model']:32} {r['batch']:>5} {r['gflop_per_step']:>10.2f} {r['s_per_step']:>8.4f} "
              f"{r['achieved_gflops']:>8.1f} {r['fraction_of_fp32_peak']:>12.0%} "
              f"{r['fraction_of_bf16_peak']:>12.0%}")
    out = {"command": cmd, "device": str(device), "precision": precision,
           "peak_fp32_gflops": peak32 / 1e9, "peak_bf16_gflops": peak16 / 1e9, "models": results}
    if not args.no_quickstart:
        mem = quickstart_memory(Path(args.recipe))
        out["quickstart"] = mem
        print(f"quickstart: {mem['wall_time_s']:.0f} s wall, peak RSS {mem['peak_rss_mib']:.0f} MiB")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
