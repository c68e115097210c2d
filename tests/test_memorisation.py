"""Memorisation figures: a copying prior is caught, a random one is not, real data gives its
reference share."""

import numpy as np
import pytest
import torch

from diffvq.memorisation import (copy_reference, feature_distance_to_nearest,
                                 hamming_to_nearest, memorisation)

K, L, F = 16, 12, 8


@pytest.fixture
def data():
    """Training and held-out token sequences of a toy data set whose sequences cluster around
    a few prototypes (so held-out data is near, but not equal to, training data), and judge
    features that are a fixed function of the tokens."""
    g = torch.Generator().manual_seed(0)
    protos = torch.randint(0, K, (5, L), generator=g)  # [5, L]

    def draw(m: int) -> torch.Tensor:
        x = protos[torch.randint(0, 5, (m,), generator=g)].clone()  # [m, L]
        flip = torch.rand(m, L, generator=g) < 0.3
        return torch.where(flip, torch.randint(0, K, (m, L), generator=g), x)

    embed = torch.randn(K, F, generator=torch.Generator().manual_seed(1), dtype=torch.float64)

    def features(t: torch.Tensor) -> np.ndarray:
        return embed[t].mean(1).numpy()  # [m, F]: a function of the tokens

    train, test = draw(300), draw(200)
    return train, test, features


def brute_hamming(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a[:, None, :] != b[None, :, :]).sum(-1).amin(1).double() / a.shape[1]


def test_hamming_matches_brute_force_across_blocks():
    g = torch.Generator().manual_seed(2)
    a, b = torch.randint(0, 300, (37, L), generator=g), torch.randint(0, 300, (101, L), generator=g)
    b[5] = a[3]  # one exact copy
    for block in (1, 7, 100, 10**6):
        got = hamming_to_nearest(a, b, block=block)
        assert torch.equal(got, brute_hamming(a, b))
    assert hamming_to_nearest(a, b)[3] == 0


def test_hamming_takes_grids_and_memmapped_numpy():
    g = torch.Generator().manual_seed(3)
    a, b = torch.randint(0, K, (4, 3, 4), generator=g), torch.randint(0, K, (9, 3, 4), generator=g)
    got = hamming_to_nearest(a.numpy().astype(np.int16), b.numpy().astype(np.int16))
    assert torch.equal(got, brute_hamming(a.flatten(1), b.flatten(1)))


def test_feature_distance_matches_brute_force_and_copies_are_zero():
    g = torch.Generator().manual_seed(4)
    a = torch.randn(20, F, generator=g, dtype=torch.float64)
    b = torch.randn(50, F, generator=g, dtype=torch.float64)
    b[7] = a[2]
    want = torch.cdist(a, b).amin(1)
    got = feature_distance_to_nearest(a.numpy(), b.numpy(), block=33)
    assert torch.allclose(got, want) and got[2] == 0


def test_verbatim_prior_is_all_copies(data):
    train, test, features = data
    ref = copy_reference(train, test, features(train), features(test), quantile=0.05)
    samples = train[torch.randint(0, len(train), (150,), generator=torch.Generator().manual_seed(5))]
    m = memorisation(samples, train, ref, features(samples), features(train))
    assert m["token_copy_share"] == 1.0 and m["hamming_nn_mean"] == 0.0
    assert m["feature_near_copy_share"] == 1.0 and m["feature_nn_median"] == 0.0
    assert m["n"] == 150 and m["quantile"] == 0.05


def test_random_prior_copies_nothing(data):
    train, test, features = data
    ref = copy_reference(train, test, features(train), features(test))
    samples = torch.randint(0, K, (150, L), generator=torch.Generator().manual_seed(6))
    m = memorisation(samples, train, ref, features(samples), features(train))
    assert m["token_copy_share"] == 0.0 and m["hamming_nn_mean"] > 0.4
    assert m["feature_near_copy_share"] <= 0.02


def test_held_out_real_data_gives_its_reference_share(data):
    train, test, features = data
    ref = copy_reference(train, test, features(train), features(test), quantile=0.05)
    exact = np.mean([any(torch.equal(t, r) for r in train) for t in test])
    assert ref.token_copy_share_real == pytest.approx(exact)
    assert ref.feature_near_copy_share_real == pytest.approx(0.05, abs=0.01)
    assert ref.n_real == len(test)
    # more real data from the same distribution scores about the same as the reference
    fresh = data[1]  # the held-out set itself, scored as if it were a prior's samples
    m = memorisation(fresh, train, ref, features(fresh), features(train))
    assert m["feature_near_copy_share"] == pytest.approx(m["feature_near_copy_share_real"])
    assert m["token_copy_share"] == pytest.approx(m["token_copy_share_real"])


def test_without_features_the_feature_figures_are_none(data):
    train, test, _ = data
    ref = copy_reference(train, test)
    m = memorisation(train[:10], train, ref)
    assert m["token_copy_share"] == 1.0
    assert m["feature_near_copy_share"] is None and m["feature_threshold"] is None


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError, match="tokens per sequence"):
        hamming_to_nearest(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="quantile"):
        copy_reference(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3, dtype=torch.long),
                       quantile=0)
