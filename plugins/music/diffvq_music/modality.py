"""Music: the audio modality (log-mel in, Griffin-Lim out, WAV + spectrogram galleries, a log-mel
CNN judge of the classes, here major / minor) plus measures of whether the signals are music at
all: how tonal they are, whether their key's mode is the one asked for, how pitched they are.

It also takes `audio` data sets (`audio-folder`: your own recordings). Use more mel bands than
for speech: 64 bands over 0-8 kHz blur neighbouring semitones below 500 Hz, and Griffin-Lim then
loses the pitch (real chorale clips' tonality falls from 0.83 to 0.67 through 64 bands, to 0.82
through 128)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from torch import Tensor

from diffvq_audio.modality import AudioModality

from .chorales import MODES
from .tonality import spectral_flatness, tonality


class MusicModality(AudioModality):
    """Audio with music measures; recipes set `n_mels: 128`."""

    name: ClassVar[str] = "music"
    data_modalities: ClassVar[tuple[str, ...]] = ("audio",)
    signal_metric_notes: ClassVar[dict[str, str]] = {
        "tonality": "the best Pearson correlation of a clip's mean chroma with the 24 "
                    "Krumhansl-Kessler key profiles, averaged over clips (white noise about "
                    "0.55, silence 0)",
        "mode match": "the share of clips whose best-fitting key has the mode they were asked "
                      "for (real data: the chorale's mode, found on the whole score)",
        "flatness": "spectral flatness, geometric over arithmetic mean of the power spectrum, "
                    "averaged over loud frames (white noise about 0.56, pitched tones near 0, a "
                    "silent clip 1)",
    }

    def signal_metrics(self, signals: Tensor, labels: Tensor | None) -> dict[str, float]:
        """Waveforms `[N, T]` -> tonality, mode match (when the classes are the modes) and
        flatness, each averaged over the clips."""
        waves = signals.detach().float().cpu().numpy()
        keys = [tonality(w, self.sample_rate) for w in waves]
        out = {"tonality": float(np.mean([k[0] for k in keys]))}
        if labels is not None and tuple(self.info.class_names) == MODES:
            asked = [MODES[int(c)] for c in labels]
            out["mode match"] = float(np.mean([k[2] == m for k, m in zip(keys, asked)]))
        out["flatness"] = float(np.mean([spectral_flatness(w) for w in waves]))
        return out
