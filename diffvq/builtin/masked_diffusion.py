"""The masked-diffusion prior: absorbing-state discrete diffusion, sampled the MaskGIT way.

A bidirectional transformer (the same backbone as the autoregressive prior, with the causal mask
switched off) sees `[class token, x_1 .. x_L]` where some tokens are replaced by a MASK token, and
predicts the originals. Training masks a fraction gamma(r) of the tokens, r ~ U(0, 1), gamma the
cosine (default) or linear schedule. Sampling starts fully masked and, in K steps, fills in every
masked token, keeps the most confident ones and re-masks the rest so that gamma((s+1)/K) of the
sequence is still masked after step s (MaskGIT, Chang et al. 2022); confidences carry Gumbel noise
whose temperature anneals to zero, or are pure noise for a random unmasking order.

Likelihood: the absorbing-diffusion ELBO in its order-agnostic form (Austin et al. 2021; Hoogeboom
et al. 2022, ARDM): with k ~ U{1..L} tokens masked uniformly at random,

    -log p(x) <= E_k [ (L / k) * sum over masked i of -log p(x_i | unmasked tokens) ],

a bound, estimated by Monte Carlo with k stratified over `nll_samples` draws per sequence.

Training (`loss`): `"maskgit"` (the default, which the README's figures were made with) is
MaskGIT's objective, the plain cross-entropy of the masked tokens with the masked fraction drawn
from `mask_schedule`; `"elbo"` trains on the bound itself, one draw of the estimator `nll` uses
(MDLM, Sahoo et al. 2024; Prabhudesai et al. 2025), so the loss a study minimises is the figure it
reports. Both cost the same compute per step (one forward and backward over L + 1 positions).
"""

from __future__ import annotations

import math
from typing import Annotated, Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

import diffvq
from diffvq.flops import transformer_train_flops
from diffvq.interfaces import TokenSpec
from diffvq.nn.conditioning import ClassCondition
from diffvq.nn.sampling import MIN_P, shape_logits
from diffvq.nn.transformer import Transformer, TransformerConfig
from diffvq.nn.unmasking import Order, Schedule, mask_ratio, unmask_step

__all__ = ["MaskedDiffusionPrior", "Schedule", "mask_ratio"]

Loss = Literal["maskgit", "elbo"]


