"""Bias of judge distances at the set sizes recipes use: plain FD, FD∞ and KID on 128-d Gaussian
features whose true distances are known (docs/protocol-distance.md quotes this output).

A sample set of n rows is compared with a reference set of 2,000 rows (the real split), 20 draws
per cell; "same": both from one Gaussian (every true distance is 0); "shifted": the sample's mean
moved so that the true FD is 4 (true KID from `gaussian_kid`). The covariance has a decaying
spectrum (eigenvalue i proportional to 1/i, trace 128), like learned features.

    OMP_NUM_THREADS=1 python bench/distance_bias.py
"""

from __future__ import annotations

import time

import numpy as np

from diffvq.intervals import fd_interval, kid_interval
from diffvq.stats import (KernelDistance, fd_infinity, frechet_distance, gaussian_kid, kid,
                          mean_cov)

D, M, DRAWS = 128, 2000, 20


def main() -> None:
    lam = 1.0 / np.arange(1, D + 1)
    lam *= D / lam.sum()
    sd, cov = np.sqrt(lam), np.diag(lam)
    shift = np.zeros(D)
    shift[:4] = 1.0  # ||delta||^2 = 4
    rng = np.random.default_rng(0)
    print(f"# {D}-d Gaussian, reference n={M}, {DRAWS} draws: mean (sd); relative bias = "
          f"(mean - true) / true for 'shifted'")
    for case, delta in (("same", np.zeros(D)), ("shifted", shift)):
        true_fd = float(delta @ delta)
        true_kid = gaussian_kid(delta, cov, np.zeros(D), cov)
        print(f"\n{case}: true FD {true_fd:.3f}, true KID {true_kid:.5f}")
        print(f"{'n':>5} {'FD':>16} {'FD∞':>16} {'KID':>20}   rel. bias FD / FD∞ / KID")
        for n in (100, 250, 500, 1000):
            fd, fdi, kd = [], [], []
            for _ in range(DRAWS):
                ref = rng.normal(size=(M, D)) * sd
                x = rng.normal(size=(n, D)) * sd + delta
                mu, c = mean_cov(ref)
                fd.append(frechet_distance(*mean_cov(x), mu, c))
                fdi.append(fd_infinity(x, mu, c))
                kd.append(kid(x, ref))
            row = f"{n:>5} " + " ".join(f"{np.mean(v):8.3f} ({np.std(v):5.3f})" for v in (fd, fdi))
            row += f" {np.mean(kd):9.5f} ({np.std(kd):.5f})"
            if true_fd:
                row += "   " + " / ".join(f"{(np.mean(v) - t) / t:+.0%}" for v, t in
                                          ((fd, true_fd), (fdi, true_fd), (kd, true_kid)))
            print(row)
    # what a bootstrap interval costs: 3 seeds x 250 rows against a 10,000-row reference
    sets = [rng.normal(size=(250, D)) * sd for _ in range(3)]
    ref = rng.normal(size=(10_000, D)) * sd
    t = time.perf_counter()
    mu, c = mean_cov(ref)
    kref = KernelDistance(ref)
    t_ref = time.perf_counter() - t
    t = time.perf_counter()
    fd_i = fd_interval(sets, mu, c)
    t_fd = time.perf_counter() - t
    t = time.perf_counter()
    kid_i = kid_interval(sets, kref)
    t_kid = time.perf_counter() - t
    print(f"\n# bootstrap, 200 replicates, 3 x 250 rows vs 10,000: reference stats + kernel "
          f"{t_ref:.2f} s once; FD interval {t_fd:.2f} s ({fd_i.format('.3f')}); "
          f"KID interval {t_kid:.2f} s ({kid_i.format('.5f')})")


if __name__ == "__main__":
    main()
