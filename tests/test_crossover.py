"""The crossover of loss frontiers on synthetic validation curves whose crossing is known: each
outcome, the two readings, the frontier's definition, where a prior starts to overfit, one seed,
and metrics.json's form."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from diffvq.evaluate.crossover import (
    Crossover, CurvePoint, budgets_of, crossover, crossovers, epochs_to_best, equal_budget,
    frontier)
from diffvq.intervals import Interval

PER_EPOCH = 1e14  # training FLOPs per pass over the unique data


def reference_law(c, e, k=0):
    """Autoregressive: a power law in compute plus a floor that rises with epochs (overfits
    beyond 4 passes)."""
    return 2.0 + 3.0 * (c / 1e12) ** -0.5 + 0.004 * np.maximum(0.0, e - 4) + 0.01 * k


def challenger_law(c, e, k=0):
    """Diffusion: starts higher, learns more slowly, never overfits here, lower floor."""
    return 1.8 + 4.5 * (c / 1e12) ** -0.45 + 0.01 * k


def curves(prior, family, law, *, seeds=4, sizes=("s",), budgets=(1e16,), fraction=0.25,
           evals=96, spread=0.004, se=0.003, rng_seed=0, only_final=False):
    """Validation curves: per seed, size and budget, `evals` points log-spaced over the last
    four decades of the budget, each run shifted by a seed offset (sd `spread`) and each point
    by noise of its standard error `se`."""
    rng = np.random.default_rng([rng_seed, sum(map(ord, prior))])
    out = []
    for s in range(seeds):
        for k, size in enumerate(sizes):
            for b in budgets:
                c = np.array([b]) if only_final else np.geomspace(b / 1e4, b, evals)
                loss = law(c, c / PER_EPOCH, k) + rng.normal(0, spread) + rng.normal(0, se, len(c))
                out += [CurvePoint(prior, family, fraction, size, s, float(b), float(x),
                                   float(x / PER_EPOCH), float(v), se, i == len(c) - 1)
                        for i, (x, v) in enumerate(zip(c, loss))]
    return out


def analytic_crossing(ref_law=reference_law, ch_law=challenger_law) -> float:
    """Where the noiseless challenger frontier falls below the reference's (a fine grid)."""
    c = np.geomspace(1e12, 1e16, 400_001)
    gap = (np.minimum.accumulate(ref_law(c, c / PER_EPOCH))
           - np.minimum.accumulate(ch_law(c, c / PER_EPOCH)))
    return float(c[np.flatnonzero(gap > 0)[0]])


def steps(x: float, y: float, grid: np.ndarray) -> float:
    """|x - y| in grid steps of a log-spaced grid."""
    return abs(math.log(x / y)) / math.log(grid[1] / grid[0])


# -- outcomes -------------------------------------------------------------------------------------
def test_a_known_crossover_is_found_with_an_interval_that_holds_it():
    truth = analytic_crossing()
    assert 1.9e14 < truth < 2.2e14  # the laws cross where the reference still learns
    x = crossover(curves("gpt", "exact", reference_law),
                  curves("maskgit", "bound", challenger_law))
    assert x.status == "crossover"
    assert steps(x.flops, truth, x.gap.grid) <= 2
    assert x.interval.contains(truth) and x.interval.contains(x.flops)
    assert x.interval.hi / x.interval.lo < 2  # small noise: a narrow interval
    assert x.beyond_budget == 0
    # significance comes at or after the estimated crossing, within a few grid steps
    assert x.flops <= x.significant_from and steps(x.significant_from, truth, x.gap.grid) <= 4
    assert x.epochs == pytest.approx(truth / PER_EPOCH, rel=0.15)  # both still below 4 epochs
    assert x.reference_epochs == pytest.approx(truth / PER_EPOCH, rel=0.15)
    # the gap curve: negative (the reference leads) at low compute, positive at the end
    assert x.gap.hi[0] < 0 and x.gap.lo[-1] > 0
    assert np.all(x.gap.lo <= x.gap.value) and np.all(x.gap.value <= x.gap.hi)
    assert "maskgit falls below gpt at 2" in x.statement
    assert "frontier (best validation loss at or below this compute)" in x.statement
    assert "bound (ELBO) compared with gpt's exact NLL" in x.statement
    assert "conservative for maskgit" in x.statement
    assert "4 of gpt, 4 of maskgit" in x.statement


