"""A study's cells: one training run each, named by what it varies."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..recipe.study import Study
from ..stages import derived_seed


@dataclass(frozen=True)
class Cell:
    prior: str  # prior key
    fraction: float  # share of the training split
    size: str  # model-size name
    budget: float  # FLOPs or epochs (the study's unit)
    seed: int  # training seed index, 0..seeds-1

    @property
    def id(self) -> str:
        return f"study-{self.prior}-f{self.fraction:g}-{self.size}-b{self.budget:g}-s{self.seed}"

    @property
    def path(self) -> Path:
        """Relative to the run directory."""
        return (Path("study") / self.prior / f"fraction-{self.fraction:g}" / self.size
                / f"budget-{self.budget:g}" / f"seed-{self.seed}")


def cells(study: Study) -> list[Cell]:
    """Every cell, priors outermost so that a study's first map has every prior early."""
    s = study.section
    return [Cell(k, f, size, b, seed) for seed in range(s.seeds) for f in s.data_fractions
            for b in study.budgets for k in study.priors for size in s.model_sizes]


def subset(n: int, fraction: float, run_seed: int) -> np.ndarray:
    """Indices of the unique training sequences a fraction trains on: a prefix of one fixed
    permutation, so every smaller fraction is part of every larger one and all priors and
    seeds of a fraction see the same data."""
    keep = max(1, math.ceil(fraction * n))
    perm = np.random.default_rng(derived_seed(run_seed, "study-subset")).permutation(n)
    return np.sort(perm[:keep])


def steps_for(budget: float, unit: str, flops_per_step: float, batch_size: int,
              unique: int) -> int:
    """Optimizer steps a budget buys: FLOPs over FLOPs per step, or epochs over the unique
    sequences at this batch size; at least one."""
    if unit == "flops":
        return max(1, round(budget / flops_per_step))
    return max(1, round(budget * unique / batch_size))


def evaluation_steps(steps: int, points: int) -> list[int]:
    """`points` steps spaced geometrically from steps / 2^(points - 1) (at least 1) to `steps`
    (duplicates removed), so early training, where the loss moves fastest, is seen."""
    first = max(1.0, steps / 2 ** (points - 1))
    grid = np.geomspace(first, steps, points) if steps > 1 else np.array([1.0])
    return sorted({max(1, min(steps, round(float(g)))) for g in grid})
