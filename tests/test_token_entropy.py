"""Mean per-token entropy of token sequences (diffvq.token_entropy)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from diffvq.token_entropy import beside_real, mean_token_entropy, position_entropy


def test_known_entropies_position_by_position():
    # position 0 constant (0 bits), 1 two tokens 50/50 (1 bit), 2 four tokens uniform (2 bits)
    tokens = np.array([[3, 0, 0], [3, 1, 1], [3, 0, 2], [3, 1, 3]])
    assert position_entropy(tokens, 4).tolist() == pytest.approx([0.0, 1.0, 2.0])
    assert mean_token_entropy(tokens, 4) == pytest.approx(1.0)
    # a grid is flattened; torch tensors work too; one sequence has no variety
    assert mean_token_entropy(torch.tensor(tokens).view(4, 3, 1), 4) == pytest.approx(1.0)
    assert mean_token_entropy(tokens[:1], 4) == 0.0


def test_skewed_position_and_the_estimate_approaches_the_truth():
    g = np.random.default_rng(0)
    p = np.array([0.7, 0.2, 0.1])
    truth = -(p * np.log2(p)).sum()
    tokens = g.choice(3, size=(20_000, 5), p=p)
    assert mean_token_entropy(tokens, 3) == pytest.approx(truth, abs=0.01)
    uniform = g.integers(0, 16, size=(50_000, 4))
    assert mean_token_entropy(uniform, 16) == pytest.approx(math.log2(16), abs=0.01)


def test_samples_beside_real_tokens_at_the_same_n():
    """The plug-in estimate grows with n, so the real tokens are subsampled to the samples' n:
    a prior that samples the real distribution scores like the real tokens, a collapsed one
    lower."""
    g = np.random.default_rng(1)
    real = g.integers(0, 64, size=(5_000, 6))
    faithful = g.integers(0, 64, size=(100, 6))
    collapsed = g.integers(0, 4, size=(100, 6))
    out = beside_real(faithful, real, 64)
    assert out["n"] == 100
    assert out["samples"] == pytest.approx(out["real"], abs=0.15)
    assert mean_token_entropy(real, 64) - out["real"] > 0.3  # what unequal n would have cost
    low = beside_real(collapsed, real, 64)
    assert low["samples"] <= 2.0 < low["real"]
    assert beside_real(faithful, real, 64) == out  # the subsample depends only on the seed


def test_bad_input_is_named():
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        mean_token_entropy(np.array([[0, 4]]), 4)
    with pytest.raises(ValueError, match="n >= 1"):
        mean_token_entropy(np.zeros((0, 3), dtype=int), 4)
    with pytest.raises(ValueError, match="grid"):
        beside_real(np.zeros((2, 3), dtype=int), np.zeros((2, 4), dtype=int), 4)
