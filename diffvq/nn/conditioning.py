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

    def streams(self, forward: Callable[[Tensor, Tensor], Tensor], x: Tensor,
                labels: Tensor | None, scale: float) -> tuple[Tensor, Tensor | None]:
        """`forward(x, cond_tokens)` for what guidance at `scale` needs: (conditional, null)
        outputs as one batch of 2n, or (the one model's output, None) where one stream is
        the whole answer: no labels (or no classes) or scale 1 runs the conditional model
        alone, scale 0 the null model alone, so that both are exactly those models."""
        n = x.shape[0]
        if labels is None or not self.n_classes or scale == 1.0:
            return forward(x, self.tokens(labels, n, x.device)), None
        if scale == 0.0:
            return forward(x, self.tokens(None, n, x.device)), None
        cond = self.tokens(labels, n, x.device)
        out = forward(torch.cat([x, x]), torch.cat([cond, self.tokens(None, n, x.device)]))
        return out[:n], out[n:]

    def guided(self, forward: Callable[[Tensor, Tensor], Tensor], x: Tensor,
               labels: Tensor | None, scale: float) -> Tensor:
        """`forward(x, cond_tokens)` with classifier-free guidance at `scale` on continuous
        outputs (a plain linear combination, `guide`)."""
        cond, uncond = self.streams(forward, x, labels, scale)
        return cond if uncond is None else guide(cond.float(), uncond.float(), scale)

    def guided_logits(self, forward: Callable[[Tensor, Tensor], Tensor], x: Tensor,
                      labels: Tensor | None, scale: float) -> tuple[Tensor, Tensor]:
        """Token logits `[..., V]` with classifier-free guidance at `scale`, and the reference
        logits a `min_p` cut-off is judged on (see `guide_logits`); both the same tensor where
        one model is sampled."""
        cond, uncond = self.streams(forward, x, labels, scale)
        if uncond is None:
            cond = cond.float()
            return cond, cond
        return guide_logits(cond, uncond, scale)
