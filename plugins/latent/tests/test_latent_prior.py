"""The latent-diffusion prior: learning, sampling cost, determinism, rounding, storage, options."""

from __future__ import annotations

import math

import pytest
import torch

from diffvq.components import load_component, save_component
from diffvq.interfaces import SAMPLE_INJECTED, TokenSpec
from diffvq.plugins import load_plugins
from diffvq.schema import signature_model, validate
from diffvq.trainer import Batches, TrainConfig, Trainer
from diffvq_latent.prior import LatentDiffusionPrior

SPEC = TokenSpec((3, 3), vocab_size=12, n_classes=3)


def codebook(K: int = 12, D: int = 4, seed: int = 2) -> torch.Tensor:
    return torch.randn(K, D, generator=torch.Generator().manual_seed(seed))  # [K, D]


def pattern_data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """3 classes x 2 fixed patterns of 9 tokens: (patterns [3, 2, 9], tokens [192, 9], labels)."""
    pats = torch.randint(0, 12, (3, 2, 9), generator=torch.Generator().manual_seed(1))
    labels = torch.arange(3).repeat_interleave(64)
    tokens = pats[labels, torch.arange(192) % 2]  # [192, 9]
    return pats, tokens, labels


def small(**kw) -> LatentDiffusionPrior:
    torch.manual_seed(0)
    return LatentDiffusionPrior(SPEC, codebook(), **{"n_layer": 2, "n_head": 2, "n_embd": 32,
                                                     **kw})


def train(prior, tokens, labels, steps):
    cfg = TrainConfig(steps=steps, batch_size=32, lr=1e-2, warmup_steps=10)
    return Trainer(cfg, device=torch.device("cpu"), precision="fp32", seed=0,
                   progress=False).fit(prior, Batches({"tokens": tokens, "labels": labels}, 32, 0))


@pytest.fixture(scope="module")
def trained():
    pats, tokens, labels = pattern_data()
    prior = small()
    result = train(prior, tokens, labels, steps=600)
    return prior, pats, result


def test_learns_class_patterns_and_samples_them(trained):
    prior, pats, result = trained
    assert result.losses[-1][1] < 0.3 * result.losses[0][1]
    want = torch.arange(3).repeat(10)  # [30]
    for sampler in ("ddim", "dpm-solver"):
        out = prior.sample(30, want, generator=torch.Generator().manual_seed(0), steps=25,
                           guidance=1.0, sampler=sampler)
        assert out.shape == (30, 9) and out.dtype == torch.long
        exact = [any(torch.equal(tok, p) for p in pats[c]) for tok, c in zip(out, want)]
        assert sum(exact) >= 27, (sampler, sum(exact))
        # both patterns of each class appear: the prior is a mixture, not a mode
        for c in range(3):
            seen = {i for tok, k in zip(out, want) if k == c
                    for i, p in enumerate(pats[c]) if torch.equal(tok, p)}
            assert seen == {0, 1}, (sampler, c, seen)


def test_normalisation_comes_from_the_data_and_rounding_inverts_it(trained):
    prior, pats, _ = trained
    _, tokens, _ = pattern_data()
    assert bool(prior.stats_from_data)
    x = prior.normalise(tokens)  # [192, 9, 4]
    # variance latent_std**2 on the training data: one scale for all dimensions
    assert abs(float(x.pow(2).mean()) / prior.latent_std**2 - 1) < 0.3
    assert torch.equal(prior.round_to_tokens(x), tokens)
    every = torch.arange(12)[None]  # [1, 12]: each codebook vector maps back to its own id
    assert torch.equal(prior.round_to_tokens(prior.normalise(every)), every)
    assert torch.equal(prior.round_to_tokens(prior.normalise(every) + 1e-3), every)


