"""The masked-diffusion prior: MaskGIT sampling, the absorbing ELBO, options."""

from __future__ import annotations

import math

import pytest
import torch

from diffvq import schema
from diffvq.builtin.masked_diffusion import MaskedDiffusionPrior, mask_ratio
from diffvq.interfaces import INJECTED, TokenSpec
from diffvq.trainer import Batches, TrainConfig, Trainer


def train(prior, tokens, labels=None, steps=300, lr=3e-3):
    arrays = {"tokens": tokens} | ({"labels": labels} if labels is not None else {})
    cfg = TrainConfig(steps=steps, batch_size=32, lr=lr, warmup_steps=10)
    return Trainer(cfg, device=torch.device("cpu"), precision="fp32", seed=0,
                   progress=False).fit(prior, Batches(arrays, 32, 0))


def count_calls(prior) -> list[int]:
    calls = [0]
    prior.net.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


def test_schedules_start_full_and_end_empty():
    for schedule in ("cosine", "linear"):
        assert float(mask_ratio(torch.tensor(0.0), schedule)) == pytest.approx(1.0)
        assert float(mask_ratio(torch.tensor(1.0), schedule)) == pytest.approx(0.0, abs=1e-6)
    assert float(mask_ratio(torch.tensor(0.5), "cosine")) > 0.5  # cosine keeps more masked early


@pytest.fixture(scope="module")
def patterned():
    """3 classes x 2 fixed patterns of 9 tokens over 12 codes, and a prior trained on them."""
    spec = TokenSpec((3, 3), vocab_size=12, n_classes=3)
    pats = torch.randint(0, 12, (3, 2, 9), generator=torch.Generator().manual_seed(1))
    labels = torch.arange(3).repeat_interleave(64)
    tokens = pats[labels, torch.arange(192) % 2]
    torch.manual_seed(0)
    prior = MaskedDiffusionPrior(spec, n_layer=2, n_head=2, n_embd=64)
    result = train(prior, tokens, labels, steps=800)
    return prior.eval(), pats, tokens, labels, result


@pytest.mark.parametrize("steps,order", [(9, "confidence"), (3, "confidence"), (4, "random")])
def test_samples_respect_the_class_patterns(patterned, steps, order):
    prior, pats, *_ = patterned
    want = torch.arange(3).repeat(10)
    calls = count_calls(prior)
    out = prior.sample(30, want, generator=torch.Generator().manual_seed(0), steps=steps,
                       order=order, guidance=2.0)
    assert calls[0] == steps == prior.nfe(steps=steps)  # one batched evaluation per step
    assert out.shape == (30, 9) and int(out.max()) < 12  # no MASK token left
    # every token is one its class's patterns has at that position ...
    in_class = (out[:, None, :] == pats[want]).any(dim=1).float().mean()
    assert in_class > 0.95
    # ... and with one token per step whole patterns come out; with fewer steps, tokens
    # unmasked together are drawn independently and may mix the two patterns (that is the
    # price of parallel decoding, which the comparison of priors is there to show)
    whole = sum(any(torch.equal(t, p) for p in pats[c]) for t, c in zip(out, want)) / 30
    assert whole >= (0.9 if steps == 9 else 0.4)


def test_training_loss_goes_down_and_bound_covers_the_mixture(patterned):
    prior, pats, tokens, labels, result = patterned
    assert result.losses[-1][1] < 0.2 * result.losses[0][1]
    torch.manual_seed(0)
    bound = prior.nll(tokens[:60], labels[:60])
    # each class is a 50/50 mixture of two patterns: exactly 1 bit per 9-token sequence
    assert bound.shape == (60,)
    assert float(bound.mean()) >= 1 / 9 - 0.02


def test_bound_on_uniform_tokens_is_at_least_their_entropy():
    spec = TokenSpec((8,), vocab_size=16, n_classes=0)
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 16, (2048, 8), generator=g)
    torch.manual_seed(0)
    prior = MaskedDiffusionPrior(spec, n_layer=1, n_head=2, n_embd=16)
    train(prior, tokens, steps=150)
    torch.manual_seed(0)
    bound = prior.nll(torch.randint(0, 16, (512, 8), generator=g), None)
    entropy = math.log2(16)
    se = float(bound.std()) / math.sqrt(len(bound))
    assert float(bound.mean()) >= entropy - 3 * se
    assert float(bound.mean()) <= entropy + 0.25  # and the model is close to it


