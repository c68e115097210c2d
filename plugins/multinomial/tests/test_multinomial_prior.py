"""The multinomial-diffusion prior: the forward process against brute-force matrices, learning
class patterns, step skipping, the bound against known entropies, options, the plugin."""

from __future__ import annotations

import math

import pytest
import torch

from diffvq.components import load_component, save_component
from diffvq.interfaces import SAMPLE_INJECTED, TokenSpec
from diffvq.plugins import load_plugins
from diffvq.schema import signature_model, validate
from diffvq.trainer import Batches, TrainConfig, Trainer
from diffvq_multinomial.prior import MultinomialDiffusionPrior

KINDS = ("mask-and-replace", "uniform")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run fastest on one thread; two OpenMP threads on a shared 2-core machine
    spin against other processes and ran this file 40x slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny(spec: TokenSpec, **kw) -> MultinomialDiffusionPrior:
    return MultinomialDiffusionPrior(spec, n_layer=1, n_head=1, n_embd=8, **kw)


def train(prior, tokens, labels=None, steps=300, lr=3e-3):
    arrays = {"tokens": tokens} | ({"labels": labels} if labels is not None else {})
    cfg = TrainConfig(steps=steps, batch_size=32, lr=lr, warmup_steps=10)
    return Trainer(cfg, device=torch.device("cpu"), precision="fp32", seed=0,
                   progress=False).fit(prior, Batches(arrays, 32, 0))


def count_calls(prior) -> list[int]:
    """Network evaluations: the timestep embedding runs once per call of the transformer."""
    calls = [0]
    prior.time_emb.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


# -- the forward process, against (K+1) x (K+1) transition matrices ------------------------------
def step_matrix(prior, s: int, t: int) -> torch.Tensor:
    """Q[x_s, x_t] of the transition s -> t over K codes + MASK, from its coefficients."""
    K = prior.spec.vocab_size
    _, _, _, _, _, _, a, b, c, _ = prior.transition(s, t).double().exp().tolist()
    Q = torch.zeros(K + 1, K + 1, dtype=torch.float64)
    Q[:K, :K] = b
    Q[range(K), range(K)] += a
    Q[:K, K] = c
    Q[K, K] = 1.0
    return Q


