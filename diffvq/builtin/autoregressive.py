"""The autoregressive prior: a GPT over the flattened token grid.

The sequence is `[class token, t_0, ..., t_{L-2}]` predicting `t_0 ... t_{L-1}`; the class token
is the condition (or a null class, dropped in at `cond_dropout` during training so that one model
is both conditional and unconditional, as classifier-free guidance needs). Sampling is one forward
pass per token with a key/value cache; the likelihood is exact.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, ClassVar

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

import diffvq
from diffvq.flops import transformer_train_flops
from diffvq.interfaces import TokenSpec
from diffvq.nn.conditioning import ClassCondition
from diffvq.nn.sampling import MIN_P, guide_logits, sample_logits
from diffvq.nn.transformer import Transformer, TransformerConfig


class AutoregressivePrior(nn.Module):
    """GPT prior with class tokens, classifier-free guidance and KV-cached sampling."""

    name: ClassVar[str] = "autoregressive"
    likelihood: ClassVar[str] = "exact"
    train_defaults: ClassVar[dict[str, Any]] = {"lr": 1e-3, "warmup_steps": 100,
                                                 "weight_decay": 0.01}

    def __init__(self, spec: TokenSpec, *,
                 n_layer: Annotated[int, Field(gt=0)] = 4,
                 n_head: Annotated[int, Field(gt=0)] = 4,
                 n_embd: Annotated[int, Field(gt=0)] = 192,
                 dropout: Annotated[float, Field(ge=0, lt=1)] = 0.0,
                 cond_dropout: Annotated[float, Field(ge=0, le=1)] = 0.1):
        super().__init__()
        self.spec = spec
        K = spec.vocab_size
        self.cond = ClassCondition(spec.n_classes, offset=K, dropout=cond_dropout)
        self.net = Transformer(TransformerConfig(
            vocab_size=K + self.cond.vocab, out_size=K, seq_len=spec.seq_len, n_layer=n_layer,
            n_head=n_head, n_embd=n_embd, dropout=dropout, causal=True))

    # -- training and likelihood --------------------------------------------------------------
    def _logits(self, tokens: Tensor, labels: Tensor | None) -> Tensor:
        cond = self.cond.tokens(labels, tokens.shape[0], tokens.device)
        x = torch.cat([cond[:, None], tokens[:, :-1]], dim=1)  # [B, L]
        return self.net(x)  # [B, L, K]

    def training_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        tokens, labels = batch["tokens"], self.cond.drop(batch.get("labels"))
        logits = self._logits(tokens, labels)
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), tokens.reshape(-1))
        return loss, {"bits_per_token": loss.item() / math.log(2)}

    @torch.no_grad()
    def nll(self, tokens: Tensor, labels: Tensor | None) -> Tensor:
        """Exact bits per token of each sequence `[B]` under the conditional model."""
        logits = self._logits(tokens, labels).float()
        nats = F.cross_entropy(logits.transpose(1, 2), tokens, reduction="none")  # [B, L]
        return nats.mean(dim=1) / math.log(2)

    def train_flops(self, batch_size: int) -> int:
        """FLOPs of one training step: the causal backbone over `[class, t_0 .. t_{L-2}]`, L
        positions, its head at every one (each predicts the next token)."""
        return transformer_train_flops(self.net.cfg, batch_size)

    # -- sampling -----------------------------------------------------------------------------
    def nfe(self, **options: Any) -> int:
        return self.spec.seq_len

    def check_options(self, **options: Any) -> None:
        """Every option the schema admits works for any sequence length."""

    @torch.no_grad()
    def sample(self, n: int, labels: Tensor | None, *, generator: torch.Generator,
               temperature: Annotated[float, Field(gt=0)] = 1.0,
               top_k: Annotated[int, Field(gt=0)] | None = None,
               top_p: Annotated[float, Field(gt=0, le=1)] | None = None,
               min_p: Annotated[float, Field(ge=0, le=1)] | None = MIN_P,
               guidance: Annotated[float, Field(ge=0)] = 3.0,
               use_cache: bool = True) -> Tensor:
        """`[n, L]` tokens, one network evaluation per token. With a class and `guidance` other
        than 0 or 1 the conditional and null-class streams run side by side in one batch;
        guidance 1 runs the conditional model alone, 0 the unconditional one.
        Cut-offs (`min_p`, `top_k`, `top_p`): `diffvq.nn.sampling.shape_logits`."""
        device = self.net.pos_emb.weight.device
        L = self.spec.seq_len
        if guidance == 0.0:
            labels = None  # the unconditional model, exactly
        guided = labels is not None and self.spec.n_classes > 0 and guidance != 1.0
        cond = self.cond.tokens(labels, n, device)[:, None]  # [n, 1]
        if guided:
            cond = torch.cat([cond, self.cond.tokens(None, n, device)[:, None]])  # [2n, 1]
        out = torch.empty(n, L, dtype=torch.long, device=device)
        cache = self.net.new_cache(cond.shape[0]) if use_cache else None
        logits = self.net(cond, cache)[:, -1]  # [n or 2n, K]
        for i in range(L):
            reference = None  # what min_p is judged on (see guide_logits)
            if guided:
                logits, reference = guide_logits(logits[:n], logits[n:], guidance)
            out[:, i] = sample_logits(logits, temperature, generator, top_k, top_p, min_p,
                                      reference)
            if i == L - 1:
                break
            nxt = out[:, i:i + 1]
            if guided:
                nxt = torch.cat([nxt, nxt])
            if use_cache:
                logits = self.net(nxt, cache)[:, -1]
            else:
                prefix = torch.cat([cond, out[:, :i + 1].repeat(2 if guided else 1, 1)], dim=1)
                logits = self.net(prefix)[:, -1]
        return out


@diffvq.hookimpl
def register_priors(register):
    register(AutoregressivePrior)
