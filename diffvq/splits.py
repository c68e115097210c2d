"""Train / validation / test: how data sets carve their splits, the same way on every machine.

Each data set keeps its own test split (held-out voices, chorales, files, or a stratified share
of examples). The validation split is carved from what was the train split, by the same unit:
whole groups where a data set has groups (a voice, a chorale, a source file), single examples
otherwise, stratified by class where there are classes. Train is the rest. Anything tuned (a
checkpoint, a sampling setting) is chosen on validation, so that the test split is read once.

The draws use NumPy's PCG64 seeded with `[seed, stream]` over units in sorted order: the same
split on any machine, whatever the number of processes, and whichever split is loaded first.
"""

from __future__ import annotations

import numpy as np

from .interfaces import SPLITS, Split

__all__ = ["SPLITS", "Split", "VALIDATION_FRACTION", "check_split", "held_out_count",
           "per_class", "validation_units", "carve_validation"]

VALIDATION_FRACTION = 0.1  # of the train units (examples or groups): 10 %, as for the test split
VALIDATION_STREAM = 0x56414C  # "VAL": the validation draw's own random stream, apart from test's


def check_split(split: str, dataset: str) -> None:
    """ValueError for a split name no data set has (a programming error, not a user's)."""
    if split not in SPLITS:
        raise ValueError(f"{dataset}: split must be one of {', '.join(SPLITS)}, not {split!r}")


def held_out_count(n: int, fraction: float) -> int:
    """How many of `n` units a `fraction` holds out: round(fraction * n), at least one when
    there are two or more and fraction > 0, never all of them."""
    if n < 2 or fraction <= 0:
        return 0
    return min(max(int(round(fraction * n)), 1), n - 1)


def validation_units(units: np.ndarray, fraction: float, seed: int,
                     strata: np.ndarray | None = None) -> np.ndarray:
    """The units (distinct ids: group ids or example indices) drawn for validation, sorted.
    With `strata` (one class per unit), each stratum gives `held_out_count` of its units."""
    units = np.asarray(units)
    order = np.argsort(units, kind="stable")  # the draw sees units in sorted order only
    units = units[order]
    strata = np.zeros(len(units), np.int64) if strata is None else np.asarray(strata)[order]
    rng = np.random.default_rng([seed, VALIDATION_STREAM])
    chosen = [units[:0]]
    for s in np.unique(strata):
        members = units[strata == s]
        k = held_out_count(len(members), fraction)
        chosen.append(members[rng.permutation(len(members))[:k]])
    return np.sort(np.concatenate(chosen))


def carve_validation(train: np.ndarray, fraction: float, seed: int, *,
                     groups: np.ndarray | None = None, labels: np.ndarray | None = None
                     ) -> dict[str, np.ndarray]:
    """Example indices `train` (the train split before validation) -> {"train", "validation"},
    both sorted. `groups[i]`: example i's group (None: each example its own), so that a group
    lies in one split; `labels[i]`: its class, to stratify by (a group counts with the class of
    its first example)."""
    train = np.sort(np.asarray(train, np.int64))
    keys = train if groups is None else np.asarray(groups)[train]
    units, first = np.unique(keys, return_index=True)
    strata = None if labels is None else np.asarray(labels)[train][first]
    held = np.isin(keys, validation_units(units, fraction, seed, strata))
    return {"train": train[~held], "validation": train[held]}


def per_class(labels: np.ndarray, test_fraction: float,
              validation_fraction: float = VALIDATION_FRACTION, seed: int = 0
              ) -> dict[str, np.ndarray]:
    """Indices of a stratified train/validation/test split of single examples, reproducible
    from `seed`: each class gives `held_out_count(n, test_fraction)` examples to test, then
    `held_out_count` of the rest to validation; the test split is the one diffvq has always
    drawn with this seed."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    train, test = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        k = held_out_count(len(idx), test_fraction)
        test.append(idx[:k])
        train.append(idx[k:])
    out = carve_validation(np.concatenate(train), validation_fraction, seed, labels=labels)
    out["test"] = np.sort(np.concatenate(test))
    return out
