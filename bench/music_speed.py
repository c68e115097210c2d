"""Music speed as real-time factors (seconds of audio per second of compute, > 1: faster than
real time): reading Bach chorales with music21 (parse, repeat expansion, key analysis), rendering
them with the additive synthesizer, and cutting clips; then everything `audio_speed.py` measures
(log-mel, tokenizer encode/decode, Griffin-Lim, generation per prior) for a music recipe.

    python bench/music_speed.py                      # chorales 1-24, recipes/music/bach-compare.yaml
    python bench/music_speed.py RECIPE [key=value ...]

One process, serial (the data set itself spreads chorales over all cores). Every run parses the
chorales from their files: diffvq never uses music21's pickle cache (`diffvq_music.m21cache`).
"""

from __future__ import annotations

import sys
import time


from audio_speed import main as audio_main
from diffvq.summary import table
from diffvq_music import chorales as ch
from diffvq_music.datasets import MIN_RMS
from diffvq_music.synth import render_notes

SAMPLE_RATE, CHORALES = 16000, range(1, 25)


def rendering() -> None:
    spent = {"parse (music21)": 0.0, "expand repeats + key": 0.0, "notes": 0.0,
             "synthesize": 0.0, "cut clips": 0.0}
    audio_s, used = 0.0, 0
    for n in CHORALES:
        t0 = time.perf_counter()
        score = ch.load_chorale(n)
        t1 = time.perf_counter()
        try:
            score = ch.expand(score, f"chorale {n}")
        except ch.ScoreError:
            continue
        ch.mode_of(score)
        t2 = time.perf_counter()
        notes = ch.notes_of(score)
        t3 = time.perf_counter()
        wave = render_notes(notes, SAMPLE_RATE)
        t4 = time.perf_counter()
        ch.cut_clips(wave, 32768, MIN_RMS)
        t5 = time.perf_counter()
        for k, a, b in zip(spent, (t0, t1, t2, t3, t4), (t1, t2, t3, t4, t5)):
            spent[k] += b - a
        audio_s += len(wave) / SAMPLE_RATE
        used += 1
    total = sum(spent.values())
    rows = [[k, f"{v / used * 1000:.0f}", f"{audio_s / v:.0f}"] for k, v in spent.items()]
    rows.append(["all", f"{total / used * 1000:.0f}", f"{audio_s / total:.0f}"])
    print(f"# chorales {CHORALES.start}-{CHORALES.stop - 1}: {used} rendered, "
          f"{audio_s:.0f} s of audio at {SAMPLE_RATE} Hz (mean {audio_s / used:.1f} s each)")
    print(table(["stage", "ms/chorale", "real-time factor"], rows))


def main(argv: list[str]) -> int:
    print(f"# python bench/music_speed.py {' '.join(argv)}".rstrip())
    rendering()
    print()
    return audio_main(argv or ["recipes/music/bach-compare.yaml"])


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
