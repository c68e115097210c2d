"""music21 scores -> notes for the synthesizer, the mode label, and clips.

The Bach chorales come with music21 (its bundled corpus: nothing is downloaded). A score is read
with repeats expanded; one that music21 cannot parse or expand is skipped and the reason counted
(`ScoreError`). Every parse bypasses music21's shared pickle cache (`m21cache`). A MIDI file is
checked by `midicheck` before music21 reads it, and music21 and the rendering run under a time
limit, so that no one file can stall a data set.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .midicheck import MAX_NOTES, MAX_SECONDS, BadMidi, MidiLimits, check_file
from .synth import render_notes

DEFAULT_BPM = 120.0
DECODE_SECONDS = 300.0  # midi-folder's default max_decode_seconds: a real file takes seconds
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
    """Riemenschneider chorale `number` as a music21 Score (None when the corpus lacks it),
    parsed from the corpus file itself (`m21cache`: never from a pickle in a shared folder)."""
    from music21 import corpus

    from .m21cache import parse_corpus

    it = corpus.chorales.Iterator(number, number, numberingSystem="riemenschneider",
                                  returnType="filename")
    name = next(iter(it), None)
    return None if name is None else parse_corpus(name)


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


def render_any(score, sample_rate: int, soundfont: str | None, where: str) -> np.ndarray:
    """The synthesizer's rendering, or FluidSynth's when a soundfont is given."""
    if soundfont is None:
        return render_score(score, sample_rate)
    from . import fluid

    try:
        return fluid.render_score(score, sample_rate, Path(soundfont))
    except fluid.RenderError as e:
        raise ScoreError(where, "fluidsynth failed", str(e)) from e


def cut_clips(wave: np.ndarray, n_samples: int, min_rms: float) -> np.ndarray:
    """Consecutive non-overlapping clips `[K, n_samples]` (the tail shorter than a clip is
    dropped), without those whose RMS is below `min_rms`."""
    k = len(wave) // n_samples
    clips = np.asarray(wave[:k * n_samples], np.float32).reshape(k, n_samples)
    rms = np.sqrt((clips.astype(np.float64) ** 2).mean(1)) if k else np.zeros(0)
    return clips[rms >= min_rms]


class Skipped(NamedTuple):
    """Why a score was left out (a ScoreError that can cross a process boundary)."""

    reason: str  # a short name to count
    message: str  # where and what, for an error message


def chorale_clips(number: int, sample_rate: int, n_samples: int, min_rms: float,
                  soundfont: str | None = None) -> tuple[np.ndarray, int] | Skipped:
    """Chorale `number` parsed, expanded, labelled, rendered (by the synthesizer, or through
    FluidSynth with `soundfont`) and cut: (clips `[K, n_samples]`, mode index), or why it was
    skipped. A top-level function, so that worker processes can run it."""
    where = f"chorale {number}"
    try:
        try:
            score = load_chorale(number)
        except Exception as e:
            raise ScoreError(where, type(e).__name__, str(e)[:120]) from e
        if score is None:
            raise ScoreError(where, "not in corpus")
        score = expand(score, where)
        label = MODES.index(mode_of(score))
        clips = cut_clips(render_any(score, sample_rate, soundfont, where), n_samples, min_rms)
        if not len(clips):
            raise ScoreError(where, "shorter than one clip")
    except ScoreError as e:
        return Skipped(e.reason, str(e))
    return clips, label


def midi_file_clips(path: str, sample_rate: int, n_samples: int, min_rms: float,
                    soundfont: str | None = None,
                    limits: MidiLimits = MidiLimits(MAX_SECONDS, MAX_NOTES),
                    max_decode_seconds: float = DECODE_SECONDS) -> np.ndarray | Skipped:
    """A MIDI file checked against `limits` (`midicheck`), parsed by music21 and rendered by the
    synthesizer (or given to FluidSynth whole, instruments and all, with `soundfont`), cut into
    clips `[K, n_samples]`; or why it was skipped. Parsing and rendering stop after
    `max_decode_seconds` (in a process's main thread, where worker processes run this)."""
    from diffvq.limits import TooSlow, time_limit

    try:
        try:
            check_file(Path(path), limits)
        except BadMidi as e:
            raise ScoreError(path, e.reason, e.detail) from e
        try:
            with time_limit(max_decode_seconds):
                wave = _render_midi(path, sample_rate, soundfont)
        except TooSlow:
            raise ScoreError(path, "too slow to decode",
                             f"not parsed and rendered within {max_decode_seconds:g} s "
                             f"(data.max_decode_seconds)") from None
        clips = cut_clips(wave, n_samples, min_rms)
        if not len(clips):
            raise ScoreError(path, "shorter than one clip or silent")
    except ScoreError as e:
        return Skipped(e.reason, str(e))
    return clips


def _render_midi(path: str, sample_rate: int, soundfont: str | None) -> np.ndarray:
    """A MIDI file's waveform: FluidSynth's with a soundfont, else music21's parse through the
    synthesizer. Raises ScoreError."""
    if soundfont is not None:
        from . import fluid

        try:
            return fluid.render_midi_file(Path(path), sample_rate, Path(soundfont))
        except fluid.RenderError as e:
            raise ScoreError(path, "fluidsynth failed", str(e)) from e
    from .m21cache import parse_midi

    try:
        score = parse_midi(path)
    except Exception as e:
        raise ScoreError(path, type(e).__name__, str(e)[:120]) from e
    return render_score(score, sample_rate)


def map_in_workers(fn, items: list, *args) -> list:
    """`[fn(item, *args) for item in items]`, spread over up to `os.cpu_count()` fresh worker
    processes (spawned, not forked: the parent may hold torch's threads). Order is kept, so the
    result is the same as a serial loop."""
    import os
    from concurrent.futures import ProcessPoolExecutor
    from itertools import repeat
    from multiprocessing import get_context

    workers = max(1, min(os.cpu_count() or 1, len(items) // 8))
    if workers == 1:
        return [fn(i, *args) for i in items]
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        return list(pool.map(fn, items, *(repeat(a) for a in args), chunksize=4))


def report_skips(name: str, skipped: Counter, used: int) -> None:
    import sys

    if skipped:
        why = ", ".join(f"{n} {r}" for r, n in sorted(skipped.items()))
        print(f"{name}: used {used}, skipped {sum(skipped.values())} ({why})", file=sys.stderr)
