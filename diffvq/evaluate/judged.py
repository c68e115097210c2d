"""The fixed evaluation protocol in a judge's feature space, the same for every prior.

Judge Fréchet distance (FD) compares a set of generated signals with the real test split; it is
biased upwards for small sets, so every figure here uses sets of the same size: `n` samples per
sampling seed for a prior, and `n` real *training* signals (class-balanced, one subset per seed)
for the floor. The floor rows are what a perfect prior would score (real data) and what a
perfect prior over this tokenizer's codes would score at best (reconstructions of real data).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..judge import TrainedJudge
from ..stats import frechet_distance, mean_cov, precision_recall


def balanced_subset(labels: np.ndarray, per_class: int, n_classes: int, seed: int) -> np.ndarray:
    """Indices of `per_class` examples of each class (fewer where a class has fewer), drawn
    without replacement by a seeded generator; unlabelled data (0 classes): `per_class` in all."""
    rng = np.random.default_rng(seed)
    if not n_classes:
        return rng.permutation(len(labels))[:per_class]
    picks = [rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in range(n_classes)]
    return np.concatenate(picks)


class JudgeEvaluation:
    """Scores sets of model tensors against the real test split in one judge's feature space."""

    def __init__(self, judge: TrainedJudge, test_x: Tensor, test_y: Tensor, k: int = 3):
        self.judge = judge
        self.k = k
        self.test_features = judge.features(test_x)  # [N_test, F]
        self.test_stats = mean_cov(self.test_features)
        self.test_y = test_y.numpy()

    def accuracy(self, x: Tensor, labels: np.ndarray) -> float:
        return float((self.judge.predict(x) == np.asarray(labels)).mean())

    def score(self, sets: list[Tensor], labels: np.ndarray | None) -> dict[str, Any]:
        """`sets`: one `[n, C, ...]` tensor per sampling seed (labels `[n]`, the same for each).
        FD per set (mean and sample std over sets); accuracy averaged over sets; precision and
        recall with all sets pooled (a k-NN manifold needs the samples)."""
        feats = [self.judge.features(x) for x in sets]
        fds = [frechet_distance(*mean_cov(f), *self.test_stats) for f in feats]
        fake = np.concatenate(feats)
        precision = recall = None  # undefined where a set has no k-th neighbour (tiny data)
        if min(len(fake), len(self.test_features)) > self.k:
            precision, recall = precision_recall(self.test_features, fake, self.k)
        acc = None
        if labels is not None:
            acc = float(np.mean([self.accuracy(x, labels) for x in sets]))
        return {"fd_mean": float(np.mean(fds)),
                "fd_std": float(np.std(fds, ddof=1)) if len(fds) > 1 else 0.0,
                "fd_per_seed": fds, "accuracy": acc, "precision": precision, "recall": recall,
                "n_per_set": len(sets[0]), "sets": len(sets)}


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
        rows["real data"]["accuracy"] = ev.accuracy(test[0], test[1].numpy())
        rows["tokenizer reconstructions"]["accuracy"] = ev.accuracy(recon_test[0],
                                                                    recon_test[1].numpy())
    return rows


def signal_summary(per_set: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """A modality's signal metrics of each set -> `{name: {"mean", "std"}}` over the sets
    (sample std; 0 for one set)."""
    out = {}
    for name in per_set[0]:
        v = np.array([m[name] for m in per_set], np.float64)
        out[name] = {"mean": float(v.mean()),
                     "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0}
    return out
