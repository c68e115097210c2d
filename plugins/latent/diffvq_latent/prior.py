"""The latent-diffusion prior: continuous diffusion over the tokenizer's codebook vectors.

As Stable Diffusion diffuses over its autoencoder's latents, this prior diffuses over the vectors
the VQ tokens stand for: a token grid becomes `[L, D]` codebook vectors, normalised, and a
bidirectional transformer (the backbone every prior shares) learns to denoise them under DDPM's
forward process, seeing `[class token, x_1 .. x_L]` with the noise level added to every position.
Sampling runs a deterministic DDIM or DPM-Solver++ sampler from Gaussian noise, then rounds each
position to its nearest codebook vector, which gives tokens the tokenizer's decoder understands.
The schedulers are diffusers'; only the denoiser and the latents are ours.

Two defaults differ from image latent diffusion, because these latents are a discrete set of
points rather than a continuum (measured on MNIST tokens; figures in the README):

- `prediction="sample"` (predict x_0). The MSE on x_0 weights every noise level alike, while
  epsilon and v losses weight it by SNR and 1 + SNR, i.e. barely train the high-noise steps where
  a sample decides what digit to be; the rest is snapping to a nearby code. Epsilon also blows up
  at the near-zero terminal SNR of the cosine schedule when sampling starts from pure noise.
- `latent_std=0.5`. Neighbouring codebook vectors lie ~4 standard deviations apart, so at unit
  variance a token is still identifiable from its noisy vector for most of the schedule; a smaller
  signal spends more of the schedule where tokens are ambiguous (input scaling, Chen 2023).

Continuous diffusion gives a density over R^{L x D}, not a distribution over tokens, so the prior
reports no likelihood (`likelihood = "none"`).
"""

from __future__ import annotations

import math
from typing import Annotated, Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from diffvq.flops import transformer_train_flops
from diffvq.interfaces import TokenSpec
from diffvq.nn.conditioning import ClassCondition
from diffvq.nn.transformer import Transformer, TransformerConfig
from diffvq.runtime import no_autocast

BetaSchedule = Literal["linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid"]
Prediction = Literal["epsilon", "v_prediction", "sample"]
Sampler = Literal["ddim", "dpm-solver"]


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal features of integer timesteps `[B]` -> `[B, dim]` (the Transformer's, as
    DDPM uses them): a smooth code of the noise level the MLP after it can read."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]  # [B, half]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return F.pad(emb, (0, dim % 2))  # [B, dim]