def test_the_equal_budget_reading_finds_the_crossing_between_budgets():
    budgets = np.geomspace(1e13, 1e16, 7)  # half-decade budgets: 1e14, 3.2e14 bracket it
    ref = curves("gpt", "exact", reference_law, budgets=budgets, evals=8)
    ch = curves("maskgit", "bound", challenger_law, budgets=budgets, evals=8)
    x = crossover(ref, ch, reading="equal-budget")
    assert list(x.gap.grid) == pytest.approx(budgets)
    assert x.status == "crossover"
    truth = analytic_crossing()  # the reference has not overfitted yet there: same crossing
    assert 1e14 < x.flops < 3.17e14 and x.interval.contains(truth)
    assert "equal budget (each trained for exactly this budget)" in x.statement
    # the frontier reading of the same runs also crosses, at no larger compute
    f = crossover(ref, ch, reading="frontier")
    assert f.status == "crossover" and f.flops <= x.interval.hi


def test_overlapping_curves_cannot_be_told_apart():
    gap = 0.005  # smaller than the seed spread of 0.02
    ref = curves("gpt", "exact", reference_law, spread=0.02, se=0.005)
    ch = curves("maskgit", "bound", lambda c, e, k=0: reference_law(c, e, k) - gap,
                spread=0.02, se=0.005, rng_seed=1)
    x = crossover(ref, ch)
    assert x.status == "cannot tell"
    assert x.flops is None and x.interval is None and x.significant_from is None
    assert not np.any(x.gap.lo > 0)
    assert x.gap.lo[-1] < 0 < x.gap.hi[-1]
    assert "cannot tell maskgit from gpt" in x.statement and "overlap" in x.statement


def test_a_reference_always_better_gives_none_within_budget():
    ref = curves("gpt", "exact", reference_law)
    ch = curves("maskgit", "bound", lambda c, e, k=0: reference_law(c, e, k) + 0.05)
    x = crossover(ref, ch)
    assert x.status == "none within budget"
    assert np.all(x.gap.hi < 0)
    assert "maskgit is never significantly below gpt up to 1e16 training FLOPs" in x.statement
    assert "gpt is significantly below at the largest compute" in x.statement


def test_a_challenger_better_from_the_start_is_ahead_throughout():
    ref = curves("gpt", "exact", reference_law)
    ch = curves("maskgit", "bound", lambda c, e, k=0: reference_law(c, e, k) - 0.05)
    x = crossover(ref, ch)
    assert x.status == "ahead throughout"
    assert x.significant_from == x.gap.grid[0] and x.flops is None
    assert np.all(x.gap.lo > 0)
    assert "significantly below gpt from the smallest compute compared" in x.statement


def test_a_lead_that_is_lost_again_is_said():
    ref = curves("gpt", "exact", lambda c, e, k=0: 2.0 + 3.0 * (c / 1e12) ** -0.5)
    ch = curves("maskgit", "bound", lambda c, e, k=0: 1.95 + 3.0 * (c / 1e12) ** -0.5
                + 0.006 * np.maximum(0.0, e - 2))  # ahead, then overfits past the reference
    x = crossover(ref, ch)
    assert x.status == "ahead throughout"
    assert "gpt is significantly below again from" in x.statement


# -- the readings ---------------------------------------------------------------------------------
def mixed_runs(rng_seed=3):
    """Three sizes, three budgets, two seeds, noisy: a frontier made of many runs."""
    return curves("gpt", "exact", reference_law, seeds=2, sizes=("s", "m", "l"),
                  budgets=(1e14, 1e15, 1e16), evals=12, spread=0.05, se=0.02, rng_seed=rng_seed)


def test_the_frontier_is_the_running_minimum_over_all_runs():
    pts = mixed_runs()
    grid = np.geomspace(5e9, 2e16, 60)  # starts before any point
    f = frontier(pts, grid)
    assert f.shape == (2, 60)
    for s in (0, 1):
        mine = [p for p in pts if p.seed == s]
        brute = [min((p.loss for p in mine if p.flops <= c), default=np.nan) for c in grid]
        np.testing.assert_array_equal(f[s], brute)
        assert np.isnan(f[s, 0])  # no point at or below 5e9 FLOPs
        ok = f[s][~np.isnan(f[s])]
        assert np.all(np.diff(ok) <= 0)  # non-increasing in compute
    with pytest.raises(ValueError, match="one prior at one data fraction"):
        frontier(pts + curves("maskgit", "bound", challenger_law, seeds=1, evals=4), grid)


