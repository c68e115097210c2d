"""Sampling options are explicit and recorded, and the draws are float64: min-p semantics under
guidance, cut-offs that never leave nothing, Gumbel noise that reaches the tail float32 noise
cannot, a guidance sweep that changes nothing else, and min_p in sample.json, metrics.json and
the report."""

from __future__ import annotations

import json
import math

import pytest
import torch

from diffvq import recipe as recipe_mod
from diffvq.nn import sampling
from diffvq.nn.sampling import MIN_P, guide_logits, gumbel, shape_logits
from diffvq.pipeline import Run

TOKEN_PRIORS = ("autoregressive", "masked-diffusion", "multinomial-diffusion")


def kept(logits: torch.Tensor) -> list[bool]:
    return torch.isfinite(logits).tolist()


def test_min_p_is_transformers_min_p_on_the_model_being_sampled():
    """keep p >= min_p * p_max, after temperature (transformers' MinPLogitsWarper)."""
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    logits = probs.log() + 7.0  # any shift
    assert kept(shape_logits(logits, min_p=0.2)) == [True, True, True, False]
    assert kept(shape_logits(logits, min_p=0.7)) == [True, False, False, False]
    # temperature 2 flattens: p ~ sqrt(p), so 0.05 is now sqrt(0.1) = 0.32 of the best
    assert kept(shape_logits(logits, min_p=0.3, temperature=2.0)) == [True] * 4
    for off in (None, 0.0):
        assert torch.equal(shape_logits(logits, min_p=off), logits)
    # the reference: the same formula on the tempered logits, as transformers writes it
    for t in (0.5, 1.0, 3.0):
        p = (logits / t).softmax(-1)
        want = p >= 0.1 * p.max()
        assert kept(shape_logits(logits, min_p=0.12, temperature=t)) == want.tolist()


def test_guidance_beyond_one_judges_min_p_on_the_conditional_model():
    """Token 2 is implausible to both streams, more so to the null one: guidance 3 lifts it
    above every other token. min_p judged on the conditional model drops it; judged on the
    guided distribution (transformers' order) it would be the one token kept."""
    lc = torch.tensor([0.0, -0.5, -12.0]).log_softmax(-1)
    lu = torch.tensor([0.0, -0.4, -30.0]).log_softmax(-1)
    guided, reference = guide_logits(lc, lu, 3.0)
    assert int(guided.argmax()) == 2
    assert torch.equal(reference, lc)
    assert kept(shape_logits(guided, min_p=1e-3, reference=reference)) == [True, True, False]
    assert kept(shape_logits(guided, min_p=1e-3)) == [False, False, True]
    # within [0, 1] guidance mixes two models: min_p judges the mixture itself; at the ends the
    # mixture is the model (so 0 and 1 mean the same as without guidance)
    for scale in (0.0, 0.4, 1.0):
        guided, reference = guide_logits(lc, lu, scale)
        assert torch.equal(reference, guided)
    assert torch.allclose(guide_logits(lc, lu, 0.0)[0], lu)
    assert torch.allclose(guide_logits(lc, lu, 1.0)[0], lc)


def test_cut_offs_never_leave_nothing():
    """min-p goes first, so top-k keeps the best min-p survivor even where the guided top token
    is implausible."""
    lc = torch.tensor([[0.0, -0.5, -12.0]]).log_softmax(-1)
    lu = torch.tensor([[0.0, -0.4, -30.0]]).log_softmax(-1)
    guided, reference = guide_logits(lc, lu, 3.0)
    out = shape_logits(guided, min_p=0.5, top_k=1, top_p=0.1, reference=reference)
    assert kept(out) == [[True, False, False]]
    token = sampling.sample_logits(guided, 1.0, torch.Generator().manual_seed(0), top_k=1,
                                   min_p=0.5, reference=reference)
    assert token.tolist() == [0]


