"""Sampling speed of the autoregressive and masked-diffusion priors in both regimes.

    python bench/sampling_speed.py                       # the quickstart's prior size
    python bench/sampling_speed.py --n-layer 6 --n-embd 256

*Latency* (one sample at a time): the autoregressive prior pays one sequential network call per
token; masked diffusion pays one per step. *Throughput* (a batch of 64): what decides is the
compute per sample, where the KV cache makes the autoregressive prior cheap (each call processes
one new position) while every masked-diffusion step processes all positions.

For each sampler: seconds per sample (the median of --repeats warm calls after one untimed
warm-up, with the fastest and slowest: diffvq.measure.time_calls, which the pipeline also uses),
network evaluations (NFE), FLOPs per sample counted by torch.utils.flop_counter, the achieved FLOP/s against the fp32 (and bf16)
matrix-multiply peak measured in the same run, and the peak tensor memory per sample (replayed
from the profiler's allocation events). Both priors use the same transformer size; weights are
random (speed does not depend on them).
"""

from __future__ import annotations

import argparse
import json

import torch
from torch.utils.flop_counter import FlopCounterMode

from diffvq.builtin.autoregressive import AutoregressivePrior
from diffvq.builtin.masked_diffusion import MaskedDiffusionPrior
from diffvq.interfaces import TokenSpec
from diffvq.measure import peak_memory_bytes, time_calls
from diffvq.nn.transformer import count_parameters
from diffvq.runtime import (autocast, default_threads, resolve_precision, select_device,
                            set_threads)

from train_throughput import matmul_peak


def peak_tensor_bytes(fn) -> int:
    return peak_memory_bytes(fn, torch.device("cuda" if torch.cuda.is_available() else "cpu"))


def measure(name, prior, batch, options, device, precision, repeats, peak32, peak16, n_classes):
    labels = torch.arange(batch, device=device) % n_classes

    def run(seed=0):
        gen = torch.Generator(device).manual_seed(seed)
        with autocast(device, precision):
            return prior.sample(batch, labels, generator=gen, **options)

    seeds = iter(range(1 + repeats))  # a new seed per call: 0 is the warm-up's
    timing = time_calls(lambda: run(next(seeds)), device, repeats=repeats)
    sec = timing.median_s
    with FlopCounterMode(display=False) as counter:
        run()
    flops = counter.get_total_flops()
    mem = peak_tensor_bytes(run)
    return {"sampler": name, "batch": batch, "nfe": prior.nfe(**options),
            "s_per_sample": sec / batch, "s_per_sample_lo": timing.lo_s / batch,
            "s_per_sample_hi": timing.hi_s / batch, "repeats": timing.repeats,
            "flops_per_sample": flops / batch,
            "achieved_gflops": flops / sec / 1e9, "fraction_of_fp32_peak": flops / sec / peak32,
            "fraction_of_bf16_peak": flops / sec / peak16, "peak_mib_per_sample": mem / batch / 2**20}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-layer", type=int, default=4)
    ap.add_argument("--n-head", type=int, default=4)
    ap.add_argument("--n-embd", type=int, default=128)
    ap.add_argument("--grid", type=int, default=7, help="token grid side (7: 49 tokens)")
    ap.add_argument("--codes", type=int, default=256)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--steps", type=int, default=8, help="masked-diffusion steps")
    ap.add_argument("--guidance", type=float, default=3.0, help="1.0: no guidance batch")
    ap.add_argument("--throughput-batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    ap.add_argument("--threads", type=int, default=default_threads(),
                    help="torch threads (default: diffvq's, as a run uses)")
    args = ap.parse_args()
    set_threads(args.threads)

    device = select_device("auto")
    precision = resolve_precision(args.precision, device)
    peak32 = matmul_peak(torch.float32, device)
    peak16 = matmul_peak(torch.bfloat16, device)
    spec = TokenSpec((args.grid, args.grid), args.codes, args.classes)
    size = dict(n_layer=args.n_layer, n_head=args.n_head, n_embd=args.n_embd)
    torch.manual_seed(0)
    ar = AutoregressivePrior(spec, **size).to(device).eval()
    mg = MaskedDiffusionPrior(spec, **size).to(device).eval()
    samplers = [("autoregressive, KV cache", ar, {"guidance": args.guidance}),
                ("autoregressive, no cache", ar, {"guidance": args.guidance, "use_cache": False}),
                (f"masked diffusion, {args.steps} steps", mg,
                 {"guidance": args.guidance, "steps": args.steps})]
    rows = []
    for batch in (1, args.throughput_batch):
        for name, prior, options in samplers:
            rows.append(measure(name, prior, batch, options, device, precision, args.repeats,
                                peak32, peak16, args.classes))

    print("# python bench/sampling_speed.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()))
    print(f"# {device}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"precision {precision}; {spec.seq_len} tokens, {args.codes} codes; "
          f"parameters: autoregressive {count_parameters(ar):,}, masked {count_parameters(mg):,}; "
          f"guidance {args.guidance}")
    print(f"matmul peak (2048^2): fp32 {peak32 / 1e9:.0f} GFLOP/s, bf16 {peak16 / 1e9:.0f} GFLOP/s")
    print(f"{'regime':10} {'sampler':28} {'NFE':>4} {'ms/sample':>10} {'(min-max)':>15} "
          f"{'MFLOP/sample':>12} "
          f"{'GFLOP/s':>8} {'of fp32':>8} {'of bf16':>8} {'MiB/sample':>10}")
    for r in rows:
        regime = "latency" if r["batch"] == 1 else f"batch {r['batch']}"
        spread = f"({1000 * r['s_per_sample_lo']:.2f}-{1000 * r['s_per_sample_hi']:.2f})"
        print(f"{regime:10} {r['sampler']:28} {r['nfe']:>4} {1000 * r['s_per_sample']:>10.2f} "
              f"{spread:>15} "
              f"{r['flops_per_sample'] / 1e6:>12.1f} {r['achieved_gflops']:>8.1f} "
              f"{r['fraction_of_fp32_peak']:>8.1%} {r['fraction_of_bf16_peak']:>8.1%} "
              f"{r['peak_mib_per_sample']:>10.2f}")
    for batch in (1, args.throughput_batch):
        ar_row = next(r for r in rows if r["batch"] == batch and "KV cache" in r["sampler"])
        mg_row = next(r for r in rows if r["batch"] == batch and "masked" in r["sampler"])
        ratio = ar_row["s_per_sample"] / mg_row["s_per_sample"]
        regime = "one sample at a time" if batch == 1 else f"batches of {batch}"
        winner = "masked diffusion" if ratio > 1 else "the autoregressive prior (KV cache)"
        print(f"finding, {regime}: {winner} is faster, "
              f"{max(ratio, 1 / ratio):.1f}x ({1000 * ar_row['s_per_sample']:.2f} vs "
              f"{1000 * mg_row['s_per_sample']:.2f} ms per sample)")
    print(json.dumps({"device": str(device), "precision": precision, "args": vars(args),
                      "peak_fp32_gflops": peak32 / 1e9, "peak_bf16_gflops": peak16 / 1e9,
                      "rows": rows}))


if __name__ == "__main__":
    main()