class MaskedDiffusionPrior(nn.Module):
    """Absorbing-state (masked) discrete diffusion with MaskGIT sampling and guidance.

    `loss`: what training minimises. `"maskgit"`: the mean cross-entropy over the masked tokens,
    gamma(r) of the sequence masked with r ~ U(0, 1) (`mask_schedule`); not a bound, since it
    weights every masked token alike whatever the mask ratio. `"elbo"`: the order-agnostic bound
    `nll` reports, one draw per sequence: k ~ U{1..L} tokens masked uniformly at random, the sum
    of their cross-entropies divided by k (the (L/k)-weighted mean per token), logged as
    `bits_per_token`. The study uses `"elbo"`, as the masked-diffusion anchors it compares with
    train on their ELBO (MDLM, Sahoo et al. 2024; Prabhudesai et al. 2025), so the prior is
    trained on the loss it is judged by; `"maskgit"` stays the default for existing runs.
    `mask_schedule` matters only for `"maskgit"` training (sampling has its own `schedule`).
    """

    name: ClassVar[str] = "masked-diffusion"
    likelihood: ClassVar[str] = "bound"
    train_defaults: ClassVar[dict[str, Any]] = {"lr": 2e-3, "warmup_steps": 100,
                                                 "weight_decay": 0.01}

    def __init__(self, spec: TokenSpec, *,
                 n_layer: Annotated[int, Field(gt=0)] = 4,
                 n_head: Annotated[int, Field(gt=0)] = 4,
                 n_embd: Annotated[int, Field(gt=0)] = 192,
                 dropout: Annotated[float, Field(ge=0, lt=1)] = 0.0,
                 cond_dropout: Annotated[float, Field(ge=0, le=1)] = 0.1,
                 loss: Loss = "maskgit",
                 mask_schedule: Schedule = "cosine",
                 nll_samples: Annotated[int, Field(gt=0)] = 8):
        super().__init__()
        self.spec = spec
        K = spec.vocab_size
        self.mask_id = K
        self.loss = loss
        self.mask_schedule = mask_schedule
        self.nll_samples = nll_samples
        self.cond = ClassCondition(spec.n_classes, offset=K + 1, dropout=cond_dropout)
        self.net = Transformer(TransformerConfig(
            vocab_size=K + 1 + self.cond.vocab, out_size=K, seq_len=spec.seq_len + 1,
            n_layer=n_layer, n_head=n_head, n_embd=n_embd, dropout=dropout, causal=False))

    def _logits(self, x: Tensor, cond: Tensor) -> Tensor:
        """`x` `[B, L]` (codes or MASK), `cond` `[B]` condition tokens -> `[B, L, K]`."""
        return self.net(torch.cat([cond[:, None], x], dim=1))[:, 1:]

    @staticmethod
    def _random_mask(n_masked: Tensor, L: int, device: torch.device,
                     generator: torch.Generator | None = None) -> Tensor:
        """`[B, L]` bool with exactly `n_masked[b]` True per row, at uniformly random places."""
        scores = torch.rand(n_masked.shape[0], L, device=device, generator=generator)
        ranks = scores.argsort(dim=1).argsort(dim=1)
        return ranks < n_masked[:, None]

    def _masked_nats(self, tokens: Tensor, cond: Tensor, n_masked: Tensor
                     ) -> tuple[Tensor, Tensor]:
        """Mask `n_masked[b]` random tokens of each sequence and predict them: -log p(x_i | the
        unmasked tokens) in nats `[B, L]` (float32; 0 where not masked) and the mask `[B, L]`."""
        mask = self._random_mask(n_masked, tokens.shape[1], tokens.device)
        logits = self._logits(tokens.masked_fill(mask, self.mask_id), cond).float()  # [B, L, K]
        nats = F.cross_entropy(logits.transpose(1, 2), tokens, reduction="none")  # [B, L]
        return nats * mask, mask

    def _bound_draw(self, tokens: Tensor, cond: Tensor, stratum: int = 0, strata: int = 1
                    ) -> tuple[Tensor, Tensor, Tensor]:
        """One Monte Carlo draw per sequence of the order-agnostic bound, in nats per token `[B]`:
        k ~ U{1..L} (from the `stratum`-th of `strata` equal parts of 1..L), k tokens masked
        uniformly at random, the sum of their -log p over k. Also the masked nats `[B, L]` and
        the mask. `nll` averages `strata` of these; `"elbo"` training is the draw with one."""
        B, L = tokens.shape
        u = torch.rand(B, device=tokens.device)
        k = (((stratum + u) / strata) * L).floor().long().clamp(0, L - 1) + 1  # [B] in 1..L
        nats, mask = self._masked_nats(tokens, cond, k)
        return nats.sum(dim=1) / k, nats, mask

    # -- training and likelihood --------------------------------------------------------------
    def training_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        tokens = batch["tokens"]
        B, L = tokens.shape
        labels = self.cond.drop(batch.get("labels"))
        cond = self.cond.tokens(labels, B, tokens.device)
        if self.loss == "elbo":
            bound, nats, mask = self._bound_draw(tokens, cond)
            loss = bound.mean()
            return loss, {"bits_per_token": loss.item() / math.log(2),
                          "masked_bits_per_token": (nats.sum() / mask.sum()).item() / math.log(2)}
        ratio = mask_ratio(torch.rand(B, device=tokens.device), self.mask_schedule)
        n_masked = (ratio * L).ceil().clamp(1, L).long()
        nats, mask = self._masked_nats(tokens, cond, n_masked)
        loss = nats.sum() / mask.sum()  # mean cross-entropy over the masked tokens
        return loss, {"masked_bits_per_token": loss.item() / math.log(2)}

    @torch.no_grad()
    def nll(self, tokens: Tensor, labels: Tensor | None) -> Tensor:
        """Upper bound on bits per token of each sequence `[B]` (see the module docstring): the
        mean of `nll_samples` draws of `_bound_draw`, k stratified (draw j has k in the j-th
        `nll_samples`-th of 1..L)."""
        B = tokens.shape[0]
        cond = self.cond.tokens(labels, B, tokens.device)
        m = self.nll_samples
        draws = [self._bound_draw(tokens, cond, j, m)[0] for j in range(m)]  # m x [B] nats
        return torch.stack(draws).mean(dim=0) / math.log(2)

    def train_flops(self, batch_size: int) -> int:
        """FLOPs of one training step: the bidirectional backbone over the class token and the
        L tokens, its head at all L + 1 positions. `"elbo"` and `"maskgit"` cost the same: each
        runs one forward and backward over the whole sequence, however many tokens are masked."""
        return transformer_train_flops(self.net.cfg, batch_size)

    # -- sampling -----------------------------------------------------------------------------
    def nfe(self, **options: Any) -> int:
        return int(options.get("steps", 8))

    def check_options(self, **options: Any) -> None:
        steps = options.get("steps", 8)
        if steps > self.spec.seq_len:
            raise ValueError(f"steps ({steps}) exceeds the sequence length ({self.spec.seq_len}): "
                             f"each step must unmask at least one token")

    @torch.no_grad()
    def sample(self, n: int, labels: Tensor | None, *, generator: torch.Generator,
               steps: Annotated[int, Field(gt=0)] = 8,
               temperature: Annotated[float, Field(gt=0)] = 1.0,
               top_k: Annotated[int, Field(gt=0)] | None = None,
               top_p: Annotated[float, Field(gt=0, le=1)] | None = None,
               min_p: Annotated[float, Field(ge=0, le=1)] | None = MIN_P,
               guidance: Annotated[float, Field(ge=0)] = 3.0,
               schedule: Schedule = "cosine",
               order: Order = "confidence",
               choice_temperature: Annotated[float, Field(ge=0)] = 4.5) -> Tensor:
        """`[n, L]` tokens in `steps` network evaluations (MaskGIT decoding). Cut-offs
        (`min_p`, `top_k`, `top_p`): `diffvq.nn.sampling.shape_logits`; draws and the Gumbel
        noise on confidences are float64 (`diffvq.nn.sampling.gumbel`)."""
        self.check_options(steps=steps)
        device = self.net.pos_emb.weight.device
        L = self.spec.seq_len
        x = torch.full((n, L), self.mask_id, dtype=torch.long, device=device)
        for s in range(steps):
            logits, reference = self.cond.guided_logits(self._logits, x, labels, guidance)
            logits = shape_logits(logits, temperature=temperature, min_p=min_p, top_k=top_k,
                                  top_p=top_p, reference=reference)  # [n, L, K]
            x = unmask_step(x, logits, s, steps, self.mask_id, generator, schedule, order,
                            choice_temperature)
        return x


@diffvq.hookimpl
def register_priors(register):
    register(MaskedDiffusionPrior)
