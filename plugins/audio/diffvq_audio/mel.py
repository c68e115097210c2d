"""The log-mel spectrogram a tokenizer sees, and its inverse back to sound.

Forward: magnitude STFT (Hann window, centred frames) -> mel filter bank (torchaudio's triangles,
each normalised to a weighted mean of its bins) -> natural log with a floor -> a *fixed* affine
map to roughly [-1, 1]. The constants are fixed rather than fit to each data set so that every
run, data set and plugin shares one scale: silence (the floor) sits at about -1 and a full-scale
tone at about +1.

Inverse: undo the affine map and the log, mel -> linear magnitude by least squares (the minimum-norm
solution of torchaudio's InverseMelScale, computed once as a pseudo-inverse, then refined by a few
non-negative multiplicative updates), then Griffin-Lim with momentum from a fixed random phase, so
the same spectrogram always gives the same waveform whatever the batch or device.

Frame rule: a waveform of T samples (T a multiple of `hop`) gives exactly T // hop frames (the
centred STFT's extra last frame is dropped). A 1-D VQ-VAE that downsamples by 2^k needs the frame
count to be a multiple of 2^k: `frames_for` rounds up, and the modality zero-pads to match.
"""

from __future__ import annotations

import math
import warnings

import torch
import torchaudio.functional as AF
from torch import Tensor

LOG_FLOOR = 1e-3  # band magnitude floor before the log: just above 16-bit quantisation noise
LOG_CENTER = -1.0  # ln-magnitude mapped to 0
LOG_SCALE = 6.0  # ln-magnitude units per model unit: the floor -> -0.98, a full-scale sine's
#                  band -> 0.8-1.0, white noise of RMS 0.005 -> about -0.25, of RMS 0.3 -> 0.4
ALIGN_FRAMES = 8  # frame counts are multiples of this by default (VQ-VAE downsample up to 8)


def frames_for(n_samples: int, hop: int, multiple: int = ALIGN_FRAMES) -> int:
    """Model frames for a clip of `n_samples`: ceil(n / hop) rounded up to a multiple."""
    frames = max(1, math.ceil(n_samples / hop))
    return math.ceil(frames / multiple) * multiple


def aligned_samples(seconds: float, sample_rate: int, hop: int = 256,
                    multiple: int = ALIGN_FRAMES) -> int:
    """The clip length in samples nearest to `seconds` that gives a whole number of frames,
    divisible by `multiple`: a multiple of `hop * multiple` samples (at least one such block).
    With the default hop 256 and multiple 8 that is a multiple of 2048 samples, which also suits
    hops 64 and 128."""
    block = hop * multiple
    return max(1, round(seconds * sample_rate / block)) * block


