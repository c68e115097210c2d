"""The finding as an equivalence test on synthetic metrics: each outcome (within the band, better,
worse, cannot tell), the variant chosen on validation alone, speed-ups with intervals, and runs
from before validation splits and intervals."""

from __future__ import annotations

import pytest

from diffvq import finding
from diffvq.intervals import Interval


def iv(value: float, half: float) -> dict[str, float]:
    return {"value": value, "lo": value - half, "hi": value + half, "level": 0.95}


def row(variant: str, nfe: int, val: tuple[float, float], test: tuple[float, float],
        latency: float = 0.010, batch: float = 0.002) -> dict:
    jitter = [1.0, 0.98, 1.02, 0.99, 1.01]  # five repeated timings
    return {"variant": variant, "nfe": nfe, "batch_size": 64,
            "judge": {"validation": {"kid": iv(*val)}, "test": {"kid": iv(*test)}},
            "timing": {"latency_s": [latency * j for j in jitter],
                       "batch_s": [batch * j for j in jitter]}}


def metrics(*mask_rows: dict) -> dict:
    return {"device": "cpu", "precision": "fp32", "priors": {
        "gpt": {"name": "autoregressive",
                "sampling": [row("", 49, (1.00, 0.02), (1.00, 0.02), 0.050, 0.001)]},
        "maskgit": {"name": "masked-diffusion", "sampling": list(mask_rows)}}}


def verdict(*mask_rows: dict) -> finding.Verdict:
    [v] = finding.quality_matched(metrics(*mask_rows))
    return v


def test_equivalent_when_the_interval_lies_inside_the_band():
    rows = (row("steps-4", 4, (1.5, 0.02), (1.5, 0.02)),
            row("steps-8", 8, (1.01, 0.02), (0.98, 0.03), 0.0147, 0.002))
    v = verdict(*rows)
    assert v.outcome == "equivalent" and -0.1 < v.difference.lo < v.difference.hi < 0.1
    assert v.latency_speedup.lo < 0.050 / 0.0147 < v.latency_speedup.hi
    text = " ".join(finding.describe(metrics(*rows)))
    assert ("maskgit (steps-8, NFE 8, chosen on validation) is within ±10 % of gpt (default)"
            in text)
    assert "test judge KID difference -2 % [" in text
    assert "maskgit is 3.4x [" in text and "faster one at a time" in text
    assert "gpt is 2.0x [" in text and "faster in batches of 64" in text


def test_better_and_worse_when_the_interval_excludes_zero():
    better = verdict(row("steps-16", 16, (0.80, 0.02), (0.80, 0.03)))
    assert better.outcome == "better"
    assert "maskgit (steps-16, NFE 16, its only setting) is better than gpt (default)" in \
        finding.sentence(better) and "outside the ±10 % band" in finding.sentence(better)
    worse = verdict(row("steps-4", 4, (1.30, 0.02), (1.30, 0.05)))
    assert worse.outcome == "worse"
    assert "gpt (default) is better than maskgit (steps-4" in finding.sentence(worse)
    # worse for sure, but perhaps by less than the tolerance
    slight = verdict(row("steps-4", 4, (1.30, 0.02), (1.08, 0.05)))
    assert slight.outcome == "worse" and "not shown within the ±10 % band" in \
        finding.sentence(slight)


def test_cannot_tell_when_the_interval_holds_zero_and_crosses_the_band():
    v = verdict(row("steps-8", 8, (1.0, 0.02), (1.07, 0.11)))
    assert v.outcome == "cannot tell"
    s = finding.sentence(v)
    assert s.startswith("Cannot tell maskgit (steps-8, NFE 8, its only setting) from gpt "
                        "(default) at this sample size: test judge KID difference +7 % [")
    assert "crosses the ±10 % band" in s


def test_the_variant_is_chosen_on_validation_never_on_test():
    """steps-4 is best on test but outside the band on validation; steps-8 is the cheapest
    within the band on validation, and steps-16 is better but costs more: steps-8 is chosen."""
    v = verdict(row("steps-4", 4, (1.40, 0.02), (0.95, 0.02)),
                row("steps-8", 8, (1.02, 0.02), (1.04, 0.02)),
                row("steps-16", 16, (0.99, 0.02), (1.00, 0.02)))
    assert v.variant.name == "steps-8" and v.chosen_on == "validation"
    # none within the band on validation: the best on validation, whatever test says
    v = verdict(row("steps-4", 4, (1.50, 0.02), (0.95, 0.02)),
                row("steps-8", 8, (1.30, 0.02), (1.40, 0.02)))
    assert v.variant.name == "steps-8" and v.outcome == "worse"


def test_a_run_without_validation_or_intervals_still_gets_an_honest_sentence():
    """metrics.json from before issue 12: FD per seed only (a t interval over seeds), one
    median timing each (a speed-up without interval), the choice made on test and said so."""
    def old(variant, nfe, fds, lat):
        return {"variant": variant, "nfe": nfe, "batch_size": 64, "seconds_per_sample": 0.002,
                "seconds_per_sample_latency": lat,
                "judge": {"fd_mean": sum(fds) / 3, "fd_per_seed": fds}}

    m = {"priors": {
        "gpt": {"name": "autoregressive", "sampling": [old("", 49, [13.0, 13.3, 12.7], 0.05)]},
        "maskgit": {"name": "masked-diffusion", "sampling": [
            old("steps-8", 8, [13.5, 14.9, 12.1], 0.015), old("steps-16", 16, [14.8, 14.7, 14.9],
                                                              0.03)]},
        "latent": {"name": "latent-diffusion", "sampling": [{"variant": "", "nfe": 10}]}}}
    [v] = finding.quality_matched(m)  # latent has no judge figures: no verdict
    assert v.variant.name == "steps-8" and v.chosen_on == "test"
    assert v.outcome == "cannot tell"  # 3 seeds, sd 1.4: the t interval is wide
    assert v.latency_speedup.value == pytest.approx(0.05 / 0.015)
    [s] = finding.describe(m)
    assert "chosen on test: no validation figures, so optimistic" in s and "judge FD" in s
    assert "3.3x (one timing, no interval)" in s


def test_no_reference_no_finding():
    m = metrics(row("steps-8", 8, (1.0, 0.02), (1.0, 0.02)))
    del m["priors"]["gpt"]
    assert finding.quality_matched(m) == [] and finding.describe(m) == []


def test_outcome_boundaries():
    assert finding.outcome(Interval(0.0, -0.05, 0.05), 0.1) == "equivalent"
    assert finding.outcome(Interval(0.05, 0.01, 0.09), 0.1) == "equivalent"  # inside wins
    assert finding.outcome(Interval(0.0, -0.2, 0.2), 0.1) == "cannot tell"
    assert finding.outcome(Interval(0.0, -float("inf"), float("inf")), 0.1) == "cannot tell"
    assert finding.outcome(None, 0.1) == "cannot tell"
