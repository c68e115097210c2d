"""music21's pickle cache in the shared temp folder is never read (nor written): a pickle planted
where music21 looks for a file's cached parse does not run (`diffvq_music.m21cache`)."""

from __future__ import annotations

import contextlib
import pickle
import stat
import zlib
from pathlib import Path

import numpy as np
import pytest

from diffvq_music import chorales as ch
from diffvq_music.datasets import MidiFolder

SR = 16000


class _Payload:
    """Unpickling this writes `marker`: what a planted cache file could do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('ran')",)


@pytest.fixture
def shared(tmp_path, monkeypatch) -> Path:
    """music21's default scratch folder (`<system temp>/music21`, writable by anyone who shares
    the machine) stood in for by a folder of this test; music21's own settings restored after."""
    from music21 import environment

    core = environment.envSingleton()
    folder = tmp_path / "shared-tmp" / "music21"
    folder.mkdir(parents=True)
    monkeypatch.setattr(core, "defaultRootTempDir", folder)
    monkeypatch.setitem(core._ref, "directoryScratch", None)
    return folder


def plant(shared: Path, source: str, marker: Path) -> Path:
    """A payload where music21 looks for `source`'s cached parse (its own PickleFilter name:
    m21-<version>-py<X.Y>-<md5 of the path>.p.gz), newer than `source`."""
    import os

    from music21 import converter

    fp = converter.PickleFilter(source).getPickleFp(shared, zipType="gz")
    fp.write_bytes(zlib.compress(pickle.dumps(_Payload(marker))))
    later = Path(source).stat().st_mtime + 60
    os.utime(fp, (later, later))
    return fp


def _midi(path: Path) -> None:
    from music21 import note, stream

    s = stream.Score()
    for v in range(2):
        part = stream.Part()
        for p in (60, 64, 67, 72, 67, 64, 60, 55):
            part.append(note.Note(p + 7 * v, quarterLength=1))
        s.insert(0, part)
    path.parent.mkdir(parents=True, exist_ok=True)
    s.write("midi", fp=str(path))


def test_a_planted_pickle_runs_under_plain_music21(tmp_path, shared):
    """The control: the payload is planted exactly where music21 reads it."""
    from music21 import converter

    src = tmp_path / "x.mid"
    _midi(src)
    marker = tmp_path / "marker"
    plant(shared, str(src), marker)
    with contextlib.suppress(Exception):  # the payload is no score
        converter.parse(str(src))  # music21's own default: reads the newer pickle
    assert marker.read_text() == "ran"


def test_midi_folder_never_reads_or_writes_the_shared_pickle_cache(tmp_path, shared):
    root = tmp_path / "midi"
    _midi(root / "a" / "x.mid")
    _midi(root / "b" / "y.mid")
    marker = tmp_path / "marker"
    planted = {plant(shared, str(root / c / f), marker) for c, f in (("a", "x.mid"),
                                                                     ("b", "y.mid"))}
    d = MidiFolder(path=str(root), seconds=1.024, test_fraction=0)
    x, y = d.load("train")
    assert not marker.exists()
    assert set(shared.iterdir()) == planted  # nothing written there either
    # the parse is the file's own: the same clips as a fresh parse of it, rendered
    from music21 import converter

    fresh = converter.parseFile(str(root / "a" / "x.mid"), forceSource=True)
    expected = ch.cut_clips(ch.render_score(fresh, SR), 16384, 1e-3)
    assert y.tolist() == [0] * len(expected) + [1] * len(expected)
    np.testing.assert_array_equal(x[:len(expected)].numpy(), expected)
    # music21's scratch folder is now this process's own
    from music21 import environment

    scratch = Path(environment.Environment().getRootTempDir())
    assert scratch != shared and stat.S_IMODE(scratch.stat().st_mode) == 0o700


def test_chorales_never_read_the_shared_pickle_cache(tmp_path, shared):
    from music21 import corpus

    name = next(iter(corpus.chorales.Iterator(1, 1, numberingSystem="riemenschneider",
                                              returnType="filename")))
    marker = tmp_path / "marker"
    plant(shared, str(corpus.getWork(name)), marker)
    score = ch.load_chorale(1)
    assert not marker.exists()
    assert len(score.parts) == 4 and len(score.recurse().notes) > 100
    # the control: music21's own default reads the planted pickle
    from music21 import environment

    environment.envSingleton()._ref["directoryScratch"] = None  # restored by the fixture
    with contextlib.suppress(Exception):
        corpus.parse(name)
    assert marker.read_text() == "ran"
