"""Optional rendering through FluidSynth with a General MIDI soundfont (Debian:
`apt-get install fluidsynth fluid-soundfont-gm`), instead of the built-in synthesizer.

Chorales get a woodwind quartet, one General MIDI program per voice (flute, oboe, clarinet,
bassoon from soprano down), so that the voices keep distinct timbres as with the synthesizer;
your own MIDI files keep their instruments. FluidSynth renders offline (`-F`, no audio device) at
the data set's sample rate; the result is mixed to mono and scaled to the synthesizer's peak.
"""

from __future__ import annotations

import copy
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np

from diffvq import optional
from diffvq.errors import UserError

from .synth import HEADROOM

SOUNDFONTS = ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/sounds/sf2/default-GM.sf2")
VOICE_PROGRAMS = (73, 68, 71, 70)  # GM programs (0-based): flute, oboe, clarinet, bassoon
GAIN = 0.5  # FluidSynth's master gain: four voices without clipping
INSTALL = "install it (Debian: apt-get install fluidsynth fluid-soundfont-gm)"
PACKAGES = ("fluidsynth", "fluid-soundfont-gm")  # Debian names, for DIFFVQ_HIDE_OPTIONAL


class RenderError(Exception):
    """FluidSynth could not render a file (a malformed MIDI file, most often)."""


def available() -> bool:
    """FluidSynth and a General MIDI soundfont are installed (and not hidden by
    DIFFVQ_HIDE_OPTIONAL): what rendering with `renderer: fluidsynth` needs."""
    try:
        fluidsynth_binary()
        find_soundfont(None)
    except UserError:
        return False
    return True


def fluidsynth_binary() -> str:
    """The fluidsynth program on PATH; a UserError if it is missing or hidden."""
    found = optional.which("fluidsynth", package=PACKAGES[0])
    if found is None:
        raise UserError(f"data.renderer: fluidsynth is not installed; {INSTALL}, or use "
                        f"renderer: synth")
    return found


@lru_cache(maxsize=None)
def fluidsynth_version() -> str:
    """FluidSynth's first `--version` line (asked once per process: it keys caches)."""
    proc = subprocess.run([fluidsynth_binary(), "--version"], capture_output=True, text=True)
    return proc.stdout.split("\n")[0].strip()


def find_soundfont(path: str | None) -> Path:
    """The given soundfont, else the first of SOUNDFONTS that exists; a UserError if none."""
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise UserError(f"data.soundfont: {p} is not a file")
        return p
    for candidate in SOUNDFONTS:
        if Path(candidate).is_file() and not optional.hidden(PACKAGES[1]):
            return Path(candidate)
    raise UserError(f"data.soundfont: no General MIDI soundfont found ({', '.join(SOUNDFONTS)}); "
                    f"{INSTALL}, or give data.soundfont")


def render_midi_file(midi: Path, sample_rate: int, soundfont: Path) -> np.ndarray:
    """A MIDI file -> mono float32 at `sample_rate`, peak = HEADROOM. Raises RenderError."""
    import soundfile

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.wav"
        proc = subprocess.run(
            [fluidsynth_binary(), "-n", "-i", "-q", "-g", str(GAIN), "-r", str(sample_rate),
             "-T", "wav", "-F", str(out), str(soundfont), str(midi)],
            capture_output=True, text=True, timeout=600)
        if proc.returncode or not out.is_file() or out.stat().st_size <= 44:
            why = (proc.stderr or proc.stdout).strip().splitlines()
            raise RenderError(why[-1][:120] if why else "fluidsynth wrote no audio")
        data, sr = soundfile.read(str(out), dtype="float32", always_2d=True)
    if sr != sample_rate:
        raise RenderError(f"fluidsynth wrote {sr} Hz, not the {sample_rate} Hz asked for")
    wave = data.mean(axis=1).astype(np.float64)
    peak = float(np.abs(wave).max()) if len(wave) else 0.0
    if peak > 0:
        wave *= HEADROOM / peak
    return wave.astype(np.float32)


def render_score(score, sample_rate: int, soundfont: Path) -> np.ndarray:
    """A music21 score, each part a woodwind (VOICE_PROGRAMS, cycling), through FluidSynth."""
    from music21 import instrument

    score = copy.deepcopy(score)  # the caller's score keeps its instruments
    for v, part in enumerate(score.parts):
        for old in list(part.recurse().getElementsByClass(instrument.Instrument)):
            old.activeSite.remove(old)
        inst = instrument.Instrument()
        inst.midiProgram = VOICE_PROGRAMS[v % len(VOICE_PROGRAMS)]
        part.insert(0, inst)
    with tempfile.TemporaryDirectory() as tmp:
        midi = Path(tmp) / "score.mid"
        score.write("midi", fp=str(midi))
        return render_midi_file(midi, sample_rate, soundfont)
