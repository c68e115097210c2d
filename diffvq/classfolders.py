"""The folder layout every "your own files" data set reads: `path/<class>/<file>` (one
sub-folder per class, sorted names are the classes) or files directly in `path` (unlabelled);
and what those data sets share about bad files: one error type, `on_error: raise|skip`, one
warning that counts what was skipped. Their splits are drawn over files (`diffvq.splits`, per
class): the clips of one file are never in two splits.

File names are bytes on POSIX and need not be UTF-8 (a file copied from an old Latin-1 disk:
b"caf\\xe9.png"). Python keeps such bytes as lone surrogates, which read fine but cannot be
encoded: `shown()` turns them into `\\xNN` escapes wherever a name is printed or stored (class
names end up in JSON, YAML and HTML)."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import Callable, ClassVar, Iterable, Literal, TypeVar

from .errors import UserError

T = TypeVar("T")

REMEDY = "fix or remove the file, or set data.on_error=skip to leave unusable files out"


def shown(text: str | os.PathLike) -> str:
    """`text` (a path or name) as printable, storable text: bytes that did not decode as the
    file-system encoding become `\\xNN` escapes (b"caf\\xe9" -> "caf\\\\xe9"), the rest is kept."""
    s = os.fspath(text)
    enc = sys.getfilesystemencoding()
    try:
        raw = s.encode(enc, "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that did not come from a file name
        return s.encode(enc, "backslashreplace").decode(enc)
    return raw.decode(enc, "backslashreplace")


class FileError(UserError):
    """A file a data set cannot use; `str()` is one line, `<kind><path>: <what is wrong>`, with
    the path shown printable. Subclasses set `kind` ("cannot read image ")."""

    kind: ClassVar[str] = ""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = Path(path)
        self.reason = " ".join(str(reason).split())  # always one line
        super().__init__(f"{self.kind}{shown(self.path)}: {self.reason}")

    def __reduce__(self):  # picklable across worker processes despite the two-argument init
        return type(self), (self.path, self.reason)

    def with_remedy(self) -> FileError:
        """The same error, saying what the user can do about it."""
        return type(self)(self.path, f"{self.reason}; {REMEDY}")


def scan(path: Path, suffixes: Iterable[str], what: str,
         listing: str) -> tuple[tuple[str, ...], list[tuple[Path, int]]]:
    """(class names, [(file, label)]), sorted; unlabelled folders have no class names. Files are
    those whose suffix (any case) is in `suffixes`; hidden files and folders are ignored. `what`
    names the files in errors ("images"), `listing` says which kinds count ("PNG/JPG"). Class
    names are the folder names as `shown()` (the files keep their real paths).
    Raises UserError for a missing folder, files beside class folders, an empty class folder,
    two class folders shown alike, or no files at all."""
    suffixes = {s.lower() for s in suffixes}
    if not path.is_dir():
        raise UserError(f"data.path: {shown(path)} is not a folder")

    def files_in(d: Path) -> list[Path]:
        return sorted(p for p in d.iterdir() if p.is_file() and not p.name.startswith(".")
                      and p.suffix.lower() in suffixes)

    folders = sorted(d.name for d in path.iterdir() if d.is_dir() and not d.name.startswith("."))
    classes = tuple(shown(name) for name in folders)
    if len(set(classes)) < len(classes):
        twins = sorted({c for c in classes if classes.count(c) > 1})
        raise UserError(f"data.path: two class folders in {shown(path)} are both shown as "
                        f"{twins[0]!r} (one name is not valid UTF-8); rename one of them")
    top = files_in(path)
    if classes and top:
        raise UserError(f"data.path: {shown(path)} holds both {what} ({shown(top[0].name)}, ...) "
                        f"and class sub-folders; put every file in a class sub-folder")
    if classes:
        per_class = [files_in(path / name) for name in folders]
        files = [(f, c) for c, fs in enumerate(per_class) for f in fs]
        empty = [name for name, fs in zip(classes, per_class) if not fs]
        if empty:
            raise UserError(f"data.path: class folder(s) {', '.join(empty)} in {shown(path)} "
                            f"hold no {what} ({listing})")
    else:
        files = [(f, 0) for f in top]
    if not files:
        raise UserError(f"data.path: no {what} ({listing}) found in {shown(path)}")
    return classes, files


def fingerprint(root: Path, files: list[tuple[Path, int]], salt: str = "") -> str:
    """A short hash of the files' names (as bytes: any name works), labels, sizes and
    modification times: it changes when a file is added, removed, moved or rewritten."""
    h = hashlib.sha256(salt.encode())
    for f, label in files:
        st = f.stat()
        h.update(os.fsencode(f.relative_to(root)) +
                 f"|{label}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def read_all(files: list[tuple[Path, int]], read: Callable[[Path], T], *,
             on_error: Literal["raise", "skip"], root: Path, classes: tuple[str, ...],
             dataset: str, what: str) -> tuple[list[T], list[int], list[FileError]]:
    """Every file read with `read`: (results, labels, skipped errors). A FileError stops the
    read with the remedy added (`on_error="raise"`), or leaves the file out (`"skip"`; see
    `report_skipped`)."""
    results: list[T] = []
    labels: list[int] = []
    skipped: list[FileError] = []
    for f, label in files:
        try:
            results.append(read(f))
        except FileError as exc:
            if on_error == "raise":
                raise exc.with_remedy() from None
            skipped.append(exc)
            continue
        labels.append(label)
    report_skipped([(e.path, e.reason) for e in skipped], n_files=len(files), labels=labels,
                   root=root, classes=classes, dataset=dataset, what=what)
    return results, labels, skipped


def report_skipped(skipped: list[tuple[Path, str]], *, n_files: int, labels: Iterable[int],
                   root: Path, classes: tuple[str, ...], dataset: str, what: str) -> None:
    """Say once on stderr how many of `n_files` files were skipped, naming the first three
    (path, why); raise UserError when no file, or no file of some class, is left (`labels`:
    those of the files used)."""
    if skipped:
        def rel(p: Path) -> str:
            return shown(p.relative_to(root) if p.is_relative_to(root) else p)

        named = "; ".join(f"{rel(p)}: {why}" for p, why in skipped[:3])
        more = f"; and {len(skipped) - 3} more" if len(skipped) > 3 else ""
        print(f"{dataset}: skipped {len(skipped)} of {n_files} files in {shown(root)} that "
              f"could not be used ({named}{more})", file=sys.stderr)
    used = set(labels)
    lost = [name for c, name in enumerate(classes) if c not in used]
    if not used or lost:
        where = (f"class folder(s) {', '.join(lost)} in {shown(root)}" if lost and used
                 else shown(root))
        raise UserError(f"data.path: {where}: none of the {what} could be used "
                        f"({len(skipped)} skipped)")