class LatentDiffusionPrior(nn.Module):
    """Continuous diffusion over codebook vectors, rounded to the nearest code when sampled.

    DDPM training on normalised codebook vectors, a class-token transformer denoiser,
    classifier-free guidance, and DDIM or DPM-Solver++ sampling (diffusers' schedulers)."""

    name: ClassVar[str] = "latent-diffusion"
    likelihood: ClassVar[str] = "none"
    train_defaults: ClassVar[dict[str, Any]] = {"lr": 4e-3, "warmup_steps": 100,
                                                 "weight_decay": 0.01}

    def __init__(self, spec: TokenSpec, codebook: Tensor, *,
                 n_layer: Annotated[int, Field(gt=0)] = 4,
                 n_head: Annotated[int, Field(gt=0)] = 4,
                 n_embd: Annotated[int, Field(gt=0)] = 192,
                 dropout: Annotated[float, Field(ge=0, lt=1)] = 0.0,
                 cond_dropout: Annotated[float, Field(ge=0, le=1)] = 0.1,
                 timesteps: Annotated[int, Field(gt=1)] = 1000,
                 beta_schedule: BetaSchedule = "squaredcos_cap_v2",
                 prediction: Prediction = "sample",
                 latent_std: Annotated[float, Field(gt=0)] = 0.5):
        super().__init__()
        K, D = _check_codebook(codebook, spec)
        self.spec = spec
        self.timesteps = timesteps
        self.beta_schedule = beta_schedule
        self.prediction = prediction
        self.latent_std = latent_std
        # The codebook is part of the model: sampling rounds to it, and it is saved with the
        # weights (on reload the pipeline passes zeros of this shape; load_state_dict fills it).
        self.register_buffer("codebook", codebook.detach().float().clone())  # [K, D]
        # Normalisation x = (z - mean) / scale * latent_std: a per-dimension centre and ONE scale
        # (SD's scale factor), so the diffusion's L2 geometry stays the codebook's and rounding to
        # the nearest vector means what it says. Set from the codebook here, then once from the
        # first training batch, i.e. with each code weighted by how often the data uses it (LDM's
        # scale_by_std); the flag keeps a resumed or reloaded model from redoing it.
        mean, scale = _moments(self.codebook)
        self.register_buffer("latent_mean", mean)  # [D]
        self.register_buffer("latent_scale", scale)  # []
        self.register_buffer("stats_from_data", torch.tensor(False))
        self.cond = ClassCondition(spec.n_classes, offset=0, dropout=cond_dropout)
        self.net = Transformer(TransformerConfig(
            vocab_size=self.cond.vocab, out_size=D, seq_len=spec.seq_len + 1, n_layer=n_layer,
            n_head=n_head, n_embd=n_embd, dropout=dropout, causal=False))
        self.in_proj = nn.Linear(D, n_embd)  # noisy latents -> the transformer's width
        self.time_mlp = nn.Sequential(nn.Linear(n_embd, 4 * n_embd), nn.SiLU(),
                                      nn.Linear(4 * n_embd, n_embd))
        self._ddpm = None  # diffusers' DDPMScheduler, built on first use (importing is slow)
        self._samplers: dict[tuple[str, int], Any] = {}  # built once, reset on each use

    # -- the diffusion process (diffusers) -----------------------------------------------------
    @property
    def scheduler(self):
        """The training scheduler: beta schedule, `add_noise`, and the config samplers copy."""
        if self._ddpm is None:
            from diffusers import DDPMScheduler

            self._ddpm = DDPMScheduler(num_train_timesteps=self.timesteps,
                                       beta_schedule=self.beta_schedule,
                                       prediction_type=self.prediction, clip_sample=False)
        return self._ddpm

    def _sampler(self, sampler: str, steps: int):
        """A deterministic sampler on the training schedule, reset for a new call. Built (and
        diffusers imported) on the first call with these settings only, so a warm, timed call
        pays for sampling alone; `set_timesteps` clears the per-call state samplers keep.
        "trailing" spacing starts at the last training timestep, i.e. from pure noise; the
        default "leading" spacing would start short of it and leave signal unexplained."""
        s = self._samplers.get((sampler, steps))
        if s is None:
            from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

            config = dict(self.scheduler.config, timestep_spacing="trailing")
            if sampler == "ddim":
                s = DDIMScheduler.from_config(config, set_alpha_to_one=True)
            else:  # DPM-Solver++(2M): second order from one network evaluation per step
                s = DPMSolverMultistepScheduler.from_config(
                    config, algorithm_type="dpmsolver++", solver_order=2, final_sigmas_type="zero")
            self._samplers[(sampler, steps)] = s
        s.set_timesteps(steps)
        return s

    # -- latents ------------------------------------------------------------------------------
    def normalise(self, tokens: Tensor) -> Tensor:
        """Tokens `[B, L]` -> normalised codebook vectors `[B, L, D]`."""
        return (self.codebook[tokens] - self.latent_mean) * (self.latent_std / self.latent_scale)

    def round_to_tokens(self, x: Tensor) -> Tensor:
        """Normalised latents `[B, L, D]` -> the nearest codebook entry (L2) per position `[B, L]`."""
        with no_autocast(x.device.type):  # bf16 distances would pick the wrong neighbour
            z = x.float() * (self.latent_scale / self.latent_std) + self.latent_mean  # [B, L, D]
            d = (z.square().sum(-1, keepdim=True) - 2 * z @ self.codebook.T
                 + self.codebook.square().sum(-1))  # [B, L, K]
        return d.argmin(dim=-1)

    @torch.no_grad()
    def _set_stats_from(self, tokens: Tensor) -> None:
        mean, scale = _moments(self.codebook[tokens].reshape(-1, self.codebook.shape[1]))
        self.latent_mean.copy_(mean)
        self.latent_scale.copy_(scale)
        self.stats_from_data.fill_(True)

    # -- the denoiser -------------------------------------------------------------------------
    def forward(self, x: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        """Noisy latents `[B, L, D]`, timesteps `[B]`, condition token ids `[B]` -> the
        predicted quantity (`prediction`) `[B, L, D]`."""
        temb = self.time_mlp(timestep_embedding(t, self.in_proj.out_features))  # [B, C]
        h = torch.cat([self.net.tok_emb(cond)[:, None], self.in_proj(x)], dim=1)  # [B, 1+L, C]
        h = h + temb[:, None]  # the noise level, told to every position
        return self.net.forward_embeddings(h)[:, 1:].float()  # [B, L, D]

    def training_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        tokens, labels = batch["tokens"], self.cond.drop(batch.get("labels"))
        if self.training and not self.stats_from_data:
            self._set_stats_from(tokens)
        x0 = self.normalise(tokens)  # [B, L, D]
        B = x0.shape[0]
        noise = torch.randn_like(x0)
        t = torch.randint(0, self.timesteps, (B,), device=x0.device)  # [B]
        xt = self.scheduler.add_noise(x0, noise, t)
        target = {"epsilon": noise, "sample": x0,
                  "v_prediction": self.scheduler.get_velocity(x0, noise, t)}[self.prediction]
        pred = self(xt, t, self.cond.tokens(labels, B, x0.device))
        loss = F.mse_loss(pred, target)
        return loss, {"mse": loss.item()}

    @torch.no_grad()
    def nll(self, tokens: Tensor, labels: Tensor | None) -> Tensor:
        """No likelihood: NaN for each sequence `[B]`. A continuous diffusion ELBO is a density
        over latent vectors, not bits per token; comparing it with the token priors' NLL would
        be wrong, so none is invented (and the pipeline skips NLL for `likelihood = "none"`)."""
        return torch.full((tokens.shape[0],), float("nan"), device=tokens.device)

    def train_flops(self, batch_size: int) -> int:
        """FLOPs of one training step: the bidirectional backbone over the class token and the
        L latents (its head, D outputs, at all L + 1 positions); `in_proj` (D -> C) on the L
        latents, forward and weight gradient only (the noisy latents need no gradient): 4 B L D C;
        and the timestep MLP (C -> 4C -> C) on one vector per sequence: forward 16 B C^2,
        backward 24 B C^2 (its first layer's input, the sinusoids, needs no gradient)."""
        B, L, C = batch_size, self.spec.seq_len, self.net.cfg.n_embd
        D = self.codebook.shape[1]
        return transformer_train_flops(self.net.cfg, B) + 4 * B * L * D * C + 40 * B * C * C

    # -- sampling -----------------------------------------------------------------------------
    def nfe(self, *, steps: int = 50, **options: Any) -> int:
        """One (batched, guided) denoiser call per step: DDIM, and DPM-Solver++ multistep too,
        which reuses the previous step's output for its second order."""
        return steps

    def check_options(self, *, steps: int = 50, **options: Any) -> None:
        if steps > self.timesteps:
            raise ValueError(f"steps ({steps}) must not exceed the {self.timesteps} diffusion "
                             f"timesteps this prior was trained with")

    @torch.no_grad()
    def sample(self, n: int, labels: Tensor | None, *, generator: torch.Generator,
               steps: Annotated[int, Field(gt=0)] = 50,
               guidance: Annotated[float, Field(ge=0)] = 3.0,
               sampler: Sampler = "ddim") -> Tensor:
        """`[n, L]` tokens from `steps` denoiser evaluations. The initial noise comes from
        `generator` alone and both samplers are deterministic after it. With a class and
        `guidance` other than 0 or 1 the conditional and null-class streams run as one batch;
        guidance 1 runs the conditional model alone, 0 the unconditional one. No cut-off
        applies: the draws are continuous."""
        self.check_options(steps=steps)
        device = self.codebook.device
        sched = self._sampler(sampler, steps)
        shape = (n, self.spec.seq_len, self.codebook.shape[1])
        x = torch.randn(shape, generator=generator, device=generator.device).to(device)
        x = x * sched.init_noise_sigma  # [n, L, D]
        for t in sched.timesteps:
            def denoise(xx: Tensor, cond: Tensor) -> Tensor:  # n or 2n rows (guidance)
                return self(xx, torch.full((xx.shape[0],), int(t), device=device), cond)

            out = self.cond.guided(denoise, x, labels, guidance)  # [n, L, D]
            x = sched.step(out, t, x).prev_sample.float()
        return self.round_to_tokens(x)


def _check_codebook(codebook: Tensor, spec: TokenSpec) -> tuple[int, int]:
    if not isinstance(codebook, Tensor) or codebook.dim() != 2:
        raise ValueError(f"latent-diffusion needs a [K, D] codebook tensor, got "
                         f"{getattr(codebook, 'shape', type(codebook).__name__)}")
    K, D = codebook.shape
    if K != spec.vocab_size:
        raise ValueError(f"codebook has {K} vectors but the tokens have a vocabulary of "
                         f"{spec.vocab_size}")
    return K, D


def _moments(z: Tensor) -> tuple[Tensor, Tensor]:
    """Per-dimension mean `[D]` and one overall scale `[]` of vectors `[N, D]`. A constant
    codebook (the zeros a reload passes before load_state_dict) gives scale 1, not 0."""
    z = z.float()
    mean = z.mean(0)
    scale = (z - mean).square().mean().sqrt()
    return mean, torch.where(scale > 1e-8, scale, torch.ones_like(scale))
