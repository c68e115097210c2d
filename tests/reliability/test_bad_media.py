"""The bad-media set: files people really have in their own folders - truncated, empty, text
under an image name, a decompression-bomb header, names that are not UTF-8, 16-bit and
transparent images - made in tmp folders for each "your own files" data set (`folder`,
`audio-folder`, `midi-folder`).

With `data.on_error=raise` each bad file stops the command with exactly one line on stderr,
`error: ...` naming the file and what to do, exit status 2 and no run directory left behind.
With `skip` the good files are used and the bad ones left out with one warning that counts
them. Odd but good files (16-bit, CMYK, transparency, non-UTF-8 names) are read, not refused.
"""

from __future__ import annotations

import copy
import io
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import soundfile as sf
import yaml
from PIL import Image

import diffvq.builtin.vqvae  # noqa: F401  (imported now: see below)
from diffvq.cli import main

# vector-quantize-pytorch logs through loguru, whose sink is the sys.stderr of the moment it is
# first imported. The CLI silences file descriptor 2 while it measures a tokenizer, which keeps
# those lines off a terminal but not out of a capsys stream that loguru adopted: importing it
# here, outside any test's capture, keeps in-process results the same whichever test runs
# first. What a terminal shows is checked in a subprocess (test_the_terminal_shows_one_line).

FAST = {"train": {"tokenizer": {"steps": 3, "batch_size": 8, "warmup_steps": 1},
                  "prior": {"steps": 3, "batch_size": 8, "warmup_steps": 1}},
        "sample": {"n_per_class": 1, "seeds": 1, "latency_samples": 0, "gallery_per_class": 1,
                   "measure_memory": False},
        "evaluate": {"judge": False, "nll_max_sequences": 8, "max_reconstructions": 8}}


