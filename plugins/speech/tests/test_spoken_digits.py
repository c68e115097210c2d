"""The spoken-digits data set: eSpeak NG words, held-out voices, a reproducible on-disk cache."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from diffvq.errors import UserError
from diffvq_speech import espeak
from diffvq_speech.datasets import WORDS, SpokenDigits

SMALL = dict(accents=("en-us", "en-gb-scotland"), variants=("m1", "f2", "klatt"),
             n_test_voices=2, per_voice=1)  # 6 voices: 30 train, 10 validation, 20 test clips


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """Every test here uses its own cache folder, never the user's."""
    with pytest.MonkeyPatch.context() as mp:
        path = tmp_path_factory.mktemp("speech-cache")
        mp.setenv("DIFFVQ_CACHE", str(path))
        yield path


@pytest.fixture(scope="module")
def small(cache):
    d = SpokenDigits(**SMALL)
    return d, {split: d.arrays(split) for split in ("train", "validation", "test")}


def test_shapes_labels_and_sample_rate(small):
    d, arrays = small
    info = d.info()
    assert info.modality == "audio" and info.shape == (12288,) and info.sample_rate == 16000
    assert info.class_names == WORDS == ("zero", "one", "two", "three", "four", "five", "six",
                                         "seven", "eight", "nine")
    for split, n in (("train", 30), ("validation", 10), ("test", 20)):
        x, y = d.load(split)
        assert x.dtype == torch.float32 and x.shape == (n, 12288)
        assert y.dtype == torch.long and torch.bincount(y, minlength=10).tolist() == [n // 10] * 10


def test_every_clip_holds_a_centred_audible_word(small):
    _, arrays = small
    x = np.concatenate([a["signals"] for a in arrays.values()])
    T = x.shape[1]
    peaks = np.abs(x).max(axis=1)
    assert peaks.max() < 1 and peaks.min() > 0.05  # never clipped, never near-silent
    centre = x[:, T // 2 - 1000:T // 2 + 1000]
    assert np.sqrt((centre ** 2).mean(axis=1)).min() > 0.002  # energy where the word is
    for clip in x:
        loud = np.flatnonzero(np.abs(clip) > 1e-4)
        assert np.sqrt((clip[loud[0]:loud[-1] + 1] ** 2).mean()) > 0.005
    assert np.abs(x[:, :500]).max() == 0 and np.abs(x[:, -500:]).max() == 0  # silence around it
    for clip in x:  # centred: about as much silence before the word as after
        loud = np.flatnonzero(np.abs(clip) > 1e-4)
        assert abs(loud[0] - (T - 1 - loud[-1])) < 0.05 * T


def test_test_voices_are_never_heard_in_training(small):
    d, arrays = small
    train, val, test = (set(arrays[s]["voices"].tolist()) for s in ("train", "validation", "test"))
    assert not train & test and len(test) == 2 and len(train | val | test) == 6
    assert [d.voice_names[i] for i in sorted(test)] == d.info().extra["test_voices"]
    assert [d.voice_names[i] for i in sorted(train)] == d.info().extra["train_voices"]
    for split in arrays:  # every voice of a split says every word per_voice times
        voices, labels = arrays[split]["voices"], arrays[split]["labels"]
        pairs = set(zip(voices.tolist(), labels.tolist()))
        assert len(pairs) == len(labels) == 10 * len(set(voices.tolist()))
    # the split depends on the seed only, and another seed holds out other voices
    assert SpokenDigits(**SMALL).voices("test") == d.voices("test")
    assert any(SpokenDigits(**SMALL, seed=s).voices("test") != d.voices("test") for s in (1, 2, 3))


def test_same_seed_gives_identical_arrays_and_another_seed_differs(small):
    d, arrays = small
    again = SpokenDigits(**SMALL).generate()  # fresh synthesis, no cache
    for split in arrays:
        for key, a in arrays[split].items():
            assert np.array_equal(again[split][key], a) and again[split][key].dtype == a.dtype
    other = SpokenDigits(**SMALL, seed=5).generate()
    assert not np.array_equal(other["train"]["signals"][:10], arrays["train"]["signals"][:10])


def test_unknown_names_and_bad_lengths_are_refused():
    with pytest.raises(ValueError, match="unknown eSpeak NG voice variant 'm9'.*installed: .*m8"):
        SpokenDigits(variants=("m1", "m9"))
    with pytest.raises(ValueError, match="unknown eSpeak NG accent 'en-uk'"):
        SpokenDigits(accents=("en-uk",))
    with pytest.raises(ValueError, match="multiple of 2048 samples.*seconds=0.768"):
        SpokenDigits(seconds=0.8)
    with pytest.raises(ValueError, match="n_test_voices=6 must leave"):
        SpokenDigits(**{**SMALL, "n_test_voices": 6})
    assert SpokenDigits(seconds=0.768, sample_rate=8000).n_samples == 6144
    assert {"en-us", "en-gb", "en-gb-scotland"} <= set(espeak.english_accents())
    assert {"m1", "m8", "f5", "klatt4"} <= set(espeak.variants())


def test_a_long_word_is_spoken_faster_never_cut(cache):
    d = SpokenDigits(accents=("en-us",), variants=("m1", "f2"), n_test_voices=1, per_voice=1,
                     seconds=0.256, validation_fraction=0.0)  # 4096 samples: shorter than most words at 140-220 wpm
    a = d.arrays("train")
    assert a["rates"].max() > 220  # sped up beyond the drawn range
    assert np.abs(a["signals"][:, :5]).max() == 0 and np.abs(a["signals"][:, -5:]).max() == 0


def test_cache_is_reused_and_a_damaged_entry_regenerated(small, monkeypatch):
    d, arrays = small
    entry = d.cache_path()
    assert entry.parent == espeak_cache_root() and entry.name.startswith("spoken-digits-")
    calls = []
    generate = SpokenDigits.generate
    monkeypatch.setattr(SpokenDigits, "generate", lambda self: calls.append(1) or generate(self))
    x, _ = SpokenDigits(**SMALL).load("train")
    assert calls == [] and np.array_equal(x.numpy(), arrays["train"]["signals"])
    path = entry / "train.signals.npy"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte: still a valid .npy, wrong samples
    path.write_bytes(bytes(data))
    x, _ = SpokenDigits(**SMALL).load("train")
    assert calls == [1] and np.array_equal(x.numpy(), arrays["train"]["signals"])
    (entry / "test.labels.npy").write_bytes(b"\x93NUMPY")  # truncated
    assert np.array_equal(SpokenDigits(**SMALL).load("test")[1].numpy(), arrays["test"]["labels"])
    assert calls == [1, 1]
    SpokenDigits(**SMALL).load("test")
    assert calls == [1, 1]


def espeak_cache_root():
    from diffvq.judge import cache_root

    return cache_root() / "datasets"


def test_fingerprint_names_the_espeak_version():
    fp = SpokenDigits(**SMALL).fingerprint()
    assert fp.startswith("espeak-ng 1.") and "espeakng-loader" in fp


def test_missing_espeakng_loader_is_a_one_line_user_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "espeakng_loader", None)  # import fails
    espeak.data_path.cache_clear()
    try:
        with pytest.raises(UserError, match="pip install espeakng-loader") as exc:
            espeak.data_path()
        assert "\n" not in str(exc.value)
    finally:
        espeak.data_path.cache_clear()


def test_plugin_registers_spoken_digits():
    from diffvq.plugins import load_plugins

    entry = load_plugins().registry.entries["dataset"]["spoken-digits"]
    assert entry.plugin == "speech" and entry.cls is SpokenDigits
    assert SpokenDigits.modality == "audio"
