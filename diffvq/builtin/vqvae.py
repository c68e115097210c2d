"""A convolutional VQ-VAE tokenizer, 2-D for images and 1-D for audio from the same code.

Encoder: a stem, then one stride-2 stage per halving of resolution (channels double, up to 4x),
residual blocks, and a projection to the codebook dimension. The quantizer is
vector-quantize-pytorch's `VectorQuantize` with the codebook kept healthy: EMA updates, k-means
initialisation on the first batch, and restart of codes used less than `dead_code_threshold`
times per batch on average. The decoder mirrors the encoder.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn
from vector_quantize_pytorch import VectorQuantize

import diffvq
from diffvq.runtime import no_autocast

_CONV = {1: nn.Conv1d, 2: nn.Conv2d}
_DECONV = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d}


Norm = Literal["group", "none"]


def _norm(ch: int, norm: Norm) -> nn.Module:
    return nn.GroupNorm(min(8, ch // 4) or 1, ch) if norm == "group" else nn.Identity()


class ResBlock(nn.Module):
    def __init__(self, ch: int, dims: int, norm: Norm):
        super().__init__()
        conv = _CONV[dims]
        self.body = nn.Sequential(_norm(ch, norm), nn.SiLU(), conv(ch, ch, 3, padding=1),
                                  _norm(ch, norm), nn.SiLU(), conv(ch, ch, 3, padding=1))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


def _widths(channels: int, levels: int) -> list[int]:
    """Channels at each resolution: doubling per halving, capped at 4x the base."""
    return [channels * min(2 ** i, 4) for i in range(levels + 1)]


class Encoder(nn.Module):
    def __init__(self, in_ch: int, channels: int, levels: int, n_res: int, out_dim: int,
                 dims: int, norm: Norm):
        super().__init__()
        conv, w = _CONV[dims], _widths(channels, levels)
        layers: list[nn.Module] = [conv(in_ch, w[0], 3, padding=1)]
        for i in range(levels):
            layers += [ResBlock(w[i], dims, norm) for _ in range(n_res)]
            layers.append(conv(w[i], w[i + 1], 4, stride=2, padding=1))
        layers += [ResBlock(w[-1], dims, norm) for _ in range(n_res)]
        layers += [_norm(w[-1], norm), nn.SiLU(), conv(w[-1], out_dim, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class Decoder(nn.Module):
    def __init__(self, out_ch: int, channels: int, levels: int, n_res: int, in_dim: int,
                 dims: int, norm: Norm):
        super().__init__()
        conv, deconv, w = _CONV[dims], _DECONV[dims], _widths(channels, levels)
        layers: list[nn.Module] = [conv(in_dim, w[-1], 3, padding=1)]
        layers += [ResBlock(w[-1], dims, norm) for _ in range(n_res)]
        for i in reversed(range(levels)):
            layers.append(deconv(w[i + 1], w[i], 4, stride=2, padding=1))
            layers += [ResBlock(w[i], dims, norm) for _ in range(n_res)]
        layers += [_norm(w[0], norm), nn.SiLU(), conv(w[0], out_ch, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


class VQVAE(nn.Module):
    """Convolutional VQ-VAE over `[B, C, *spatial]` tensors (1-D or 2-D)."""

    name: ClassVar[str] = "vqvae"
    train_defaults: ClassVar[dict[str, Any]] = {"lr": 1e-3, "warmup_steps": 50,
                                                 "weight_decay": 0.0, "batch_size": 64}

    def __init__(self, input_shape: tuple[int, ...], *,
                 codebook_size: Annotated[int, Field(ge=2)] = 256,
                 codebook_dim: Annotated[int, Field(gt=0)] = 32,
                 downsample: Annotated[int, Field(gt=0)] = 4,
                 channels: Annotated[int, Field(gt=0)] = 32,
                 n_res_blocks: Annotated[int, Field(ge=0)] = 1,
                 norm: Norm = "group",
                 commitment_weight: Annotated[float, Field(ge=0)] = 0.25,
                 codebook_decay: Annotated[float, Field(gt=0, lt=1)] = 0.9,
                 kmeans_init: bool = True,
                 dead_code_threshold: Annotated[float, Field(ge=0)] = 1.0,
                 recon_loss: Literal["mse", "l1"] = "mse"):
        super().__init__()
        in_ch, *spatial = input_shape
        dims = len(spatial)
        if dims not in (1, 2):
            raise ValueError(f"vqvae works on 1-D or 2-D signals, got input shape {input_shape}")
        levels = int(round(math.log2(downsample)))
        if 2 ** levels != downsample:
            raise ValueError(f"downsample must be a power of two, got {downsample}")
        for s in spatial:
            if s % downsample:
                raise ValueError(f"input size {tuple(spatial)} is not divisible by downsample "
                                 f"{downsample}; resize the data or choose another downsample")
        self.input_shape = tuple(input_shape)
        self.codebook_size = codebook_size
        self.grid_shape = tuple(s // downsample for s in spatial)
        self.recon_loss = recon_loss
        self.encoder = Encoder(in_ch, channels, levels, n_res_blocks, codebook_dim, dims, norm)
        self.decoder = Decoder(in_ch, channels, levels, n_res_blocks, codebook_dim, dims, norm)
        self.quantizer = VectorQuantize(
            dim=codebook_dim, codebook_size=codebook_size, decay=codebook_decay,
            kmeans_init=kmeans_init, kmeans_iters=10, threshold_ema_dead_code=dead_code_threshold,
            commitment_weight=commitment_weight)

    def _quantize(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """`z` `[B, D, *grid]` -> quantized `[B, D, *grid]`, indices `[B, *grid]`, commit loss.
        Distances and EMA statistics stay in fp32 even under autocast."""
        B, D = z.shape[:2]
        flat = z.float().flatten(2).transpose(1, 2)  # [B, N, D]
        with no_autocast(z.device.type):
            q, idx, commit = self.quantizer(flat)
        q = q.transpose(1, 2).reshape(z.shape)
        return q, idx.view(B, *self.grid_shape), commit

    def training_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        x = batch["x"]
        q, idx, commit = self._quantize(self.encoder(x))
        x_hat = self.decoder(q).float()
        rec = F.mse_loss(x_hat, x) if self.recon_loss == "mse" else F.l1_loss(x_hat, x)
        counts = torch.bincount(idx.flatten(), minlength=self.codebook_size).float()
        p = counts / counts.sum()
        perplexity = torch.exp(-(p[p > 0] * p[p > 0].log()).sum())
        return rec + commit, {"recon": rec.item(), "commit": commit.item(),
                              "perplexity": perplexity.item()}

    @torch.no_grad()
    def codebook(self) -> Tensor:
        """`[K, D]`: the vector each token stands for (what the decoder receives)."""
        return self.quantizer.codebook.detach().float().reshape(self.codebook_size, -1).clone()

    @torch.no_grad()
    def encode(self, x: Tensor) -> Tensor:
        """`[B, C, *spatial]` -> `[B, *grid_shape]` long."""
        return self._quantize(self.encoder(x))[1]

    @torch.no_grad()
    def decode(self, tokens: Tensor) -> Tensor:
        """`[B, *grid_shape]` long -> `[B, C, *spatial]` float."""
        B = tokens.shape[0]
        with no_autocast(tokens.device.type):
            codes = self.quantizer.get_output_from_indices(tokens.reshape(B, -1))  # [B, N, D]
        z = codes.transpose(1, 2).reshape(B, -1, *self.grid_shape)
        return self.decoder(z).float()


@diffvq.hookimpl
def register_tokenizers(register):
    register(VQVAE)
