"""spoken-digits' validation split: its own voices, heard in neither train nor test, the same
on every machine and whichever split is loaded first."""

from __future__ import annotations

import numpy as np
import pytest

from diffvq.interfaces import SPLITS
from diffvq_speech.datasets import SpokenDigits

SMALL = dict(accents=("en-us", "en-gb"), variants=("m1", "f2", "klatt", "m3"), n_test_voices=2,
             per_voice=1)  # 8 voices: 2 test, 1 validation (10 % of 6, at least one), 5 train


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DIFFVQ_CACHE", str(tmp_path_factory.mktemp("speech-splits-cache")))
        yield


def test_default_voices_of_each_split_are_disjoint_and_pinned():
    d = SpokenDigits()
    voices = {s: set(d.voices(s)) for s in SPLITS}
    assert {s: len(v) for s, v in voices.items()} == {"train": 104, "validation": 12, "test": 20}
    assert len(set().union(*voices.values())) == 136
    # a function of the voice list and the seed alone (NumPy PCG64): pinned
    assert d.voices("validation")[:4] == ("en-us+m1", "en-gb+klatt2", "en-gb-x-rp+m6",
                                          "en-gb-x-rp+f4")
    assert SpokenDigits().voices("validation") == d.voices("validation")
    assert SpokenDigits(validation_fraction=0.2).voices("test") == d.voices("test")  # unchanged


def test_no_voice_speaks_in_two_splits_whatever_the_loading_order(cache):
    d = SpokenDigits(**SMALL)
    first = {s: d.arrays(s) for s in ("validation", "test", "train")}  # generated on first use
    voices = {s: set(first[s]["voices"].tolist()) for s in SPLITS}
    assert [len(voices[s]) for s in SPLITS] == [5, 1, 2]
    assert not (voices["train"] & voices["validation"] or voices["train"] & voices["test"]
                or voices["validation"] & voices["test"])
    assert [d.voice_names[i] for i in sorted(voices["validation"])] == \
        d.info().extra["validation_voices"]
    fresh = SpokenDigits(**SMALL).generate()  # no cache, every split at once
    for s in SPLITS:
        assert np.array_equal(fresh[s]["signals"], first[s]["signals"])
        assert np.array_equal(fresh[s]["voices"], first[s]["voices"])


def test_validation_needs_a_voice_of_its_own():
    with pytest.raises(ValueError, match="n_test_voices=7 must leave at least 2 of the 8 voices"
                                         r".* for training and validation"):
        SpokenDigits(**{**SMALL, "n_test_voices": 7})
    d = SpokenDigits(**{**SMALL, "n_test_voices": 7, "validation_fraction": 0.0})
    assert len(d.voices("train")) == 1 and d.voices("validation") == ()
