"""Bounded work per input file: a tiny file must not cost minutes or gigabytes, and a file cut
short must not pass as a good one. MIDI files are checked by `diffvq_music.midicheck` before
music21 reads them (a 37-byte file holding one two-hour note took music21 over 400 s) and parsed
under a time limit; audio files are checked on their header before they are decoded. Images:
the decompression-bomb and oversized headers of test_bad_media.py.

Each limit is a data-set option, and a file over it is an error like any unreadable file:
refused (exit status 2, one line naming the file) by default, left out with `on_error: skip`.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from diffvq.errors import UserError

from test_bad_media import LONG_NOTE_MIDI, SCALE_MIDI, tone, wav_bytes


def midi_folder(root: Path, bad: dict[str, bytes]) -> Path:
    """Two classes of two good files (an 8-note scale), plus `bad` (name: bytes) in class b."""
    for c, k in (("a", 0), ("b", 5)):
        (root / c).mkdir(parents=True)
        for i in range(2):
            data = SCALE_MIDI.replace(b"\x90<", b"\x90%c" % (60 + k + i))  # another first note
            (root / c / f"{i}.mid").write_bytes(data)
    for name, data in bad.items():
        (root / "b" / name).write_bytes(data)
    return root


def test_a_37_byte_two_hour_note_is_refused_or_skipped_in_seconds(tmp_path, capsys):
    from diffvq_music.datasets import MidiFolder

    assert len(LONG_NOTE_MIDI) == 37
    root = midi_folder(tmp_path / "midi", {"long.mid": LONG_NOTE_MIDI})
    start = time.monotonic()
    with pytest.raises(UserError, match=r"^midi-folder: .*b/long\.mid: too long: plays 7,200 s, "
                                        r"more than 600 s \(data\.max_file_seconds\); fix or "
                                        r"remove the file"):
        MidiFolder(path=str(root), seconds=1.024).load("train")
    d = MidiFolder(path=str(root), seconds=1.024, on_error="skip",
                   test_fraction=0, validation_fraction=0)
    x, y = d.load("train")
    assert time.monotonic() - start < 10
    assert dict(d.skipped) == {"too long": 1}
    assert x.shape == (12, 16384) and y.tolist() == [0] * 6 + [1] * 6  # 4 s each: 3 clips
    assert "midi-folder: skipped 1 of 5 files" in capsys.readouterr().err
    # a longer limit lets it through to music21
    d = MidiFolder(path=str(root), seconds=1.024, on_error="skip", max_file_seconds=7200)
    from diffvq_music import midicheck

    assert midicheck.scan(LONG_NOTE_MIDI, d.limits).seconds == 7200


def test_a_cut_midi_file_is_refused(tmp_path):
    """Files cut short that music21 reads without complaint (what is left of their notes): an
    8-note scale cut in half, a chorale (five tracks, written by music21) cut at 90%."""
    from music21 import converter

    from diffvq_music import chorales as ch
    from diffvq_music.datasets import MidiFolder

    whole = tmp_path / "whole.mid"
    ch.load_chorale(1).write("midi", fp=str(whole))
    data = whole.read_bytes()
    for name, cut in (("half.mid", SCALE_MIDI[:len(SCALE_MIDI) // 2]),
                      ("chorale.mid", data[:len(data) * 9 // 10])):
        root = midi_folder(tmp_path / name, {name: cut})
        n = len(converter.parseFile(str(root / "b" / name), forceSource=True).recurse().notes)
        assert n > 0  # music21 alone: accepted
        with pytest.raises(UserError, match=rf"b/{name}: truncated MIDI: track \d+ declares "
                                            r"[\d,]+ bytes, the file holds [\d,]+; fix or remove"):
            MidiFolder(path=str(root), seconds=1.024).load("train")
    cut = {"no end-of-track": SCALE_MIDI[:-4], "header only": SCALE_MIDI[:14],
           "last event cut": SCALE_MIDI[:-2]}
    from diffvq_music import midicheck

    limits = midicheck.MidiLimits(600, 1000)
    assert midicheck.scan(SCALE_MIDI, limits).notes == 8
    for case, data in cut.items():
        with pytest.raises(midicheck.BadMidi, match="truncated MIDI"):
            midicheck.scan(data, limits)


def test_midi_note_count_and_decode_time_limits(tmp_path):
    from diffvq_music.datasets import MidiFolder

    root = midi_folder(tmp_path / "midi", {})
    with pytest.raises(UserError, match=r"a/0\.mid: too many notes: more than 7 "
                                        r"\(data\.max_notes\)"):
        MidiFolder(path=str(root), seconds=1.024, max_notes=7).load("train")
    MidiFolder(path=str(root), seconds=1.024).load("train")  # music21 imported: files of a
    # few notes now take it about 6 ms, and 8,000 notes about 2.4 s to parse and render; the
    # limit sits far from both (a busy machine once took 0.2 s over a small file)
    many = SCALE_MIDI[:22] + b"".join(b"\x00\x90%c\x40\x30\x80%c\x40" % (p, p)
                                      for p in np.tile(np.arange(48, 73), 320).tolist())
    many += b"\x00\xff\x2f\x00"
    many = many[:18] + len(many[22:]).to_bytes(4, "big") + many[22:]
    (root / "b" / "many.mid").write_bytes(many)
    with pytest.raises(UserError, match=r"b/many\.mid: too slow to decode: not parsed and "
                                        r"rendered within 0\.8 s \(data\.max_decode_seconds\)"):
        MidiFolder(path=str(root), seconds=1.024, max_decode_seconds=0.8).load("train")
    d = MidiFolder(path=str(root), seconds=1.024,
                   test_fraction=0, validation_fraction=0)  # the default: read
    assert d.load("train")[1].tolist().count(1) > 6


def test_a_too_long_audio_file_is_refused_from_its_header(tmp_path, capsys):
    from diffvq_audio.datasets import AudioFolder

    for c, f in (("a", 300), ("b", 900)):
        (tmp_path / c).mkdir()
        for i in range(2):
            (tmp_path / c / f"{i}.wav").write_bytes(wav_bytes(tone(f + 40 * i)))
    # 601 s: over the default of 600, in 601 KB (8-bit samples at 1 kHz)
    sf.write(tmp_path / "b" / "long.wav", np.full(601_000, 0.5, np.float32), 1000,
             subtype="PCM_U8")
    start = time.monotonic()
    with pytest.raises(UserError, match=r"b/long\.wav: too long: 601 s, more than 600 s "
                                        r"\(data\.max_file_seconds\); fix or remove the file"):
        AudioFolder(path=str(tmp_path), seconds=0.25).load("train")
    d = AudioFolder(path=str(tmp_path), seconds=0.25, on_error="skip",
                    test_fraction=0, validation_fraction=0)
    assert d.load("train")[0].shape == (4, 4096)
    assert time.monotonic() - start < 10
    assert "audio-folder: skipped 1 of 5 files" in capsys.readouterr().err
    # a lower limit refuses the short files too; a higher one reads the long file
    with pytest.raises(UserError, match=r"a/0\.wav: too long: 0\.3 s, more than 0\.1 s"):
        AudioFolder(path=str(tmp_path), seconds=0.25, max_file_seconds=0.1).load("train")
    d = AudioFolder(path=str(tmp_path), seconds=0.25, max_file_seconds=700,
                    test_fraction=0, validation_fraction=0)
    assert d.load("train")[0].shape == (5, 4096)


def test_audio_is_never_decoded_past_the_limit(tmp_path, monkeypatch):
    """A header that undersells the file (or none that says): the read stops one frame past
    `max_seconds` and the file is refused."""
    import diffvq_audio.io as aio

    path = tmp_path / "x.wav"
    sf.write(path, tone(440, seconds=2.0), 16000)
    real = sf.info

    def lying_info(file):
        info = real(file)
        info.frames = 1600  # 0.1 s
        return info

    monkeypatch.setattr(aio.sf, "info", lying_info)
    read = []
    real_read = sf.read
    monkeypatch.setattr(aio.sf, "read",
                        lambda *a, **k: read.append(k["frames"]) or real_read(*a, **k))
    with pytest.raises(aio.AudioFileError, match=r"too long: more than 1 s \(data\.max_file_"
                                                 r"seconds\), though its header says less"):
        aio.read_audio(path, max_seconds=1.0)
    assert read == [16001]
    assert aio.read_audio(path)[0].shape == (32000,)  # no limit: all of it
