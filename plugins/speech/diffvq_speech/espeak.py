"""eSpeak NG through ctypes, from the library and data the PyPI package `espeakng-loader` ships.

Two halves:

- in the calling process: find the library and data, read the version, and list the English
  accents (`lang/gmw/en*`) and voice variants (`voices/!v/*`) that are really installed — eSpeak
  NG silently falls back to its default voice for an unknown variant, so names are validated
  against these files before anything is synthesised;
- `python -m diffvq_speech.espeak`: a worker that synthesises a list of jobs and writes the
  results to stdout. eSpeak NG keeps internal synthesis state between utterances (neither
  re-initialising nor its random seed resets it), so the same call gives different samples
  depending on what was spoken before in the same process. A fresh worker process per fixed
  chunk of jobs makes every chunk's output a function of the chunk alone: byte-identical runs,
  whatever else the caller's process did.

Constants are those of espeak-ng's `speak_lib.h` (stable C API since eSpeak 1.x).
"""

from __future__ import annotations

import ctypes
import io
import json
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np

from diffvq.errors import UserError

# speak_lib.h
AUDIO_OUTPUT_SYNCHRONOUS = 2  # espeak_AUDIO_OUTPUT: synthesise into the callback, no playback
INITIALIZE_DONT_EXIT = 0x8000  # report errors instead of calling exit()
POS_CHARACTER = 1  # espeak_POSITION_TYPE
CHARS_AUTO = 0  # text encoding: UTF-8 with 8-bit fallback
RATE, VOLUME, PITCH, RANGE = 1, 2, 3, 4  # espeak_PARAMETER
EE_OK = 0
RATE_MIN, RATE_MAX = 80, 450  # words per minute
NATIVE_RATE = 22050  # Hz: eSpeak NG's output rate (espeak_Initialize returns it)
VOLUME_USED = 60  # of 100 (normal): headroom, so that no voice saturates 16 bits (klatt4 did)
FIX = "pip install espeakng-loader"

SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                                 ctypes.c_void_p)


def _loader():
    try:
        import espeakng_loader
    except ImportError:
        raise UserError(f"spoken-digits needs eSpeak NG from the PyPI package espeakng-loader, "
                        f"which is not installed: `{FIX}`") from None
    return espeakng_loader


@lru_cache(maxsize=1)
def data_path() -> Path:
    """The espeak-ng-data folder espeakng-loader ships."""
    try:
        return Path(_loader().get_data_path())
    except RuntimeError as exc:
        raise UserError(f"espeakng-loader's eSpeak NG data is missing ({exc}); reinstall it: "
                        f"`pip install --force-reinstall espeakng-loader`") from None


@lru_cache(maxsize=1)
def library() -> ctypes.CDLL:
    """libespeak-ng, loaded (not initialised: the calling process never synthesises)."""
    path = _loader().get_library_path()
    try:
        lib = ctypes.CDLL(path)
    except OSError as exc:
        raise UserError(f"cannot load eSpeak NG from {path} ({exc}); reinstall it: "
                        f"`pip install --force-reinstall espeakng-loader`") from None
    lib.espeak_Info.restype = ctypes.c_char_p
    lib.espeak_Info.argtypes = [ctypes.POINTER(ctypes.c_char_p)]
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_SetSynthCallback.argtypes = [SynthCallback]
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                 ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
    return lib


