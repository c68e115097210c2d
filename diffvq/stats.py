"""Distances between sets of samples in a judge's feature space: Fréchet distance, k-NN
precision and recall, and the share of distinct samples. Plain NumPy/SciPy on `[N, F]` arrays."""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cdist


def mean_cov(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean `[F]` and covariance `[F, F]` (unbiased) of `[N, F]` features, in float64."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"need at least two feature vectors [N, F], got shape {x.shape}")
    return x.mean(axis=0), np.cov(x, rowvar=False)


def frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + Tr(C1 + C2 - 2 (C1 C2)^(1/2)) between two Gaussians.

    Tr((C1 C2)^(1/2)) is the sum of square roots of the eigenvalues of C1 C2, which are real and
    non-negative (C1 C2 is similar to the PSD matrix C1^(1/2) C2 C1^(1/2)); taking them from
    `eigvals` avoids the complex round-off of `sqrtm` on near-singular covariances."""
    eig = np.linalg.eigvals(cov1 @ cov2)
    tr_sqrt = np.sqrt(np.clip(eig.real, 0, None)).sum()
    diff = mu1 - mu2
    return float(max(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2 * tr_sqrt, 0.0))


def frechet_distance_sets(a: np.ndarray, b: np.ndarray) -> float:
    return frechet_distance(*mean_cov(a), *mean_cov(b))


def _knn_radii(x: np.ndarray, k: int) -> np.ndarray:
    """Distance from each row to its k-th nearest other row."""
    d = cdist(x, x)
    np.fill_diagonal(d, np.inf)
    return np.partition(d, k - 1, axis=1)[:, k - 1]


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019): precision is the share of fake
    samples inside the real manifold (the union of balls reaching each real sample's k-th
    neighbour), recall the share of real samples inside the fake manifold."""
    real = np.asarray(real, dtype=np.float64)
    fake = np.asarray(fake, dtype=np.float64)
    if len(real) <= k or len(fake) <= k:
        raise ValueError(f"precision/recall with k={k} needs more than {k} samples per set")
    r_real, r_fake = _knn_radii(real, k), _knn_radii(fake, k)
    d = cdist(fake, real)  # [n_fake, n_real]
    precision = float((d <= r_real[None, :]).any(axis=1).mean())
    recall = float((d.T <= r_fake[None, :]).any(axis=1).mean())
    return precision, recall


def distinct_share(tokens: np.ndarray) -> float:
    """Distinct token sequences over samples: 1.0 when no two samples are the same, 1/N when
    every sample is the same (mode collapse)."""
    flat = np.asarray(tokens).reshape(len(tokens), -1)
    return len({row.tobytes() for row in flat}) / len(flat)