@pytest.mark.parametrize("sampler", ["ddim", "dpm-solver"])
@pytest.mark.parametrize("steps", [1, 3, 8])
def test_nfe_is_the_number_of_steps(sampler, steps):
    prior = small().eval()
    calls = []
    prior.net.ln_f.register_forward_pre_hook(lambda m, args: calls.append(args[0].shape[0]))
    labels = torch.tensor([0, 2])
    prior.sample(2, labels, generator=torch.Generator().manual_seed(0), steps=steps,
                 guidance=2.0, sampler=sampler)
    assert len(calls) == steps == prior.nfe(steps=steps, guidance=2.0, sampler=sampler)
    assert calls == [4] * steps  # guidance: conditional and null streams in one batch


def test_sampling_uses_only_its_generator(trained):
    prior = trained[0].eval()  # untrained, an x0-predicting net maps all noise to one code
    labels = torch.tensor([0, 1, 2])
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = prior.sample(3, labels, generator=torch.Generator().manual_seed(7), steps=5)
    b = prior.sample(3, labels, generator=torch.Generator().manual_seed(7), steps=5,
                     sampler="ddim")
    c = prior.sample(3, labels, generator=torch.Generator().manual_seed(8), steps=5)
    assert torch.equal(torch.get_rng_state(), before)  # the global RNG was never drawn from
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() < 12
    unconditional = prior.sample(3, None, generator=torch.Generator().manual_seed(7), steps=5)
    assert unconditional.shape == (3, 9)


def test_codebook_and_statistics_survive_save_and_load(tmp_path, trained):
    prior, _, _ = trained
    registry = load_plugins().registry
    assert registry.entries["prior"]["latent-diffusion"].cls is LatentDiffusionPrior
    params = {"n_layer": 2, "n_head": 2, "n_embd": 32}
    save_component(tmp_path / "p", prior, "prior", "latent-diffusion", params,
                   {"spec": SPEC, "codebook": prior.codebook})
    back = load_component(tmp_path / "p", registry, "prior")
    assert torch.equal(back.codebook, codebook())
    for (k, a), (_, b) in zip(prior.state_dict().items(), back.state_dict().items()):
        assert torch.equal(a, b), k
    assert bool(back.stats_from_data)
    labels = torch.tensor([0, 1, 2])
    same = [p.sample(3, labels, generator=torch.Generator().manual_seed(3), steps=4)
            for p in (prior, back)]
    assert torch.equal(*same)


def test_invalid_options_are_refused_clearly():
    options = signature_model(LatentDiffusionPrior.sample, SAMPLE_INJECTED)
    resolved, problems = validate(options, {}, "priors.ld.sample")
    assert resolved == {"steps": 50, "guidance": 3.0, "sampler": "ddim"} and not problems
    _, problems = validate(options, {"steps": 0}, "priors.ld.sample")
    assert problems == ["priors.ld.sample.steps: input should be greater than 0 (got 0)"]
    _, problems = validate(options, {"sampler": "euler"}, "priors.ld.sample")
    assert len(problems) == 1 and "sampler" in problems[0] and "'dpm-solver'" in problems[0]
    _, problems = validate(options, {"guidance": -1.0}, "priors.ld.sample")
    assert len(problems) == 1 and problems[0].startswith("priors.ld.sample.guidance")
    prior = small(timesteps=100)
    prior.check_options(steps=100, guidance=3.0, sampler="ddim")
    with pytest.raises(ValueError, match=r"steps \(101\) must not exceed the 100 diffusion "):
        prior.check_options(steps=101, guidance=3.0, sampler="dpm-solver")
    with pytest.raises(ValueError, match="steps"):
        prior.sample(1, None, generator=torch.Generator(), steps=101)


def test_constructor_refuses_a_codebook_that_does_not_fit():
    with pytest.raises(ValueError, match="codebook has 10 vectors but the tokens have a "
                                         "vocabulary of 12"):
        LatentDiffusionPrior(SPEC, codebook(K=10))
    with pytest.raises(ValueError, match=r"needs a \[K, D\] codebook"):
        LatentDiffusionPrior(SPEC, torch.zeros(12))


def test_reports_no_likelihood():
    prior = small()
    assert LatentDiffusionPrior.likelihood == "none"
    _, tokens, labels = pattern_data()
    nll = prior.nll(tokens[:5], labels[:5])
    assert nll.shape == (5,) and all(math.isnan(v) for v in nll.tolist())
