"""Audio files in and out: read any WAV/FLAC/OGG/MP3 as a mono float waveform, resample, cut
to a fixed length, write WAV atomically.

Reading goes through soundfile (libsndfile), not torchaudio.load, which needs torchcodec.
Everything a user can get wrong with a file (empty, truncated, not audio at all, a format we
cannot decode, silence) raises `AudioFileError`: one line that names the file and the problem,
so a data set can either stop on it or skip it and say why.
"""

from __future__ import annotations

import os
import struct
import sys
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF
from torch import Tensor

from diffvq.classfolders import FileError
from diffvq.storage import atomic_save

# Suffixes libsndfile decodes (MP3 since libsndfile 1.1, Opus-in-Ogg since 1.0.29).
AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff"})
# Audio people commonly have that libsndfile cannot read: reported, never silently ignored.
UNSUPPORTED_AUDIO_SUFFIXES = frozenset({".m4a", ".aac", ".mp4", ".wma", ".webm", ".amr", ".mka"})

SILENCE_RMS = 1e-4  # about -80 dBFS: below this a clip is treated as silent

LengthMode = Literal["pad-or-trim", "center"]


class AudioFileError(FileError):
    """An audio file that cannot be used; `str()` is one line: `<path>: <what is wrong>`."""


def _sf_path(path: Path) -> str | bytes:
    """What soundfile should open: the path's bytes on POSIX, since soundfile encodes a `str`
    strictly and fails on a file name that is not valid UTF-8."""
    return str(path) if sys.platform == "win32" else os.fsencode(path)


def _check_wav_header(path: Path) -> None:
    """Catch truncated WAVs, which libsndfile reads without complaint (it just returns fewer
    frames): the `data` chunk's declared size must fit in the file."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
            return  # not a RIFF WAV (RF64, or not audio at all): soundfile decides
        endian = "<" if head[:4] == b"RIFF" else ">"
        pos = 12
        while True:
            chunk = f.read(8)
            if len(chunk) < 8:
                raise AudioFileError(path, "truncated WAV: the file ends before its audio data")
            cid, csize = chunk[:4], struct.unpack(endian + "I", chunk[4:])[0]
            pos += 8
            if cid == b"data":
                if csize != 0xFFFFFFFF and pos + csize > size:  # 0xFFFFFFFF: streamed, unknown
                    raise AudioFileError(
                        path, f"truncated WAV: header says {csize} bytes of audio, "
                              f"the file holds {size - pos}")
                return
            pos += csize + (csize & 1)  # chunks are padded to an even size
            f.seek(pos)


def read_audio(path: str | Path, max_seconds: float | None = None) -> tuple[Tensor, int]:
    """A file as a mono waveform `[T]` float32 (channels averaged) and its sample rate. A file
    longer than `max_seconds` is refused from its header when the header says so, and never
    decoded past `max_seconds` (plus one frame) when it does not, so that one long or lying
    file cannot take minutes and gigabytes."""
    path = Path(path)
    if not path.exists():
        raise AudioFileError(path, "file not found")
    if not path.is_file():
        raise AudioFileError(path, "not a file")
    suffix = path.suffix.lower()
    if suffix not in AUDIO_SUFFIXES:
        raise AudioFileError(path, f"unsupported format {suffix or '(no extension)'!r}; "
                                   f"readable: {', '.join(sorted(AUDIO_SUFFIXES))}")
    if path.stat().st_size == 0:
        raise AudioFileError(path, "empty file (0 bytes)")
    if suffix == ".wav":
        _check_wav_header(path)
    try:
        frames = -1  # all
        if max_seconds is not None:
            info = sf.info(_sf_path(path))
            seconds = info.frames / info.samplerate
            if seconds > max_seconds:
                raise AudioFileError(path, f"too long: {seconds:,.4g} s, more than "
                                           f"{max_seconds:g} s (data.max_file_seconds)")
            frames = int(max_seconds * info.samplerate) + 1
        data, sr = sf.read(_sf_path(path), frames=frames, dtype="float32", always_2d=True)
        if max_seconds is not None and data.shape[0] >= frames:  # its header undersold it
            raise AudioFileError(path, f"too long: more than {max_seconds:g} s "
                                       f"(data.max_file_seconds), though its header says less")
    except sf.LibsndfileError as exc:
        raise AudioFileError(path, f"not a readable audio file ({exc.error_string})") from None
    except (RuntimeError, ValueError, OSError, EOFError) as exc:
        raise AudioFileError(path, f"cannot decode audio ({type(exc).__name__}: {exc})") from None
    if data.shape[0] == 0:
        raise AudioFileError(path, "no audio frames")
    if not np.isfinite(data).all():
        raise AudioFileError(path, "contains NaN or infinite samples")
    return torch.from_numpy(np.ascontiguousarray(data.mean(axis=1))), int(sr)


def rms(wave: Tensor) -> Tensor:
    """Root mean square over the last axis: `[..., T]` -> `[...]`."""
    return wave.float().pow(2).mean(-1).sqrt()


def check_not_silent(wave: Tensor, path: str | Path, min_rms: float = SILENCE_RMS) -> None:
    """Raise AudioFileError for a clip whose RMS is below `min_rms`: a silent clip teaches a
    tokenizer nothing and usually means a broken export."""
    level = float(rms(wave))
    if level < min_rms:
        raise AudioFileError(path, f"silent clip (RMS {level:.1e} is below {min_rms:.0e})")


def resample(wave: Tensor, from_sr: int, to_sr: int) -> Tensor:
    """`[..., T]` at `from_sr` -> `[..., ceil(T * to_sr / from_sr)]` at `to_sr` (windowed sinc,
    antialiased when going down)."""
    if from_sr == to_sr:
        return wave
    return AF.resample(wave.float(), int(from_sr), int(to_sr))


def fit_length(wave: Tensor, n: int, mode: LengthMode = "pad-or-trim") -> Tensor:
    """`[..., T]` -> `[..., n]`. `pad-or-trim` keeps the start: it cuts the end of a long clip
    and zero-pads a short one at the end. `center` keeps the middle: it cuts both ends of a long
    clip equally and pads a short one equally on both sides (for clips whose onset varies)."""
    T = wave.shape[-1]
    if T == n:
        return wave
    if mode == "pad-or-trim":
        start = 0
    elif mode == "center":
        start = (T - n) // 2 if T > n else -((n - T) // 2)
    else:
        raise ValueError(f"unknown length mode {mode!r}")
    if T > n:
        return wave[..., start:start + n]
    left = -start
    return torch.nn.functional.pad(wave, (left, n - T - left))


def write_wav(path: str | Path, wave: Tensor, sample_rate: int) -> Path:
    """Write a mono waveform `[T]` in [-1, 1] as 16-bit PCM WAV (clipped), atomically."""
    path = Path(path)
    arr = wave.detach().float().cpu().clamp(-1, 1).numpy()
    if arr.ndim != 1:
        raise ValueError(f"write_wav expects a mono waveform [T], got shape {tuple(arr.shape)}")
    atomic_save(path, lambda tmp: sf.write(_sf_path(Path(tmp)), arr, int(sample_rate),
                                           format="WAV", subtype="PCM_16"))
    return path
