"""diffvq-music: the synthesizer, the tonality measure, score handling and both data sets."""

from __future__ import annotations

import numpy as np
import pytest

from diffvq_music import chorales as ch
from diffvq_music import fluid
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


def test_midi_folder_reads_names_that_are_not_utf8(tmp_path, capsys):
    """music21 fails on a file name that is not UTF-8; the file is read anyway, and errors
    show the name with the byte escaped."""
    import os

    from diffvq.errors import UserError

    root = os.fsencode(tmp_path)
    _score([C, F, G, C] * 2, "C").write("midi", fp=str(tmp_path / "good.mid"))
    good = (tmp_path / "good.mid").read_bytes()
    for cls in (b"major", b"cl\xffass"):
        os.mkdir(root + b"/" + cls)
        with open(root + b"/" + cls + b"/caf\xe9.mid", "wb") as f:
            f.write(good)
    (tmp_path / "good.mid").unlink()
    d = MidiFolder(path=str(tmp_path), seconds=1.024, test_fraction=0)
    assert d.info().class_names == ("cl\\xffass", "major") and len(d.fingerprint()) == 16
    x, y = d.load("train")
    assert x.shape == (6, 16384) and y.tolist() == [0, 0, 0, 1, 1, 1]
    with open(root + b"/major/empty\xe9.mid", "wb"):
        pass
    with pytest.raises(UserError, match=r"major/empty\\xe9\.mid: empty file \(0 bytes\); fix or "
                                        r"remove the file, or set data\.on_error=skip"):
        MidiFolder(path=str(tmp_path), seconds=1.024).load("train")
    MidiFolder(path=str(tmp_path), seconds=1.024, on_error="skip").load("train")
    assert "skipped 1 of 3 files" in capsys.readouterr().err


def test_spectral_flatness_tells_tones_from_noise_and_silence():
    from diffvq_music.tonality import spectral_flatness

    noise = np.random.default_rng(0).standard_normal(32768) * 0.1
    assert 0.5 < spectral_flatness(noise) < 0.6
    assert spectral_flatness(_triads([C, F, G, C])) < 0.01
    assert spectral_flatness(np.zeros(32768)) == 1.0


def _music(class_names=("major", "minor")):
    from diffvq.interfaces import DataInfo
    from diffvq_music.modality import MusicModality

    return MusicModality(DataInfo("music", (32768,), class_names, sample_rate=SR), n_mels=128)


def test_music_signal_metrics_score_music_above_noise_and_check_the_mode():
    import torch

    from diffvq.interfaces import HasSignalMetrics

    m = _music()
    assert isinstance(m, HasSignalMetrics) and set(m.signal_metric_notes) == {
        "tonality", "mode match", "flatness"}
    major = torch.from_numpy(np.stack([_triads([C, F, G, C] * 4)[:32768]] * 2))
    asked_major = m.signal_metrics(major, torch.tensor([0, 0]))
    assert asked_major["tonality"] > 0.8 and asked_major["mode match"] == 1.0
    assert asked_major["flatness"] < 0.01
    assert m.signal_metrics(major, torch.tensor([1, 1]))["mode match"] == 0.0
    noise = torch.from_numpy(np.random.default_rng(1).standard_normal((2, 32768)) * 0.1)
    n = m.signal_metrics(noise, None)
    assert "mode match" not in n and n["tonality"] < 0.7 and n["flatness"] > 0.5
    # classes that are not the modes (your own folders): no mode match
    assert "mode match" not in _music(("bach", "jazz")).signal_metrics(major, torch.tensor([0, 1]))


def test_workers_give_the_serial_result_in_order():
    items = list(range(40))
    assert ch.map_in_workers(pow, items, 3) == [i ** 3 for i in items]


def test_music_modality_takes_audio_data_sets(tmp_path, plugins):
    import soundfile

    from diffvq import recipe as recipe_mod

    soundfile.write(tmp_path / "tune.wav", _triads([C, F, G, C]), SR)
    (tmp_path / "a.yaml").write_text(
        "name: t\nmodality: {name: music, n_mels: 128}\n"
        f"data: {{name: audio-folder, path: {tmp_path}}}\n"
        "tokenizer: vqvae\npriors: {gpt: autoregressive}\n")
    r, _ = recipe_mod.load(tmp_path / "a.yaml", [], plugins=plugins)
    assert r.modality.name == "music" and r.data.name == "audio-folder"
    (tmp_path / "b.yaml").write_text(
        "name: t\nmodality: image\ndata: {name: bach-chorales}\n"
        "tokenizer: vqvae\npriors: {gpt: autoregressive}\n")
    from diffvq.errors import UserError

    with pytest.raises(UserError, match="'bach-chorales' is 'music' data"):
        recipe_mod.load(tmp_path / "b.yaml", [], plugins=plugins)


