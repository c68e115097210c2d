"""music21 scores -> notes for the synthesizer, the mode label, and clips.

The Bach chorales come with music21 (its bundled corpus: nothing is downloaded). A score is read
with repeats expanded; one that music21 cannot parse or expand is skipped and the reason counted
(`ScoreError`).
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from .synth import render_notes

DEFAULT_BPM = 120.0
MODES = ("major", "minor")


class ScoreError(Exception):
    """A score that cannot be used; `reason` is a short name to count (the exception's type)."""

    def __init__(self, where: str, reason: str, detail: str = ""):
        super().__init__(f"{where}: {reason}{': ' + detail if detail else ''}")
        self.where, self.reason = where, reason


def music21_version() -> str:
    import music21

    return str(music21.__version__)


def load_chorale(number: int):
    """Riemenschneider chorale `number` as a music21 Score (None when the corpus lacks it)."""
    from music21 import corpus

    it = corpus.chorales.Iterator(number, number, numberingSystem="riemenschneider",
                                  returnType="stream")
    return next(iter(it), None)


def highest_chorale() -> int:
    from music21 import corpus

    return int(corpus.chorales.Iterator(numberingSystem="riemenschneider").highestNumber)


def expand(score, where: str):
    """The score with its repeats expanded (unchanged when it has none). Raises ScoreError."""
    from music21.repeat import ExpanderException

    try:
        return score.expandRepeats()
    except ExpanderException as e:
        raise ScoreError(where, "ExpanderException", str(e)[:120]) from e
    except Exception as e:  # music21 raises many kinds on odd scores
        raise ScoreError(where, type(e).__name__, str(e)[:120]) from e


def mode_of(score) -> str:
    """"major" or "minor": music21's key analysis (Krumhansl-Schmuckler), else the first key
    signature's mode, else "major"."""
    try:
        k = score.analyze("key")
        if k.mode in MODES:
            return k.mode
    except Exception:
        pass
    from music21 import key

    for ks in score.recurse().getElementsByClass((key.Key, key.KeySignature)):
        mode = getattr(ks, "mode", None)
        if mode in MODES:
            return mode
    return "major"


def bpm_of(score) -> float:
    """The first metronome mark's quarter-note tempo, else DEFAULT_BPM."""
    from music21 import tempo

    mm = score.recurse().getElementsByClass(tempo.MetronomeMark).first()
    if mm is not None:
        try:
            q = float(mm.getQuarterBPM())
            if q > 0:
                return q
        except Exception:
            pass
    return DEFAULT_BPM


def notes_of(score, bpm: float | None = None) -> list[tuple[float, float, float, int]]:
    """(start_s, duration_s, midi_pitch, voice) for every sounding pitch; voice = part index
    (a score without parts is one voice). Ties are merged; grace notes are dropped."""
    from music21 import chord, note

    bpm = bpm_of(score) if bpm is None else bpm
    spq = 60.0 / bpm  # seconds per quarter note
    parts = list(score.parts) if hasattr(score, "parts") and len(score.parts) else [score]
    out = []
    for v, part in enumerate(parts):
        flat = part.stripTies().flatten()
        for el in flat.notes:
            ql = float(el.quarterLength)
            if ql <= 0:
                continue
            start = float(el.getOffsetInHierarchy(flat)) * spq
            pitches = el.pitches if isinstance(el, chord.Chord) else (
                (el.pitch,) if isinstance(el, note.Note) else ())
            out.extend((start, ql * spq, float(p.ps), v) for p in pitches)
    return out


def render_score(score, sample_rate: int) -> np.ndarray:
    return render_notes(notes_of(score), sample_rate)


def cut_clips(wave: np.ndarray, n_samples: int, min_rms: float) -> np.ndarray:
    """Consecutive non-overlapping clips `[K, n_samples]` (the tail shorter than a clip is
    dropped), without those whose RMS is below `min_rms`."""
    k = len(wave) // n_samples
    clips = np.asarray(wave[:k * n_samples], np.float32).reshape(k, n_samples)
    rms = np.sqrt((clips.astype(np.float64) ** 2).mean(1)) if k else np.zeros(0)
    return clips[rms >= min_rms]


def report_skips(name: str, skipped: Counter, used: int) -> None:
    import sys

    if skipped:
        why = ", ".join(f"{n} {r}" for r, n in sorted(skipped.items()))
        print(f"{name}: used {used}, skipped {sum(skipped.values())} ({why})", file=sys.stderr)