class LogMel:
    """Waveforms `[..., T]` <-> normalised log-mel `[..., n_mels, T // hop]`. Not an nn.Module:
    it has no parameters, and its constant tensors follow the input's device."""

    def __init__(self, sample_rate: int, n_fft: int = 1024, hop: int = 256, n_mels: int = 64,
                 f_min: float = 0.0, f_max: float | None = None, griffin_lim_iters: int = 32,
                 nnls_iters: int = 30, momentum: float = 0.99, seed: int = 0):
        f_max = float(f_max) if f_max is not None else sample_rate / 2
        if not 0 <= f_min < f_max <= sample_rate / 2:
            raise ValueError(f"mel range must satisfy 0 <= f_min < f_max <= sample_rate / 2 = "
                             f"{sample_rate / 2:g}, got f_min={f_min:g}, f_max={f_max:g}")
        if hop > n_fft:
            raise ValueError(f"hop ({hop}) must not exceed n_fft ({n_fft})")
        self.sample_rate, self.n_fft, self.hop, self.n_mels = sample_rate, n_fft, hop, n_mels
        self.griffin_lim_iters, self.nnls_iters = griffin_lim_iters, nnls_iters
        self.momentum = momentum
        self.seed = seed
        n_freqs = n_fft // 2 + 1
        with warnings.catch_warnings():  # torchaudio warns about empty bands; we refuse them
            warnings.simplefilter("ignore", UserWarning)
            fb = AF.melscale_fbanks(n_freqs, f_min, f_max, n_mels, sample_rate)  # [F, M]
        empty = (fb.sum(0) == 0).nonzero().flatten().tolist()
        if empty:
            raise ValueError(f"n_mels={n_mels} is too many for n_fft={n_fft} at {sample_rate} Hz: "
                             f"mel bands {empty[:5]} contain no STFT bin; lower n_mels or raise "
                             f"n_fft")
        # Each band is the weighted *mean* of its bins, so a flat spectrum stays flat: with
        # summed triangles, wide high bands would make faint broadband noise look loud.
        self.fb = fb / fb.sum(0)  # [F, M]
        self.fb_pinv = torch.linalg.pinv(self.fb.double().T).float()  # [F, M]
        self.window = torch.hann_window(n_fft)  # [n_fft]
        self._phase: Tensor | None = None  # [F, frames] fixed Griffin-Lim initial phase

    # -- forward ------------------------------------------------------------------------------
    def _stft(self, wave: Tensor) -> Tensor:
        """`[B, T]` -> complex `[B, F, T // hop + 1]`."""
        return torch.stft(wave, self.n_fft, self.hop, window=self.window.to(wave.device),
                          center=True, pad_mode="reflect", return_complex=True)

    def mel_magnitude(self, wave: Tensor) -> Tensor:
        """`[..., T]` (T a multiple of hop) -> mel magnitudes `[..., n_mels, T // hop]`."""
        T = wave.shape[-1]
        if T % self.hop:
            raise ValueError(f"waveform length {T} is not a multiple of hop {self.hop}")
        with torch.autocast(wave.device.type, enabled=False):
            flat = wave.float().reshape(-1, T)  # [B, T]
            spec = self._stft(flat).abs()[..., :T // self.hop]  # [B, F, frames]
            mel = torch.matmul(spec.transpose(1, 2), self.fb.to(wave.device)).transpose(1, 2)
        return mel.reshape(*wave.shape[:-1], self.n_mels, T // self.hop)

    def __call__(self, wave: Tensor) -> Tensor:
        return self.forward(wave)

    def forward(self, wave: Tensor) -> Tensor:
        """`[..., T]` -> normalised log-mel `[..., n_mels, T // hop]`, roughly in [-1, 1]."""
        return self.normalise(self.mel_magnitude(wave))

    @staticmethod
    def normalise(mel: Tensor) -> Tensor:
        """Mel magnitudes -> the model's scale (log with a floor, fixed affine map)."""
        return (mel.clamp_min(LOG_FLOOR).log() - LOG_CENTER) / LOG_SCALE

    @staticmethod
    def denormalise(x: Tensor) -> Tensor:
        """The model's scale -> mel magnitudes (values below the floor come back as the floor)."""
        return (x.float() * LOG_SCALE + LOG_CENTER).exp()

    @property
    def silence(self) -> float:
        """The normalised value of silence (the floor): padding value for model tensors."""
        return (math.log(LOG_FLOOR) - LOG_CENTER) / LOG_SCALE

    # -- inverse ------------------------------------------------------------------------------
    def mel_to_linear(self, mel: Tensor) -> Tensor:
        """Mel magnitudes `[B, M, N]` -> linear magnitudes `[B, F, N]` >= 0: the least-squares
        (minimum-norm) solution, clipped at 0, then a few multiplicative updates that lower
        ||fb^T S - mel|| while keeping S non-negative (Lee & Seung)."""
        fb, pinv = self.fb.to(mel.device), self.fb_pinv.to(mel.device)  # [F, M]
        spec = torch.matmul(pinv, mel).clamp_min(0) + 1e-8  # [B, F, N]
        num = torch.matmul(fb, mel)  # [B, F, N]
        for _ in range(self.nnls_iters):
            den = torch.matmul(fb, torch.matmul(fb.T, spec)) + 1e-8
            spec = spec * num / den
        return spec

    def _initial_phase(self, n_frames: int, device: torch.device) -> Tensor:
        """Unit complex phases `[F, n_frames]` from a fixed seed, the same for every clip."""
        if self._phase is None or self._phase.shape[1] < n_frames:
            gen = torch.Generator().manual_seed(self.seed)
            angle = 2 * math.pi * torch.rand(self.n_fft // 2 + 1, n_frames, generator=gen)
            self._phase = torch.polar(torch.ones_like(angle), angle)
        return self._phase[:, :n_frames].to(device)

    def griffin_lim(self, magnitude: Tensor, length: int) -> Tensor:
        """Linear magnitudes `[B, F, N]` -> waveforms `[B, length]` (fast Griffin-Lim: momentum)."""
        angles = self._initial_phase(magnitude.shape[-1], magnitude.device).expand_as(magnitude)
        window = self.window.to(magnitude.device)

        def istft(spec: Tensor) -> Tensor:
            return torch.istft(spec, self.n_fft, self.hop, window=window, center=True,
                               length=length)

        prev = torch.zeros_like(angles)
        for _ in range(self.griffin_lim_iters):
            rebuilt = self._stft(istft(magnitude * angles))
            angles = rebuilt - prev * (self.momentum / (1 + self.momentum))
            angles = angles / (angles.abs() + 1e-16)
            prev = rebuilt
        return istft(magnitude * angles)

    def inverse(self, x: Tensor) -> Tensor:
        """Normalised log-mel `[..., n_mels, N]` -> waveforms `[..., N * hop]`."""
        *lead, M, N = x.shape
        with torch.no_grad(), torch.autocast(x.device.type, enabled=False):
            mel = self.denormalise(x.reshape(-1, M, N))  # [B, M, N]
            spec = self.mel_to_linear(mel)  # [B, F, N]
            spec = torch.cat([spec, spec[..., -1:]], -1)  # the centred STFT's last frame
            wave = self.griffin_lim(spec, N * self.hop)  # [B, N * hop]
        return wave.reshape(*lead, N * self.hop)