@pytest.fixture(scope="module")
def plugins():
    from diffvq.plugins import load_plugins

    return load_plugins()


def test_a_midi_folder_trains_end_to_end_with_music_measures(tmp_path, capsys):
    """Your MIDI files, one folder per class: run, sample, measure, no code of your own."""
    import json

    from diffvq.cli import main

    progressions = {"major": [C, F, G, C], "minor": [AM, DM, E, AM]}
    for name, chords in progressions.items():
        (tmp_path / "midi" / name).mkdir(parents=True)
        for i in range(4):
            transposed = [[p + 2 * i for p in c] for c in chords * 3]
            _score(transposed, "C" if name == "major" else "a").write(
                "midi", fp=str(tmp_path / "midi" / name / f"{i}.mid"))
    (tmp_path / "r.yaml").write_text(f"""
name: midi-tiny
modality: {{name: music, n_mels: 64, griffin_lim_iters: 4, gallery_per_class: 1}}
data: {{name: midi-folder, path: {tmp_path / 'midi'}, seconds: 1.024, test_fraction: 0.25}}
tokenizer: {{name: vqvae, codebook_size: 16, codebook_dim: 8, downsample: 4, channels: 8,
            n_res_blocks: 0}}
priors: {{gpt: {{name: autoregressive, n_layer: 1, n_head: 2, n_embd: 32}}}}
train:
  tokenizer: {{steps: 30, batch_size: 8, warmup_steps: 5}}
  prior: {{steps: 30, batch_size: 8, warmup_steps: 5}}
sample: {{n_per_class: 2, seeds: 2, latency_samples: 1}}
evaluate: {{judge_steps: 20}}
precision: fp32
""")
    assert main(["run", str(tmp_path / "r.yaml"), "--runs-dir", str(tmp_path / "runs"),
                 "--quiet"]) == 0
    run = tmp_path / "runs" / "midi-tiny"
    metrics = json.loads((run / "metrics.json").read_text())
    real = metrics["signal"]["real data"]
    assert real["tonality"]["mean"] > 0.7 and real["mode match"]["mean"] > 0.5
    assert real["flatness"]["mean"] < 0.1
    [s] = metrics["priors"]["gpt"]["sampling"]
    assert set(s["signal"]) == {"tonality", "mode match", "flatness"}
    assert sorted(p.name for p in (run / "samples" / "gpt").glob("*.wav")) == [
        "class-major-0.wav", "class-minor-0.wav"]
    assert "tonality" in capsys.readouterr().out


def test_fluidsynth_missing_is_a_clear_error(monkeypatch, tmp_path):
    from diffvq.errors import UserError

    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(UserError, match="fluidsynth is not installed.*apt-get install"):
        BachChorales(renderer="fluidsynth")
    with pytest.raises(UserError, match="only used with renderer: fluidsynth"):
        BachChorales(soundfont=str(tmp_path / "x.sf2"))


@pytest.mark.skipif(not fluid.available(),
                    reason="needs the Debian packages fluidsynth and fluid-soundfont-gm")
def test_fluidsynth_renders_scores_and_midi_files_in_key(tmp_path):
    sf2 = fluid.find_soundfont(None)
    wave = fluid.render_score(_score([C, F, G, C] * 3, "C"), SR, sf2)
    assert np.isclose(np.abs(wave).max(), HEADROOM) and len(wave) > 6 * SR
    assert np.array_equal(wave, fluid.render_score(_score([C, F, G, C] * 3, "C"), SR, sf2))
    score, key, mode = tonality(wave, SR)
    assert (key, mode) == ("C", "major") and score > 0.7
    (tmp_path / "midi").mkdir()
    _score([AM, DM, E, AM] * 2, "a").write("midi", fp=str(tmp_path / "midi" / "a.mid"))
    (tmp_path / "midi" / "bad.mid").write_bytes(b"not midi")
    d = MidiFolder(path=str(tmp_path / "midi"), seconds=1.024, renderer="fluidsynth",
                   on_error="skip", test_fraction=0)
    x, _ = d.load("train")
    assert len(x) >= 3 and sum(d.skipped.values()) == 1
    assert tonality(x.reshape(-1).numpy(), SR)[1:] == ("A", "minor")
