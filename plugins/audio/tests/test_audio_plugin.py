"""The audio foundations: file reading and its errors, log-mel and its inverse, the audio modality
with its judge and galleries, and the audio-folder data set."""

from __future__ import annotations

import pickle
import shutil
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from diffvq.builtin.vqvae import VQVAE
from diffvq.errors import UserError
from diffvq.interfaces import DataInfo, HasJudge, Judge, Modality
from diffvq_audio import plugin
from diffvq_audio.datasets import AudioFolder, split_per_class
from diffvq_audio.io import (AudioFileError, check_not_silent, fit_length, read_audio, resample,
                             write_wav)
from diffvq_audio.mel import LogMel, aligned_samples, frames_for
from diffvq_audio.modality import AudioModality


def tone(freq: float, seconds: float, sr: int, amp: float = 0.5, harmonics: int = 1) -> np.ndarray:
    """A (harmonic) tone `[T]` float32; harmonic k has amplitude amp / k."""
    t = np.arange(int(round(seconds * sr))) / sr
    return sum(amp / k * np.sin(2 * np.pi * freq * k * t) for k in range(1, harmonics + 1)
               ).astype(np.float32)


def peak_hz(wave: torch.Tensor | np.ndarray, sr: int) -> float:
    """The frequency of the largest FFT bin of a Hann-windowed waveform."""
    w = np.asarray(wave, dtype=np.float64)
    spectrum = np.abs(np.fft.rfft(w * np.hanning(len(w))))
    return float(np.argmax(spectrum) * sr / len(w))


# -- io -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix,subtype,atol", [
    (".wav", "PCM_16", 1e-4), (".flac", "PCM_16", 1e-4), (".wav", "FLOAT", 0.0),
    (".ogg", "VORBIS", 0.05)])
def test_read_audio_round_trips_formats(tmp_path, suffix, subtype, atol):
    x = tone(440, 0.25, 8000)
    sf.write(tmp_path / f"a{suffix}", x, 8000, subtype=subtype)
    wave, sr = read_audio(tmp_path / f"a{suffix}")
    assert sr == 8000 and wave.dtype == torch.float32 and wave.shape == (2000,)
    assert np.abs(wave.numpy() - x).max() <= atol + 1e-7


def test_stereo_is_mixed_down_to_mono(tmp_path):
    left, right = tone(440, 0.1, 8000), np.full(800, 0.25, np.float32)
    sf.write(tmp_path / "s.wav", np.stack([left, right], 1), 8000, subtype="FLOAT")
    wave, _ = read_audio(tmp_path / "s.wav")
    assert wave.shape == (800,)
    np.testing.assert_allclose(wave.numpy(), (left + right) / 2, atol=1e-6)


def test_resample_keeps_frequency_and_scales_length():
    x = torch.from_numpy(tone(440, 1.0, 22050))
    y = resample(x, 22050, 16000)
    assert y.shape == (16000,)
    assert abs(peak_hz(y, 16000) - 440) <= 1.0
    assert resample(x, 22050, 22050) is x
    assert resample(x[None, None], 22050, 8000).shape == (1, 1, 8000)


def test_fit_length_modes():
    x = torch.arange(1.0, 7.0)  # 1..6
    assert fit_length(x, 4).tolist() == [1, 2, 3, 4]
    assert fit_length(x, 8).tolist() == [1, 2, 3, 4, 5, 6, 0, 0]
    assert fit_length(x, 4, "center").tolist() == [2, 3, 4, 5]
    assert fit_length(x, 9, "center").tolist() == [0, 1, 2, 3, 4, 5, 6, 0, 0]
    assert fit_length(x[None].repeat(2, 1), 3, "center").shape == (2, 3)


