"""Train / validation / test of the image data sets: three disjoint splits, validation carved
from the train data (stratified by class), the same whatever the order of loading."""

from __future__ import annotations

import gzip
import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from diffvq.interfaces import SPLITS
from diffvq_image.datasets import Digits, FashionMnist, ImageFolder, Mnist, split_per_class


def assert_partition(parts: dict[str, np.ndarray], n: int) -> None:
    """The three index sets are disjoint and together every example."""
    assert sorted(parts) == sorted(SPLITS)
    joined = np.concatenate([parts[s] for s in SPLITS])
    assert len(joined) == len(set(joined.tolist())) == n


def load_all(make, order) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    d = make()
    return {s: d.load(s) for s in order}


@pytest.mark.parametrize("cls, test_fraction", [(Mnist, 0.1), (Digits, 0.1)])
def test_builtin_sets_have_a_stratified_validation_split(cls, test_fraction):
    order = load_all(cls, ("test", "validation", "train"))  # any order: the same splits
    again = load_all(cls, ("validation", "train", "test"))
    for s in SPLITS:
        assert torch.equal(order[s][0], again[s][0]) and torch.equal(order[s][1], again[s][1])
    labels = torch.cat([order[s][1] for s in SPLITS]).numpy()
    parts = split_per_class(labels, test_fraction)
    assert_partition(parts, len(labels))
    _, y_train = order["train"]
    _, y_val = order["validation"]
    # about 10 % of the train data per class went to validation, every class is in each split
    for c in range(10):
        pool = int((y_train == c).sum() + (y_val == c).sum())
        assert int((y_val == c).sum()) == round(0.1 * pool)


def test_digits_splits_are_pinned():
    """The split is a function of the labels and the seed alone: pinned, so that another
    machine (or NumPy) that drew differently would fail here, not silently change runs."""
    from sklearn.datasets import load_digits

    parts = split_per_class(load_digits().target, 0.1)
    sizes = {s: len(parts[s]) for s in SPLITS}
    assert sizes == {"train": 1458, "validation": 160, "test": 179}
    digest = hashlib.sha256(parts["validation"].astype("<i8").tobytes()).hexdigest()[:16]
    assert digest == PINNED_DIGITS_VALIDATION


PINNED_DIGITS_VALIDATION = "e5492bfc820a4e77"  # NumPy PCG64, seed [0, VALIDATION_STREAM]


def test_validation_fraction_is_an_option_and_test_is_unchanged():
    base, more = Digits(), Digits(validation_fraction=0.3)
    assert torch.equal(base.load("test")[0], more.load("test")[0])  # test: as it always was
    assert len(more.load("validation")[0]) > 2.5 * len(base.load("validation")[0])
    with pytest.raises(ValueError, match="split must be one of train, validation, test"):
        base.load("valid")


def write_idx(path: Path, arr: np.ndarray) -> None:
    header = struct.pack(">HBB", 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def test_fashion_mnist_validation_comes_from_the_kept_train_images(tmp_path):
    for split, n in (("train", 100), ("test", 20)):
        img, lab = FashionMnist.FILES[split]
        # image i of a file holds the number i in its first pixels: its identity
        pixels = np.zeros((n, 28, 28), np.uint8)
        pixels[:, 0, 0], pixels[:, 0, 1] = np.arange(n) % 256, 1 if split == "test" else 0
        write_idx(tmp_path / img, pixels)
        write_idx(tmp_path / lab, np.arange(n) % 10)
    d = FashionMnist(root=str(tmp_path), train_limit=60)
    ids = {s: (d.load(s)[0][:, 0, 0, 0] * 255).round().long().tolist() for s in SPLITS}
    assert len(ids["validation"]) == 10 and len(ids["train"]) == 50  # 1 per class of 6
    assert sorted(ids["train"] + ids["validation"]) == list(range(60))  # within the limit
    assert len(ids["test"]) == 20
    assert FashionMnist(root=str(tmp_path), train_limit=60).load("validation")[0].equal(
        d.load("validation")[0])


def test_folder_never_puts_a_file_in_two_splits(tmp_path):
    """40 files in two classes, each image a different grey level: which split holds a level
    is which split holds the file."""
    for c, name in enumerate(("a", "b")):
        (tmp_path / name).mkdir()
        for i in range(20):
            Image.new("L", (4, 4), 6 * (c * 20 + i) + 5).save(tmp_path / name / f"{i}.png")
    d = ImageFolder(path=str(tmp_path), channels=1, test_fraction=0.2, validation_fraction=0.25)
    levels = {s: set((d.load(s)[0][:, 0, 0, 0] * 255).round().long().tolist()) for s in SPLITS}
    assert sum(map(len, levels.values())) == 40 and len(set().union(*levels.values())) == 40
    again = ImageFolder(path=str(tmp_path), channels=1, test_fraction=0.2,
                        validation_fraction=0.25)
    per_class = {s: np.bincount(again.load(s)[1].numpy()).tolist()
                 for s in ("validation", "test", "train")}  # another order, the same split
    assert per_class == {"test": [4, 4], "validation": [4, 4], "train": [12, 12]}
    assert torch.equal(again.load("validation")[0], d.load("validation")[0])
    other = ImageFolder(path=str(tmp_path), channels=1, test_fraction=0.2,
                        validation_fraction=0.25, split_seed=1)
    assert set((other.load("validation")[0][:, 0, 0, 0] * 255).round().long().tolist()) \
        != levels["validation"]
