"""The contract every registered prior keeps, first-party or plugin: it learns a small
distribution with known structure and respects the class, costs the NFE it reports, samples
reproducibly, never reports a likelihood better than the data's entropy, and rejects invalid
sampling options. New priors are picked up from the registry automatically."""

from __future__ import annotations

import math

import pytest
import torch

from diffvq import schema
from diffvq.components import build_prior
from diffvq.interfaces import SAMPLE_INJECTED, TokenSpec
from diffvq.nn.transformer import Transformer
from diffvq.plugins import load_plugins
from diffvq.trainer import Batches, TrainConfig, Trainer

PRIORS = load_plugins().registry.entries["prior"]
SIZE = dict(n_layer=2, n_head=2, n_embd=64)
K, L, C = 12, 9, 3


def codebook() -> torch.Tensor:
    return torch.randn(K, 4, generator=torch.Generator().manual_seed(3))


def make(name: str, spec: TokenSpec) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_prior(PRIORS[name].cls, spec, SIZE, codebook())


def fit(prior, tokens, labels=None, steps=800):
    cls = type(prior)
    cfg = TrainConfig(**{**getattr(cls, "train_defaults", {}), "steps": steps, "batch_size": 32,
                         "lr": 3e-3, "warmup_steps": 20})
    arrays = {"tokens": tokens} | ({"labels": labels} if labels is not None else {})
    Trainer(cfg, device=torch.device("cpu"), precision="fp32", seed=0,
            progress=False).fit(prior, Batches(arrays, 32, 0))
    return prior.eval()


def options_model(name: str):
    return schema.signature_model(PRIORS[name].cls.sample, SAMPLE_INJECTED)


def default_options(name: str) -> dict:
    return options_model(name)().model_dump()


@pytest.fixture(scope="module")
def patterns():
    pats = torch.randint(0, K, (C, 2, L), generator=torch.Generator().manual_seed(1))
    labels = torch.arange(C).repeat_interleave(64)
    return pats, pats[labels, torch.arange(len(labels)) % 2], labels


@pytest.fixture(scope="module")
def trained(patterns):
    _, tokens, labels = patterns
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = fit(make(name, TokenSpec((3, 3), K, C)), tokens, labels)
        return cache[name]

    return get


@pytest.mark.parametrize("name", sorted(PRIORS))
def test_learns_class_patterns_at_the_nfe_it_reports(name, trained, patterns):
    prior = trained(name)
    pats = patterns[0]
    calls = [0]
    for m in prior.modules():  # the final norm runs once per network evaluation, on any path
        if isinstance(m, Transformer):
            m.ln_f.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    options = default_options(name)
    want = torch.arange(C).repeat(10)
    out = prior.sample(30, want, generator=torch.Generator().manual_seed(0), **options)
    assert out.shape == (30, L) and out.dtype == torch.long
    assert 0 <= int(out.min()) and int(out.max()) < K
    assert calls[0] == prior.nfe(**options), "NFE must count the network evaluations"
    in_class = (out[:, None, :] == pats[want]).any(dim=1).float().mean()
    assert in_class > 0.9, f"{name}: only {in_class:.0%} of tokens fit the requested class"
    again = prior.sample(30, want, generator=torch.Generator().manual_seed(0), **options)
    assert torch.equal(out, again), "sampling must depend only on the generator"


@pytest.mark.parametrize("name", sorted(PRIORS))
def test_likelihood_is_never_below_the_entropy(name):
    """i.i.d. uniform tokens have exactly log2(K) bits of entropy per token; no model's exact
    NLL or upper bound can be lower, trained or not (up to Monte-Carlo error)."""
    cls = PRIORS[name].cls
    if cls.likelihood == "none":
        pytest.skip(f"{name} reports no likelihood")
    spec = TokenSpec((L,), K, 0)
    g = torch.Generator().manual_seed(0)
    prior = fit(make(name, spec), torch.randint(0, K, (1024, L), generator=g), steps=100)
    torch.manual_seed(0)
    bits = prior.nll(torch.randint(0, K, (512, L), generator=g), None)
    se = float(bits.std()) / math.sqrt(len(bits))
    assert float(bits.mean()) >= math.log2(K) - 3 * se - 1e-6


