"""Intervals: the bootstrap covers the truth as often as it claims, in simulations with known
answers; standard-error and difference intervals; speed-ups from repeated timings."""

from __future__ import annotations

import math

import numpy as np
import pytest

from diffvq.intervals import (Interval, bootstrap, difference, fd_interval, kid_interval,
                              mean_interval, ratio_of_medians, se_interval, share_interval)
from diffvq.stats import KernelDistance, mean_cov


def test_bootstrap_covers_the_mean_of_normal_samples():
    """200 simulated experiments of 3 seeds x 40 samples of N(1, 2^2): the 95 % interval of the
    mean holds the true mean 1 in at least 90 % of them."""
    rng = np.random.default_rng(0)
    hits = 0
    for i in range(200):
        sets = [rng.normal(1.0, 2.0, 40) for _ in range(3)]
        iv = bootstrap(lambda s: float(np.mean([x.mean() for x in s])), sets, resamples=200,
                       seed=i)
        hits += iv.contains(1.0)
    assert hits >= 180


def test_bootstrap_covers_bernoulli_accuracy():
    rng = np.random.default_rng(1)
    hits = sum(share_interval([rng.random(50) < 0.7 for _ in range(3)], seed=i).contains(0.7)
               for i in range(200))
    assert hits >= 180


def test_bootstrap_is_deterministic_and_holds_its_estimate():
    rng = np.random.default_rng(2)
    sets = [rng.normal(size=(30, 2)) for _ in range(2)]

    def stat(s):
        return float(np.mean([x[:, 0].mean() for x in s]))

    a, b = bootstrap(stat, sets, seed=7), bootstrap(stat, sets, seed=7)
    assert a == b and a.lo < a.value < a.hi and a.value == stat(sets)
    assert bootstrap(stat, sets, seed=8) != a
    assert Interval.from_dict(a.to_dict()) == a


def test_fd_and_kid_intervals_sit_on_their_estimates():
    """Repeated rows in a resample bias FD and KID upwards; the centred interval still holds
    the figure reported, and KID's holds the true 0 of two samples of one distribution."""
    rng = np.random.default_rng(3)
    ref = rng.normal(size=(1000, 16))
    sets = [rng.normal(size=(100, 16)) for _ in range(3)]
    fd = fd_interval(sets, *mean_cov(ref))
    assert fd.lo < fd.value < fd.hi
    kd = kid_interval(sets, KernelDistance(ref))
    assert kd.lo < kd.value < kd.hi and kd.contains(0.0)
    plain = kid_interval(sets, KernelDistance(ref), method="percentile")
    assert plain.hi > kd.hi + 0.2 * (kd.hi - kd.lo)  # the replicates sit above the estimate


def test_se_and_mean_intervals():
    iv = se_interval(2.0, 0.1)
    assert (iv.lo, iv.hi) == pytest.approx((2.0 - 0.196, 2.0 + 0.196), abs=1e-3)
    m = mean_interval([1.0, 2.0, 3.0])  # t(2) = 4.303, sd 1, sqrt(3)
    assert m.value == 2.0 and m.hi - 2.0 == pytest.approx(4.303 / math.sqrt(3), rel=1e-3)
    assert mean_interval([5.0]).hi == math.inf


def test_difference_combines_both_intervals():
    a, b = Interval(10.0, 9.0, 11.0), Interval(11.0, 10.0, 13.0)
    d = difference(a, b)
    assert d.value == 1.0
    assert d.lo == pytest.approx(1 - math.hypot(1, 1))
    assert d.hi == pytest.approx(1 + math.hypot(2, 1))
    r = difference(a, b, relative=True)
    assert (r.value, r.lo, r.hi) == pytest.approx((0.1, d.lo / 10, d.hi / 10))
    with pytest.raises(ValueError, match="positive reference"):
        difference(Interval(0.0, -1, 1), b, relative=True)


def test_ratio_of_medians_of_repeated_timings():
    rng = np.random.default_rng(4)
    slow = 0.050 * (1 + 0.05 * rng.standard_normal(9))
    fast = 0.010 * (1 + 0.05 * rng.standard_normal(9))
    r = ratio_of_medians(slow, fast)
    assert r.value == pytest.approx(np.median(slow) / np.median(fast))
    assert r.lo < 5.0 < r.hi and r.hi - r.lo < 1.5
    assert ratio_of_medians([0.05], [0.01]).hi == math.inf  # one timing: no interval
