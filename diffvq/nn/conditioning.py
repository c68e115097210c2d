"""Class conditioning shared by every prior: labels become condition tokens, a "null" class
stands for "no label" (dropped in during training so one network is both conditional and
unconditional), and classifier-free guidance runs both streams in one batched call."""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from .sampling import guide, guide_logits


class ClassCondition:
    """Condition tokens `offset + c` for class c and `offset + n_classes` for the null class."""

    def __init__(self, n_classes: int, offset: int, dropout: float):
        self.n_classes = n_classes
        self.offset = offset
        self.null = n_classes  # label index meaning "no class"
        self.dropout = dropout if n_classes else 0.0

    @property
    def vocab(self) -> int:
        """How many condition tokens: the classes plus the null class."""
        return self.n_classes + 1

    def tokens(self, labels: Tensor | None, n: int, device: torch.device) -> Tensor:
        """`[n]` condition token ids; no labels (or no classes) gives the null token."""
        if labels is None or not self.n_classes:
            labels = torch.full((n,), self.null, device=device, dtype=torch.long)
        return labels.long() + self.offset

    def drop(self, labels: Tensor | None) -> Tensor | None:
        """Training-time condition dropout: each label becomes null with probability `dropout`."""
        if labels is None or self.dropout <= 0:
            return labels
        keep = torch.rand(labels.shape, device=labels.device) >= self.dropout
        return torch.where(keep, labels, torch.full_like(labels, self.null))

    def guided(self, forward: Callable[[Tensor, Tensor], Tensor], x: Tensor,
               labels: Tensor | None, scale: float, logits: bool = True) -> Tensor:
        """`forward(x, cond_tokens)` with classifier-free guidance at `scale`: the conditional
        and null streams run as one batch of 2n; scale 1 (or no labels) runs only one.
        `logits`: the outputs are token logits (guided as log-probabilities, see
        `guide_logits`); False for continuous outputs (a plain linear combination)."""
        n = x.shape[0]
        cond = self.tokens(labels, n, x.device)
        if labels is None or not self.n_classes or scale == 1.0:
            return forward(x, cond)
        out = forward(torch.cat([x, x]), torch.cat([cond, self.tokens(None, n, x.device)]))
        combine = guide_logits if logits else guide
        return combine(out[:n].float(), out[n:].float(), scale)
