"""The music data sets' validation split: whole chorales and whole MIDI files, never one in two
splits, the same whichever split is loaded first."""

from __future__ import annotations

import numpy as np
import pytest
from music21 import chord, key, stream

from diffvq.interfaces import SPLITS
from diffvq_music.datasets import BachChorales, MidiFolder


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DIFFVQ_CACHE", str(tmp_path_factory.mktemp("music-splits-cache")))
        yield


def test_no_chorale_gives_clips_to_two_splits(cache):
    kw = dict(seconds=1.024, max_chorales=12, seed=0, test_fraction=0.25,
              validation_fraction=0.25)
    d = BachChorales(**kw)
    arrays = {s: d.arrays(s) for s in ("validation", "train", "test")}
    chorales = {s: set(arrays[s]["chorales"].tolist()) for s in SPLITS}
    assert all(chorales.values())
    assert not (chorales["train"] & chorales["validation"] or chorales["train"] & chorales["test"]
                or chorales["validation"] & chorales["test"])
    assert len(chorales["validation"]) == round(0.25 * (len(chorales["train"])
                                                        + len(chorales["validation"])))
    extra = d.info().extra
    assert {s: set(extra["split_chorales"][s]) for s in SPLITS} == chorales
    assert extra["counts"] == {s: len(arrays[s]["labels"]) for s in SPLITS}
    # another order, another instance: the same clips; the test split and the rendering do not
    # depend on validation_fraction (the cache entry is shared)
    again = BachChorales(**kw)
    for s in reversed(SPLITS):
        assert np.array_equal(again.load(s)[0].numpy(), arrays[s]["signals"])
    other = BachChorales(**{**kw, "validation_fraction": 0.5})
    assert other.cache_path() == d.cache_path()
    assert np.array_equal(other.arrays("test")["chorales"], arrays["test"]["chorales"])
    assert len(set(other.arrays("validation")["chorales"].tolist())) > len(chorales["validation"])


def _write_midi(path, root: int, major: bool) -> None:
    s = stream.Stream([key.Key("C" if major else "a")])
    third = 4 if major else 3
    for i in range(8):
        c = chord.Chord([48 + root + i % 3, 48 + root + third + i % 3, 55 + root + i % 3])
        c.quarterLength = 2
        s.append(c)
    s.write("midi", fp=str(path))


def test_midi_folder_splits_by_file(tmp_path):
    """Eight 8-second files per class, each cut into clips: all clips of a file are in one
    split (`sources` names each clip's file)."""
    for c, name in enumerate(("major", "minor")):
        (tmp_path / name).mkdir()
        for i in range(8):
            _write_midi(tmp_path / name / f"{i}.mid", root=i, major=c == 0)
    kw = dict(path=str(tmp_path), seconds=1.024, test_fraction=0.25, validation_fraction=0.2)
    d = MidiFolder(**kw)
    loaded = {s: d.load(s) for s in ("test", "train", "validation")}
    files = {s: set(d.sources(s)) for s in SPLITS}
    assert all(len(d.sources(s)) == len(loaded[s][0]) for s in SPLITS)
    assert {s: len(files[s]) for s in SPLITS} == {"train": 10, "validation": 2, "test": 4}
    assert not (files["train"] & files["validation"] or files["train"] & files["test"]
                or files["validation"] & files["test"])  # per class: 5, 1 and 2 files
    for s in SPLITS:  # a file's class is its folder's
        assert [f.parent.name for f in d.sources(s)] == \
            [("major", "minor")[y] for y in loaded[s][1].tolist()]
    again = MidiFolder(**kw)
    for s in reversed(SPLITS):
        assert np.array_equal(again.load(s)[0].numpy(), loaded[s][0].numpy())