def marginal_matrix(prior, t: int) -> torch.Tensor:
    """q(x_t | x0) `[K, K+1]` from the closed-form schedule."""
    K = prior.spec.vocab_size
    alpha, k_beta, gamma = prior.schedule[t]
    M = torch.full((K, K + 1), k_beta / K, dtype=torch.float64)
    M[range(K), range(K)] += alpha
    M[:, K] = gamma
    return M


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("replace", [0.0, 0.3])
def test_schedule_is_a_valid_chain_that_ends_at_the_prior(kind, replace):
    T, K = 12, 5
    prior = tiny(TokenSpec((4,), K, 0), kind=kind, timesteps=T, replace=replace)
    for t in range(T + 1):
        M = marginal_matrix(prior, t)
        assert torch.allclose(M.sum(1), torch.ones(K, dtype=torch.float64))  # sums to 1
        assert (M >= 0).all()
    assert prior.schedule[1][0] == pytest.approx(0.99999)  # VQ-Diffusion's alpha_1, alpha_T
    assert prior.schedule[T][0] == pytest.approx(0.000009)
    assert prior.schedule[T][2] == (pytest.approx(0.99999, abs=2e-5) if kind != "uniform" else 0)
    Q = torch.eye(K + 1, dtype=torch.float64)
    for t in range(1, T + 1):
        step = step_matrix(prior, t - 1, t)
        assert (step >= 0).all() and torch.allclose(step.sum(1), torch.ones(K + 1).double())
        Q = Q @ step  # composing one-step transitions gives the closed-form marginal
        assert torch.allclose(Q[:K], marginal_matrix(prior, t), atol=1e-6)
    # a skip transition s -> t is the product of the steps between them
    skip = torch.linalg.multi_dot([step_matrix(prior, t - 1, t) for t in range(4, 10)])
    assert torch.allclose(skip, step_matrix(prior, 3, 9), atol=1e-6)
    # at T, q(x_T | x0) is the stationary distribution whatever x0: MASK, or uniform codes
    qT = marginal_matrix(prior, T)
    assert (qT - qT.mean(0)).abs().max() < 1e-5
    assert (qT[0, K] if kind != "uniform" else qT[0, 1] * K) == pytest.approx(1.0, abs=2e-5)
    assert 0 <= prior.prior_kl < 1e-4


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("s,t", [(0, 1), (4, 5), (11, 12), (2, 9), (0, 12)])
def test_posterior_matches_brute_force(kind, s, t):
    """q(x_s | x_t, x0) and the model's sum over x0 against Bayes' rule on the matrices."""
    K = 5
    prior = tiny(TokenSpec((6,), K, 0), kind=kind, timesteps=12, replace=0.3)
    x_t = torch.tensor([[0, 1, 2, 3, 4, K if kind != "uniform" else 2]])  # every code, MASK
    g = torch.Generator().manual_seed(0)
    p_x0 = torch.rand(1, 6, K, generator=g, dtype=torch.float64).softmax(-1)
    coef = prior.transition(s, t)[None]
    model = prior.log_posterior(p_x0.float().log(), x_t, coef).double().exp()[0]  # [6, K+1]
    Q, q_s, q_t = step_matrix(prior, s, t), marginal_matrix(prior, s), marginal_matrix(prior, t)
    for i, xt in enumerate(x_t[0].tolist()):
        # q(x_s | x_t, x0) = q(x_s | x0) Q(x_t | x_s) / q(x_t | x0), for each x0
        exact = q_s * Q[:, xt] / q_t[:, xt:xt + 1]  # [K (x0), K+1 (x_s)]
        assert torch.allclose(exact.sum(1), torch.ones(K).double())
        assert torch.allclose(model[i], p_x0[0, i] @ exact, atol=2e-5)
        for x0 in range(K):  # the one-hot x0 gives the true posterior itself
            one_hot = torch.full((1, 6, K), -1e4)
            one_hot[0, :, x0] = 0.0
            q = prior.log_posterior(one_hot, x_t, coef).double().exp()[0, i]
            assert torch.allclose(q, exact[x0], atol=2e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_q_sample_draws_the_closed_form_marginal(kind):
    K, t = 4, 6
    prior = tiny(TokenSpec((1,), K, 0), kind=kind, timesteps=10, replace=0.5)
    x0 = torch.full((40000, 1), 2)
    x_t = prior.q_sample(x0, torch.full((40000,), t), generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(x_t.view(-1), minlength=K + 1).double() / 40000
    assert torch.allclose(freq, marginal_matrix(prior, t)[2], atol=0.01)


# -- learning class patterns and sampling them ---------------------------------------------------
@pytest.fixture(scope="module")
def patterned():
    """3 classes x 2 fixed patterns of 9 tokens over 12 codes, and a prior trained on them."""
    spec = TokenSpec((3, 3), vocab_size=12, n_classes=3)
    pats = torch.randint(0, 12, (3, 2, 9), generator=torch.Generator().manual_seed(1))
    labels = torch.arange(3).repeat_interleave(64)
    tokens = pats[labels, torch.arange(192) % 2]
    torch.manual_seed(0)
    prior = MultinomialDiffusionPrior(spec, n_layer=2, n_head=2, n_embd=64)
    result = train(prior, tokens, labels, steps=400)
    return prior.eval(), pats, tokens, labels, result


def pattern_scores(out, pats, want) -> tuple[float, float]:
    """(share of tokens that one of the class's patterns has at that place, share of whole
    sequences that are one of the class's patterns)."""
    in_class = float((out[:, None, :] == pats[want]).any(dim=1).float().mean())
    whole = sum(any(torch.equal(t, p) for p in pats[c]) for t, c in zip(out, want)) / len(out)
    return in_class, whole


@pytest.mark.parametrize("steps,guidance", [(100, 1.0), (50, 3.0), (10, 3.0)])
def test_samples_reproduce_the_class_patterns(patterned, steps, guidance):
    prior, pats, *_ = patterned
    want = torch.arange(3).repeat(10)
    calls = count_calls(prior)
    out = prior.sample(30, want, generator=torch.Generator().manual_seed(0), steps=steps,
                       guidance=guidance)
    assert calls[0] == steps == prior.nfe(steps=steps)  # one batched evaluation per step
    assert out.shape == (30, 9) and out.dtype == torch.long
    assert 0 <= int(out.min()) and int(out.max()) < 12  # codes only, no MASK left
    in_class, whole = pattern_scores(out, pats, want)
    assert in_class > 0.97 and whole >= 0.9


def test_training_loss_goes_down_and_bound_covers_the_mixture(patterned):
    prior, pats, tokens, labels, result = patterned
    assert result.losses[-1][1] < 0.1 * result.losses[0][1]
    torch.manual_seed(0)
    bound = prior.nll(tokens[:60], labels[:60])
    # each class is a 50/50 mixture of two patterns: exactly 1 bit per 9-token sequence
    assert bound.shape == (60,)
    se = float(bound.std()) / math.sqrt(len(bound))
    assert float(bound.mean()) >= 1 / 9 - 3 * se
    assert float(bound.mean()) < 0.5  # and it is a useful bound, not a vacuous one


def test_sampling_is_reproducible_and_leaves_the_global_rng_alone(patterned):
    prior, *_ = patterned
    labels = torch.tensor([0, 2])
    state = torch.get_rng_state()
    a = prior.sample(2, labels, generator=torch.Generator().manual_seed(3), steps=5)
    b = prior.sample(2, labels, generator=torch.Generator().manual_seed(3), steps=5)
    assert torch.equal(a, b)
    assert torch.equal(state, torch.get_rng_state())
    # unconditional sampling (the null class) runs too
    assert prior.sample(3, None, generator=torch.Generator().manual_seed(0), steps=4).shape == (3, 9)


def test_timesteps_are_evenly_spaced_from_T_to_zero():
    prior = tiny(TokenSpec((4,), 8, 0), timesteps=100)
    assert prior.timesteps(100) == list(range(100, -1, -1))
    assert prior.timesteps(10) == [100, 89, 78, 67, 56, 45, 34, 23, 12, 1, 0]
    assert prior.timesteps(1) == [100, 0]
    for s in (2, 3, 7, 33, 99):
        ts = prior.timesteps(s)
        assert len(ts) == s + 1 and all(a > b for a, b in zip(ts, ts[1:]))


def test_bayes_form_learns_the_patterns_too():
    spec = TokenSpec((3, 3), vocab_size=12, n_classes=3)
    pats = torch.randint(0, 12, (3, 2, 9), generator=torch.Generator().manual_seed(1))
    labels = torch.arange(3).repeat_interleave(64)
    tokens = pats[labels, torch.arange(192) % 2]
    torch.manual_seed(0)
    prior = MultinomialDiffusionPrior(spec, n_layer=2, n_head=2, n_embd=64, x0_form="bayes")
    train(prior, tokens, labels, steps=400)
    want = torch.arange(3).repeat(10)
    out = prior.eval().sample(30, want, generator=torch.Generator().manual_seed(0), steps=50,
                              guidance=1.0)
    in_class, whole = pattern_scores(out, pats, want)
    # it trusts visible tokens, so it revises a mixed-up token less readily than "direct"
    assert in_class > 0.95 and whole >= 0.8


# -- the bound against known entropies -----------------------------------------------------------
@pytest.mark.parametrize("kind,x0_form,steps,width", [
    ("mask-and-replace", "direct", 400, 32), ("uniform", "direct", 400, 32),
    ("mask-and-replace", "bayes", 150, 16)])  # bayes needs not learn to trust visible tokens
def test_bound_on_uniform_tokens_is_at_least_their_entropy(kind, x0_form, steps, width):
    spec = TokenSpec((8,), vocab_size=16, n_classes=0)
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 16, (2048, 8), generator=g)
    torch.manual_seed(0)
    prior = MultinomialDiffusionPrior(spec, n_layer=1, n_head=2, n_embd=width, kind=kind,
                                      x0_form=x0_form, timesteps=20, nll_t_samples=10)
    train(prior, tokens, steps=steps)
    torch.manual_seed(0)
    bound = prior.eval().nll(torch.randint(0, 16, (512, 8), generator=g), None)
    entropy = math.log2(16)
    se = float(bound.std()) / math.sqrt(len(bound))
    assert float(bound.mean()) >= entropy - 3 * se
    assert float(bound.mean()) <= entropy + 0.25  # and the model is close to it


@pytest.mark.parametrize("kind", KINDS)
def test_bound_of_the_exact_reverse_process_equals_the_entropy(kind):
    """With the true p(x0 | x_t) of i.i.d. uniform tokens in place of the network, every
    reverse step is the true one and the bound is tight: its estimate must come out at
    log2 K bits, which checks the bookkeeping (prior term, T weighting, strata, t = 1 term)."""
    K, T = 16, 20
    prior = tiny(TokenSpec((8,), K, 0), kind=kind, timesteps=T, nll_t_samples=7)
    table = torch.tensor(prior.schedule, dtype=torch.float64)  # [T+1, 3] alpha, K beta, gamma

    def oracle(x, t, cond):  # q(x0 | x_t) under uniform x0: x_t's code is favoured
        alpha, beta = table[t, 0, None, None], table[t, 1, None, None] / K  # [B, 1, 1]
        p = beta.expand(*x.shape, K).clone()
        p.scatter_add_(-1, x.clamp_max(K - 1)[..., None], alpha.expand(*x.shape, 1).clone())
        p = torch.where((x == prior.mask_id)[..., None], 1.0 / K, p / p.sum(-1, keepdim=True))
        return p.log().float()

    prior._logits = oracle
    torch.manual_seed(0)
    bound = prior.nll(torch.randint(0, K, (2000, 8)), None)
    se = float(bound.std()) / math.sqrt(len(bound))
    assert float(bound.mean()) == pytest.approx(math.log2(K), abs=3 * se + 1e-3)


# -- the uniform kind learns too -----------------------------------------------------------------
def test_uniform_kind_learns_the_patterns():
    spec = TokenSpec((3, 3), vocab_size=12, n_classes=3)
    pats = torch.randint(0, 12, (3, 2, 9), generator=torch.Generator().manual_seed(1))
    labels = torch.arange(3).repeat_interleave(64)
    tokens = pats[labels, torch.arange(192) % 2]
    torch.manual_seed(0)
    prior = MultinomialDiffusionPrior(spec, n_layer=2, n_head=2, n_embd=64, kind="uniform",
                                      timesteps=50)
    assert prior.net.tok_emb.num_embeddings == 12 + 4  # codes + condition tokens, no MASK
    train(prior, tokens, labels, steps=400)
    want = torch.arange(3).repeat(10)
    out = prior.eval().sample(30, want, generator=torch.Generator().manual_seed(0), steps=25)
    assert int(out.max()) < 12
    in_class, whole = pattern_scores(out, pats, want)
    assert in_class > 0.95 and whole >= 0.8


# -- options, errors, persistence, the plugin ----------------------------------------------------
def test_invalid_sampling_options_are_clear_errors():
    prior = tiny(TokenSpec((2, 2), 8, 2), timesteps=20)
    with pytest.raises(ValueError, match=r"steps \(21\) exceeds the diffusion's timesteps \(20\)"):
        prior.check_options(steps=21)
    with pytest.raises(ValueError, match="timesteps"):
        prior.sample(1, None, generator=torch.Generator(), steps=21)
    with pytest.raises(ValueError, match=r"steps \(50\)"):  # the default needs T >= 50
        prior.check_options()
    prior.check_options(steps=20)
    assert prior.nfe(steps=7, guidance=2.0) == 7
    model = signature_model(MultinomialDiffusionPrior.sample, SAMPLE_INJECTED)
    values, problems = validate(model, {"steps": 0, "guidance": -1.0, "temprature": 1.0},
                                "priors.mn.sample")
    assert values is None
    assert any(p.startswith("priors.mn.sample.steps: input should be greater than 0")
               for p in problems), problems
    assert any(p.startswith("priors.mn.sample.guidance:") for p in problems)
    assert any("did you mean 'temperature'" in p for p in problems)
    values, problems = validate(model, {"steps": 25}, "priors.mn.sample")
    assert not problems and values["steps"] == 25 and values["guidance"] == 3.0


def test_constructor_schema_rejects_bad_keys():
    model = signature_model(MultinomialDiffusionPrior.__init__, frozenset({"spec"}))
    _, problems = validate(model, {"kind": "absorbing", "timesteps": 0, "replace": 1.0}, "priors.mn")
    assert len(problems) == 3 and any("kind" in p and "mask-and-replace" in p for p in problems)
    values, problems = validate(model, {}, "priors.mn")
    assert not problems and (values["n_layer"], values["n_head"], values["n_embd"]) == (4, 4, 192)


def test_plugin_registers_and_saved_prior_samples_the_same(tmp_path):
    plugins = load_plugins()
    entry = plugins.registry.entries["prior"]["multinomial-diffusion"]
    assert entry.cls is MultinomialDiffusionPrior and entry.plugin == "multinomial"
    spec = TokenSpec((2, 3), 8, 2)
    params = {"n_layer": 1, "n_head": 2, "n_embd": 16, "kind": "mask-and-replace",
              "timesteps": 30}
    torch.manual_seed(0)
    prior = MultinomialDiffusionPrior(spec, **params).eval()
    save_component(tmp_path, prior, "prior", prior.name, params, {"spec": spec})
    loaded = load_component(tmp_path, plugins.registry, "prior")
    labels = torch.tensor([0, 1, 1])
    a = prior.sample(3, labels, generator=torch.Generator().manual_seed(1), steps=6)
    b = loaded.sample(3, labels, generator=torch.Generator().manual_seed(1), steps=6)
    assert torch.equal(a, b) and a.shape == (3, 6)