@lru_cache(maxsize=1)
def version() -> str:
    """eSpeak NG's and espeakng-loader's versions: "espeak-ng 1.52.0 / espeakng-loader 0.2.4"."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        loader = dist_version("espeakng-loader")
    except PackageNotFoundError:
        loader = "?"
    return f"espeak-ng {library().espeak_Info(None).decode()} / espeakng-loader {loader}"


@lru_cache(maxsize=1)
def english_accents() -> dict[str, str]:
    """Accent code (the first `language` line of each `lang/gmw/en*` file, e.g. "en-gb-scotland")
    -> the voice name eSpeak NG accepts (the file name, lower-case; "en" for en-gb). The Shavian
    alphabet "accent" is left out: it is a script, not a pronunciation."""
    accents = {}
    for f in sorted((data_path() / "lang" / "gmw").glob("en*")):
        codes = [line.split()[1] for line in f.read_text(errors="replace").splitlines()
                 if line.startswith("language ") and len(line.split()) > 1]
        if codes and codes[0] != "en-shaw":
            accents[codes[0].lower()] = f.name.lower()
    return accents


@lru_cache(maxsize=1)
def variants() -> tuple[str, ...]:
    """The voice variants installed (`voices/!v/*`: m1..m8, f1..f5, klatt..klatt6, ...)."""
    return tuple(sorted(f.name for f in (data_path() / "voices" / "!v").iterdir() if f.is_file()))


# -- the worker (runs in a fresh process) --------------------------------------------------------

def trim_bounds(wave: np.ndarray, rel_threshold: float = 0.01, margin: int = 110
                ) -> tuple[int, int]:
    """[start, stop) of `wave` without its leading and trailing silence: samples quieter than
    `rel_threshold` of the peak, keeping `margin` samples (5 ms at 22 kHz) on each side."""
    loud = np.flatnonzero(np.abs(wave.astype(np.int32)) > rel_threshold * np.abs(wave).max())
    if len(loud) == 0:
        return 0, 0
    return max(0, int(loud[0]) - margin), min(len(wave), int(loud[-1]) + 1 + margin)


def synthesise(jobs: list[list], max_samples: int) -> dict[str, np.ndarray]:
    """Speak each job `[voice, text, rate, pitch, range]` and trim its silence. A word longer than
    `max_samples` (native rate) is spoken again faster, up to RATE_MAX; the rate used is returned.
    Call once per fresh process (see the module docstring)."""
    lib = library()
    rate_hz = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, str(data_path()).encode(),
                                    INITIALIZE_DONT_EXIT)
    if rate_hz <= 0:
        raise UserError(f"eSpeak NG failed to initialise with data {data_path()}; reinstall it: "
                        f"`pip install --force-reinstall espeakng-loader`")
    if hasattr(lib, "espeak_ng_SetRandSeed"):  # newer espeak-ng: its noise generator's seed
        lib.espeak_ng_SetRandSeed(ctypes.c_long(0))
    chunks: list[np.ndarray] = []

    def collect(wav, n, events):  # -> 0: go on
        if wav and n > 0:
            chunks.append(np.ctypeslib.as_array(wav, (n,)).copy())
        return 0

    callback = SynthCallback(collect)  # kept alive for the whole loop
    lib.espeak_SetSynthCallback(callback)
    waves, rates = [], []
    for voice, text, rate, pitch, pitch_range in jobs:
        if lib.espeak_SetVoiceByName(voice.encode()) != EE_OK:
            raise UserError(f"eSpeak NG has no voice {voice!r}")
        while True:
            chunks.clear()
            for param, value in ((RATE, rate), (VOLUME, VOLUME_USED), (PITCH, pitch),
                                 (RANGE, pitch_range)):
                lib.espeak_SetParameter(param, int(value), 0)
            buf = text.encode() + b"\0"
            status = lib.espeak_Synth(buf, len(buf), 0, POS_CHARACTER, 0, CHARS_AUTO, None, None)
            if status != EE_OK:
                raise RuntimeError(f"espeak_Synth failed for {voice} {text!r}")
            lib.espeak_Synchronize()
            wave = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
            start, stop = trim_bounds(wave) if len(wave) else (0, 0)
            if stop - start <= max_samples or rate >= RATE_MAX:
                break
            rate = min(RATE_MAX, int(np.ceil(rate * (stop - start) / max_samples * 1.05)))
        waves.append(wave[start:stop])
        rates.append(rate)
    return {"sample_rate": np.array(rate_hz),
            "lengths": np.array([len(w) for w in waves], np.int64),
            "rates": np.array(rates, np.int64),
            "samples": np.concatenate(waves) if waves else np.zeros(0, np.int16)}


def main() -> None:
    """Read `{"jobs": [...], "max_samples": n}` as JSON on stdin, write an .npz to stdout."""
    request = json.load(sys.stdin)
    try:
        result = synthesise(request["jobs"], int(request["max_samples"]))
    except UserError as exc:
        print(str(exc), file=sys.stderr)
        sys.exit(2)
    out = io.BytesIO()
    np.savez(out, **result)
    sys.stdout.buffer.write(out.getvalue())


if __name__ == "__main__":
    main()
