"""`bach-chorales` and `midi-folder`: scores rendered with the additive synthesizer, for the
music modality.

`bach-chorales`: the Bach chorales bundled with music21 (Riemenschneider numbering; nothing is
downloaded), repeats expanded, each part a voice with its own timbre, at the score's tempo or 120
bpm, cut into consecutive `seconds`-long clips (near-silent clips dropped). Label: the chorale's
mode, "major" or "minor" (music21's key analysis). Train, validation and test are split by
chorale, seeded: no chorale gives clips to two splits (test: `test_fraction` of the chorales;
validation: `validation_fraction` of the others, `diffvq.splits`). A chorale that music21 cannot parse or expand is skipped; the reasons
are counted, printed on stderr and given in `info().extra["skipped"]` (once generated).

The clip length is `seconds` rounded to a multiple of 2048 samples (STFT hop 256 x VQ-VAE
downsampling 8; `diffvq_audio.mel.aligned_samples`). The rendered corpus is cached as .npy files
under `<diffvq cache>/datasets/bach-chorales-<hash>` (the hash covers every parameter and the
music21 version): same parameters, byte-identical arrays.

`midi-folder`: your MIDI files, `path/<class>/*.mid` (one sub-folder per class) or directly in
`path` (unlabelled), parsed with music21 and rendered the same way (not cached: it is quick).
Each file is bounded before music21 reads it (`midicheck`: not cut short, at most
`max_file_seconds` long and `max_notes` notes) and while it is parsed and rendered
(`max_decode_seconds`); a file over a limit is an error like any unreadable file (`on_error`).
Splits are by file, per class: all clips of one file are in one split.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections import Counter
from pathlib import Path
from typing import Annotated, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field
from torch import Tensor

from diffvq import arraycache, classfolders, splits
from diffvq.errors import UserError
from diffvq.interfaces import DataInfo
from diffvq.splits import VALIDATION_FRACTION
from diffvq_audio.mel import aligned_samples

from . import chorales as ch
from . import midicheck

FORMAT = "bach-chorales-v1"  # bump when the rendering procedure changes
FILES = ("signals", "labels", "chorales")  # cached per pool: "train" (train + validation), "test"
MIDI_SUFFIXES = {".mid", ".midi"}
MIN_RMS = 1e-3  # about -60 dBFS: quieter clips (a long rest, the last release) are dropped


def cache_dir() -> Path:
    from diffvq.judge import cache_root

    return cache_root() / "datasets"


def _own_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("diffvq-music")
    except PackageNotFoundError:
        return "?"


def _soundfont(renderer: str, soundfont: str | None) -> str | None:
    """The soundfont path FluidSynth will use (None for the synthesizer); checked now, so that
    a missing FluidSynth or soundfont stops a recipe before any work."""
    if renderer == "synth":
        if soundfont is not None:
            raise UserError("data.soundfont: only used with renderer: fluidsynth")
        return None
    from . import fluid

    fluid.fluidsynth_binary()
    return str(fluid.find_soundfont(soundfont))


def _renderer_params(soundfont: str | None) -> dict:
    """What identifies the rendering in a cache key: nothing more for the synthesizer; the
    soundfont's path and size, and FluidSynth's version, otherwise."""
    if soundfont is None:
        return {}
    from . import fluid

    return {"renderer": "fluidsynth", "soundfont": soundfont,
            "soundfont_bytes": Path(soundfont).stat().st_size,
            "fluidsynth": fluid.fluidsynth_version()}


def _renderer_suffix(soundfont: str | None) -> str:
    """FluidSynth's identity for a fingerprint ("" for the synthesizer)."""
    return " / " + json.dumps(_renderer_params(soundfont), sort_keys=True) if soundfont else ""


def split_groups(groups: list[int], test_fraction: float, seed: int) -> dict[str, set[int]]:
    """Groups (chorales, files) -> train/test, seeded; at least one of each when there are two."""
    perm = np.random.default_rng([seed, 0]).permutation(len(groups))
    k = int(round(test_fraction * len(groups)))
    if len(groups) >= 2 and test_fraction > 0:
        k = min(max(k, 1), len(groups) - 1)
    else:
        k = 0
    test = {groups[i] for i in perm[:k]}
    return {"train": set(groups) - test, "test": test}


