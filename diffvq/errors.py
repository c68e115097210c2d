"""User-facing errors: one clear line, exit status 2, no traceback.

Anything the user can fix (a recipe, a file, a plugin name, the disk, the memory) raises
`UserError` or is translated into one by `explain`; everything else is a bug: exit status 1, one
line, and the traceback kept in a file for the report (or shown with `--debug`).
"""

from __future__ import annotations

import errno
import os
import tempfile
import traceback


class UserError(Exception):
    """A problem the user can fix. `str(error)` is the whole message shown to them."""

    exit_status = 2


class RecipeError(UserError):
    """Every problem found in a recipe, reported at once."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = [" ".join(p.split()) for p in problems]  # one line each
        problems = self.problems
        if len(problems) == 1:
            super().__init__(f"{source}: {problems[0]}")
        else:
            lines = [f"{source}: {len(problems)} problems"] + [f"  - {p}" for p in problems]
            super().__init__("\n".join(lines))


class DiskFullError(UserError):
    """A write found no room; what was half-written is already removed."""

    def __init__(self, path: os.PathLike | str, needed: int | None = None,
                 free: int | None = None):
        need = f"needs about {_size(needed)}, " if needed else ""
        room = f"{_size(free)} free" if free is not None else "no space left"
        super().__init__(f"{path}: the disk is full ({need}{room} there); free some space and "
                         f"run again (finished stages and the last checkpoint are kept)")


class TrainingDiverged(UserError):
    """The loss stopped being finite: the settings, not the code, are at fault."""


_NO_ROOM = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_ADVICE = {
    errno.EACCES: "not allowed: choose a folder you can write to",
    errno.EPERM: "not allowed: choose a folder you can write to",
    errno.EROFS: "read-only file system: choose a writable folder",
    errno.ENOTDIR: "a path component is a file, not a folder",
    errno.EISDIR: "is a folder, a file was expected",
    errno.ENAMETOOLONG: "the name is longer than the file system allows; choose a shorter one",
    errno.ENOENT: "not found",
    errno.EEXIST: "already exists",
}
_OUT_OF_MEMORY = ("can't allocate memory", "out of memory", "not enough memory",
                  "cannot allocate memory")


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _path_of(exc: OSError) -> str:
    names = [str(f) for f in (exc.filename, exc.filename2) if f is not None]
    return " -> ".join(names)


def explain(exc: BaseException) -> UserError | None:
    """The user-facing form of an error from the environment (files, disk, memory), or None
    when `exc` is a bug. A user's input or machine never earns them a traceback."""
    if isinstance(exc, UserError):
        return exc
    if isinstance(exc, MemoryError) or (isinstance(exc, RuntimeError) and any(
            s in str(exc).lower() for s in _OUT_OF_MEMORY)):
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else "MemoryError"
        return UserError(f"out of memory ({first}); lower the batch sizes, model sizes or "
                         f"sample counts of the recipe (`diffvq validate` estimates them)")
    if isinstance(exc, OSError):
        where = _path_of(exc)
        if exc.errno in _NO_ROOM:
            return DiskFullError(where or "a file")
        what = _ADVICE.get(exc.errno, exc.strerror or str(exc))
        return UserError(f"{where}: {what}" if where else f"{what}")
    if isinstance(exc, UnicodeError):
        return UserError(f"not valid text ({exc}); rename the file or folder, or save the file "
                         f"as UTF-8")
    return None


def save_traceback(exc: BaseException) -> str | None:
    """Write the traceback of an internal fault to a temporary file; its path, or None."""
    try:
        fd, path = tempfile.mkstemp(prefix="diffvq-crash-", suffix=".txt")
        with os.fdopen(fd, "w") as f:
            f.write("".join(traceback.format_exception(exc)))
        return path
    except OSError:
        return None
