"""Paths named by a run's own files stay inside the run directory.

A run directory may come from anyone (`diffvq compare` over runs someone sent), and the report
embeds every file its metrics name. So an entry that is absolute, climbs out with `..`, or
resolves through a symbolic link to a file elsewhere is refused rather than read: otherwise a
crafted run would copy any readable file on this machine into report.html.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import UserError


def inside(root: Path, entry: Any, source: Path | str, action: str = "embed") -> Path:
    """`entry` (a relative path read from `source`) resolved inside `root`, symbolic links
    followed at every level; raise UserError when it would reach outside `root`. Links that
    stay inside `root` are allowed. The resolved path is returned, so that the file read is
    the one that was checked. `action` says in the message what was not done with it."""
    root = Path(root)
    refuse = (f"{source}: file {str(entry)!r} is outside the run directory {root}; "
              f"refusing to {action} it")
    if not isinstance(entry, str) or not entry or "\0" in entry:
        raise UserError(f"{source}: file entry {entry!r} is not a relative path inside the run "
                        f"directory {root}; refusing to {action} it")
    if Path(entry).is_absolute():
        raise UserError(refuse)
    real_root = root.resolve()
    try:
        real = (real_root / entry).resolve()
    except (OSError, RuntimeError):  # a link loop, a name too long
        raise UserError(refuse) from None
    if not real.is_relative_to(real_root):
        raise UserError(refuse)
    return real