class BachChorales:
    """Bach's four-part chorales (music21's corpus), rendered; labels: major / minor.
    Signals `[N, T]` float32 in [-1, 1] at `sample_rate`, labels `[N]`."""

    name: ClassVar[str] = "bach-chorales"
    modality: ClassVar[str] = "music"

    def __init__(self, *,
                 seconds: Annotated[float, Field(gt=0, le=30)] = 2.048,
                 max_chorales: Annotated[int, Field(gt=0)] | None = None,
                 seed: int = 0,
                 sample_rate: Annotated[int, Field(ge=4000, le=48000)] = 16000,
                 test_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.2,
                 validation_fraction: Annotated[float, Field(ge=0, lt=1)] = VALIDATION_FRACTION,
                 renderer: Literal["synth", "fluidsynth"] = "synth",
                 soundfont: str | None = None):
        """seconds: clip length (rounded to a multiple of 2048 samples). max_chorales: use the
        first N chorales in Riemenschneider order (None: all). seed: the split of chorales.
        test_fraction: share of chorales held out for the test split. validation_fraction:
        share of the others held out for the validation split (at least one). renderer: the
        built-in synthesizer, or FluidSynth (installed separately) with `soundfont` (None: the
        Debian General MIDI soundfont)."""
        self.seconds, self.max_chorales, self.seed = seconds, max_chorales, seed
        self.sample_rate, self.test_fraction = sample_rate, test_fraction
        self.validation_fraction = validation_fraction
        self.n_samples = aligned_samples(seconds, sample_rate)
        self.renderer, self.soundfont = renderer, _soundfont(renderer, soundfont)

    def params(self) -> dict:
        return {"format": FORMAT, "n_samples": self.n_samples, "max_chorales": self.max_chorales,
                "seed": self.seed, "sample_rate": self.sample_rate,
                "test_fraction": self.test_fraction, "min_rms": MIN_RMS,
                "music21": ch.music21_version(), **_renderer_params(self.soundfont)}

    def cache_path(self) -> Path:
        key = hashlib.sha256(json.dumps(self.params(), sort_keys=True).encode()).hexdigest()[:16]
        return cache_dir() / f"bach-chorales-{key}"

    def info(self) -> DataInfo:
        extra: dict = {"seconds": self.n_samples / self.sample_rate}
        try:  # the parse counts, when the corpus has been rendered already
            meta = json.loads((self.cache_path() / "meta.json").read_text())
            extra.update({k: meta[k] for k in ("used", "skipped")})
            pool = np.load(self.cache_path() / "train.chorales.npy", allow_pickle=False)
            test = meta["split_chorales"]["test"]
            carved = self._carve(pool)
            extra["split_chorales"] = {**{s: np.unique(pool[idx]).tolist()
                                          for s, idx in carved.items()}, "test": test}
            extra["counts"] = {**{s: len(idx) for s, idx in carved.items()},
                               "test": meta["counts"]["test"]}
        except (OSError, ValueError, KeyError):
            pass
        return DataInfo("music", (self.n_samples,), ch.MODES, sample_rate=self.sample_rate,
                        extra=extra)

    def fingerprint(self) -> str:
        return "music21 " + ch.music21_version() + " / diffvq-music " + _own_version() + \
            " / " + FORMAT + _renderer_suffix(self.soundfont)

    def load(self, split: str) -> tuple[Tensor, Tensor]:
        a = self.arrays(split)
        return torch.from_numpy(a["signals"]), torch.from_numpy(a["labels"])

    def arrays(self, split: str) -> dict[str, np.ndarray]:
        """A split's arrays: signals [N, T] float32, labels [N] int64 (0 major, 1 minor),
        chorales [N] (Riemenschneider number); rendered on first use. The cache holds the test
        split and the train pool; validation is carved from the pool by chorale when read (the
        rendering does not depend on validation_fraction, so changing it re-renders nothing)."""
        splits.check_split(split, self.name)
        pool = "test" if split == "test" else "train"
        d = self.cache_path()
        try:
            a = arraycache.read_entry(d, pool, FILES)
        except (OSError, ValueError, KeyError, json.JSONDecodeError):  # missing or damaged
            corpus, meta = self.generate()
            arraycache.write_entry(d, corpus, FILES, {"params": self.params(), **meta})
            a = corpus[pool]
        if pool == "test":
            return a
        idx = self._carve(a["chorales"])[split]
        return {k: v[idx] for k, v in a.items()}

    def _carve(self, chorales: np.ndarray) -> dict[str, np.ndarray]:
        """Clip indices of the train pool (its `chorales` column) -> train / validation, whole
        chorales at a time."""
        return splits.carve_validation(np.arange(len(chorales)), self.validation_fraction,
                                       self.seed, groups=chorales)

    def generate(self) -> tuple[dict[str, dict[str, np.ndarray]], dict]:
        """Parse, render and cut every chorale; split by chorale. Returns (arrays, counts)."""
        top = ch.highest_chorale()
        numbers = range(1, (top if self.max_chorales is None else min(top, self.max_chorales)) + 1)
        skipped: Counter = Counter()
        per: dict[int, tuple[np.ndarray, int]] = {}
        results = ch.map_in_workers(ch.chorale_clips, list(numbers), self.sample_rate,
                                    self.n_samples, MIN_RMS, self.soundfont)
        for n, result in zip(numbers, results):
            if isinstance(result, ch.Skipped):
                skipped[result.reason] += 1
            else:
                per[n] = result
        ch.report_skips(self.name, skipped, len(per))
        if len(per) < 2:
            raise UserError(f"bach-chorales: only {len(per)} usable chorale(s) of "
                            f"{len(numbers)} (skipped: {dict(skipped)}); need two or more")
        groups = split_groups(sorted(per), self.test_fraction, self.seed)
        out = {}
        for split, chosen in groups.items():
            nums = sorted(chosen)
            out[split] = {
                "signals": np.concatenate([per[n][0] for n in nums]).astype(np.float32),
                "labels": np.concatenate([np.full(len(per[n][0]), per[n][1], np.int64)
                                          for n in nums]),
                "chorales": np.concatenate([np.full(len(per[n][0]), n, np.int64)
                                            for n in nums])}
        meta = {"used": len(per), "skipped": dict(sorted(skipped.items())),
                "split_chorales": {s: sorted(int(n) for n in g) for s, g in groups.items()}}
        return out, meta


