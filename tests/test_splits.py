"""Train / validation / test (diffvq.splits): validation carved from the train data, by group,
stratified, seeded, the same whatever the order of the units; every registered data set has it
and the token cache holds it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from diffvq import splits, tokencache
from diffvq.interfaces import SPLITS


def disjoint(*sets: np.ndarray) -> bool:
    joined = np.concatenate(sets)
    return len(np.unique(joined)) == len(joined)


def test_the_three_splits_are_the_contract_and_the_cache_holds_them():
    assert SPLITS == ("train", "validation", "test") == tokencache.SPLITS
    with pytest.raises(ValueError, match="split must be one of train, validation, test"):
        splits.check_split("val", "mnist")


def test_held_out_count_keeps_one_on_each_side():
    assert [splits.held_out_count(n, 0.1) for n in (0, 1, 2, 3, 10, 25, 4500)] == \
        [0, 0, 1, 1, 1, 2, 450]
    assert splits.held_out_count(10, 0.0) == 0 and splits.held_out_count(3, 0.99) == 2


def test_per_class_partitions_and_keeps_the_test_split():
    labels = np.repeat(np.arange(4), [100, 40, 7, 2])
    parts = splits.per_class(labels, 0.2, 0.1, seed=5)
    assert disjoint(*parts.values()) and sum(map(len, parts.values())) == len(labels)
    assert np.bincount(labels[parts["validation"]], minlength=4).tolist() == [8, 3, 1, 0]
    # the test split does not depend on the validation fraction
    assert np.array_equal(splits.per_class(labels, 0.2, 0.3, seed=5)["test"], parts["test"])
    assert all(np.array_equal(splits.per_class(labels, 0.2, 0.1, seed=5)[s], parts[s])
               for s in SPLITS)
    assert not np.array_equal(splits.per_class(labels, 0.2, 0.1, seed=6)["validation"],
                              parts["validation"])


def test_groups_stay_whole_and_the_draw_ignores_the_order_of_units():
    rng = np.random.default_rng(0)
    groups = rng.integers(0, 30, 500)  # 30 groups of about 17 examples, in no order
    labels = groups % 3  # each group has one class
    train = np.arange(500)
    parts = splits.carve_validation(train, 0.2, 7, groups=groups, labels=labels)
    g_train, g_val = set(groups[parts["train"]]), set(groups[parts["validation"]])
    assert not g_train & g_val and len(g_val) == 6  # 2 of the 10 groups of each class
    assert np.bincount(np.array(sorted(g_val)) % 3).tolist() == [2, 2, 2]
    # the same units listed in another order give the same validation units
    units = np.unique(groups)
    shuffled = rng.permutation(units)
    assert np.array_equal(splits.validation_units(units, 0.2, 7, units % 3),
                          splits.validation_units(shuffled, 0.2, 7, shuffled % 3))
    assert np.array_equal(np.array(sorted(g_val)), splits.validation_units(units, 0.2, 7,
                                                                           units % 3))


def test_the_draw_is_pinned():
    """NumPy's PCG64 from [seed, VALIDATION_STREAM]: the same on every machine and process."""
    assert splits.validation_units(np.arange(100), 0.1, 0).tolist() == PINNED


PINNED = [26, 29, 38, 39, 52, 53, 66, 82, 85, 87]

# Where each registered data set's split tests live (disjoint, deterministic, by group).
SPLIT_TESTS = {
    "mnist": "plugins/image/tests/test_image_splits.py",
    "digits": "plugins/image/tests/test_image_splits.py",
    "fashion-mnist": "plugins/image/tests/test_image_splits.py",
    "folder": "plugins/image/tests/test_image_splits.py",
    "audio-folder": "plugins/audio/tests/test_audio_splits.py",
    "spoken-digits": "plugins/speech/tests/test_speech_splits.py",
    "bach-chorales": "plugins/music/tests/test_music_splits.py",
    "midi-folder": "plugins/music/tests/test_music_splits.py",
}


def test_every_registered_data_set_offers_a_validation_split(plugins):
    """A data set added without a validation split (and a test of it) fails here."""
    import inspect

    root = Path(__file__).resolve().parent.parent
    for entry in plugins.registry.entries["dataset"].values():
        assert entry.name in SPLIT_TESTS, f"{entry.name}: no validation split test listed"
        assert (root / SPLIT_TESTS[entry.name]).is_file()
        assert "validation_fraction" in inspect.signature(entry.cls.__init__).parameters, \
            f"{entry.name}: no validation_fraction option"


def test_digits_load_every_split(plugins):
    d = plugins.registry.entries["dataset"]["digits"].cls()
    sizes = {s: len(d.load(s)[0]) for s in SPLITS}
    assert sizes == {"train": 1458, "validation": 160, "test": 179}  # 1,797 in all
