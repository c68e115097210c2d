"""MaskGIT decoding, one step at a time: the rule every masked sampler shares (the masked prior
over the whole sequence, block diffusion within a block).

Step s of K fills in every masked token by a draw from its distribution, then re-masks all but
the most confident so that gamma((s+1)/K) of the positions stay masked (at least one fewer than
before); confidences carry Gumbel noise whose temperature anneals to zero, or are pure noise for
a random unmasking order (Chang et al. 2022). Draws and noise are float64
(`diffvq.nn.sampling`).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from .sampling import draw, gumbel, probabilities

Schedule = Literal["cosine", "linear"]
Order = Literal["confidence", "random"]


def mask_ratio(r: Tensor, schedule: Schedule) -> Tensor:
    """gamma(r): the fraction of tokens masked at progress r in [0, 1]; gamma(0)=1, gamma(1)=0."""
    return torch.cos(r * math.pi / 2) if schedule == "cosine" else 1 - r


def unmask_step(x: Tensor, logits: Tensor, s: int, steps: int, mask_id: int,
                generator: torch.Generator, schedule: Schedule = "cosine",
                order: Order = "confidence", choice_temperature: float = 4.5) -> Tensor:
    """Step `s` of `steps` on `x` `[n, T]` (codes or `mask_id`), given `logits` `[n, T, K]`
    already shaped (temperature, cut-offs, guidance): the new `[n, T]`."""
    n, T = x.shape
    probs = probabilities(logits)  # [n, T, K] float64
    drawn = draw(probs.view(-1, probs.shape[-1]), generator).view(n, T)
    masked = x == mask_id
    drawn = torch.where(masked, drawn, x)
    progress = (s + 1) / steps
    n_left = int(math.floor(T * float(mask_ratio(torch.tensor(progress), schedule))))
    n_left = max(0, min(n_left, int(masked[0].sum()) - 1))
    if n_left == 0:
        return drawn
    noise = gumbel((n, T), generator, x.device)  # [n, T] float64
    if order == "confidence":
        chosen = probs.gather(-1, drawn[..., None]).squeeze(-1).clamp_min(1e-300).log()
        confidence = chosen + choice_temperature * (1 - progress) * noise
    else:
        confidence = noise
    confidence = confidence.masked_fill(~masked, float("inf"))  # kept tokens stay
    ranks = confidence.argsort(dim=1).argsort(dim=1)
    return torch.where(ranks < n_left, torch.full_like(drawn, mask_id), drawn)
