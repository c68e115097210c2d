"""Fréchet distance, precision/recall and diversity against brute-force references."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import linalg

from diffvq.stats import (distinct_share, frechet_distance, frechet_distance_sets, mean_cov,
                          precision_recall)


def brute_force_fd(a: np.ndarray, b: np.ndarray) -> float:
    mu1, mu2 = a.mean(0), b.mean(0)
    c1, c2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(c1 @ c2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(c1 + c2 - 2 * covmean))


def test_matches_scipy_sqrtm_reference():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, 8)) @ rng.normal(size=(8, 8))
    b = rng.normal(loc=0.5, size=(400, 8)) @ rng.normal(size=(8, 8))
    assert frechet_distance_sets(a, b) == pytest.approx(brute_force_fd(a, b), rel=1e-6)


def test_closed_form_for_known_gaussians():
    # N(0, I) vs N(m, 4I) in d dims: |m|^2 + d (1 + 4 - 2*2) = |m|^2 + d
    d, m = 5, np.full(5, 2.0)
    assert frechet_distance(np.zeros(d), np.eye(d), m, 4 * np.eye(d)) == pytest.approx(20 + 5)


def test_self_distance_is_zero_and_grows_with_corruption():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1000, 16))
    assert frechet_distance_sets(x, x) == pytest.approx(0.0, abs=1e-8)
    fds = [frechet_distance_sets(x, x + rng.normal(scale=s, size=x.shape)) for s in (0.1, 0.5, 1.0)]
    assert fds[0] < fds[1] < fds[2]


def test_precision_recall_sees_mode_dropping_and_outliers():
    rng = np.random.default_rng(2)
    real = np.concatenate([rng.normal(-5, 1, (200, 2)), rng.normal(5, 1, (200, 2))])
    same = np.concatenate([rng.normal(-5, 1, (200, 2)), rng.normal(5, 1, (200, 2))])
    p, r = precision_recall(real, same)
    assert p > 0.9 and r > 0.9
    one_mode = rng.normal(-5, 1, (400, 2))  # faithful but drops half the data
    p, r = precision_recall(real, one_mode)
    assert p > 0.9 and r < 0.6
    off = rng.normal(0, 1, (400, 2)) + np.array([0, 20])  # nothing like the data
    p, r = precision_recall(real, off)
    assert p < 0.05 and r < 0.05


def test_distinct_share():
    assert distinct_share(np.array([[1, 2], [1, 2], [3, 4], [5, 6]])) == 0.75
    assert distinct_share(np.zeros((10, 3, 3))) == 0.1


def test_too_few_samples_is_a_clear_error():
    with pytest.raises(ValueError, match="at least two"):
        mean_cov(np.zeros((1, 4)))
    with pytest.raises(ValueError, match="needs more than 3"):
        precision_recall(np.zeros((3, 2)), np.zeros((10, 2)))
