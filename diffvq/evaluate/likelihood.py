"""Held-out likelihood of a prior's tokens: the exact NLL of an autoregressive prior, or a
diffusion prior's Monte-Carlo bound, in float32 (never under bf16 autocast: the figures are
printed to three decimals), with the standard error of the mean over test sequences (for a
bound, that includes its Monte-Carlo noise, one draw per sequence), in bits per token and in
bits per signal dimension (what compression people compare across tokenizers)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

CHUNK = 256  # sequences per call


@torch.no_grad()
def held_out_nll(prior: nn.Module, tokens: Tensor, labels: Tensor | None, device: torch.device,
                 seed: int, signal_dims: int) -> dict[str, Any]:
    """`tokens` `[N, L]` (long), `labels` `[N]` or None. The prior's `nll` gives bits per token of
    each sequence `[N]`; the bound's randomness is drawn from torch's global generator, seeded
    here with `seed` and restored afterwards, so the figure is the same on every run."""
    state = torch.get_rng_state()
    torch.manual_seed(seed)
    try:
        vals = []
        for i in range(0, len(tokens), CHUNK):
            lb = labels[i:i + CHUNK].to(device) if labels is not None else None
            with torch.autocast(device.type, enabled=False):
                vals.append(prior.nll(tokens[i:i + CHUNK].to(device), lb).double().cpu())
    finally:
        torch.set_rng_state(state)
    per_seq = torch.cat(vals)  # [N] bits per token
    n, seq_len = len(per_seq), tokens.shape[1]
    mean = float(per_seq.mean())
    se = float(per_seq.std(unbiased=True) / math.sqrt(n)) if n > 1 else float("nan")
    per_dim = seq_len / signal_dims  # bits per token -> bits per signal dimension
    return {"bits_per_token": mean, "se": se,
            "interval": [mean - 1.96 * se, mean + 1.96 * se],
            "bits_per_dim": mean * per_dim, "bits_per_dim_se": se * per_dim,
            "sequences": n}
