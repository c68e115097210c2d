"""The folder layout every "your own files" data set reads: `path/<class>/<file>` (one
sub-folder per class, sorted names are the classes) or files directly in `path` (unlabelled)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from .errors import UserError


def scan(path: Path, suffixes: Iterable[str], what: str,
         listing: str) -> tuple[tuple[str, ...], list[tuple[Path, int]]]:
    """(class names, [(file, label)]), sorted; unlabelled folders have no class names. Files are
    those whose suffix (any case) is in `suffixes`; hidden files and folders are ignored. `what`
    names the files in errors ("images"), `listing` says which kinds count ("PNG/JPG").
    Raises UserError for a missing folder, files beside class folders, an empty class folder,
    or no files at all."""
    suffixes = {s.lower() for s in suffixes}
    if not path.is_dir():
        raise UserError(f"data.path: {path} is not a folder")

    def files_in(d: Path) -> list[Path]:
        return sorted(p for p in d.iterdir() if p.is_file() and not p.name.startswith(".")
                      and p.suffix.lower() in suffixes)

    classes = tuple(sorted(d.name for d in path.iterdir()
                           if d.is_dir() and not d.name.startswith(".")))
    top = files_in(path)
    if classes and top:
        raise UserError(f"data.path: {path} holds both {what} ({top[0].name}, ...) and class "
                        f"sub-folders; put every file in a class sub-folder")
    if classes:
        files = [(f, c) for c, name in enumerate(classes) for f in files_in(path / name)]
        empty = [name for name in classes if not files_in(path / name)]
        if empty:
            raise UserError(f"data.path: class folder(s) {', '.join(empty)} in {path} hold no "
                            f"{what} ({listing})")
    else:
        files = [(f, 0) for f in top]
    if not files:
        raise UserError(f"data.path: no {what} ({listing}) found in {path}")
    return classes, files