@pytest.mark.parametrize("name", sorted(PRIORS))
def test_invalid_sampling_options_are_rejected(name):
    model = options_model(name)
    fields = model.model_fields
    bad = {"steps": 0, "temperature": 0, "top_p": 1.5, "guidance": -1}
    for key, value in bad.items():
        if key in fields:
            _, problems = schema.validate(model, {key: value}, "sample")
            assert problems and problems[0].startswith(f"sample.{key}: input should be"), problems
    if "steps" in fields:
        prior = make(name, TokenSpec((3, 3), K, C))
        with pytest.raises(ValueError, match="steps"):
            prior.check_options(**{**default_options(name), "steps": 10_000})


@pytest.mark.parametrize("name", sorted(PRIORS))
def test_guidance_one_and_zero_are_the_conditional_and_unconditional_models(name, trained):
    """`guidance: 1` samples the conditional model and `guidance: 0` the unconditional one,
    under the same options: the same tokens, from the same seed, as the model run with one
    stream (the unconditional one directly: no labels at all). The references are real: just
    beside 1 and 0 the guidance machinery runs both streams and combines them, and must give
    the same tokens (a cut-off hidden in the machinery, as `guidance` once carried, would not);
    fat tails (temperature 2) and min_p both off and at its default make any such cut show."""
    prior = trained(name)
    rows: list[int] = []  # the batch of every network evaluation: n rows per stream
    hooks = [m.ln_f.register_forward_hook(lambda _, args, __: rows.append(args[0].shape[0]))
             for m in prior.modules() if isinstance(m, Transformer)]
    try:
        check_guidance_limits(name, prior, rows)
    finally:
        for h in hooks:
            h.remove()


def check_guidance_limits(name, prior, rows):
    want = torch.arange(C).repeat(4)
    n = len(want)
    base = default_options(name)
    if "temperature" in base:
        base["temperature"] = 2.0
    for min_p in ([0.0, base["min_p"]] if "min_p" in base else [None]):
        options = base | ({"min_p": min_p} if min_p is not None else {})

        def sample(labels, guidance):
            rows.clear()
            out = prior.sample(n, labels, generator=torch.Generator().manual_seed(7),
                               **(options | {"guidance": guidance}))
            return out, set(rows)

        conditional, streams = sample(want, 1.0)
        assert streams == {n}, "guidance 1 must run the conditional model alone"
        unconditional, streams = sample(None, 1.0)
        assert streams == {n}
        assert not torch.equal(conditional, unconditional), "the class must matter"
        for guidance, model in [(1.0, conditional), (0.0, unconditional)]:
            out, streams = sample(want, guidance)
            assert streams == {n} and torch.equal(out, model), (name, min_p, guidance)
            near, streams = sample(want, abs(guidance - 1e-6))
            assert streams == {2 * n}, "just beside it, guidance runs both streams"
            assert torch.equal(near, model), f"{name}: guidance {guidance} is not the plain " \
                                             f"model (min_p {min_p})"


def test_every_token_prior_takes_min_p_with_one_default():
    """The plausibility cut-off is a named sampling option of every first-party prior over
    token distributions, with one default (the latent prior draws continuous latents)."""
    from diffvq.nn.sampling import MIN_P

    for name in ("autoregressive", "masked-diffusion", "multinomial-diffusion"):
        assert default_options(name)["min_p"] == MIN_P, name
    for name in PRIORS:  # plugins that take it keep the house default too
        if "min_p" in options_model(name).model_fields:
            assert default_options(name)["min_p"] == MIN_P, name
