"""The block-diffusion prior: autoregressive over blocks, masked diffusion within a block (BD3-LM,
Arriola et al. 2025, "Block Diffusion: Interpolating Between Autoregressive and Diffusion
Language Models").

The sequence of L tokens is cut into B = ceil(L / block_size) blocks x^1 .. x^B (the last may be
shorter), and

    log p(x) = sum_b log p(x^b | x^<b, class),

each factor an absorbing-diffusion model of one block given the clean blocks before it. Its
order-agnostic bound (Austin et al. 2021; Hoogeboom et al. 2022, ARDM) with k_b ~ U{1..n_b} of
the block's n_b tokens masked uniformly at random is

    -log p(x^b | x^<b) <= E_k [ (n_b / k_b) * sum over masked i of -log p(x_i | x^<b, x^b_seen) ],

x^b_seen the block's unmasked tokens, and the prior's bound, in nats per token, is the sum over
blocks divided by L. Training minimises one draw of exactly this estimator (logged as
`bits_per_token`); `nll` averages `nll_samples` draws with k_b stratified, as the masked prior
does. The two limits: `block_size: 1` makes every block one fully masked token, k_b = 1
always, and the bound is the autoregressive chain rule, exact and without Monte-Carlo variance;
`block_size` >= L is one block, the masked prior's bound.

Network: the shared transformer, bidirectional, with a block-causal attention mask. Training runs
every block in one pass over `[class, x_noisy (L), x_clean (L)]` (2L + 1 positions; a noisy token
and its clean copy share a position embedding): noisy block b attends to itself and to the class
and clean blocks < b; clean block b attends to the class and clean blocks <= b; the class token to
itself. The head is applied at the L noisy positions only.

Sampling goes block by block; inside a block it is MaskGIT decoding (the masked prior's: `steps`
passes, each draws every masked token, keeps the most confident ones under Gumbel noise whose
temperature anneals to zero, or a random order, and re-masks the rest along `schedule`). Finished
blocks sit in a key/value cache: the first pass of block b also writes the clean block b - 1 (and
block 0's the class token) into the cache, in the same network evaluation, so one sample costs
exactly the sum over blocks of min(steps, n_b) evaluations, with or without the cache.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Callable, ClassVar

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from diffvq.flops import transformer_train_flops
from diffvq.interfaces import TokenSpec
from diffvq.nn.conditioning import ClassCondition
from diffvq.nn.sampling import MIN_P, shape_logits
from diffvq.nn.transformer import KVCache, Transformer, TransformerConfig
from diffvq.nn.unmasking import Order, Schedule, unmask_step

DEFAULT_STEPS = 8  # `sample`'s default steps per block


def attention_mask(q_block: Tensor, q_noisy: Tensor, k_block: Tensor, k_noisy: Tensor) -> Tensor:
    """Which query may attend to which key, `[Tq, Tk]` bool, from each position's block index
    (-1 for the class token) and whether it is a noisy (partly masked) copy: a clean key is seen
    by queries of later blocks and by clean queries of its own block; a noisy key only by the
    noisy queries of its own block."""
    qb, kb = q_block[:, None], k_block[None, :]
    qn, kn = q_noisy[:, None], k_noisy[None, :]
    clean_key = ~kn & ((kb < qb) | ((kb == qb) & ~qn))
    noisy_key = kn & qn & (kb == qb)
    return clean_key | noisy_key


class BlockDiffusionPrior(nn.Module):
    """BD3-LM: blocks generated left to right, each by masked diffusion given the blocks before.

    `block_size`: tokens per block (the last block may be shorter; a size >= L is one block).
    1 is an autoregressive model and L a masked-diffusion one; between them a block of n tokens
    is sampled in up to n parallel steps. The default, 8, lets the default sampler (8 steps per
    block, like the masked prior's 8 steps) decode one token per step in every full block, and
    is the middle of the sizes BD3-LM reports (4, 8, 16)."""

    name: ClassVar[str] = "block-diffusion"
    likelihood: ClassVar[str] = "bound"
    train_defaults: ClassVar[dict[str, Any]] = {"lr": 2e-3, "warmup_steps": 100,
                                                 "weight_decay": 0.01}

    def __init__(self, spec: TokenSpec, *,
                 block_size: Annotated[int, Field(gt=0)] = 8,
                 n_layer: Annotated[int, Field(gt=0)] = 4,
                 n_head: Annotated[int, Field(gt=0)] = 4,
                 n_embd: Annotated[int, Field(gt=0)] = 192,
                 dropout: Annotated[float, Field(ge=0, lt=1)] = 0.0,
                 cond_dropout: Annotated[float, Field(ge=0, le=1)] = 0.1,
                 nll_samples: Annotated[int, Field(gt=0)] = 8):
        super().__init__()
        self.spec = spec
        K, L = spec.vocab_size, spec.seq_len
        self.mask_id = K
        self.block_size = block_size
        self.nll_samples = nll_samples
        self.starts = list(range(0, L, block_size))  # first token of each block
        self.lengths = [min(block_size, L - s) for s in self.starts]  # n_b
        self.cond = ClassCondition(spec.n_classes, offset=K + 1, dropout=cond_dropout)
        self.net = Transformer(TransformerConfig(
            vocab_size=K + 1 + self.cond.vocab, out_size=K, seq_len=L + 1,
            n_layer=n_layer, n_head=n_head, n_embd=n_embd, dropout=dropout, causal=False))
        block = torch.arange(L) // block_size  # [L] block of each token
        self.register_buffer("block", block, persistent=False)
        self.register_buffer("block_start", torch.tensor(self.starts), persistent=False)  # [nb]
        self.register_buffer("block_len", torch.tensor(self.lengths), persistent=False)  # [nb]
        # the training pass [class, noisy (L), clean (L)]: positions and mask, [2L+1], [2L+1]^2
        blocks = torch.cat([torch.tensor([-1]), block, block])
        noisy = torch.arange(2 * L + 1) - 1 < L
        noisy[0] = False
        self.register_buffer("train_positions", torch.cat([torch.arange(L + 1),
                                                           torch.arange(1, L + 1)]),
                             persistent=False)
        self.register_buffer("train_mask", attention_mask(blocks, noisy, blocks, noisy),
                             persistent=False)

    # -- training and likelihood --------------------------------------------------------------
    def _train_logits(self, x_noisy: Tensor, tokens: Tensor, cond: Tensor) -> Tensor:
        """Every block in one pass: `x_noisy` `[B, L]` (codes or MASK), `tokens` `[B, L]` clean,
        `cond` `[B]` condition tokens -> logits at the noisy positions `[B, L, K]`."""
        L = tokens.shape[1]
        x = torch.cat([cond[:, None], x_noisy, tokens], dim=1)  # [B, 2L+1]
        return self.net(x, attn_mask=self.train_mask, positions=self.train_positions,
                        outputs=slice(1, L + 1))

    def _random_mask(self, k: Tensor) -> Tensor:
        """`[B, L]` bool with exactly `k[b, j]` True in block j of row b, at uniformly random
        places within the block (`k` `[B, n_blocks]`, in 1..n_j)."""
        B, L = k.shape[0], self.spec.seq_len
        scores = torch.rand(B, L, device=k.device)  # [B, L]
        key = scores.double() + self.block  # sorts by block, then by score within it
        rank = key.argsort(dim=1).argsort(dim=1) - self.block_start[self.block]  # within block
        return rank < k[:, self.block]

    def _bound_draw(self, tokens: Tensor, cond: Tensor, stratum: int = 0,
                    strata: int = 1) -> Tensor:
        """One Monte-Carlo draw per sequence of the bound, nats per token `[B]`: in every block,
        k_b ~ U{1..n_b} (from the `stratum`-th of `strata` equal parts of 1..n_b) tokens masked
        uniformly at random, the sum of their -log p times n_b / k_b; summed over blocks, / L."""
        B, L = tokens.shape
        n = self.block_len  # [nb]
        u = torch.rand(B, len(self.lengths), device=tokens.device)  # [B, nb]
        k = torch.minimum(((stratum + u) / strata * n).floor().long(), n - 1) + 1  # 1..n_b
        mask = self._random_mask(k)  # [B, L]
        logits = self._train_logits(tokens.masked_fill(mask, self.mask_id), tokens, cond)
        nats = F.cross_entropy(logits.float().transpose(1, 2), tokens, reduction="none")
        weight = (n / k)[:, self.block]  # [B, L] n_b / k_b of each token's block
        return (nats * weight * mask).sum(dim=1) / L

    def training_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        tokens = batch["tokens"]
        labels = self.cond.drop(batch.get("labels"))
        cond = self.cond.tokens(labels, tokens.shape[0], tokens.device)
        loss = self._bound_draw(tokens, cond).mean()
        return loss, {"bits_per_token": loss.item() / math.log(2)}

    @torch.no_grad()
    def nll(self, tokens: Tensor, labels: Tensor | None) -> Tensor:
        """Upper bound on bits per token of each sequence `[B]` (see the module docstring);
        exact, with no Monte-Carlo variance, for `block_size: 1`."""
        cond = self.cond.tokens(labels, tokens.shape[0], tokens.device)
        m = self.nll_samples
        total = torch.zeros(tokens.shape[0], device=tokens.device)
        for j in range(m):  # stratified: draw j has k_b in the j-th m-th of 1..n_b
            total += self._bound_draw(tokens, cond, j, m)
        return total / m / math.log(2)

    def train_flops(self, batch_size: int) -> int:
        """One training step: the shared backbone over 2L + 1 positions, the head at L."""
        L = self.spec.seq_len
        return transformer_train_flops(self.net.cfg, batch_size, tokens=2 * L + 1, outputs=L)

    # -- sampling -----------------------------------------------------------------------------
    def steps_per_block(self, steps: int = DEFAULT_STEPS) -> list[int]:
        """The passes each block takes: `steps`, or fewer in a last block shorter than that."""
        return [min(steps, n) for n in self.lengths]

    def nfe(self, **options: Any) -> int:
        """One network evaluation per step of every block; the cache costs none of its own."""
        return sum(self.steps_per_block(options.get("steps", DEFAULT_STEPS)))

    def check_options(self, **options: Any) -> None:
        """`steps` is per block and may not exceed the longest block, min(block_size, L): each
        step must unmask at least one token. A shorter last block takes as many steps as it has
        tokens."""
        steps = options.get("steps", DEFAULT_STEPS)
        if steps > self.lengths[0]:
            raise ValueError(f"steps ({steps}) exceeds the block length ({self.lengths[0]}): "
                             f"steps are per block and each must unmask at least one token")

    def _layout(self, start: int, end: int, noisy: bool) -> tuple[Tensor, Tensor, Tensor]:
        """Block index, noisy flag and position id of tokens start..end-1 `[end - start]` each."""
        device = self.block.device
        return (self.block[start:end], torch.full((end - start,), noisy, device=device),
                torch.arange(start + 1, end + 1, device=device))

    def _class_layout(self) -> tuple[Tensor, Tensor, Tensor]:
        device = self.block.device
        return (torch.tensor([-1], device=device), torch.tensor([False], device=device),
                torch.tensor([0], device=device))

    @staticmethod
    def _cat(*parts: tuple[Tensor, Tensor, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        return tuple(torch.cat(p) for p in zip(*parts))  # type: ignore[return-value]

    def _forward(self, out: Tensor, b: int, first_step: bool,
                 cache: list[KVCache | None] | None) -> tuple[Tensor,
                                                              Callable[[Tensor, Tensor], Tensor]]:
        """What one denoising pass of block b feeds the network: the token ids besides the class
        token `[n, T]` (ending with the noisy block) and `forward(x, cond) -> [m, n_b, K]` for
        `ClassCondition.streams`. Without a cache, x is the clean blocks < b and the noisy block;
        with one (`cache[0]`, made at the first call for the batch it gets), x is the noisy block,
        preceded on a block's first step by the clean block b - 1, which the pass commits to the
        cache (block 0's first pass commits the class token)."""
        start, n_b = self.starts[b], self.lengths[b]
        end = start + n_b

        def run(x: Tensor, layout: tuple[Tensor, Tensor, Tensor], c: KVCache | None,
                commit: int) -> Tensor:
            blocks, noisy, positions = layout
            mask = attention_mask(blocks, noisy, blocks, noisy)  # [T, T]
            if c is not None:  # every cached position is a clean earlier block: all see it
                mask = torch.cat([mask.new_ones(len(blocks), c.pos), mask], dim=1)
                before = c.pos
            T = x.shape[1]
            logits = self.net(x, c, attn_mask=mask, positions=positions,
                              outputs=slice(T - n_b, T))
            if c is not None:
                c.pos = before + commit  # keep the clean part; the noisy block was scratch
            return logits

        if cache is None:
            def uncached(x: Tensor, cond: Tensor) -> Tensor:
                layout = self._cat(self._class_layout(), self._layout(0, start, False),
                                   self._layout(start, end, True))
                return run(torch.cat([cond[:, None], x], dim=1), layout, None, 0)
            return out[:, :end], uncached

        prev = self.starts[b - 1] if b > 0 else start
        fresh = first_step and b > 0  # block b - 1 is to be committed in this pass
        x = out[:, prev:end] if fresh else out[:, start:end]

        def cached(x: Tensor, cond: Tensor) -> Tensor:
            if cache[0] is None:  # block 0, first step: the class token goes in first
                cache[0] = self.net.new_cache(x.shape[0])
                layout = self._cat(self._class_layout(), self._layout(start, end, True))
                return run(torch.cat([cond[:, None], x], dim=1), layout, cache[0], 1)
            if fresh:
                layout = self._cat(self._layout(prev, start, False), self._layout(start, end, True))
                return run(x, layout, cache[0], start - prev)
            return run(x, self._layout(start, end, True), cache[0], 0)
        return x, cached

    @torch.no_grad()
    def sample(self, n: int, labels: Tensor | None, *, generator: torch.Generator,
               steps: Annotated[int, Field(gt=0)] = DEFAULT_STEPS,
               temperature: Annotated[float, Field(gt=0)] = 1.0,
               top_k: Annotated[int, Field(gt=0)] | None = None,
               top_p: Annotated[float, Field(gt=0, le=1)] | None = None,
               min_p: Annotated[float, Field(ge=0, le=1)] | None = MIN_P,
               guidance: Annotated[float, Field(ge=0)] = 3.0,
               schedule: Schedule = "cosine",
               order: Order = "confidence",
               choice_temperature: Annotated[float, Field(ge=0)] = 4.5,
               use_cache: bool = True) -> Tensor:
        """`[n, L]` tokens, block by block, each block by MaskGIT decoding in `steps` network
        evaluations (fewer in a shorter last block; `nfe`). Cut-offs (`min_p`, `top_k`,
        `top_p`): `diffvq.nn.sampling.shape_logits`; draws and the Gumbel noise on confidences
        are float64. `use_cache: false` recomputes the finished blocks at every pass (the same
        tokens, slower)."""
        self.check_options(steps=steps)
        device = self.block.device
        L = self.spec.seq_len
        out = torch.full((n, L), self.mask_id, dtype=torch.long, device=device)
        cache: list[KVCache | None] | None = [None] if use_cache else None
        for b, (start, n_b, S) in enumerate(zip(self.starts, self.lengths,
                                                 self.steps_per_block(steps))):
            for s in range(S):
                x, forward = self._forward(out, b, s == 0, cache)
                logits, reference = self.cond.guided_logits(forward, x, labels, guidance)
                logits = shape_logits(logits, temperature=temperature, min_p=min_p, top_k=top_k,
                                      top_p=top_p, reference=reference)  # [n, n_b, K]
                block = out[:, start:start + n_b]  # [n, n_b] (a view: written in place)
                block.copy_(unmask_step(block, logits, s, S, self.mask_id, generator, schedule,
                                        order, choice_temperature))
        return out
