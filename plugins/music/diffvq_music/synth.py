"""A small, deterministic additive synthesizer: harmonic tones with an ADSR envelope.

Each voice (part) has its own timbre, a fixed profile of harmonic amplitudes, so that the four
voices of a chorale are told apart by ear and by a spectrogram. No randomness anywhere: the same
notes give the same bytes.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

# harmonic amplitude profiles (harmonic 1, 2, ...), one per voice; voices beyond cycle
PROFILES: tuple[tuple[float, ...], ...] = (
    (1.0, 0.25, 0.06, 0.02),                          # 0: flute-like, nearly pure
    (1.0, 0.5, 0.33, 0.25, 0.2, 0.17, 0.14, 0.12),    # 1: bright, sawtooth-like (1/n)
    (1.0, 0.0, 0.33, 0.0, 0.2, 0.0, 0.14, 0.0, 0.11), # 2: hollow, clarinet-like (odd only)
    (1.0, 0.85, 0.6, 0.3, 0.15, 0.08),                # 3: reedy, strong 2nd and 3rd
)
ATTACK, DECAY, SUSTAIN, RELEASE = 0.015, 0.08, 0.7, 0.06  # seconds, seconds, level, seconds
HEADROOM = 0.5  # the peak of a rendering (about -6 dBFS)

Note = tuple[float, float, float, int]  # (start_s, duration_s, midi_pitch, voice_index)


def midi_to_hz(pitch: float) -> float:
    return 440.0 * 2.0 ** ((pitch - 69.0) / 12.0)


def adsr(n_on: int, sample_rate: int) -> np.ndarray:
    """The envelope of a note held for `n_on` samples, followed by its release."""
    a = max(1, int(ATTACK * sample_rate))
    d = max(1, int(DECAY * sample_rate))
    r = max(1, int(RELEASE * sample_rate))
    env = np.full(n_on, SUSTAIN, np.float64)
    head = np.concatenate([np.linspace(0.0, 1.0, a, endpoint=False),
                           np.linspace(1.0, SUSTAIN, d, endpoint=False)])[:n_on]
    env[:len(head)] = head
    last = env[-1] if n_on else 0.0
    return np.concatenate([env, last * np.linspace(1.0, 0.0, r)])


def tone(pitch: float, duration_s: float, voice: int, sample_rate: int) -> np.ndarray:
    """One note: harmonics below Nyquist, shaped by the ADSR envelope (release included)."""
    n_on = max(1, int(round(duration_s * sample_rate)))
    env = adsr(n_on, sample_rate)
    f0 = midi_to_hz(pitch)
    profile = np.asarray(PROFILES[voice % len(PROFILES)], np.float64)
    k = np.arange(1, len(profile) + 1)
    keep = (k * f0 < 0.45 * sample_rate) & (profile > 0)
    t = np.arange(len(env)) / sample_rate
    waves = np.sin(2.0 * np.pi * f0 * np.outer(k[keep], t))
    amp = profile[keep] / profile.sum()
    return (amp @ waves) * env


def render_notes(notes: Iterable[Sequence[float]], sample_rate: int = 16000,
                 total_s: float | None = None) -> np.ndarray:
    """Notes (start_s, duration_s, midi_pitch, voice_index) -> mono float32, peak = HEADROOM
    (silence stays zeros). The length covers the last release, or `total_s` when given."""
    notes = [(float(s), float(d), float(p), int(v)) for s, d, p, v in notes if d > 0]
    end = max((s + d + RELEASE for s, d, _, _ in notes), default=0.0)
    n = int(np.ceil((end if total_s is None else total_s) * sample_rate)) + 1
    out = np.zeros(n, np.float64)
    for s, d, p, v in sorted(notes):
        w = tone(p, d, v, sample_rate)
        i = int(round(s * sample_rate))
        if i >= n:
            continue
        w = w[:n - i]
        out[i:i + len(w)] += w
    peak = float(np.abs(out).max()) if n else 0.0
    if peak > 0:
        out *= HEADROOM / peak
    return out.astype(np.float32)
