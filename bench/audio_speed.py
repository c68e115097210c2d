"""Audio speed as real-time factors (seconds of audio per second of compute, > 1: faster than
real time): log-mel analysis, tokenizer encode and decode, Griffin-Lim, and generation per prior
(sampling plus decoding to a waveform), one clip at a time and in batches.

    python bench/audio_speed.py                                   # recipes/speech/digits-compare.yaml
    python bench/audio_speed.py RECIPE [key=value ...]

Speed does not depend on what the weights are, so models are the recipe's, untrained unless the
run directory already holds the trained tokenizer. Every figure is measured in this run.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import torch

from diffvq import recipe as recipe_mod
from diffvq.components import build_prior, load_component
from diffvq.interfaces import TokenSpec
from diffvq.measure import timed
from diffvq.runtime import autocast, resolve_precision, select_device
from diffvq.summary import table


def best_of(fn, device, repeats: int = 3) -> float:
    fn()  # warm-up
    return statistics.median(timed(fn, device)[1] for _ in range(repeats))


def main(argv: list[str]) -> int:
    path = argv[0] if argv else "recipes/speech/digits-compare.yaml"
    r, plugins = recipe_mod.load(path, argv[1:])
    device = select_device(r.device)
    precision = resolve_precision(r.precision, device)
    data = r.data.cls(**r.data.params)
    info = data.info()
    modality = r.modality.cls(info=info, **r.modality.params)
    clip_s = info.shape[0] / info.sample_rate
    signals, _ = data.load("test")
    batch = signals[:64]
    run_tok = Path("runs") / r.name / "tokenizer"
    if (run_tok / "config.json").is_file():
        tok = load_component(run_tok, plugins.registry, "tokenizer", device)
    else:
        tok = r.tokenizer.cls(input_shape=modality.model_shape(), **r.tokenizer.params).to(device)
    tok.eval()
    spec = TokenSpec(tuple(tok.grid_shape), int(tok.codebook_size), info.n_classes)
    print(f"# python bench/audio_speed.py {' '.join(argv)}".rstrip())
    print(f"# {device}, {precision}, {torch.get_num_threads()} threads; clips of {clip_s:.3f} s at "
          f"{info.sample_rate} Hz; {spec.seq_len} tokens per clip")

    def ctx():
        return autocast(device, precision)

    with torch.no_grad():
        x = modality.to_model(batch)
        tokens = tok.encode(x.to(device))
        stages = {
            "log-mel analysis": lambda: modality.to_model(batch),
            "tokenizer encode (log-mel -> tokens)": lambda: _run(ctx, tok.encode, x.to(device)),
            "tokenizer decode (tokens -> log-mel)": lambda: _run(ctx, tok.decode, tokens),
            "Griffin-Lim (log-mel -> waveform)": lambda: modality.from_model(x),
        }
        rows = []
        for name, fn in stages.items():
            s = best_of(fn, device)
            rows.append([name, str(len(batch)), f"{s / len(batch) * 1000:.2f}",
                         f"{clip_s * len(batch) / s:.1f}"])
        print(table(["stage", "clips", "ms/clip", "real-time factor"], rows))

        print()
        rows = []
        labels = torch.arange(64, device=device) % max(info.n_classes, 1)
        for key, p in r.priors.items():
            prior = build_prior(p.cls, spec, p.params, _codebook(tok)).to(device).eval()
            for variant, options in p.variants:
                for n in (1, 64):
                    lab = labels[:n] if info.n_classes else None

                    def generate() -> None:
                        gen = torch.Generator(device).manual_seed(0)
                        with ctx():
                            t = prior.sample(n, lab, generator=gen, **options)
                            modality.from_model(tok.decode(t.view(n, *spec.grid_shape)).float())

                    s = best_of(generate, device, repeats=2)
                    rows.append([key, variant or "-", str(prior.nfe(**options)), str(n),
                                 f"{s / n * 1000:.1f}", f"{clip_s * n / s:.1f}"])
        print(table(["prior", "sampling", "NFE", "batch", "ms/clip (sample+decode)",
                     "s of audio per s"], rows))
    return 0


def _run(ctx, fn, x):
    with ctx():
        return fn(x)


def _codebook(tok) -> torch.Tensor | None:
    return tok.codebook().detach() if hasattr(tok, "codebook") else None


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