def _bad_file(tmp_path: Path, case: str) -> tuple[Path, str]:
    """A file that cannot be used, and a regex its error message must match."""
    if case == "empty":
        (p := tmp_path / "empty.wav").write_bytes(b"")
        return p, r"empty file \(0 bytes\)"
    if case == "truncated":
        sf.write(tmp_path / "full.wav", tone(440, 0.5, 8000), 8000)
        data = (tmp_path / "full.wav").read_bytes()
        (p := tmp_path / "cut.wav").write_bytes(data[:len(data) - 1000])
        return p, r"truncated WAV: header says 8000 bytes of audio, the file holds 7000"
    if case == "text":
        (p := tmp_path / "notes.wav").write_text("not audio at all\n" * 20)
        return p, r"not a readable audio file"
    if case == "png":
        Image.new("L", (8, 8)).save(tmp_path / "pic.png")
        shutil.copy(tmp_path / "pic.png", p := tmp_path / "pic.wav")
        return p, r"not a readable audio file"
    if case == "m4a":
        (p := tmp_path / "song.m4a").write_bytes(b"\0\0\0\x20ftypM4A ")
        return p, r"unsupported format '\.m4a'"
    if case == "unknown":
        (p := tmp_path / "clip.xyz").write_bytes(b"abc")
        return p, r"unsupported format '\.xyz'"
    if case == "missing":
        return tmp_path / "missing.flac", r"file not found"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["empty", "truncated", "text", "png", "m4a", "unknown", "missing"])
def test_bad_files_give_one_line_errors_naming_the_file(tmp_path, case):
    path, message = _bad_file(tmp_path, case)
    with pytest.raises(AudioFileError, match=message) as info:
        read_audio(path)
    assert isinstance(info.value, UserError)
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)
    assert info.value.path == path
    assert str(pickle.loads(pickle.dumps(info.value))) == str(info.value)  # crosses processes


def test_silent_clip_is_refused(tmp_path):
    sf.write(tmp_path / "quiet.wav", np.zeros(800, np.float32), 8000)
    wave, _ = read_audio(tmp_path / "quiet.wav")
    with pytest.raises(AudioFileError, match=r"quiet\.wav: silent clip"):
        check_not_silent(wave, tmp_path / "quiet.wav")
    check_not_silent(torch.from_numpy(tone(440, 0.1, 8000, amp=0.01)), "soft.wav")  # quiet is fine


def test_write_wav_is_readable_and_leaves_no_temporary_files(tmp_path):
    x = torch.from_numpy(tone(300, 0.2, 16000))
    path = write_wav(tmp_path / "out" / "a.wav", x * 4, 16000)  # clipped to [-1, 1]
    data, sr = sf.read(path, dtype="float32")
    assert sr == 16000 and data.shape == (3200,) and np.abs(data).max() <= 1.0
    assert np.abs(data - np.clip(x.numpy() * 4, -1, 1)).max() < 1e-3
    assert [p.name for p in path.parent.iterdir()] == ["a.wav"]
    with pytest.raises(ValueError, match="mono"):
        write_wav(tmp_path / "b.wav", x[None].repeat(2, 1), 16000)


# -- log-mel ------------------------------------------------------------------------------------
def test_frame_rules():
    assert aligned_samples(1.0, 16000) == 16384  # 8 blocks of 8 frames x 256 samples
    assert aligned_samples(0.01, 16000) == 2048  # at least one block
    assert aligned_samples(1.0, 22050, hop=512) == 5 * 4096  # 1.0 s -> 0.93 s
    assert frames_for(16384, 256) == 64 and frames_for(16000, 256) == 64
    assert frames_for(16385, 256) == 72 and frames_for(16384, 256, multiple=16) == 64
    assert frames_for(300, 256, multiple=1) == 2


