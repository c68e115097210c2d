"""`audio-folder`: your own recordings, `path/<class>/*.wav|flac|ogg|mp3` (one sub-folder per
class), or files directly in `path` (unlabelled). Any sample rate and channel count: every file is
mixed down to mono, resampled to `sample_rate` and cut or padded to one clip length.

Signals are float tensors `[N, T]` in [-1, 1]. T is `seconds` rounded to a multiple of 2048
samples (8 frames of the default 256-sample hop), so the log-mel frames divide by 8 and a VQ-VAE
that downsamples by up to 8 needs no padding.

Each file gives one clip, so splitting clips is splitting files: `test_fraction` of each class's
files are the test split, `validation_fraction` of the rest the validation split
(`diffvq.splits.per_class`, drawn from `seed`); no file is in two splits.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field
from torch import Tensor

from diffvq import classfolders, splits
from diffvq.interfaces import DataInfo
from diffvq.splits import VALIDATION_FRACTION

from .io import (AUDIO_SUFFIXES, UNSUPPORTED_AUDIO_SUFFIXES, LengthMode, check_not_silent,
                 fit_length, read_audio, resample)
from .mel import aligned_samples

CANDIDATE_SUFFIXES = AUDIO_SUFFIXES | UNSUPPORTED_AUDIO_SUFFIXES  # files a folder scan looks at
MAX_FILE_SECONDS = 600.0  # ten minutes: 230 MB decoded at 48 kHz stereo, read in seconds


split_per_class = splits.per_class  # stratified train/validation/test (its old name)


class AudioFolder:
    """Your own audio files, one sub-folder per class (or none: unlabelled)."""

    name: ClassVar[str] = "audio-folder"
    modality: ClassVar[str] = "audio"

    def __init__(self, *, path: str,
                 sample_rate: Annotated[int, Field(ge=1000, le=384000)] = 16000,
                 seconds: Annotated[float, Field(gt=0, le=600)] = 1.0,
                 length: LengthMode = "pad-or-trim",
                 on_error: Literal["raise", "skip"] = "raise",
                 test_fraction: Annotated[float, Field(ge=0, lt=1)] = 0.2,
                 validation_fraction: Annotated[float, Field(ge=0, lt=1)] = VALIDATION_FRACTION,
                 seed: int = 0,
                 max_file_seconds: Annotated[float, Field(gt=0)] = MAX_FILE_SECONDS):
        """`length`: `pad-or-trim` keeps each file's start, `center` its middle (see
        `diffvq_audio.io.fit_length`). `on_error`: `raise` stops at the first file that cannot
        be used (empty, truncated, not audio, unsupported format, silent, longer than
        `max_file_seconds`); `skip` leaves such files out and says so once on stderr.
        `max_file_seconds`: the longest file read (checked on its header first), so that one
        long recording cannot take minutes and gigabytes; cut long recordings into clips."""
        self.path = Path(path).expanduser()
        self.sample_rate = sample_rate
        self.n_samples = aligned_samples(seconds, sample_rate)
        self.length: LengthMode = length
        self.on_error = on_error
        self.test_fraction = test_fraction
        self.validation_fraction = validation_fraction
        self.seed = seed
        self.max_file_seconds = max_file_seconds
        self._scan: tuple[tuple[str, ...], list[tuple[Path, int]]] | None = None
        self._loaded: tuple[Tensor, np.ndarray] | None = None
        self.skipped: list[classfolders.FileError] = []  # filled by load() in skip mode

    def _files(self) -> tuple[tuple[str, ...], list[tuple[Path, int]]]:
        """(class names, [(file, label)]), sorted; unlabelled folders have no class names."""
        if self._scan is not None:
            return self._scan
        self._scan = classfolders.scan(self.path, CANDIDATE_SUFFIXES, "audio files",
                                       ", ".join(sorted(AUDIO_SUFFIXES)))
        return self._scan

    def info(self) -> DataInfo:
        classes, _ = self._files()
        return DataInfo("audio", (self.n_samples,), classes, sample_rate=self.sample_rate,
                        extra={"seconds": self.n_samples / self.sample_rate})

    def fingerprint(self) -> str:
        _, files = self._files()
        return classfolders.fingerprint(self.path, files)

    def read(self, path: Path) -> Tensor:
        """One file as a clip `[n_samples]` at `sample_rate` (AudioFileError if unusable)."""
        wave, sr = read_audio(path, self.max_file_seconds)
        check_not_silent(wave, path)
        return fit_length(resample(wave, sr, self.sample_rate), self.n_samples, self.length)

    def _load_all(self) -> tuple[Tensor, np.ndarray]:
        """Every usable file, read once: (clips `[N, T]`, labels `[N]`)."""
        if self._loaded is not None:
            return self._loaded
        classes, files = self._files()
        clips, labels, skipped = classfolders.read_all(
            files, self.read, on_error=self.on_error, root=self.path, classes=classes,
            dataset=self.name, what="audio files")
        self.skipped = skipped
        self._loaded = (torch.stack(clips), np.array(labels, dtype=np.int64))
        return self._loaded

    def load(self, split: str) -> tuple[Tensor, Tensor]:
        splits.check_split(split, self.name)
        x, labels = self._load_all()
        idx = split_per_class(labels, self.test_fraction, self.validation_fraction,
                              self.seed)[split]
        return x[torch.from_numpy(idx)], torch.from_numpy(labels[idx])
