"""The multinomial-diffusion prior: VQ-Diffusion's mask-and-replace discrete diffusion (Gu et al.
2022), or plain uniform multinomial diffusion (Hoogeboom et al. 2021), over a token grid.

Forward process. A token is one of K codes or, for mask-and-replace, the MASK state (index K).
One transition s -> t keeps a code with probability a, replaces it by each of the K codes with
probability b (so it may land on itself) and masks it with probability c, a + K b + c = 1; MASK
is absorbing. Such transitions compose into the same form, so everything follows from the
cumulative marginals: q(x_t | x_0) puts alpha_t + beta_t on x_0, beta_t on every other code and
gamma_t on MASK, and the transition from s to t has

    a = alpha_t / alpha_s,   1 - c = (1 - gamma_t) / (1 - gamma_s),   K b = 1 - a - c.

Schedules (t = 1..T, x = (t - 1) / (T - 1)): alpha_t falls linearly from 0.99999 to 0.000009
(VQ-Diffusion's numbers). For mask-and-replace, the share of the *unmasked* tokens that are
still correct, rho_t = alpha_t / (alpha_t + K beta_t), falls linearly from 1 to 1 - `replace`,
and K beta_t also keeps VQ-Diffusion's floor of 1e-6; gamma_t takes the rest and rises from
0.000009 to ~0.99999. `replace=0` is exactly VQ-Diffusion's released schedule (gamma_t linear,
K beta_t = 1e-6 throughout: almost pure masking); the default 0.1 really replaces some tokens
(up to ~2.6 % at mid-schedule), which is what lets the reverse process revise tokens it has
already drawn. Both alpha_t / (1 - gamma_t) = rho_t and 1 - gamma_t only fall, which is what
makes every transition s -> t a valid one (b, c >= 0). For `uniform`, gamma_t = 0 and
K beta_t = 1 - alpha_t: the stationary distribution is uniform over the codes.

Reverse process (x0-parameterisation): the network predicts p(x_0 | x_t, t, class) over the K
codes, and

    p(x_s | x_t) = sum_x0 q(x_s | x_t, x0) p(x0 | x_t)
                 = Q(x_t | x_s) sum_x0 q(x_s | x0) p(x0 | x_t) / q(x_t | x0),

which for these structured transitions is O(K) per position (no K x K matrix), computed in log
space. The same formula with a one-hot p(x0) is the true posterior q(x_s | x_t, x0), with s = t - 1
for training and any s < t for step skipping, and with s = 0 it returns p(x0 | x_t) itself.

Loss and likelihood: the variational bound L_T + sum_t KL(q(x_{t-1} | x_t, x0) || p(x_{t-1} | x_t))
(the t = 1 term is -log p(x0 | x1)), one uniformly drawn t per sequence during training, scaled
by T so that it is an unbiased estimate of the whole bound, plus `aux_weight` times the cross-
entropy of p(x0 | x_t) (VQ-Diffusion's auxiliary loss). `nll` estimates the full bound with t
stratified over `nll_t_samples` strata (every t once by default) and one x_t per term.
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
from diffvq.nn.sampling import MIN_P, draw, shape_logits
from diffvq.nn.transformer import Transformer, TransformerConfig

Kind = Literal["mask-and-replace", "uniform"]

NEG = -1e4  # the log of an impossible event: exp() gives exactly 0, sums of a few stay finite
ALPHA_1, ALPHA_T = 0.99999, 0.000009  # VQ-Diffusion's cumulative keep probabilities at t=1, T
REPLACE_FLOOR = 1e-6  # VQ-Diffusion's K * beta_t: every code stays reachable from every code

# the columns of a transition row, all logs: marginals at s, marginals at t, step s -> t
COLUMNS = ("alpha_s", "beta_s", "gamma_s", "alpha_t", "beta_t", "gamma_t", "a", "b", "c", "a+b")


def _log(p: float) -> float:
    return math.log(p) if p > 0 else NEG


def cumulative_schedule(T: int, kind: Kind, replace: float) -> list[tuple[float, float, float]]:
    """(alpha_t, K beta_t, gamma_t) for t = 0..T in float64: the cumulative keep, replace (all
    codes together) and mask probabilities; t = 0 is the data itself (1, 0, 0)."""
    out = [(1.0, 0.0, 0.0)]
    for t in range(1, T + 1):
        x = (t - 1) / (T - 1) if T > 1 else 1.0
        alpha = ALPHA_1 + x * (ALPHA_T - ALPHA_1)
        if kind == "uniform":
            k_beta, gamma = 1.0 - alpha, 0.0
        else:
            rho = 1.0 - replace * x  # share of unmasked tokens still correct
            k_beta = alpha * (1 - rho) / rho + REPLACE_FLOOR
            gamma = 1.0 - alpha - k_beta
        out.append((alpha, k_beta, gamma))
    return out


class TimestepEmbedding(nn.Module):
    """t -> a vector added to every position: sinusoids of t through a small MLP (as DDPM and
    VQ-Diffusion condition on t), so that nearby timesteps share what they learn."""

    def __init__(self, n_embd: int):
        super().__init__()
        self.n_embd = n_embd
        self.mlp = nn.Sequential(nn.Linear(n_embd, n_embd), nn.GELU(), nn.Linear(n_embd, n_embd))
        for m in self.mlp:
            if isinstance(m, nn.Linear):  # small, like the transformer's own embeddings
                nn.init.normal_(m.weight, 0.0, 0.02)
                nn.init.zeros_(m.bias)

    def forward(self, t: Tensor) -> Tensor:
        half = self.n_embd // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / half)
        args = t.float()[:, None] * freqs  # [B, half]
        emb = torch.cat([args.sin(), args.cos()], dim=-1)  # [B, 2 half]
        if self.n_embd % 2:
            emb = F.pad(emb, (0, 1))
        return self.mlp(emb)  # [B, C]


class MultinomialDiffusionPrior(nn.Module):
    """VQ-Diffusion: mask-and-replace (or uniform) multinomial diffusion over tokens.

    x0-parameterised bidirectional transformer conditioned on the timestep and the class, exact
    step-skipping posteriors, classifier-free guidance, and an ELBO for the likelihood."""

    name: ClassVar[str] = "multinomial-diffusion"
    likelihood: ClassVar[str] = "bound"
    train_defaults: ClassVar[dict[str, Any]] = {"lr": 1e-3, "warmup_steps": 100,
                                                 "weight_decay": 0.01}

    def __init__(self, spec: TokenSpec, *,
                 n_layer: Annotated[int, Field(gt=0)] = 4,
                 n_head: Annotated[int, Field(gt=0)] = 4,
                 n_embd: Annotated[int, Field(gt=0)] = 192,
                 dropout: Annotated[float, Field(ge=0, lt=1)] = 0.0,
                 cond_dropout: Annotated[float, Field(ge=0, le=1)] = 0.1,
                 kind: Kind = "mask-and-replace",
                 timesteps: Annotated[int, Field(gt=0)] = 100,
                 replace: Annotated[float, Field(ge=0, lt=1)] = 0.1,
                 x0_form: Literal["direct", "bayes"] = "direct",
                 aux_weight: Annotated[float, Field(ge=0)] = 1.0,
                 nll_t_samples: Annotated[int, Field(gt=0)] = 25):
        """`replace`: share of unmasked tokens that are wrong at t = T (mask-and-replace only;
        uniform diffusion replaces every corrupted token). `x0_form`: how the logits become
        p(x0 | x_t) (see `log_x0`). `aux_weight`: weight of the x0 cross-entropy beside the
        bound. `nll_t_samples`: strata of t in the NLL bound, one network evaluation each
        (>= timesteps: every t exactly once)."""
        super().__init__()
        self.spec = spec
        self.kind = kind
        self.T = timesteps
        self.x0_form = x0_form
        self.aux_weight = aux_weight
        self.nll_t_samples = nll_t_samples
        K = spec.vocab_size
        self.mask_id = K  # a state of the process in both kinds; uniform never reaches it
        n_input = K + 1 if kind == "mask-and-replace" else K
        self.cond = ClassCondition(spec.n_classes, offset=n_input, dropout=cond_dropout)
        self.net = Transformer(TransformerConfig(
            vocab_size=n_input + self.cond.vocab, out_size=K, seq_len=spec.seq_len + 1,
            n_layer=n_layer, n_head=n_head, n_embd=n_embd, dropout=dropout, causal=False))
        self.time_emb = TimestepEmbedding(n_embd)

        self.schedule = cumulative_schedule(timesteps, kind, replace)
        alpha, k_beta, gamma = (torch.tensor(v, dtype=torch.float64) for v in zip(*self.schedule))
        # q(x_T | x0) against the prior p(x_T) (q averaged over x0): the same for every x0
        aT, bT = self.schedule[-1][0], self.schedule[-1][1] / K  # floats: no tensor read
        pT = aT / K + bT
        self.prior_kl = (aT + bT) * math.log((aT + bT) / pT) + (K - 1) * bT * _log(bT / pT)
        # non-persistent: they are functions of the recipe keys, rebuilt on load
        self.register_buffer("alpha", alpha.float(), persistent=False)  # [T+1]
        self.register_buffer("gamma", gamma.float(), persistent=False)  # [T+1]
        steps = torch.stack([self.transition(t - 1, t) for t in range(1, timesteps + 1)])
        self.register_buffer("steps", steps, persistent=False)  # [T, 10] rows t-1 -> t

    def transition(self, s: int, t: int) -> Tensor:
        """`[10]` float32 logs (COLUMNS) of the marginals at s and t and the step s -> t, worked
        out in float64: a - (1 - c) cancels to ~1e-8 between neighbouring steps."""
        K = self.spec.vocab_size
        a_s, kb_s, g_s = self.schedule[s]
        a_t, kb_t, g_t = self.schedule[t]
        a = a_t / a_s
        one_minus_c = (1 - g_t) / (1 - g_s)
        kb = max(one_minus_c - a, 0.0)
        row = [a_s, kb_s / K, g_s, a_t, kb_t / K, g_t, a, kb / K, 1 - one_minus_c, a + kb / K]
        return torch.tensor([_log(v) for v in row], dtype=torch.float32)

    # -- the process --------------------------------------------------------------------------
    def log_posterior(self, log_x0: Tensor, x_t: Tensor, coef: Tensor) -> Tensor:
        """log sum_x0 q(x_s | x_t, x0) p(x0), `[B, L, K+1]` over x_s (codes, then MASK), for an
        x0-distribution `log_x0` `[B, L, K]` (one-hot: the true posterior; the network's: the
        model's reverse step). `x_t` `[B, L]`; `coef` `[B, 10]` rows of `transition(s, t)`."""
        K = self.spec.vocab_size
        al_s, be_s, ga_s, _, _, _, _, lb, lc, lab = coef[:, :, None, None].unbind(1)
        masked = (x_t == self.mask_id)[..., None]  # [B, L, 1]
        is_xt = F.one_hot(x_t.clamp_max(K - 1), K).bool()  # [B, L, K] (meaningless if masked)
        log_w = log_x0 - self.log_likelihood(x_t, coef)  # w(x0) = p(x0) / q(x_t | x0)  [B, L, K]
        log_W = log_w.logsumexp(-1, keepdim=True)  # [B, L, 1]
        # sum_x0 w(x0) q(x_s | x0): alpha_s w(k) + beta_s W on code k, gamma_s W on MASK
        log_m = torch.cat([torch.logaddexp(al_s + log_w, be_s + log_W), ga_s + log_W], -1)
        # Q(x_t | x_s) as a function of x_s
        from_code = torch.where(masked, lc, torch.where(is_xt, lab, lb))  # [B, L, K]
        from_mask = torch.where(masked, 0.0, NEG)  # [B, L, 1]: MASK only stays MASK
        out = torch.cat([from_code, from_mask], -1) + log_m  # [B, L, K+1]
        return out - out.logsumexp(-1, keepdim=True)  # exact up to rounding; renormalise

    def log_likelihood(self, x_t: Tensor, coef: Tensor) -> Tensor:
        """log q(x_t | x0) as a function of x0, `[B, L, K]`: gamma_t where x_t is MASK, else
        alpha_t + beta_t on x_t's own code and beta_t on the others."""
        K = self.spec.vocab_size
        al_t, be_t, ga_t = coef[:, 3:6, None, None].unbind(1)  # [B, 1, 1] each
        is_xt = F.one_hot(x_t.clamp_max(K - 1), K).bool()  # [B, L, K]
        log_qt = torch.where(is_xt, torch.logaddexp(al_t, be_t), be_t)
        return torch.where((x_t == self.mask_id)[..., None], ga_t, log_qt)

    def log_x0(self, logits: Tensor, x_t: Tensor, coef: Tensor) -> Tensor:
        """The model's log p(x0 | x_t) `[B, L, K]` from the network's logits. `"direct"`
        (VQ-Diffusion's form) takes them as they are. `"bayes"` (D3PM's form) adds each
        position's own evidence log q(x_t | x0), so the network need not learn that a visible
        token is almost surely right (at small t the odds are ~1e6 : 1, and the bound pays for
        every bit of doubt): a tighter bound early in training, but overruling a replaced
        token then takes a logit margin of up to ~9 nats, and on small data its samples mixed
        patterns more often (see the plugin's tests and README notes)."""
        if self.x0_form == "bayes":
            logits = logits + self.log_likelihood(x_t, coef)
        return logits.log_softmax(-1).clamp_min(NEG)

    def q_sample(self, x0: Tensor, t: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """x_t ~ q(x_t | x0) in closed form, `[B, L]`: keep, mask, or a uniformly drawn code."""
        K = self.spec.vocab_size
        alpha, gamma = self.alpha[t][:, None], self.gamma[t][:, None]  # [B, 1]
        u = torch.rand(x0.shape, device=x0.device, generator=generator)
        code = torch.randint(0, K, x0.shape, device=x0.device, generator=generator)
        return torch.where(u < alpha, x0, torch.where(u < alpha + gamma, self.mask_id, code))

    def prior_sample(self, n: int, device: torch.device, generator: torch.Generator) -> Tensor:
        """x_T ~ p(x_T), `[n, L]`: MASK with gamma_T (~all of them), else a uniform code."""
        L, K = self.spec.seq_len, self.spec.vocab_size
        u = torch.rand(n, L, device=device, generator=generator, dtype=torch.float64)
        code = torch.randint(0, K, (n, L), device=device, generator=generator)
        return torch.where(u < self.schedule[-1][2], self.mask_id, code)  # gamma_T, float64

    # -- the network --------------------------------------------------------------------------
    def _logits(self, x: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        """x0 logits `[B, L, K]` from `x` `[B, L]` (codes or MASK), `t` `[B]`, `cond` `[B]`."""
        idx = torch.cat([cond[:, None], x], dim=1)  # [B, L+1]
        h = self.net.tok_emb(idx) + self.time_emb(t)[:, None]  # [B, L+1, C]
        return self.net.forward_embeddings(h)[:, 1:]

    def _kl_terms(self, tokens: Tensor, labels: Tensor | None, t: Tensor
                  ) -> tuple[Tensor, Tensor]:
        """KL(q(x_{t-1} | x_t, x0) || p(x_{t-1} | x_t)) (at t = 1: -log p(x0 | x1)) and the x0
        cross-entropy, both `[B, L]` nats, at one x_t drawn per sequence."""
        B, K = tokens.shape[0], self.spec.vocab_size
        x_t = self.q_sample(tokens, t)
        logits = self._logits(x_t, t, self.cond.tokens(labels, B, tokens.device)).float()
        coef = self.steps[t - 1]  # [B, 10]
        log_x0 = self.log_x0(logits, x_t, coef)  # [B, L, K]
        log_p = self.log_posterior(log_x0, x_t, coef)  # [B, L, K+1]
        one_hot = torch.where(F.one_hot(tokens, K).bool(), 0.0, NEG)
        log_q = self.log_posterior(one_hot, x_t, coef)
        kl = (log_q.exp() * (log_q - log_p)).sum(-1)  # [B, L]
        ce = -log_x0.gather(-1, tokens[..., None]).squeeze(-1)  # [B, L]
        return kl, ce

    # -- training and likelihood --------------------------------------------------------------
    def training_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        tokens = batch["tokens"]
        labels = self.cond.drop(batch.get("labels"))
        t = torch.randint(1, self.T + 1, (tokens.shape[0],), device=tokens.device)
        kl, ce = self._kl_terms(tokens, labels, t)
        vb = self.T * kl.mean()  # unbiased for sum_t KL_t per token
        loss = vb + self.aux_weight * ce.mean()
        return loss, {"bound_bits_per_token": (vb.item() + self.prior_kl) / math.log(2),
                      "x0_bits_per_token": ce.mean().item() / math.log(2)}

    @torch.no_grad()
    def nll(self, tokens: Tensor, labels: Tensor | None) -> Tensor:
        """Upper bound on bits per token of each sequence `[B]`: L_T plus every KL term, t
        stratified into `nll_t_samples` equal strata (one t each, weighted by its stratum's
        size) and one x_t per term; uses torch's global RNG."""
        B, L = tokens.shape
        n = min(self.nll_t_samples, self.T)
        edges = [round(i * self.T / n) for i in range(n + 1)]  # strata (edges[i], edges[i+1]]
        total = torch.full((B,), self.prior_kl * L, device=tokens.device)
        for lo, hi in zip(edges[:-1], edges[1:]):
            t = torch.randint(lo + 1, hi + 1, (B,), device=tokens.device)
            kl, _ = self._kl_terms(tokens, labels, t)
            total += (hi - lo) * kl.sum(-1)
        return total / L / math.log(2)

    def train_flops(self, batch_size: int) -> int:
        """FLOPs of one training step: the bidirectional backbone over the class token and the
        L tokens (head at all L + 1 positions), plus the timestep MLP's two C x C layers on one
        vector per sequence (forward 4 B C^2; backward 6 B C^2, as the sinusoids it reads need no
        gradient). The posteriors and KL terms are elementwise: O(L K), no matrix products."""
        C = self.net.cfg.n_embd
        return transformer_train_flops(self.net.cfg, batch_size) + 10 * batch_size * C * C

    # -- sampling -----------------------------------------------------------------------------
    def timesteps(self, steps: int) -> list[int]:
        """The `steps` timesteps a sampler visits, evenly spaced from T down to 1, then 0."""
        if steps == 1:
            return [self.T, 0]
        return [round(self.T - i * (self.T - 1) / (steps - 1)) for i in range(steps)] + [0]

    def nfe(self, **options: Any) -> int:
        return int(options.get("steps", 50))

    def check_options(self, **options: Any) -> None:
        steps = options.get("steps", 50)
        if steps > self.T:
            raise ValueError(f"steps ({steps}) exceeds the diffusion's timesteps ({self.T}): "
                             f"a sampler can skip timesteps but not add them")

    @torch.no_grad()
    def sample(self, n: int, labels: Tensor | None, *, generator: torch.Generator,
               steps: Annotated[int, Field(gt=0)] = 50,
               temperature: Annotated[float, Field(gt=0)] = 1.0,
               top_k: Annotated[int, Field(gt=0)] | None = None,
               top_p: Annotated[float, Field(gt=0, le=1)] | None = None,
               min_p: Annotated[float, Field(ge=0, le=1)] | None = MIN_P,
               guidance: Annotated[float, Field(ge=0)] = 3.0) -> Tensor:
        """`[n, L]` codes from `steps` reverse steps, T down to 0 through the exact skip
        posteriors, one (batched, guided) network evaluation each. Temperature and guidance
        act on the predicted x0 logits, the cut-offs min-p, top-k and top-p (VQ-Diffusion's
        truncation) on p(x0 | x_t) (`diffvq.nn.sampling.shape_logits`); the draws are
        float64."""
        self.check_options(steps=steps)
        device = self.net.pos_emb.weight.device
        K = self.spec.vocab_size
        x = self.prior_sample(n, device, generator)  # [n, L]
        ts = self.timesteps(steps)
        for t, s in zip(ts[:-1], ts[1:]):
            tt = torch.full((2 * n,), t, device=device)

            def forward(x: Tensor, cond: Tensor) -> Tensor:
                return self._logits(x, tt[:x.shape[0]], cond)

            logits, reference = self.cond.guided_logits(forward, x, labels, guidance)
            coef = self.transition(s, t).to(device).expand(n, -1)  # [n, 10]
            log_x0 = self.log_x0(logits / temperature, x, coef)  # [n, L, K]
            if min_p and reference is not logits:  # min_p judged on the reference's p(x0 | x_t)
                reference = self.log_x0(reference / temperature, x, coef)
            else:
                reference = log_x0
            log_x0 = shape_logits(log_x0, min_p=min_p, top_k=top_k, top_p=top_p,
                                  reference=reference).clamp_min(NEG)
            log_p = self.log_posterior(log_x0, x, coef)  # [n, L, K+1]
            if s == 0:
                log_p = log_p[..., :K]  # p(x0 | x_t): codes only (MASK has probability 0)
            probs = log_p.double().exp().view(-1, log_p.shape[-1])
            x = draw(probs, generator).view(n, -1)
        return x
