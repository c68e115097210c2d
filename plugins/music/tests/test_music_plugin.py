"""diffvq-music: the synthesizer, the tonality measure, score handling and both data sets."""

from __future__ import annotations

import numpy as np
import pytest

from diffvq_music import chorales as ch
from diffvq_music.datasets import BachChorales, MidiFolder
from diffvq_music.synth import HEADROOM, render_notes
from diffvq_music.tonality import tonality

SR = 16000


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFVQ_CACHE", str(tmp_path / "cache"))


def _triads(chords, beat=0.5):
    return render_notes([(i * beat, beat, p, v) for i, c in enumerate(chords)
                         for v, p in enumerate(c)], SR)


def _score(pitches, key_name):
    from music21 import key, note, stream

    s = stream.Score()
    for v in range(len(pitches[0])):
        part = stream.Part()
        part.append(key.Key(key_name))
        for chord_pitches in pitches:
            part.append(note.Note(chord_pitches[v], quarterLength=1))
        s.insert(0, part)
    return s


C, F, G = [60, 64, 67], [65, 69, 72], [67, 71, 74]
AM, DM, E = [57, 60, 64], [62, 65, 69], [64, 68, 71]


def test_a4_renders_at_440_hz_deterministically():
    for voice in range(4):
        w = render_notes([(0.0, 1.0, 69, voice)], SR)
        assert w.dtype == np.float32 and np.isclose(np.abs(w).max(), HEADROOM)
        spectrum = np.abs(np.fft.rfft(w * np.hanning(len(w)), n=8 * len(w)))
        peak = np.argmax(spectrum) * SR / (8 * len(w))
        assert abs(peak - 440.0) / 440.0 < 0.01, (voice, peak)
    assert np.array_equal(render_notes([(0, 0.3, 60, 0), (0.1, 0.5, 64, 1)], SR),
                          render_notes([(0.1, 0.5, 64, 1), (0, 0.3, 60, 0)], SR))
    # voices differ in timbre, not just in level
    a, b = (np.abs(np.fft.rfft(render_notes([(0, 1, 57, v)], SR))) for v in (0, 1))
    assert not np.allclose(a / a.max(), b / b.max(), atol=0.05)


def test_clip_cutting_count_length_and_silence():
    wave = np.zeros(5 * 2048 + 100, np.float32)
    wave[:3 * 2048] = 0.1  # three loud clips, two silent, a short tail
    clips = ch.cut_clips(wave, 2048, 1e-3)
    assert clips.shape == (3, 2048)
    assert ch.cut_clips(np.full(4 * 4096, 0.2, np.float32), 4096, 1e-3).shape == (4, 4096)
    assert BachChorales(seconds=0.5).n_samples == 8192  # rounded to a multiple of 2048


def test_mode_labels_of_known_scores():
    major = _score([C, F, G, C, F, G, C, C], "C")
    minor = _score([AM, DM, E, AM, DM, E, AM, AM], "a")
    assert ch.mode_of(major) == "major"
    assert ch.mode_of(minor) == "minor"
    notes = ch.notes_of(major)
    assert len(notes) == 24 and {n[3] for n in notes} == {0, 1, 2}
    assert notes[0][:2] == (0.0, 0.5)  # 120 bpm: a quarter note is 0.5 s


def test_tonality_major_minor_and_noise():
    score, key, mode = tonality(_triads([C, F, G, C] * 3), SR)
    assert (key, mode) == ("C", "major") and score > 0.8
    score_m, key_m, mode_m = tonality(_triads([AM] * 12), SR)
    assert (key_m, mode_m) == ("A", "minor") and score_m > 0.8
    noise = np.random.default_rng(0).standard_normal(4 * SR)
    assert tonality(noise, SR)[0] < 0.6


def test_bach_chorales_small_split_cache_and_skips(monkeypatch, capsys):
    from music21.repeat import ExpanderException

    real = ch.load_chorale

    def flaky(n):
        if n == 2:
            raise ExpanderException("broken repeat")
        return real(n)

    monkeypatch.setattr(ch, "load_chorale", flaky)
    d = BachChorales(seconds=1.024, max_chorales=6, seed=1)
    x, y = d.load("train")
    xt, yt = d.load("test")
    assert x.shape[1] == xt.shape[1] == 16384 and len(x) and len(xt)
    assert set(y.tolist()) | set(yt.tolist()) <= {0, 1}
    info = d.info()
    assert info.extra["skipped"] == {"ExpanderException": 1} and info.extra["used"] == 5
    assert "skipped 1 (1 ExpanderException)" in capsys.readouterr().err
    train_c, test_c = set(d.arrays("train")["chorales"]), set(d.arrays("test")["chorales"])
    assert train_c and test_c and not train_c & test_c and 2 not in train_c | test_c
    # cached: a second instance reads the same bytes without parsing anything
    monkeypatch.setattr(ch, "load_chorale", lambda n: pytest.fail("re-rendered"))
    x2, _ = BachChorales(seconds=1.024, max_chorales=6, seed=1).load("train")
    assert np.array_equal(x.numpy(), x2.numpy())


def test_midi_folder_reads_a_music21_midi_file(tmp_path):
    for name, (chords, k) in {"major": ([C, F, G, C] * 2, "C"),
                              "minor": ([AM, DM, E, AM] * 2, "a")}.items():
        (tmp_path / "midi" / name).mkdir(parents=True)
        _score(chords, k).write("midi", fp=str(tmp_path / "midi" / name / "a.mid"))
    (tmp_path / "midi" / "minor" / "bad.mid").write_bytes(b"not midi")
    d = MidiFolder(path=str(tmp_path / "midi"), seconds=1.024, on_error="skip",
                   test_fraction=0)
    assert d.info().class_names == ("major", "minor")
    x, y = d.load("train")
    assert x.shape == (6, 16384) and y.tolist() == [0, 0, 0, 1, 1, 1]  # 4 s: 3 clips each
    assert sum(d.skipped.values()) == 1
    _, key, mode = tonality(x[:3].reshape(-1).numpy(), SR)
    assert (key, mode) == ("C", "major")
    from diffvq.errors import UserError

    with pytest.raises(UserError):
        MidiFolder(path=str(tmp_path / "midi"), seconds=1.024).load("train")
