"""A run directory belongs to the process that holds its lock, and only that process may clean
or delete it. Making the folder and taking its lock are one step (`claim`): the folder is made
with an atomic `mkdir`, so exactly one process can believe it made it, and the lock is checked
to be the lock of the folder now at that path (not of one deleted meanwhile). A start that fails
before any stage finished takes back only what it made: its own run folder, and parent folders
only while they are empty (`rmdir`), so a neighbour's live run is never touched.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from .errors import UserError

LOCKED = "another diffvq process is working on this run"


@dataclass
class Claim:
    run_dir: Path
    made: bool = False  # this process made run_dir
    made_parents: list[Path] = field(default_factory=list)  # deepest first

    def take_back(self) -> None:
        """Remove what this process made (call only while holding the claim)."""
        if self.made:
            shutil.rmtree(self.run_dir, ignore_errors=True)
        for p in self.made_parents:
            with contextlib.suppress(OSError):  # not empty: someone else's runs are there
                p.rmdir()


def _make_parents(run_dir: Path) -> list[Path]:
    """Make the folders above `run_dir`, one `mkdir` each; the ones this process made."""
    for parent in reversed(run_dir.parents):
        if parent.exists() and not parent.is_dir():
            raise UserError(f"{parent}: is a file; runs need a folder there (--runs-dir)")
    made = []
    for parent in reversed(run_dir.parents):
        try:
            parent.mkdir()
            made.append(parent)
        except FileExistsError:
            if not parent.is_dir():
                raise UserError(f"{parent}: is a file; runs need a folder there "
                                f"(--runs-dir)") from None
    return made[::-1]


def _lock(run_dir: Path) -> int:
    """An open descriptor holding the exclusive lock of `run_dir` (-1 without fcntl)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        return -1
    path = run_dir / ".lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if os.fstat(fd).st_ino != os.stat(path).st_ino:  # the folder was replaced meanwhile
            raise FileNotFoundError
    except BlockingIOError:
        os.close(fd)
        raise UserError(f"{run_dir}: {LOCKED}") from None
    except FileNotFoundError:
        os.close(fd)
        raise UserError(f"{run_dir}: the run folder was removed while this run started; "
                        f"start it again") from None
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def claim(run_dir: Path) -> Iterator[Claim]:
    """Make `run_dir` (and its parents) and hold its lock for the body; raise UserError at
    once if another process holds it."""
    for attempt in range(3):  # a parent another failed start took back just now: again
        c = Claim(run_dir, made_parents=_make_parents(run_dir))
        try:
            run_dir.mkdir()
            c.made = True
        except FileExistsError:
            if not run_dir.is_dir():
                raise UserError(f"{run_dir}: is a file; a run needs a folder there") from None
        except FileNotFoundError:
            if attempt == 2:
                raise
            continue
        break
    fd = _lock(run_dir)  # made but not held: it is the holder's now; this process leaves it
    try:
        yield c
    finally:
        if fd >= 0:
            os.close(fd)
