"""The transformer backbone every token prior shares, causal or bidirectional by one switch.

One module for autoregressive and masked priors, so a comparison can match them layer for layer
and parameter for parameter. Pre-LayerNorm GPT-2 blocks (nanoGPT's shape), PyTorch's fused
scaled-dot-product attention, and a preallocated key/value cache for incremental decoding.

Priors with other attention patterns (block diffusion: a block attends to itself and to the
blocks before it) pass their own `attn_mask`, `positions` (ids into the position embedding, so
that two copies of a sequence can share them) and `outputs` (the positions the head is applied
at); without them every call is exactly the causal or bidirectional one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class TransformerConfig:
    vocab_size: int  # input vocabulary: codes plus special tokens (condition, mask, ...)
    out_size: int  # logits per position, usually the codebook size
    seq_len: int  # longest input sequence (positions)
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 256
    dropout: float = 0.0
    causal: bool = True  # False: every position attends to every other (masked diffusion)


class KVCache:
    """Keys and values of past positions, `[n_layer, B, H, T_max, head_dim]`, filled as decoding
    advances; `pos` is the number of positions already stored. Slots beyond `pos` are scratch: a
    caller may set `pos` back after a call to keep only part of what it wrote (block diffusion
    keeps a finished block and discards the noisy one it was denoising)."""

    def __init__(self, cfg: TransformerConfig, batch: int, device: torch.device,
                 dtype: torch.dtype):
        hd = cfg.n_embd // cfg.n_head
        shape = (cfg.n_layer, batch, cfg.n_head, cfg.seq_len, hd)
        self.k = torch.empty(shape, device=device, dtype=dtype)
        self.v = torch.empty(shape, device=device, dtype=dtype)
        self.pos = 0


class SelfAttention(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        if cfg.n_embd % cfg.n_head:
            raise ValueError(f"n_embd ({cfg.n_embd}) must be divisible by n_head ({cfg.n_head})")
        self.n_head = cfg.n_head
        self.causal = cfg.causal
        self.dropout = cfg.dropout
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd)

    def forward(self, x: Tensor, cache: KVCache | None = None, layer: int = 0,
                attn_mask: Tensor | None = None) -> Tensor:
        """`attn_mask` (bool, True = may attend), `[T, S]` with S the keys (the cached ones
        first, then these T), replaces the causal or bidirectional pattern when given."""
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        # q, k, v: [B, H, T, hd]
        mask, is_causal = None, self.causal and T > 1
        if cache is not None:
            p = cache.pos
            cache.k[layer, :, :, p:p + T] = k
            cache.v[layer, :, :, p:p + T] = v
            k, v = cache.k[layer, :, :, :p + T], cache.v[layer, :, :, :p + T]
            if self.causal and T > 1 and p > 0:  # new queries see the past and each other causally
                mask = torch.ones(T, p + T, dtype=torch.bool, device=x.device).tril(p)
                is_causal = False
        if attn_mask is not None:
            mask, is_causal = attn_mask, False
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal,
                                           dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).reshape(B, T, C)
        return F.dropout(self.proj(y), self.dropout, self.training)


class Block(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.n_embd)
        self.attn = SelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.n_embd)
        self.fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd)
        self.proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd)
        self.dropout = cfg.dropout

    def forward(self, x: Tensor, cache: KVCache | None = None, layer: int = 0,
                attn_mask: Tensor | None = None) -> Tensor:
        x = x + self.attn(self.ln1(x), cache, layer, attn_mask)
        h = self.proj(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))
        return x + F.dropout(h, self.dropout, self.training)


class Transformer(nn.Module):
    """Token ids `[B, T]` to logits `[B, T, out_size]`."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.pos_emb = nn.Embedding(cfg.seq_len, cfg.n_embd)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd)
        self.head = nn.Linear(cfg.n_embd, cfg.out_size, bias=False)
        self.apply(self._init)
        for name, p in self.named_parameters():  # GPT-2: scale residual projections by depth
            if name.endswith("proj.weight"):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, 0.0, 0.02)

    def forward(self, idx: Tensor, cache: KVCache | None = None, *,
                attn_mask: Tensor | None = None, positions: Tensor | None = None,
                outputs: slice | Tensor | None = None) -> Tensor:
        """Token ids `[B, T]` -> logits `[B, T, out_size]` (see `forward_embeddings`)."""
        return self.forward_embeddings(self.tok_emb(idx), cache, attn_mask=attn_mask,
                                       positions=positions, outputs=outputs)

    def forward_embeddings(self, x: Tensor, cache: KVCache | None = None, *,
                           attn_mask: Tensor | None = None, positions: Tensor | None = None,
                           outputs: slice | Tensor | None = None) -> Tensor:
        """Input vectors `[B, T, n_embd]` (token embeddings, or projected continuous latents as
        latent diffusion feeds them) -> outputs `[B, T, out_size]`.

        Optional, for attention patterns of a prior's own: `attn_mask` `[T, S]` bool (True =
        may attend; S = cached positions + T) replaces the causal/bidirectional pattern;
        `positions` `[T]` are the position ids (default: the next T after the cache's);
        `outputs` indexes the positions the final norm and head are applied at (default all),
        so the result is `[B, T', out_size]`. The cache still advances by T."""
        B, T, _ = x.shape
        start = cache.pos if cache is not None else 0
        if positions is None:
            if start + T > self.cfg.seq_len:
                raise ValueError(f"sequence of {start + T} exceeds seq_len {self.cfg.seq_len}")
            pos = torch.arange(start, start + T, device=x.device)
        else:
            if T and int(positions.max()) >= self.cfg.seq_len:
                raise ValueError(f"position {int(positions.max())} exceeds seq_len "
                                 f"{self.cfg.seq_len}")
            pos = positions
        if cache is not None and start + T > cache.k.shape[3]:
            raise ValueError(f"{start + T} positions exceed the cache's {cache.k.shape[3]}")
        x = x + self.pos_emb(pos)  # [B, T, C]
        for i, block in enumerate(self.blocks):
            x = block(x, cache, i, attn_mask)
        if cache is not None:
            cache.pos += T
        if outputs is not None:
            x = x[:, outputs]  # [B, T', C]
        return self.head(self.ln_f(x))

    def new_cache(self, batch: int, dtype: torch.dtype | None = None) -> KVCache:
        device = self.pos_emb.weight.device
        if dtype is None:
            dtype = (torch.get_autocast_dtype(device.type)
                     if torch.is_autocast_enabled(device.type) else self.pos_emb.weight.dtype)
        return KVCache(self.cfg, batch, device, dtype)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