def test_logmel_round_trip_keeps_pitch_and_spectrum():
    sr, T = 16000, 16384
    x = torch.from_numpy(tone(440, T / sr, sr, amp=0.4, harmonics=4))[None]  # [1, T]
    lm = LogMel(sr)
    m = lm(x)  # [1, 64, 64]
    assert m.shape == (1, 64, T // 256)
    assert -1.0 <= m.min() and m.max() <= 1.0
    assert torch.allclose(lm(torch.zeros(1, T)), torch.full((1, 64, 64), lm.silence))
    y = lm.inverse(m)  # [1, T]
    assert y.shape == (1, T)
    # mel bands are ~44 Hz apart at 440 Hz: the pitch comes back within half a band (measured 11)
    assert abs(peak_hz(y[0], sr) - 440) < 22
    l1 = (lm(y) - m).abs().mean().item()
    assert l1 < 0.1  # measured 0.066 in model units (1 unit = 6 nats); 0.19 without refinement
    plain = LogMel(sr, nnls_iters=0)  # least squares only, no non-negative refinement
    assert l1 < 0.6 * (plain(plain.inverse(m)) - m).abs().mean()
    # deterministic, and a clip's inverse does not depend on the rest of its batch. A batch of
    # two takes other FFT/matmul kernels, so float32 rounding differs: each Griffin-Lim iteration
    # sums up to n_fft terms per sample (worst case n_fft * eps relative) and carries the error
    # into the next, so allow eps * n_fft * iterations of the clip's peak (3e-3 here; measured
    # 1e-4 to 2e-4 on x86-64, AVX-512, AVX2 or neither). Clips that leaked into each other
    # would differ by about the peak itself.
    both = lm.inverse(torch.cat([m, lm(torch.from_numpy(tone(2000, T / sr, sr))[None])]))
    eps = torch.finfo(torch.float32).eps
    rounding = eps * lm.n_fft * lm.griffin_lim_iters * y.abs().max().item()
    assert (both[0] - y[0]).abs().max() <= rounding
    assert torch.equal(lm.inverse(m), y)


def test_logmel_refuses_bad_settings():
    with pytest.raises(ValueError, match="f_max"):
        LogMel(16000, f_max=9000)
    with pytest.raises(ValueError, match="no STFT bin"):
        LogMel(8000, n_fft=128, hop=32, n_mels=128)
    with pytest.raises(ValueError, match="multiple of hop"):
        LogMel(16000)(torch.zeros(1, 1000))


# -- modality -----------------------------------------------------------------------------------
def audio_info(n: int = 16384, classes: tuple[str, ...] = ("low", "high")) -> DataInfo:
    return DataInfo("audio", (n,), classes, sample_rate=16000)


def test_modality_shapes_fit_the_1d_vqvae():
    m = AudioModality(audio_info(16000), n_mels=32)  # 16000 samples: padded to 64 frames
    assert isinstance(m, Modality) and isinstance(m, HasJudge)
    assert m.model_shape() == (32, 64)
    signals = torch.from_numpy(np.stack([tone(300, 1.0, 16000), tone(3000, 1.0, 16000)]))
    x = m.to_model(signals)
    assert x.shape == (2, 32, 64)
    assert m.from_model(x).shape == (2, 16000)
    vq = VQVAE(m.model_shape(), codebook_size=16, codebook_dim=8, downsample=8, channels=8,
               n_res_blocks=0)
    tokens = vq.encode(x)
    assert tokens.shape == (2, 8) and tokens.dtype == torch.long
    assert vq.decode(tokens).shape == (2, 32, 64)
    assert AudioModality(audio_info(16384), frame_multiple=16).model_shape() == (64, 64)
    with pytest.raises(ValueError, match="mono waveforms"):
        AudioModality(DataInfo("audio", (1, 16000), sample_rate=16000))
    with pytest.raises(ValueError, match="sample_rate"):
        AudioModality(DataInfo("audio", (16000,)))


def test_reconstruction_metrics_grow_with_error():
    m = AudioModality(audio_info(8192))
    x = torch.from_numpy(np.stack([tone(f, 8192 / 16000, 16000) for f in (200, 900, 2500)]))
    same = m.reconstruction_metrics(x, x)
    assert same == {"logmel_l1": 0.0, "spectral_convergence": 0.0}
    gen = torch.Generator().manual_seed(0)
    small = m.reconstruction_metrics(x, x + 0.01 * torch.randn(x.shape, generator=gen))
    large = m.reconstruction_metrics(x, x + 0.1 * torch.randn(x.shape, generator=gen))
    assert 0 < small["logmel_l1"] < large["logmel_l1"]
    assert 0 < small["spectral_convergence"] < large["spectral_convergence"] < 2
    # phase does not count: a sign flip is the same sound
    assert m.reconstruction_metrics(x, -x)["spectral_convergence"] < 1e-5


def two_tone_classes(n: int, T: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` clips: label 0 a random tone in 150-400 Hz, label 1 in 1500-4000 Hz, plus noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    t = np.arange(T) / 16000
    clips = []
    for y in labels:
        f = rng.uniform(150, 400) if y == 0 else rng.uniform(1500, 4000)
        amp = rng.uniform(0.1, 0.6)
        clips.append(amp * np.sin(2 * np.pi * f * t + rng.uniform(0, 6.3))
                     + 0.02 * rng.standard_normal(T))
    return torch.tensor(np.stack(clips), dtype=torch.float32), torch.from_numpy(labels)


def test_judge_learns_low_versus_high_tones():
    torch.manual_seed(0)
    m = AudioModality(audio_info(4096))  # 16 frames
    x_train, y_train = two_tone_classes(64, 4096, seed=1)
    x_test, y_test = two_tone_classes(32, 4096, seed=2)
    judge = m.judge()
    assert isinstance(judge, Judge)
    opt = torch.optim.AdamW(judge.parameters(), lr=3e-3)
    xm = m.to_model(x_train)
    for step in range(40):
        idx = torch.randint(0, len(xm), (32,))
        loss, logs = judge.training_loss({"x": xm[idx], "labels": y_train[idx]})
        opt.zero_grad()
        loss.backward()
        opt.step()
    judge.eval()
    with torch.no_grad():
        xt = m.to_model(x_test)
        accuracy = (judge.logits(xt).argmax(-1) == y_test).float().mean().item()
        assert judge.features(xt).shape == (32, 128)
    assert accuracy >= 0.95
    # deterministic given torch's seed: the same initial weights and the same shifted batch
    losses = []
    for _ in range(2):
        torch.manual_seed(5)
        losses.append(m.judge().training_loss({"x": xm[:8], "labels": y_train[:8]})[0].item())
    assert losses[0] == losses[1]
    with pytest.raises(ValueError, match="labelled"):
        AudioModality(audio_info(4096, classes=())).judge()


def test_gallery_writes_wavs_per_class_and_a_spectrogram_picture(tmp_path):
    T = 8192
    m = AudioModality(audio_info(T, classes=("low", "high / loud")), gallery_per_class=2)
    signals = torch.from_numpy(np.stack([tone(f, T / 16000, 16000) for f in (200, 250, 300, 3000)]))
    files = m.write_gallery(signals, torch.tensor([0, 0, 0, 1]), tmp_path / "g", title="samples")
    assert [f.name for f in files] == ["spectrograms.png", "class-low-0.wav", "class-low-1.wav",
                                       "class-high_loud-0.wav"]
    for f in files[1:]:
        info = sf.info(f)
        assert info.samplerate == 16000 and info.frames == T and info.channels == 1
    assert abs(peak_hz(sf.read(files[3])[0], 16000) - 3000) < 2
    with Image.open(files[0]) as img:
        assert img.format == "PNG" and img.width > 100 and img.height > 100
    unlabelled = AudioModality(audio_info(T, classes=()), gallery_per_class=3)
    files = unlabelled.write_gallery(signals, torch.zeros(4, dtype=torch.long), tmp_path / "u")
    assert [f.name for f in files] == ["spectrograms.png", "sample-0.wav", "sample-1.wav",
                                       "sample-2.wav"]


# -- the audio-folder data set ------------------------------------------------------------------
def make_folder(root: Path) -> None:
    """Two classes of tones written at different rates, channel counts and formats."""
    (root / "high").mkdir(parents=True)
    (root / "low").mkdir()
    for i, (sr, stereo, fmt) in enumerate([(22050, True, "wav"), (16000, False, "flac"),
                                           (8000, False, "ogg"), (44100, True, "wav")]):
        for name, f in (("low", 220 + 20 * i), ("high", 1500 + 100 * i)):
            x = tone(f, 0.4 + 0.1 * i, sr)
            sf.write(root / name / f"{i}.{fmt}", np.stack([x, x], 1) if stereo else x, sr)
    (root / "low" / "README.txt").write_text("ignored")


def test_audio_folder_reads_classes_at_any_rate_and_channel_count(tmp_path):
    make_folder(tmp_path)
    d = AudioFolder(path=str(tmp_path), sample_rate=16000, seconds=0.5, test_fraction=0.25,
                    validation_fraction=0.0)
    info = d.info()
    assert info.class_names == ("high", "low") and info.shape == (8192,)  # 0.5 s -> 4 x 2048
    assert info.sample_rate == 16000 and info.modality == "audio"
    x_train, y_train = d.load("train")
    x_test, y_test = d.load("test")
    assert x_train.shape == (6, 8192) and x_test.shape == (2, 8192)
    assert sorted(y_test.tolist()) == [0, 1] and sorted(y_train.tolist()) == [0, 0, 0, 1, 1, 1]
    for clip, label in zip(torch.cat([x_train, x_test]), torch.cat([y_train, y_test])):
        assert (peak_hz(clip, 16000) > 1000) == (label == 0)  # class 0 is "high"
    again = AudioFolder(path=str(tmp_path), sample_rate=16000, seconds=0.5, test_fraction=0.25,
                        validation_fraction=0.0)
    assert torch.equal(again.load("test")[0], x_test)  # the split is reproducible
    centred = AudioFolder(path=str(tmp_path), seconds=0.5, length="center").load("train")[0]
    assert centred.shape[1] == 8192


def test_split_per_class_is_stratified_and_disjoint():
    labels = np.repeat(np.arange(3), [10, 5, 1])
    s = split_per_class(labels, 0.2, seed=3)
    assert set(s["train"]).isdisjoint(s["test"]) and set(s["validation"]).isdisjoint(s["test"])
    assert len(s["train"]) + len(s["validation"]) + len(s["test"]) == 16
    assert sorted(labels[s["test"]].tolist()) == [0, 0, 1]


def test_audio_folder_fingerprint_follows_the_files(tmp_path):
    make_folder(tmp_path)
    before = AudioFolder(path=str(tmp_path)).fingerprint()
    assert AudioFolder(path=str(tmp_path)).fingerprint() == before
    sf.write(tmp_path / "low" / "new.wav", tone(300, 0.3, 16000), 16000)
    assert AudioFolder(path=str(tmp_path)).fingerprint() != before


def test_audio_folder_bad_files_raise_or_are_skipped_with_one_warning(tmp_path, capsys):
    make_folder(tmp_path)
    (tmp_path / "low" / "broken.wav").write_text("not audio")
    sf.write(tmp_path / "high" / "silent.wav", np.zeros(4000, np.float32), 16000)
    (tmp_path / "high" / "phone.m4a").write_bytes(b"m4a")
    with pytest.raises(AudioFileError, match=r"high/phone\.m4a: unsupported format.*on_error=skip"):
        AudioFolder(path=str(tmp_path), seconds=0.5).load("train")
    d = AudioFolder(path=str(tmp_path), seconds=0.5, on_error="skip", test_fraction=0.25)
    x, y = d.load("train")
    x_test, _ = d.load("test")
    assert len(x) + len(d.load("validation")[0]) + len(x_test) == 8 and len(d.skipped) == 3
    err = capsys.readouterr().err
    assert err.count("skipped 3 of 11 files") == 1
    assert "phone.m4a" in err and "silent.wav: silent clip" in err and "broken.wav" in err


def test_audio_folder_reads_names_that_are_not_utf8(tmp_path, capsys):
    """soundfile refuses a str path it cannot encode; the bytes are passed instead, and the
    class name is shown with the byte escaped."""
    import os

    from diffvq_audio.io import rms

    root = os.fsencode(tmp_path)
    for k, cls in enumerate((b"low", b"cl\xffass")):
        os.mkdir(root + b"/" + cls)
        for i in range(2):
            sf.write(root + b"/" + cls + b"/caf\xe9%d.wav" % i, tone(300 * (k + 1), 0.3, 16000),
                     16000)
    d = AudioFolder(path=str(tmp_path), seconds=0.25, test_fraction=0.0, validation_fraction=0.0)
    assert d.info().class_names == ("cl\\xffass", "low") and len(d.fingerprint()) == 16
    x, y = d.load("train")
    assert x.shape == (4, 4096) and y.tolist() == [0, 0, 1, 1] and rms(x).min() > 0.1
    with open(root + b"/low/caf\xe90.wav", "wb") as f:
        f.write(b"not audio")
    with pytest.raises(AudioFileError, match=r"low/caf\\xe90\.wav: not a readable audio file.*"
                                             r"fix or remove the file, or set data\.on_error=skip"):
        AudioFolder(path=str(tmp_path), seconds=0.25).load("train")
    AudioFolder(path=str(tmp_path), seconds=0.25, on_error="skip").load("train")
    assert "skipped 1 of 4 files" in capsys.readouterr().err
    written = write_wav(os.fsdecode(root + b"/out\xe9.wav"), torch.zeros(100), 8000)
    assert read_audio(written)[0].shape == (100,)


def test_audio_folder_user_errors(tmp_path):
    with pytest.raises(UserError, match="not a folder"):
        AudioFolder(path=str(tmp_path / "nope")).info()
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(UserError, match="no audio files"):
        AudioFolder(path=str(tmp_path)).info()
    (tmp_path / "a").mkdir()
    with pytest.raises(UserError, match="class folder.*a .*hold no audio files"):
        AudioFolder(path=str(tmp_path)).info()
    (tmp_path / "a" / "e.wav").write_bytes(b"")
    with pytest.raises(UserError, match="none of the audio files could be used"):
        AudioFolder(path=str(tmp_path), on_error="skip").load("train")


def test_unlabelled_audio_folder(tmp_path):
    for i in range(5):
        sf.write(tmp_path / f"{i}.wav", tone(200 * (i + 1), 0.2, 16000), 16000)
    d = AudioFolder(path=str(tmp_path), seconds=0.25, test_fraction=0.2)
    assert d.info().class_names == () and d.info().shape == (4096,)
    assert [len(d.load(s)[0]) for s in ("train", "validation", "test")] == [3, 1, 1]


# -- the plugin ---------------------------------------------------------------------------------
def test_a_tiny_recipe_runs_end_to_end(tmp_path, monkeypatch):
    """audio-folder -> log-mel -> 1-D VQ-VAE -> GPT prior -> Griffin-Lim -> WAV gallery + judge."""
    import json

    import yaml

    from diffvq import recipe as recipe_mod
    from diffvq.pipeline import Run
    from diffvq.plugins import load_plugins

    monkeypatch.setenv("DIFFVQ_CACHE", str(tmp_path / "cache"))
    for name, (lo, hi) in {"low": (150, 400), "high": (1500, 4000)}.items():
        (tmp_path / "data" / name).mkdir(parents=True)
        for i, f in enumerate(np.linspace(lo, hi, 8)):
            sf.write(tmp_path / "data" / name / f"{i}.wav", tone(f, 0.25, 16000), 16000)
    recipe = {
        "name": "tiny-audio", "seed": 0, "precision": "fp32",
        "modality": {"name": "audio", "n_mels": 32},
        "data": {"name": "audio-folder", "path": str(tmp_path / "data"), "seconds": 0.25},
        "tokenizer": {"name": "vqvae", "codebook_size": 16, "codebook_dim": 8, "downsample": 4,
                      "channels": 8, "n_res_blocks": 0},
        "priors": {"gpt": {"name": "autoregressive", "n_layer": 1, "n_head": 2, "n_embd": 32}},
        "train": {"tokenizer": {"steps": 20, "batch_size": 8, "warmup_steps": 2},
                  "prior": {"steps": 20, "batch_size": 8, "warmup_steps": 2}},
        "sample": {"n_per_class": 2, "gallery_per_class": 2},
        "evaluate": {"judge_steps": 30},
    }
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    plugins = load_plugins()
    r, _ = recipe_mod.load(tmp_path / "r.yaml", plugins=plugins)
    metrics = Run(r, plugins, runs_dir=tmp_path / "runs", progress=False).execute()
    tok = metrics["tokenizer"]
    assert tok["grid_shape"] == [4] and {"logmel_l1", "spectral_convergence"} <= set(tok)
    samples = tmp_path / "runs" / "tiny-audio" / "samples" / "gpt"
    assert (samples / "spectrograms.png").is_file()
    assert sf.info(samples / "class-low-0.wav").frames == 4096
    assert json.loads((tmp_path / "runs" / "tiny-audio" / "metrics.json").read_text())


def test_plugin_registers_modality_and_data_set():
    got: list[type] = []
    plugin.register_modalities(got.append)
    plugin.register_datasets(got.append)
    assert got == [AudioModality, AudioFolder]
    eps = {ep.name: ep.value for ep in entry_points(group="diffvq")}
    assert eps.get("audio") == "diffvq_audio.plugin"
