"""music21 without its shared pickle cache.

`music21.converter.parse` keeps a pickled copy of every file it parses in a fixed folder of the
system temp directory (`/tmp/music21/m21-<version>-py<X.Y>-<md5 of the path>.p.gz`), and the
next parse of that path unpickles the copy whenever it is newer than the file. Anyone who can
write to `/tmp` can plant one there, and unpickling it runs their code in our process. So every
parse here passes `forceSource=True` (no pickle read, none written), and music21's scratch
folder is moved to a private folder of this process (mode 0700, a random name), for whatever
else music21 would look for there (a local corpus's metadata cache is a pickle too).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

_scratch: Path | None = None  # this process's private scratch folder, once made


def private_scratch() -> Path:
    """Point music21's scratch folder, in this process, at a fresh private folder (mode 0700,
    a random name: `tempfile.mkdtemp`) that is removed when the process ends; the folder.
    Nothing is kept between runs: with `forceSource` there is nothing worth keeping."""
    global _scratch
    from multiprocessing.util import Finalize

    from music21 import environment

    if _scratch is None or not _scratch.is_dir():
        _scratch = Path(tempfile.mkdtemp(prefix="diffvq-music21-"))
        # run at exit by the main process and by multiprocessing's workers alike
        Finalize(None, shutil.rmtree, args=(_scratch, True), exitpriority=0)
    env = environment.Environment()
    if env["directoryScratch"] != str(_scratch):
        env["directoryScratch"] = str(_scratch)  # this process only: never written to disk
    return _scratch


def parse_midi(path: str):
    """A MIDI file as a music21 Score, parsed from the file itself (no pickle cache)."""
    from music21 import converter

    private_scratch()
    return converter.parseFile(path, format="midi", forceSource=True)


def parse_corpus(name: str):
    """A work of music21's bundled corpus ("bach/bwv269"), parsed from its file (no pickle
    cache)."""
    from music21 import corpus

    private_scratch()
    return corpus.parse(name, forceSource=True)