def put(path: Path | bytes, data: bytes) -> None:
    """Write `data` at `path`, which may be bytes (a name that is not UTF-8)."""
    path = os.fsencode(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    """Exit status 2 and exactly one line on stderr, `error: ...`, holding every fragment."""
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in lines[0], err


def recipe(tmp_path: Path, content: dict[str, Any]) -> str:
    """`content` written as a new recipe file in `tmp_path`; its path."""
    path = tmp_path / f"recipe-{len(list(tmp_path.glob('recipe-*')))}.yaml"
    path.write_text(yaml.safe_dump(content))
    return str(path)


def run_fails_cleanly(capsys, tmp_path: Path, content: dict[str, Any], *fragments: str) -> None:
    """`diffvq run` stops with one line naming the file and the remedy; no run directory."""
    runs = tmp_path / "runs"
    code, _, err = cli(capsys, "run", recipe(tmp_path, content), "--runs-dir", str(runs),
                       "--quiet")
    assert_one_line_error(code, err, *fragments, "set data.on_error=skip")
    assert not runs.exists() or not any(runs.iterdir()), list(runs.iterdir())


def run_succeeds(capsys, tmp_path: Path, content: dict[str, Any]) -> tuple[Path, str]:
    """A whole (tiny) run with `content`: (its run directory, stderr)."""
    runs = tmp_path / "runs"
    code, _, err = cli(capsys, "run", recipe(tmp_path, content), "--runs-dir", str(runs),
                       "--quiet")
    assert code == 0, err
    return runs / content["name"], err


# -- images -------------------------------------------------------------------------------------
def png_bytes(img: Image.Image, fmt: str = "PNG", **options: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **options)
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels, with a few bytes of data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0,
                                                              0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


GOOD_PNG = png_bytes(Image.new("L", (8, 8), 90))
NOISY_JPEG = png_bytes(Image.fromarray(np.random.default_rng(0).integers(0, 256, (8, 8), np.uint8)),
                       "JPEG")
RAMP16 = np.linspace(0, 65535, 64).round().astype(np.uint16).reshape(8, 8)  # 64 levels

BAD_IMAGES: dict[str, tuple[bytes, bytes, str]] = {  # case: (file name, bytes, in the error)
    "truncated PNG": (b"truncated.png", GOOD_PNG[:len(GOOD_PNG) // 2], "damaged PNG"),
    "truncated JPEG": (b"cut.jpg", NOISY_JPEG[:len(NOISY_JPEG) * 2 // 3], "damaged JPEG"),
    "zero-byte file": (b"empty.png", b"", "empty file (0 bytes)"),
    "text named .png": (b"notes.png", b"shopping list: milk, eggs\n", "not an image"),
    "decompression bomb": (b"bomb.png", png_header_only(30000, 30000),
                           "its header claims 900,000,000 pixels"),
    "oversized header": (b"huge.png", png_header_only(10000, 10000),
                         "its header claims 10000x10000 pixels"),
    "non-UTF-8 name, corrupt": (b"caf\xe9.png", b"\x89PNG\r\n\x1a\n garbage", "damaged PNG"),
}


def shown(name: bytes) -> str:
    return name.decode("utf-8", "backslashreplace")


@pytest.fixture
def image_recipe(tiny: dict[str, Any]) -> dict[str, Any]:
    return {**tiny, **copy.deepcopy(FAST), "name": "bad-images"}


def image_folder(root: Path) -> Path:
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(4):
            Image.new("L", (8, 8), 30 + 50 * i).save(root / cls / f"{i}.png")
    return root


def strings(obj: Any) -> set[str]:
    """Every string in a JSON document, keys included."""
    if isinstance(obj, str):
        return {obj}
    if isinstance(obj, dict):
        return set(obj) | set().union(*map(strings, obj.values()))
    if isinstance(obj, list):
        return set().union(*map(strings, obj))
    return set()


@pytest.mark.parametrize("case", list(BAD_IMAGES))
def test_bad_image_raise_is_one_line_and_leaves_nothing(case, capsys, tmp_path, image_recipe):
    name, data, what = BAD_IMAGES[case]
    root = image_folder(tmp_path / "pics")
    put(os.fsencode(root / "b") + b"/" + name, data)
    image_recipe["data"] = {"name": "folder", "path": str(root), "channels": 1}
    run_fails_cleanly(capsys, tmp_path, image_recipe, "cannot read image",
                      f"b/{shown(name)}: {what}", "fix or remove the file")
    # the first image gives the size when data.size is unset: validation reads it
    put(os.fsencode(root / "a") + b"/0-" + name, data)
    code, _, err = cli(capsys, "validate", recipe(tmp_path, image_recipe))
    assert_one_line_error(code, err, f"a/0-{shown(name)}: {what}")


@pytest.mark.slow
def test_the_terminal_shows_one_line(tmp_path, image_recipe):
    """In-process runs see what diffvq prints; a user's terminal also gets what libraries
    print (vector-quantize-pytorch logs through loguru straight to the real stderr)."""
    root = image_folder(tmp_path / "pics")
    put(root / "b" / "truncated.png", GOOD_PNG[:40])
    image_recipe["data"] = {"name": "folder", "path": str(root), "channels": 1}
    runs = tmp_path / "runs"
    done = subprocess.run([sys.executable, "-m", "diffvq", "run", recipe(tmp_path, image_recipe),
                           "--runs-dir", str(runs), "--quiet"], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "DIFFVQ_CACHE": str(tmp_path / "c")})
    assert_one_line_error(done.returncode, done.stderr, "b/truncated.png: damaged PNG")
    assert not runs.exists() or not any(runs.iterdir())


@pytest.mark.parametrize("case", list(BAD_IMAGES))
def test_bad_image_skip_reads_the_rest_with_one_warning(case, capsys, tmp_path):
    from diffvq_image.datasets import ImageFolder

    name, data, what = BAD_IMAGES[case]
    root = image_folder(tmp_path / "pics")
    put(os.fsencode(root / "b") + b"/" + name, data)
    d = ImageFolder(path=str(root), channels=1, on_error="skip",
                    test_fraction=0.0, validation_fraction=0)
    x, y = d.load("train")
    assert x.shape == (8, 1, 8, 8) and y.tolist() == [0] * 4 + [1] * 4
    assert [e.path.name for e in d.skipped] == [os.fsdecode(name)]
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "folder: skipped 1 of 9 files" in err
    assert f"b/{shown(name)}: {what}" in err


def odd_but_good_images(root: Path) -> None:
    """Files that must be read, not refused: 16-bit, CMYK, LA and palette with transparency,
    a file name and a class folder that are not UTF-8."""
    image_folder(root)
    put(root / "a" / "ramp16.png", png_bytes(Image.fromarray(RAMP16)))
    put(root / "a" / "cmyk.jpg", png_bytes(Image.new("CMYK", (8, 8), (0, 0, 0, 0)), "JPEG"))
    put(root / "b" / "la.png", png_bytes(Image.new("LA", (8, 8), (255, 0))))
    pal = Image.new("P", (8, 8), 1)
    pal.putpalette([0, 0, 0, 255, 255, 255])
    put(root / "b" / "palette.png", png_bytes(pal, transparency=1))
    put(os.fsencode(root / "b") + b"/caf\xe9.png", GOOD_PNG)
    for i in range(2):
        put(os.fsencode(root) + b"/cl\xffass/%d.png" % i, GOOD_PNG)


def test_odd_but_good_images_load_correctly(tmp_path):
    from diffvq_image.datasets import ImageFolder

    odd_but_good_images(tmp_path)
    d = ImageFolder(path=str(tmp_path), channels=1, test_fraction=0.0, validation_fraction=0)
    assert d.info().class_names == ("a", "b", "cl\\xffass")
    x, y = d.load("train")
    assert y.tolist() == [0] * 6 + [1] * 7 + [2] * 2
    # sorted: a/0..3.png, a/cmyk.jpg, a/ramp16.png, b/0..3.png, b/caf\xe9.png, b/la, b/palette
    ramp = x[5, 0].reshape(-1).numpy()
    np.testing.assert_allclose(ramp, RAMP16.reshape(-1) / 65535, atol=1e-6)
    assert ramp[0] == 0 and ramp[-1] == 1 and (np.diff(ramp) > 0).all()
    assert len(np.unique(ramp)) == 64  # not 2 (black and white): Pillow's 8-bit path clips
    assert (x[4] > 0.95).all()  # CMYK with no ink: white
    np.testing.assert_allclose(x[10].numpy(), 90 / 255, atol=1e-6)  # b/caf\xe9.png
    assert (x[11] == 0).all() and (x[12] == 0).all()  # transparent over black


def test_images_skip_run_end_to_end_with_every_bad_and_odd_file(capsys, tmp_path, image_recipe):
    root = tmp_path / "pics"
    odd_but_good_images(root)
    for name, data, _ in BAD_IMAGES.values():
        put(os.fsencode(root / "b") + b"/z-" + name, data)
    image_recipe["data"] = {"name": "folder", "path": str(root), "channels": 3,
                            "on_error": "skip"}
    run, err = run_succeeds(capsys, tmp_path, image_recipe)
    assert err.count(f"folder: skipped {len(BAD_IMAGES)} of {15 + len(BAD_IMAGES)} files") == 1
    meta = json.loads((run / "tokens" / "meta.json").read_text())
    assert "cl\\xffass" in strings(meta)  # the class name, storable


# -- audio --------------------------------------------------------------------------------------
def wav_bytes(wave: np.ndarray, sr: int = 16000) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, wave, sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def tone(freq: float, seconds: float = 0.3, sr: int = 16000) -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * freq * np.arange(int(seconds * sr)) / sr)).astype(np.float32)


GOOD_WAV = wav_bytes(tone(440))


def huge_header_wav() -> bytes:
    """A WAV whose data chunk claims 2 GiB: reading it must not trust that size."""
    data = bytearray(GOOD_WAV)
    at = data.index(b"data") + 4
    data[at:at + 4] = struct.pack("<I", 0x7FFFFFF0)
    return bytes(data)


BAD_AUDIO: dict[str, tuple[bytes, bytes, str]] = {
    "empty": (b"empty.wav", b"", "empty file (0 bytes)"),
    "truncated WAV": (b"truncated.wav", GOOD_WAV[:len(GOOD_WAV) // 2], "truncated WAV"),
    "not audio": (b"notes.wav", b"shopping list: milk, eggs\n" * 10,
                  "not a readable audio file"),
    "silent": (b"silent.wav", wav_bytes(np.zeros(4800, np.float32)), "silent clip"),
    "huge header": (b"huge.wav", huge_header_wav(), "truncated WAV: header says 2147483632 bytes"),
    "non-UTF-8 name, corrupt": (b"caf\xe9.wav", b"RIFF garbage", "not a readable audio file"),
}


@pytest.fixture
def audio_recipe(tiny: dict[str, Any]) -> dict[str, Any]:
    return {**tiny, **copy.deepcopy(FAST), "name": "bad-audio",
            "modality": {"name": "audio", "n_mels": 32, "griffin_lim_iters": 2,
                         "gallery_per_class": 1}}


def audio_folder(root: Path) -> Path:
    for k, cls in enumerate(("high", "low")):
        for i in range(3):
            put(root / cls / f"{i}.wav", wav_bytes(tone(300 + 500 * k + 40 * i)))
    return root


@pytest.mark.parametrize("case", list(BAD_AUDIO))
def test_bad_audio_raise_is_one_line_and_leaves_nothing(case, capsys, tmp_path, audio_recipe):
    name, data, what = BAD_AUDIO[case]
    root = audio_folder(tmp_path / "rec")
    put(os.fsencode(root / "low") + b"/" + name, data)
    audio_recipe["data"] = {"name": "audio-folder", "path": str(root), "seconds": 0.25}
    run_fails_cleanly(capsys, tmp_path, audio_recipe, f"low/{shown(name)}: {what}",
                      "fix or remove the file")


@pytest.mark.parametrize("case", list(BAD_AUDIO))
def test_bad_audio_skip_reads_the_rest_with_one_warning(case, capsys, tmp_path):
    from diffvq_audio.datasets import AudioFolder

    name, data, what = BAD_AUDIO[case]
    root = audio_folder(tmp_path / "rec")
    put(os.fsencode(root / "low") + b"/" + name, data)
    d = AudioFolder(path=str(root), seconds=0.25, on_error="skip",
                    test_fraction=0.0, validation_fraction=0)
    x, y = d.load("train")
    assert x.shape == (6, 4096) and y.tolist() == [0] * 3 + [1] * 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "audio-folder: skipped 1 of 7 files" in err
    assert f"low/{shown(name)}: {what}" in err


def test_audio_skip_run_end_to_end_with_every_bad_file_and_odd_names(capsys, tmp_path,
                                                                     audio_recipe):
    root = audio_folder(tmp_path / "rec")
    for i in range(3):  # a class folder and file names that are not UTF-8: read
        put(os.fsencode(root) + b"/cl\xffass/caf\xe9%d.wav" % i, wav_bytes(tone(2000 + 50 * i)))
    for name, data, _ in BAD_AUDIO.values():
        put(os.fsencode(root / "low") + b"/z-" + name, data)
    audio_recipe["data"] = {"name": "audio-folder", "path": str(root), "seconds": 0.25,
                            "on_error": "skip", "test_fraction": 0.34}
    run, err = run_succeeds(capsys, tmp_path, audio_recipe)
    assert err.count(f"audio-folder: skipped {len(BAD_AUDIO)} of {9 + len(BAD_AUDIO)} files") == 1
    meta = json.loads((run / "tokens" / "meta.json").read_text())
    assert "cl\\xffass" in strings(meta)  # the class name, storable


# -- MIDI ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def good_midi(tmp_path_factory) -> Callable[[int], bytes]:
    """MIDI files of a short chord progression, transposed by `k` semitones."""
    from music21 import note, stream

    out: dict[int, bytes] = {}

    def make(k: int) -> bytes:
        if k not in out:
            s = stream.Score()
            for v in range(3):
                part = stream.Part()
                for chord in ([60, 64, 67], [65, 69, 72], [67, 71, 74], [60, 64, 67]) * 2:
                    part.append(note.Note(chord[v] + k, quarterLength=1))
                s.insert(0, part)
            path = tmp_path_factory.mktemp("midi") / "x.mid"
            s.write("midi", fp=str(path))
            out[k] = path.read_bytes()
        return out[k]

    return make


def midi_track_file(events: bytes, division: int = 480) -> bytes:
    """A format-0 MIDI file of one track holding `events` (delta-time, event bytes)."""
    return (b"MThd" + struct.pack(">IHHH", 6, 0, 1, division)
            + b"MTrk" + struct.pack(">I", len(events)) + events)


# one note-on at tick 0, its note-off 6,912,000 ticks later (two hours at 120 bpm), the end
LONG_NOTE_MIDI = midi_track_file(b"\x00\x90\x3c\x40" + b"\x83\xa5\xf0\x00\x80\x3c\x40"
                                 + b"\x00\xff\x2f\x00")
SCALE_MIDI = midi_track_file(b"".join(b"\x00\x90%c\x40\x83\x60\x80%c\x40" % (p, p)
                                      for p in (60, 62, 64, 65, 67, 69, 71, 72))
                             + b"\x00\xff\x2f\x00")

BAD_MIDI: dict[str, tuple[bytes, bytes, str]] = {
    "corrupt MIDI bytes": (b"corrupt.mid", b"MThd\x00\x00\x00\x06garbage", "damaged MIDI"),
    "empty": (b"empty.mid", b"", "empty file (0 bytes)"),
    "non-UTF-8 name, corrupt": (b"caf\xe9.mid", b"not midi at all", "not MIDI"),
    "cut in half": (b"half.mid", SCALE_MIDI[:len(SCALE_MIDI) // 2],
                    "truncated MIDI: track 1 declares 76 bytes, the file holds 27"),
    "one two-hour note": (b"long.mid", LONG_NOTE_MIDI,
                          "too long: plays 7,200 s, more than 600 s (data.max_file_seconds)"),
}


@pytest.fixture
def midi_recipe(tiny: dict[str, Any]) -> dict[str, Any]:
    return {**tiny, **copy.deepcopy(FAST), "name": "bad-midi",
            "modality": {"name": "music", "n_mels": 32, "griffin_lim_iters": 2,
                         "gallery_per_class": 1}}


def midi_folder(root: Path, good_midi) -> Path:
    for k, cls in enumerate(("major", "minor")):
        for i in range(2):
            put(root / cls / f"{i}.mid", good_midi(3 * k + i))
    return root


@pytest.mark.parametrize("case", list(BAD_MIDI))
def test_bad_midi_raise_is_one_line_and_leaves_nothing(case, capsys, tmp_path, midi_recipe,
                                                       good_midi):
    name, data, what = BAD_MIDI[case]
    root = midi_folder(tmp_path / "midi", good_midi)
    put(os.fsencode(root / "minor") + b"/" + name, data)
    midi_recipe["data"] = {"name": "midi-folder", "path": str(root), "seconds": 1.024}
    run_fails_cleanly(capsys, tmp_path, midi_recipe, f"minor/{shown(name)}: {what}",
                      "fix or remove the file")


def test_midi_skip_run_end_to_end_with_every_bad_file_and_odd_names(capsys, tmp_path,
                                                                    midi_recipe, good_midi):
    root = midi_folder(tmp_path / "midi", good_midi)
    for i in range(2):  # a class folder and file names that are not UTF-8: read
        put(os.fsencode(root) + b"/cl\xffass/caf\xe9%d.mid" % i, good_midi(7 + i))
    for name, data, _ in BAD_MIDI.values():
        put(os.fsencode(root / "minor") + b"/z-" + name, data)
    midi_recipe["data"] = {"name": "midi-folder", "path": str(root), "seconds": 1.024,
                           "on_error": "skip", "test_fraction": 0.5}
    run, err = run_succeeds(capsys, tmp_path, midi_recipe)
    assert err.count(f"midi-folder: skipped {len(BAD_MIDI)} of {6 + len(BAD_MIDI)} files") == 1
    for name, _, what in list(BAD_MIDI.values())[:3]:  # the warning names the first three
        assert f"minor/z-{shown(name)}: {what}" in err
    meta = json.loads((run / "tokens" / "meta.json").read_text())
    assert "cl\\xffass" in strings(meta)  # the class name, storable