def test_equal_budget_reads_final_points_only():
    pts = mixed_runs()
    budgets = budgets_of(pts)
    assert list(budgets) == [1e14, 1e15, 1e16]
    # a non-final point far below everything must not count
    cheat = dataclasses.replace(next(p for p in pts if not p.final and p.budget == 1e15),
                                loss=0.1)
    eb = equal_budget(pts + [cheat], budgets)
    assert eb.shape == (2, 3) and np.all(eb > 1.0)
    for s in (0, 1):
        for j, b in enumerate(budgets):
            finals = [p.loss for p in pts if p.seed == s and p.final and p.budget == b]
            assert len(finals) == 3  # one per size
            assert eb[s, j] == min(finals)
    # the frontier of the same points may stop early, so it is never above the equal budget
    assert np.all(frontier(pts, budgets) <= eb)
    np.testing.assert_array_equal(equal_budget(pts), eb)  # budgets default to budgets_of
    assert np.isnan(equal_budget(pts, [3e15])).all()  # no run of that budget


def test_equal_budget_crossover_uses_final_points_only():
    """Runs evaluated only at their end and the same runs with whole curves give the same
    equal-budget verdict."""
    budgets = np.geomspace(1e13, 1e16, 7)
    kw = dict(budgets=budgets, evals=8, spread=0.0, se=0.003)
    whole = crossover(curves("gpt", "exact", reference_law, **kw),
                      curves("maskgit", "bound", challenger_law, **kw), reading="equal-budget")
    ends = crossover(curves("gpt", "exact", reference_law, only_final=True, **kw),
                     curves("maskgit", "bound", challenger_law, only_final=True, **kw),
                     reading="equal-budget")
    assert whole.status == ends.status == "crossover"
    assert whole.flops == pytest.approx(ends.flops, rel=0.05)


# -- where each prior starts to overfit -----------------------------------------------------------
def test_epochs_to_best_flags_a_curve_that_rises_after_its_minimum():
    pts = (curves("gpt", "exact", reference_law, sizes=("s", "m"))
           + curves("maskgit", "bound", challenger_law, sizes=("s", "m")))
    rows = {(r.prior, r.size): r for r in epochs_to_best(pts)}
    assert set(rows) == {("gpt", "s"), ("gpt", "m"), ("maskgit", "s"), ("maskgit", "m")}
    gpt, mask = rows["gpt", "s"], rows["maskgit", "s"]
    # the reference's law is lowest near 13 epochs: d/de [3 (e/100)^-1/2 + 0.004 e] = 0
    assert gpt.overfits and 8 < gpt.best_epochs < 20
    assert gpt.best_flops == pytest.approx(gpt.best_epochs * PER_EPOCH)
    assert gpt.final_epochs == pytest.approx(100) and gpt.final_loss > gpt.best_loss
    assert gpt.final_loss - gpt.best_loss > 2 * gpt.difference_se > 0
    # the challenger's curve falls all the way: best is final, no overfitting
    assert not mask.overfits and mask.best_epochs == mask.final_epochs == pytest.approx(100)
    assert mask.seeds == 4 and mask.budget == 1e16
    json.dumps([r.to_dict() for r in rows.values()], allow_nan=False)


def test_epochs_to_best_does_not_flag_a_rise_within_the_noise():
    flat = curves("gpt", "exact", lambda c, e, k=0: 2.0 + 0.0 * c, spread=0.01, se=0.01)
    [row] = epochs_to_best(flat)
    assert not row.overfits


def test_epochs_to_best_reads_the_largest_budget():
    pts = curves("gpt", "exact", reference_law, budgets=(1e14, 1e16), evals=24)
    [row] = epochs_to_best(pts)
    assert row.budget == 1e16 and row.final_epochs == pytest.approx(100)


