"""Turning logits into tokens: classifier-free guidance, temperature, top-k and top-p."""

from __future__ import annotations

import torch
from torch import Tensor


def guide(cond: Tensor, uncond: Tensor, scale: float) -> Tensor:
    """Classifier-free guidance on logits: `uncond + scale * (cond - uncond)`.
    scale 1 is the plain conditional model, 0 the unconditional one."""
    return uncond + scale * (cond - uncond)


def filter_logits(logits: Tensor, top_k: int | None = None, top_p: float | None = None) -> Tensor:
    """Keep the `top_k` largest logits and the smallest set whose probability reaches `top_p`;
    the rest become -inf. `logits`: `[..., V]`."""
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        drop = cum - sorted_logits.softmax(-1) >= top_p  # mass before this token already enough
        drop[..., 0] = False
        logits = logits.masked_fill(torch.zeros_like(drop).scatter(-1, order, drop), float("-inf"))
    return logits


def sample_logits(logits: Tensor, temperature: float, generator: torch.Generator,
                  top_k: int | None = None, top_p: float | None = None) -> Tensor:
    """Draw one token per row of `logits` `[B, V]` -> `[B]`."""
    logits = filter_logits(logits.float() / temperature, top_k, top_p)
    probs = logits.softmax(-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