def test_too_many_steps_is_an_error():
    prior = MaskedDiffusionPrior(TokenSpec((2, 2), 8, 2), n_layer=1, n_head=1, n_embd=8)
    with pytest.raises(ValueError, match=r"steps \(5\) exceeds the sequence length \(4\)"):
        prior.check_options(steps=5)
    prior.check_options(steps=4)


# -- loss: "elbo" ----------------------------------------------------------------------------


def test_elbo_training_loss_is_one_draw_of_the_nll_estimator(patterned):
    """With fixed weights, the mean of many elbo training losses is the bound `nll` reports;
    the MaskGIT loss and the plain masked cross-entropy are far from it (so the test can tell)."""
    trained, _, tokens, labels, _ = patterned
    spec = trained.spec
    # cond_dropout 0: training_loss then scores the conditional model, as nll does
    prior = MaskedDiffusionPrior(spec, n_layer=2, n_head=2, n_embd=64, cond_dropout=0.0,
                                 loss="elbo")
    prior.load_state_dict(trained.state_dict())
    prior.eval()
    batch = {"tokens": tokens, "labels": labels}
    torch.manual_seed(0)
    with torch.no_grad():
        draws = [prior.training_loss(batch) for _ in range(200)]
    bits = torch.tensor([loss.item() / math.log(2) for loss, _ in draws])
    logged = torch.tensor([logs["bits_per_token"] for _, logs in draws])
    assert torch.allclose(bits, logged, rtol=1e-6)  # logged as bits_per_token, in bits
    masked = torch.tensor([logs["masked_bits_per_token"] for _, logs in draws])
    bounds = torch.stack([prior.nll(tokens, labels).mean() for _ in range(10)])
    se = math.sqrt(bits.var() / len(bits) + bounds.var() / len(bounds))
    assert abs(float(bits.mean() - bounds.mean())) < 4 * se
    assert abs(float(masked.mean() - bounds.mean())) > 20 * se  # unweighted: another quantity
    prior.loss = "maskgit"
    with torch.no_grad():
        maskgit = torch.tensor([prior.training_loss(batch)[0].item() / math.log(2)
                                for _ in range(50)])
    assert abs(float(maskgit.mean() - bounds.mean())) > 20 * se


def test_elbo_training_reaches_the_entropy():
    """Trained on its bound, the prior's bound on 4 equally likely patterns of 8 tokens comes
    close to their entropy, 2 bits per sequence (0.25 per token), and never below it."""
    spec = TokenSpec((8,), vocab_size=16, n_classes=0)
    pats = torch.randint(0, 16, (4, 8), generator=torch.Generator().manual_seed(1))
    tokens = pats[torch.arange(256) % 4]  # the distribution exactly: each pattern 64 times
    torch.manual_seed(0)
    prior = MaskedDiffusionPrior(spec, n_layer=2, n_head=2, n_embd=64, loss="elbo")
    result = train(prior, tokens, steps=300)
    assert set(result.logs) == {"bits_per_token", "masked_bits_per_token"}
    torch.manual_seed(0)
    bound = prior.eval().nll(tokens, None)
    entropy = 2 / 8
    se = float(bound.std()) / math.sqrt(len(bound))
    assert entropy - 3 * se <= float(bound.mean()) <= entropy + 0.05


def test_loss_is_a_recipe_key_with_two_values():
    model = schema.signature_model(MaskedDiffusionPrior.__init__, INJECTED["prior"])
    assert model.model_fields["loss"].default == "maskgit"  # existing runs keep their loss
    for loss in ("maskgit", "elbo"):
        values, problems = schema.validate(model, {"loss": loss}, "priors.m")
        assert problems == [] and values["loss"] == loss
    values, problems = schema.validate(model, {"loss": "elbow"}, "priors.m")
    assert values is None
    assert problems == ["priors.m.loss: input should be 'maskgit' or 'elbo' (got 'elbow')"]
