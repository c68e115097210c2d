"""Training compute: every registered prior predicts its FLOPs per training step analytically
(`HasTrainFlops`), and the prediction agrees with `diffvq.flops.counted_train_flops`, which counts
one real step. New priors are picked up from the registry automatically."""

from __future__ import annotations

import pytest
import torch

from diffvq.builtin.masked_diffusion import MaskedDiffusionPrior
from diffvq.components import build_prior
from diffvq.flops import counted_flops, counted_train_flops
from diffvq.interfaces import HasTrainFlops, TokenSpec
from diffvq.plugins import load_plugins

PRIORS = load_plugins().registry.entries["prior"]
SPECS = {"class-conditional": TokenSpec((7, 7), 256, 10),
         "unconditional": TokenSpec((7, 7), 256, 0)}
SIZES = {"2x64": dict(n_layer=2, n_head=2, n_embd=64), "3x96": dict(n_layer=3, n_head=3, n_embd=96)}


def make(name: str, spec: TokenSpec, size: dict, **params) -> torch.nn.Module:
    torch.manual_seed(0)
    codebook = torch.randn(spec.vocab_size, 8, generator=torch.Generator().manual_seed(3))
    return build_prior(PRIORS[name].cls, spec, {**size, **params}, codebook)


def batch(spec: TokenSpec, B: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(B)
    out = {"tokens": torch.randint(0, spec.vocab_size, (B, spec.seq_len), generator=g)}
    if spec.n_classes:
        out["labels"] = torch.randint(0, spec.n_classes, (B,), generator=g)
    return out


@pytest.mark.parametrize("spec", sorted(SPECS))
@pytest.mark.parametrize("size", sorted(SIZES))
@pytest.mark.parametrize("name", sorted(PRIORS))
def test_analytic_train_flops_match_the_counted_ones(name, size, spec):
    prior = make(name, SPECS[spec], SIZES[size])
    assert isinstance(prior, HasTrainFlops), f"{name} has no train_flops(batch_size)"
    for B in (2, 8):
        counted = counted_train_flops(prior, batch(SPECS[spec], B))
        predicted = prior.train_flops(B)
        assert isinstance(predicted, int)
        assert predicted == pytest.approx(counted, rel=0.10), (name, size, spec, B)


def test_masked_diffusion_losses_cost_the_same():
    spec = SPECS["class-conditional"]
    counts = {}
    for loss in ("maskgit", "elbo"):
        prior = MaskedDiffusionPrior(spec, **SIZES["2x64"], loss=loss)
        counts[loss] = (prior.train_flops(8), counted_train_flops(prior, batch(spec, 8)))
    assert counts["maskgit"] == counts["elbo"]


@pytest.mark.parametrize("name", sorted(PRIORS))
def test_counting_leaves_the_prior_as_it_was(name):
    spec = SPECS["class-conditional"]
    prior = make(name, spec, SIZES["2x64"])
    data = batch(spec, 4)
    state = {k: v.clone() for k, v in prior.state_dict().items()}
    for training in (False, True):
        prior.train(training)
        rng = torch.get_rng_state()
        counted_train_flops(prior, data)
        assert torch.equal(torch.get_rng_state(), rng)
        assert all(p.grad is None for p in prior.parameters())
        assert prior.training is training
        # a first step that sets state (latent diffusion's statistics) did not happen here
        assert all(torch.equal(v, state[k]) for k, v in prior.state_dict().items())
    with torch.no_grad():  # the caller's grad mode does not matter
        assert counted_train_flops(prior, data) == counted_train_flops(prior, data) > 0


@pytest.mark.parametrize("name", sorted(PRIORS))
def test_a_forward_pass_is_about_a_third_of_a_step(name):
    """The counter's sanity: backward costs about twice the forward (a little less where a
    layer's input needs no gradient)."""
    spec = SPECS["class-conditional"]
    prior = make(name, spec, SIZES["2x64"])
    data = batch(spec, 4)
    step = counted_train_flops(prior, data)
    with torch.no_grad():
        forward = counted_flops(lambda: prior.training_loss(data))
    assert 0.30 <= forward / step <= 0.37