# -- one seed and metrics.json --------------------------------------------------------------------
def test_one_seed_takes_its_interval_from_the_standard_errors_and_says_so():
    # no seed offsets: the standard errors are all the noise there is
    x = crossover(curves("gpt", "exact", reference_law, seeds=1, spread=0.0),
                  curves("maskgit", "bound", challenger_law, seeds=1, spread=0.0))
    assert x.seeds == (1, 1) and x.status == "crossover"
    assert "standard errors alone" in x.statement and "one seed of each prior" in x.statement
    assert math.isfinite(x.interval.lo) and math.isfinite(x.interval.hi)
    assert x.interval.contains(analytic_crossing())
    # wider standard errors: a wider gap interval
    wide = crossover(curves("gpt", "exact", reference_law, seeds=1, se=0.03),
                     curves("maskgit", "bound", challenger_law, seeds=1, se=0.03))
    assert np.nanmean(wide.gap.hi - wide.gap.lo) > 3 * np.nanmean(x.gap.hi - x.gap.lo)
    # one seed on one side only: said too
    half = crossover(curves("gpt", "exact", reference_law, seeds=3),
                     curves("maskgit", "bound", challenger_law, seeds=1))
    assert "maskgit has one seed: only its standard errors count" in half.statement


def test_to_dict_is_json_without_inf_or_nan():
    ref = curves("gpt", "exact", reference_law)
    cases = [crossover(ref, curves("maskgit", "bound", law)) for law in (
        challenger_law, lambda c, e, k=0: reference_law(c, e, k) + 0.05,
        lambda c, e, k=0: reference_law(c, e, k) - 0.05)]
    # a grid that starts before any point: NaN gap there
    cases.append(crossover(ref, curves("maskgit", "bound", challenger_law),
                           grid=np.geomspace(1e10, 1e16, 30)))
    # a crossover whose interval runs beyond the budget
    cases.append(dataclasses.replace(cases[0], interval=Interval(2e14, 1e14, math.inf)))
    for x in cases:
        d = json.loads(json.dumps(x.to_dict(), allow_nan=False))
        assert d["status"] == x.status and d["statement"] == x.statement
        assert len(d["gap"]["grid"]) == len(x.gap.grid)
    assert cases[3].to_dict()["gap"]["value"][0] is None
    assert cases[4].to_dict()["interval"]["hi"] is None
    assert cases[0].to_dict()["interval"]["lo"] == pytest.approx(cases[0].interval.lo)
    # and back, for drawing the map from metrics.json
    for x in cases:
        back = Crossover.from_dict(json.loads(json.dumps(x.to_dict(), allow_nan=False)))
        assert back.to_dict() == x.to_dict()
    assert Crossover.from_dict(cases[4].to_dict()).interval.hi == math.inf


def test_crossovers_pairs_every_bound_prior_with_the_reference_per_fraction():
    pts = []
    for f in (0.5, 0.1):
        pts += curves("gpt", "exact", reference_law, fraction=f, seeds=2, evals=24)
        pts += curves("maskgit", "bound", challenger_law, fraction=f, seeds=2, evals=24)
        pts += curves("latent", "bound", lambda c, e, k=0: reference_law(c, e, k) + 0.05,
                      fraction=f, seeds=2, evals=24)
    xs = crossovers(pts, n_boot=200)
    assert [(x.fraction, x.challenger) for x in xs] == [
        (0.1, "latent"), (0.1, "maskgit"), (0.5, "latent"), (0.5, "maskgit")]
    assert all(x.reference == "gpt" for x in xs)


def test_bad_input_is_refused_with_a_reason():
    ref = curves("gpt", "exact", reference_law, seeds=1, evals=8)
    with pytest.raises(ValueError, match="one data fraction"):
        crossover(ref, curves("maskgit", "bound", challenger_law, seeds=1, evals=8,
                              fraction=0.5))
    with pytest.raises(ValueError, match="reading"):
        crossover(ref, curves("maskgit", "bound", challenger_law, seeds=1, evals=8),
                  reading="best")
    with pytest.raises(ValueError, match="share no training budget"):
        crossover(ref, curves("maskgit", "bound", challenger_law, seeds=1, evals=8,
                              budgets=(1e15,)), reading="equal-budget")
    with pytest.raises(ValueError, match="flops"):
        CurvePoint("gpt", "exact", 0.5, "s", 0, 1e15, 0.0, 0.0, 2.0, 0.01, False)
    with pytest.raises(ValueError, match="family"):
        CurvePoint("gpt", "nll", 0.5, "s", 0, 1e15, 1e12, 0.0, 2.0, 0.01, False)
    p = ref[0]
    assert CurvePoint.from_dict(json.loads(json.dumps(p.to_dict()))) == p
