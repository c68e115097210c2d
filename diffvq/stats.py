"""Distances between sets of samples in a judge's feature space: Fréchet distance (plain and
extrapolated to infinite n), kernel inception distance, k-NN precision and recall, and the share
of distinct samples. Plain NumPy/SciPy on `[N, F]` arrays.

Plain FD is biased upwards by roughly a/n for sets of n samples (an estimated covariance has
spread the true one lacks), by more than the gaps between priors at the sizes recipes use; KID is
an unbiased U-statistic and FD∞ removes the 1/n term by extrapolation
(docs/protocol-distance.md has the simulation that picks between them)."""

from __future__ import annotations

from typing import Sequence

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


def fd_infinity(features: np.ndarray, mu: np.ndarray, cov: np.ndarray,
                sizes: Sequence[int] | None = None, seed: int = 0) -> float:
    """FD∞ (Chong & Forsyth 2020): FD of `[N, F]` features against a Gaussian `(mu, cov)` at
    several subset sizes n, a least-squares line in 1/n, and its value at 1/n = 0.

    FD at size n is about FD∞ + a/n, so the intercept removes the bias the line sees; the fit
    needs a range of n, so with few samples it trades bias for variance. `sizes` defaults to 15
    sizes evenly spaced from N/5 to N (the paper's 5k..50k for 50k), each a subset drawn without
    replacement by a generator seeded with `seed`."""
    x = np.asarray(features, dtype=np.float64)
    n = len(x)
    if sizes is None:
        sizes = np.unique(np.linspace(max(2, n // 5), n, 15).round().astype(int)).tolist()
    if len(set(sizes)) < 2 or min(sizes) < 2 or max(sizes) > n:
        raise ValueError(f"FD∞ needs at least two sizes between 2 and {n}, got {sizes}")
    rng = np.random.default_rng(seed)
    fds = [frechet_distance(*mean_cov(x[rng.permutation(n)[:m]]), mu, cov) for m in sizes]
    slope, intercept = np.polyfit(1.0 / np.asarray(sizes, dtype=np.float64), fds, 1)
    return float(intercept)


def polynomial_kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """k(x, y) = (x·y / F + 1)^3 for rows of `[N, F]` and `[M, F]` -> `[N, M]`, the kernel of
    KID (Bińkowski et al. 2018): it compares means, covariances and third moments, with no
    bandwidth to tune."""
    return (a @ b.T / a.shape[1] + 1.0) ** 3


def _offdiag_mean(x: np.ndarray, chunk: int = 1024) -> float:
    """Mean of k(x_i, x_j) over i != j, a block of rows at a time (`[chunk, N]` in memory, not
    `[N, N]`: 10,000 reference rows would need 800 MB at once)."""
    n, total = len(x), 0.0
    for i in range(0, n, chunk):
        block = polynomial_kernel(x[i:i + chunk], x)  # [chunk, N]
        total += block.sum() - np.einsum("ii->", block[:, i:i + chunk])
    return total / (n * (n - 1))


class KernelDistance:
    """KID against one fixed reference set (the real test split): the reference's own kernel
    term is computed once, and `parts` gives what a set's KID is made of, so that a bootstrap
    replicate costs index look-ups instead of new kernel matrices."""

    def __init__(self, reference: np.ndarray):
        self.reference = np.asarray(reference, dtype=np.float64)  # [M, F]
        if len(self.reference) < 2:
            raise ValueError("KID needs at least two reference feature vectors")
        self.reference_term = _offdiag_mean(self.reference)

    def parts(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`[N, N]` kernel within the set and `[N]` mean kernel of each row to the reference."""
        x = np.asarray(features, dtype=np.float64)
        return polynomial_kernel(x, x), polynomial_kernel(x, self.reference).mean(axis=1)

    def from_parts(self, kxx: np.ndarray, kxy: np.ndarray, rows: np.ndarray | None = None) -> float:
        """KID of the set's rows `rows` (all when None; repeats allowed, as a bootstrap draws)."""
        if rows is not None:
            kxx, kxy = kxx[np.ix_(rows, rows)], kxy[rows]
        n = len(kxy)
        if n < 2:
            raise ValueError("KID needs at least two feature vectors")
        xx = (kxx.sum() - np.trace(kxx)) / (n * (n - 1))
        return float(xx + self.reference_term - 2 * kxy.mean())

    def __call__(self, features: np.ndarray) -> float:
        return self.from_parts(*self.parts(features))


def kid(a: np.ndarray, b: np.ndarray) -> float:
    """Kernel inception distance: the unbiased estimate (U-statistic) of the squared MMD
    between the distributions of `[N, F]` and `[M, F]` features under `polynomial_kernel`.

    Its expectation is the true MMD² at any set sizes (so 0 for two samples of one
    distribution, and it can come out slightly negative); all pairs are used (Bińkowski et al.
    average over subsets of 1,000 only to bound memory, which the blockwise reference term
    does here)."""
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"KID needs two [N, F] sets with the same F, got {x.shape}, {y.shape}")
    return KernelDistance(y)(x)


def _expected_kernel(mu: np.ndarray, cov: np.ndarray, nu: np.ndarray, cov2: np.ndarray) -> float:
    """E k(x, y) for independent x ~ N(mu, cov), y ~ N(nu, cov2) under `polynomial_kernel`,
    from the first three moments of s = x·y (Isserlis: odd centred moments vanish)."""
    d, m = len(mu), float(mu @ nu)
    es2 = np.trace(cov @ cov2) + mu @ cov2 @ mu + nu @ cov @ nu + m ** 2
    es3 = (m ** 3 + 3 * m * (mu @ cov2 @ mu + nu @ cov @ nu + np.trace(cov @ cov2))
           + 6 * mu @ cov2 @ cov @ nu)
    return float(es3 / d ** 3 + 3 * es2 / d ** 2 + 3 * m / d + 1)


def gaussian_kid(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """The true squared MMD that `kid` estimates, between two Gaussians: what simulations of
    KID's bias compare against (as ||mu1 - mu2||^2 + ... is for FD)."""
    return (_expected_kernel(mu1, cov1, mu1, cov1) + _expected_kernel(mu2, cov2, mu2, cov2)
            - 2 * _expected_kernel(mu1, cov1, mu2, cov2))


def knn_radii(x: np.ndarray, k: int) -> np.ndarray:
    """Distance from each row to its k-th nearest other row."""
    d = cdist(x, x)
    np.fill_diagonal(d, np.inf)
    return np.partition(d, k - 1, axis=1)[:, k - 1]


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3,
                     real_radii: np.ndarray | None = None) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019): precision is the share of fake
    samples inside the real manifold (the union of balls reaching each real sample's k-th
    neighbour), recall the share of real samples inside the fake manifold."""
    real = np.asarray(real, dtype=np.float64)
    fake = np.asarray(fake, dtype=np.float64)
    if len(real) <= k or len(fake) <= k:
        raise ValueError(f"precision/recall with k={k} needs more than {k} samples per set")
    r_real = real_radii if real_radii is not None else knn_radii(real, k)  # reused per split
    r_fake = knn_radii(fake, k)
    d = cdist(fake, real)  # [n_fake, n_real]
    precision = float((d <= r_real[None, :]).any(axis=1).mean())
    recall = float((d.T <= r_fake[None, :]).any(axis=1).mean())
    return precision, recall


def distinct_share(tokens: np.ndarray) -> float:
    """Distinct token sequences over samples: 1.0 when no two samples are the same, 1/N when
    every sample is the same (mode collapse)."""
    flat = np.asarray(tokens).reshape(len(tokens), -1)
    return len({row.tobytes() for row in flat}) / len(flat)
