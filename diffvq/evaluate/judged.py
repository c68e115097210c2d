"""The fixed evaluation protocol in a judge's feature space, the same for every prior.

Judge Fréchet distance (FD) compares a set of generated signals with the real test split; it is
biased upwards for small sets, so every figure here uses sets of the same size: `n` samples per
sampling seed for a prior, and `n` real *training* signals (class-balanced, one subset per seed)
for the floor. The floor rows are what a perfect prior would score (real data) and what a
perfect prior over this tokenizer's codes would score at best (reconstructions of real data).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..intervals import bootstrap, fd_interval, kid_interval, mean_interval, share_interval
from ..judge import TrainedJudge
from ..stats import KernelDistance, frechet_distance, knn_radii, mean_cov, precision_recall


def balanced_subset(labels: np.ndarray, per_class: int, n_classes: int, seed: int) -> np.ndarray:
    """Indices of `per_class` examples of each class (fewer where a class has fewer), drawn
    without replacement by a seeded generator; unlabelled data (0 classes): `per_class` in all."""
    rng = np.random.default_rng(seed)
    if not n_classes:
        return rng.permutation(len(labels))[:per_class]
    picks = [rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in range(n_classes)]
    return np.concatenate(picks)


@dataclass
class RealSplit:
    """One real split in judge terms, computed once: features and what each distance needs."""

    features: np.ndarray  # [N, F]
    mu: np.ndarray
    cov: np.ndarray
    kernel: KernelDistance
    radii: np.ndarray | None  # [N] k-NN radii of the real manifold (None: too few rows)

    @classmethod
    def of(cls, features: np.ndarray, k: int) -> RealSplit:
        mu, cov = mean_cov(features)
        radii = knn_radii(features, k) if len(features) > k else None
        return cls(features, mu, cov, KernelDistance(features), radii)


class JudgeEvaluation:
    """Scores sets of model tensors against real splits in one judge's feature space: the test
    split (the table) and, where the data has one, the validation split (what is tuned), each
    figure with its 95 % bootstrap interval over seeds and samples."""

    def __init__(self, judge: TrainedJudge, real: dict[str, Tensor], k: int = 3,
                 resamples: int = 200, seed: int = 0):
        self.judge = judge
        self.k = k
        self.resamples, self.seed = resamples, seed
        self.real = {name: RealSplit.of(judge.features(x), k) for name, x in real.items()}
        self.test_features = self.real["test"].features  # [N_test, F]

    def accuracy(self, x: Tensor, labels: np.ndarray) -> float:
        return float((self.judge.predict(x) == np.asarray(labels)).mean())

    def features(self, sets: list[Tensor]) -> list[np.ndarray]:
        return [self.judge.features(x) for x in sets]

    def score(self, sets: list[Tensor], labels: np.ndarray | None,
              feats: list[np.ndarray] | None = None) -> dict[str, Any]:
        """`sets`: one `[n, C, ...]` tensor per sampling seed (labels `[n]`, the same for each;
        `feats` their judge features if already made). Per real split: FD and KID (the
        headline, unbiased: docs/protocol.md) with intervals from a two-stage bootstrap (seeds,
        then samples); on test also accuracy (a bootstrap share) and precision/recall with all
        sets pooled (a k-NN manifold needs the samples; interval over seeds only). The flat
        `fd_mean`/`fd_std` over seeds and pooled figures are kept for older readers."""
        feats = feats if feats is not None else self.features(sets)
        kw = {"resamples": self.resamples, "seed": self.seed}
        test = self.real["test"]
        fds = [frechet_distance(*mean_cov(f), test.mu, test.cov) for f in feats]
        out: dict[str, Any] = {
            "fd_mean": float(np.mean(fds)),
            "fd_std": float(np.std(fds, ddof=1)) if len(fds) > 1 else 0.0,
            "fd_per_seed": fds, "accuracy": None, "precision": None, "recall": None,
            "n_per_set": len(sets[0]), "sets": len(sets)}
        for name, real in self.real.items():
            split = {"fd": fd_interval(feats, real.mu, real.cov, **kw).to_dict(),
                     "kid": kid_interval(feats, real.kernel, **kw).to_dict()}
            if name == "test":
                split.update(self._precision_recall(feats, real))
                if labels is not None:
                    flags = [self.judge.predict(x) == np.asarray(labels) for x in sets]
                    split["accuracy"] = share_interval(flags, **kw).to_dict()
                    out["accuracy"] = split["accuracy"]["value"]
                out["precision"] = (split.get("precision") or {}).get("value")
                out["recall"] = (split.get("recall") or {}).get("value")
            out[name] = split
        return out

    def _precision_recall(self, feats: list[np.ndarray], real: RealSplit) -> dict[str, Any]:
        """Pooled precision/recall, with a bootstrap over seeds (rows are not resampled: a
        repeated row is its own nearest neighbour). Replicates are multisets of seeds, few
        enough to compute each once."""
        if real.radii is None or sum(len(f) for f in feats) <= self.k:
            return {}
        memo: dict[tuple[int, ...], tuple[float, float]] = {}

        def pr(picked: list[np.ndarray]) -> tuple[float, float]:
            key = tuple(sorted(int(p[0]) for p in picked))
            if key not in memo:
                fake = np.concatenate([feats[i] for i in key])
                memo[key] = precision_recall(real.features, fake, self.k, real_radii=real.radii)
            return memo[key]

        seeds = [np.array([i]) for i in range(len(feats))]
        kw = {"resamples": self.resamples, "seed": self.seed, "within": False}
        return {name: bootstrap(lambda s, i=i: pr(s)[i], seeds, **kw).clipped(0.0, 1.0).to_dict()
                for i, name in enumerate(("precision", "recall"))}


def reference_subsets(labels: Tensor, per_class: int, n_classes: int,
                      seeds: list[int]) -> list[Tensor]:
    """One class-balanced index set of real training signals per seed: the floor's sets, the
    size of a prior's."""
    return [torch.from_numpy(balanced_subset(labels.numpy(), per_class, n_classes, s))
            for s in seeds]