def test_gumbel_noise_reaches_the_tail_float32_noise_cannot():
    """float32 uniforms lie on a 2^-24 grid, so float32 Gumbel noise never exceeds
    -log(-log(1 - 2^-24)) ~ 16.64, where the true distribution keeps 6e-8 of its mass: the
    tail that Gumbel-max sampling needs to draw tokens ~1e7 times less likely than a rival
    (Zheng et al. 2024). The float64 noise puts the true share of 2^27 draws beyond it."""
    top32 = torch.nextafter(torch.tensor(1.0), torch.tensor(0.0))  # the largest float32 < 1
    ceiling = float(-torch.log(-torch.log(top32)))  # what float32 noise can reach at most
    assert ceiling == pytest.approx(16.6355, abs=1e-3)
    g = torch.Generator().manual_seed(0)
    n, chunk = 2**27, 2**22
    beyond = sum(int((gumbel((chunk,), g) > ceiling).sum()) for _ in range(n // chunk))
    expected = n * -math.expm1(-math.exp(-ceiling))  # P(G > c) = 1 - exp(-exp(-c))
    assert expected == pytest.approx(8.0, rel=1e-3)
    assert 1 <= beyond <= 18, beyond  # Poisson(8): outside this range with probability 1e-3
    assert gumbel((4,), g).dtype == torch.float64


def test_categorical_draws_are_float64_and_unbiased(monkeypatch):
    """`draw` hands torch.multinomial float64 (float32 on a GPU truncates its exponential noise
    at 2^-24, see `draw`), and its frequencies over a long tail are the true ones."""
    seen = []
    real = torch.multinomial
    monkeypatch.setattr(torch, "multinomial",
                        lambda p, *a, **k: seen.append(p.dtype) or real(p, *a, **k))
    V = 2048  # one token of probability 1/2, and 2047 sharing the other half
    logits = torch.cat([torch.tensor([math.log(V - 1)]), torch.zeros(V - 1)]).float()
    tokens = sampling.sample_logits(logits.expand(20_000, V), 1.0,
                                    torch.Generator().manual_seed(0), min_p=0.0)
    assert seen == [torch.float64]
    assert sampling.probabilities(logits).dtype == torch.float64
    tail = float((tokens > 0).float().mean())
    assert abs(tail - 0.5) < 4 * math.sqrt(0.25 / 20_000)
    counts = torch.bincount(tokens, minlength=V)[1:].double()  # ~4.9 each
    expected = 20_000 * 0.5 / (V - 1)
    chi2 = float(((counts - expected) ** 2 / expected).sum())  # ~ chi2 with V - 2 d.o.f.
    assert abs(chi2 - (V - 2)) < 5 * math.sqrt(2 * (V - 2))


def test_a_guidance_sweep_changes_nothing_else(tiny, write_recipe, plugins):
    """`sample.guidance: [1, 2, 3]` gives three variants of every prior that differ in
    guidance alone, and each records its min_p (the same for every token prior)."""
    tiny["priors"] = {"gpt": {"name": "autoregressive"}, "mask": {"name": "masked-diffusion"},
                      "mn": {"name": "multinomial-diffusion"}}
    tiny["sample"] = {"n_per_class": 2, "guidance": [1, 2, 3]}
    r, _ = recipe_mod.load(write_recipe(tiny), plugins=plugins)
    for key, p in r.priors.items():
        variants = [options for _, options in p.variants]
        assert [v["guidance"] for v in variants] == [1, 2, 3], key
        rest = [{k: v for k, v in options.items() if k != "guidance"} for options in variants]
        assert all(other == rest[0] for other in rest), key
        assert rest[0]["min_p"] == MIN_P, key
    assert {p.name for p in r.priors.values()} == set(TOKEN_PRIORS)


def test_min_p_is_recorded_in_sample_json_metrics_and_report(tiny, write_recipe, tmp_path,
                                                           plugins):
    tiny["sample"] = {"n_per_class": 1, "seeds": 1}
    r, _ = recipe_mod.load(write_recipe(tiny), ["priors.gpt.sample.min_p=0.02"],
                           plugins=plugins)
    job = Run(r, plugins, runs_dir=tmp_path / "runs", progress=False)
    metrics = job.execute()
    d = job.run_dir
    sample = json.loads((d / "samples/gpt/sample.json").read_text())
    assert sample["options"]["min_p"] == 0.02
    [recorded] = metrics["priors"]["gpt"]["sampling"]
    assert recorded["options"]["min_p"] == 0.02
    assert json.loads((d / "metrics.json").read_text())["priors"]["gpt"]["sampling"][0][
        "options"]["min_p"] == 0.02
    from diffvq.compare import report_for_run

    report = report_for_run(d, metrics).read_text()  # as `diffvq compare RECIPE` writes it
    assert "min_p: 0.02" in report
