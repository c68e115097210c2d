"""Turning logits into tokens: classifier-free guidance, temperature, min-p, top-k and top-p,
and the random draw itself, in float64.

Every cut-off a discrete prior applies is one of these named, recorded sampling options; none
hides inside guidance. With `guidance` 1 a prior samples its conditional model and with 0 its
unconditional one, under the same options.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..errors import UserError

MIN_P: float | None = 1e-3
"""The one default `min_p` of every discrete prior's sampler (see `shape_logits`). Not off,
because guidance 3 is the default: without the cut-off it took the contract test's
autoregressive prior from 100 % in-class tokens to 68 % (see `guide_logits` for why). 1e-3 is
the cut-off guidance applied, hidden, before it was an option, so guided samples at temperature
1 keep their candidates. It applies at every guidance, so a guidance sweep changes nothing
else; `min_p: 0` samples the models exactly."""


def guide(cond: Tensor, uncond: Tensor, scale: float) -> Tensor:
    """Classifier-free guidance on continuous outputs: `uncond + scale * (cond - uncond)`.
    scale 1 is the plain conditional model, 0 the unconditional one."""
    return uncond + scale * (cond - uncond)


def guide_logits(cond: Tensor, uncond: Tensor, scale: float) -> tuple[Tensor, Tensor]:
    """Classifier-free guidance for token logits `[..., V]`, in log-probabilities: the guided
    logits `lu + scale * (lc - lu)`, and the *reference* log-probabilities `min_p` is judged on
    (see `shape_logits`): the guided distribution itself while `scale` lies in [0, 1], the
    conditional model's beyond 1.

    Why a reference: for scale in [0, 1] the guided distribution is a geometric mixture of two
    models, and its tail means what a model's tail means. Beyond 1 guidance extrapolates past
    the conditional model: in the far tail both streams' log-probabilities are noise, and
    `scale * (lc - lu)` amplifies it most for exactly the tokens the null model rules out even
    more firmly than the conditional one, until an implausible token wins (measured: guidance 3
    took an autoregressive prior that reproduces its class patterns 100 % of the time down to
    68 % in-class tokens, 12 % in an earlier training). The guided distribution cannot tell such
    a token from a good one, so a cut-off on it (transformers' order) would keep it; the
    conditional model can (the adaptive plausibility constraint of contrastive decoding, Li et
    al. 2023). At scale 0 and 1 the reference is the
    model being sampled, so `min_p` means the same there as for a prior without guidance."""
    lc, lu = cond.float().log_softmax(-1), uncond.float().log_softmax(-1)
    guided = lu + scale * (lc - lu)  # [..., V]
    return guided, (lc if scale >= 1 else guided)


def shape_logits(logits: Tensor, *, temperature: float = 1.0, min_p: float | None = None,
                 top_k: int | None = None, top_p: float | None = None,
                 reference: Tensor | None = None) -> Tensor:
    """The logits a token is drawn from, `[..., V]`: divided by `temperature`; cut to the
    tokens whose tempered `reference` probability (by default these logits' own) is at least
    `min_p` times its most likely token's (transformers' MinPLogitsWarper, which also acts after
    temperature); then `top_k` and `top_p` among the survivors. min-p goes first so that no
    combination of cut-offs leaves nothing: the most likely survivor always stays. Dropped
    tokens become -inf. `min_p` None or 0 cuts nothing."""
    logits = logits.float() / temperature
    if min_p:
        ref = logits if reference is None else reference.float() / temperature
        ref = ref.log_softmax(-1)
        keep = ref >= ref.amax(-1, keepdim=True) + math.log(min_p)
        logits = logits.masked_fill(~keep, float("-inf"))
    return filter_logits(logits, top_k, top_p)


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


def probabilities(logits: Tensor) -> Tensor:
    """softmax in float64, `[..., V]`: the draw's input, so that tail probabilities keep their
    digits (see `draw`)."""
    return logits.double().softmax(-1)


def draw(probs: Tensor, generator: torch.Generator) -> Tensor:
    """One category per row of `probs` `[N, V]` -> `[N]`, drawn in float64.

    torch.multinomial draws one category as argmax(p / E), E ~ Exp(1) in the dtype of `p`. In
    float32 on a GPU, E comes from 24-bit uniforms and never falls below 2^-24: tokens ~1e7
    times less likely than a rival are never drawn and the rest of the far tail too rarely, a
    silently lower temperature (Zheng et al. 2024). Probabilities that are no longer
    numbers come from sampling options no float can carry (a guidance of 1e40, a temperature
    of 1e-40): the user's to change, said in one line."""
    if not torch.isfinite(probs).all():
        raise UserError("sampling: the token probabilities became infinite or NaN; the sampling "
                        "options are out of range (lower sample.guidance, raise "
                        "sample.temperature)")
    return torch.multinomial(probs.double(), 1, generator=generator).squeeze(-1)


def gumbel(shape: tuple[int, ...], generator: torch.Generator,
           device: torch.device | str | None = None) -> Tensor:
    """Standard Gumbel noise `-log(-log(u))` of `shape`, in float64.

    Why float64: float32 uniforms lie on a grid of 2^-24, so float32 Gumbel noise never exceeds
    -log(-log(1 - 2^-24)) ~ 16.6, where the true distribution puts 6e-8 of its mass per draw;
    Gumbel-max choices then under-weight unlikely candidates (Zheng et al. 2024). float64
    uniforms (a 2^-53 grid) push the ceiling to ~36.7."""
    u = torch.rand(shape, generator=generator, device=device, dtype=torch.float64)
    return -torch.log(-torch.log(u.clamp_min(torch.finfo(torch.float64).tiny)))


def sample_logits(logits: Tensor, temperature: float, generator: torch.Generator,
                  top_k: int | None = None, top_p: float | None = None,
                  min_p: float | None = None, reference: Tensor | None = None) -> Tensor:
    """Draw one token per row of `logits` `[B, V]` -> `[B]` (options as in `shape_logits`)."""
    logits = shape_logits(logits, temperature=temperature, min_p=min_p, top_k=top_k,
                          top_p=top_p, reference=reference)
    return draw(probabilities(logits), generator)