def evenly_spaced(n: int, k: int | None) -> Tensor:
    """`min(n, k)` indices spread evenly over `range(n)` (all of them when `k` is None): a
    deterministic subset that covers a split stored in any order."""
    if k is None or k >= n:
        return torch.arange(n)
    return torch.linspace(0, n - 1, k).round().long()


def reference_rows(ev: JudgeEvaluation, real: list[Tensor], recon: list[Tensor],
                   test: tuple[Tensor, Tensor], recon_test: tuple[Tensor, Tensor],
                   n_classes: int) -> dict[str, dict[str, Any]]:
    """The floor in judge terms: sets of real training signals (model tensors) and of their
    tokenizer reconstructions, scored like samples; accuracy on the real test split and on
    reconstructions of (part of) it, `recon_test` (what the tokenizer alone keeps of the class)."""
    rows = {"real data": ev.score(real, None), "tokenizer reconstructions": ev.score(recon, None)}
    if n_classes:
        for name, (x, y) in (("real data", test), ("tokenizer reconstructions", recon_test)):
            flags = ev.judge.predict(x) == y.numpy()
            iv = share_interval([flags], resamples=ev.resamples, seed=ev.seed).to_dict()
            rows[name]["accuracy"] = iv["value"]
            rows[name]["test"]["accuracy"] = iv
    return rows


def signal_summary(per_set: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """A modality's signal metrics of each set -> `{name: {"mean", "std", "lo", "hi"}}` over
    the sets (sample std, 0 for one set; a Student-t 95 % interval of the mean, null bounds for
    one set)."""
    out = {}
    for name in per_set[0]:
        v = np.array([m[name] for m in per_set], np.float64)
        iv = mean_interval(v).to_dict()
        out[name] = {"mean": float(v.mean()),
                     "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
                     "lo": iv["lo"], "hi": iv["hi"]}
    return out