def _utf8_path(path: Path, link: Path) -> str:
    """`path` as a string music21 can open: itself, or for a file name that is not valid UTF-8
    (music21 hashes the name as UTF-8 and fails), `link`, made a symbolic link to it."""
    try:
        str(path).encode("utf-8")
        return str(path)
    except UnicodeEncodeError:
        link.symlink_to(path.absolute())
        return str(link)


class MidiFolder:
    """Your MIDI files, one sub-folder per class (or none: unlabelled), rendered and cut into
    clips. Train and test are split by file (stratified per class), seeded."""

    name: ClassVar[str] = "midi-folder"
    modality: ClassVar[str] = "music"

    def __init__(self, *, path: str,
                 seconds: Annotated[float, Field(gt=0, le=30)] = 2.048,
                 sample_rate: Annotated[int, Field(ge=4000, le=48000)] = 16000,
                 on_error: Literal["raise", "skip"] = "raise",
                 test_fraction: Annotated[float, Field(ge=0, lt=1)] = 0.2,
                 validation_fraction: Annotated[float, Field(ge=0, lt=1)] = VALIDATION_FRACTION,
                 seed: int = 0,
                 renderer: Literal["synth", "fluidsynth"] = "synth",
                 soundfont: str | None = None,
                 max_file_seconds: Annotated[float, Field(gt=0)] = midicheck.MAX_SECONDS,
                 max_notes: Annotated[int, Field(gt=0)] = midicheck.MAX_NOTES,
                 max_decode_seconds: Annotated[float, Field(gt=0)] = ch.DECODE_SECONDS):
        """on_error: `raise` stops at the first file music21 (or FluidSynth) cannot read, that
        is cut short, over a limit, or shorter than one clip; `skip` leaves it out and says so
        on stderr. renderer: the built-in synthesizer (one timbre per part), or FluidSynth with
        `soundfont` (your files' own General MIDI instruments). max_file_seconds, max_notes:
        the most playing time and notes one file may hold (checked before it is parsed: a
        tiny file can hold a two-hour note). max_decode_seconds: the most time music21 and the
        renderer may spend on one file. test_fraction, validation_fraction: shares of each
        class's files held out for the test split, and of the rest for the validation split."""
        self.renderer, self.soundfont = renderer, _soundfont(renderer, soundfont)
        self.path = Path(path).expanduser()
        self.n_samples = aligned_samples(seconds, sample_rate)
        self.sample_rate, self.on_error = sample_rate, on_error
        self.test_fraction, self.seed = test_fraction, seed
        self.validation_fraction = validation_fraction
        self.limits = midicheck.MidiLimits(max_file_seconds, max_notes)
        self.max_decode_seconds = max_decode_seconds
        self.skipped: Counter = Counter()
        self._loaded: dict[str, tuple[Tensor, Tensor]] | None = None
        self._sources: dict[str, list[Path]] = {}

    def _files(self) -> tuple[tuple[str, ...], list[tuple[Path, int]]]:
        return classfolders.scan(self.path, MIDI_SUFFIXES, "MIDI files", ".mid, .midi")

    def info(self) -> DataInfo:
        classes, files = self._files()
        return DataInfo("music", (self.n_samples,), classes, sample_rate=self.sample_rate,
                        extra={"seconds": self.n_samples / self.sample_rate,
                               "files": len(files)})

    def fingerprint(self) -> str:
        _, files = self._files()
        salt = f"music21 {ch.music21_version()} / {FORMAT}{_renderer_suffix(self.soundfont)}"
        return classfolders.fingerprint(self.path, files, salt)

    def load(self, split: str) -> tuple[Tensor, Tensor]:
        splits.check_split(split, self.name)
        if self._loaded is None:
            self._loaded = self._render()
        return self._loaded[split]

    def sources(self, split: str) -> list[Path]:
        """The file each clip of a split (in `load` order) was cut from."""
        self.load(split)
        return self._sources[split]

    def _render(self) -> dict[str, tuple[Tensor, Tensor]]:
        classes, files = self._files()
        self.skipped = Counter()
        per: dict[int, tuple[np.ndarray, int]] = {}
        named: list[tuple[Path, str]] = []  # (file, why) of each skipped file
        with tempfile.TemporaryDirectory(prefix="diffvq-midi-") as tmp:
            paths = [_utf8_path(f, Path(tmp) / f"{i}{f.suffix.lower()}")
                     for i, (f, _) in enumerate(files)]
            results = ch.map_in_workers(ch.midi_file_clips, paths, self.sample_rate,
                                        self.n_samples, MIN_RMS, self.soundfont, self.limits,
                                        self.max_decode_seconds)
        for i, ((f, label), clips) in enumerate(zip(files, results)):
            if isinstance(clips, ch.Skipped):
                # one line, the path printable, and what to do about it
                message = (f"{f}: empty file (0 bytes)" if f.stat().st_size == 0
                           else clips.message.replace(paths[i], str(f), 1))
                message = " ".join(classfolders.shown(message).split())
                if self.on_error == "raise":
                    raise UserError(f"midi-folder: {message}; {classfolders.REMEDY}")
                self.skipped[clips.reason] += 1
                named.append((f, message.removeprefix(f"{classfolders.shown(f)}: ")))
                continue
            per[i] = (clips, label)
        classfolders.report_skipped(named, n_files=len(files),
                                    labels=[lab for _, lab in per.values()], root=self.path,
                                    classes=classes, dataset=self.name, what="MIDI files")
        test: set[int] = set()
        for c in sorted({lab for _, lab in per.values()}):
            ids = [i for i, (_, lab) in per.items() if lab == c]
            test |= split_groups(ids, self.test_fraction, self.seed + c)["test"]
        rest = np.array([i for i in per if i not in test], np.int64)
        validation = set(splits.validation_units(
            rest, self.validation_fraction, self.seed,
            strata=np.array([per[i][1] for i in rest], np.int64)).tolist())
        out = {}
        for split, keep in (("train", [i for i in per if i not in test | validation]),
                            ("validation", [i for i in per if i in validation]),
                            ("test", [i for i in per if i in test])):
            sig = (np.concatenate([per[i][0] for i in keep]) if keep
                   else np.zeros((0, self.n_samples), np.float32))
            lab = np.concatenate([np.full(len(per[i][0]), per[i][1], np.int64) for i in keep]) \
                if keep else np.zeros(0, np.int64)
            out[split] = (torch.from_numpy(sig), torch.from_numpy(lab))
            self._sources[split] = [files[i][0] for i in keep for _ in range(len(per[i][0]))]
        return out
