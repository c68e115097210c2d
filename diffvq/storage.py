"""Files that survive a kill at any moment: every write goes to a temporary file in the same
folder and is renamed into place. Weights are safetensors beside a JSON config; training state
(optimizer, RNG) is loaded with `weights_only=True`, so no checkpoint ever executes code."""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .errors import DiskFullError, UserError

_UMASK = os.umask(0)
os.umask(_UMASK)
_FILE_MODE = 0o666 & ~_UMASK  # what open() would have given; mkstemp makes files 0600


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _no_room(exc: BaseException, path: Path, needed: int | None) -> DiskFullError | None:
    """A failed write's cause when it is the disk: an ENOSPC-like error, or (for writers that
    hide the errno, like torch.save) less free space left than the file needed."""
    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        free = None
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return DiskFullError(path, needed, free)
    if free is not None and free < max(needed or 0, 1 << 20):
        return DiskFullError(path, needed, free)
    return None


def atomic_write_bytes(path: Path, data: bytes) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    atomic_save(path, write, size=len(data))
    _fsync_dir(Path(path).parent)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid JSON ({exc})") from None


def write_yaml(path: Path, obj: Any, header: str = "") -> None:
    atomic_write_text(path, header + yaml.safe_dump(obj, sort_keys=False, allow_unicode=True))


def atomic_save(path: Path, save: Any, size: int | None = None) -> None:
    """Call `save(tmp_path)` and rename the result into place; on failure the temporary file
    is removed, and a full disk is reported as such (`size`: the bytes the file needs, if
    known)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, _FILE_MODE)
    try:
        save(tmp)
        os.replace(tmp, path)
    except Exception as exc:
        Path(tmp).unlink(missing_ok=True)
        full = _no_room(exc, path, size)
        if full is not None:
            raise full from None
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_weights(path: Path, state: dict[str, torch.Tensor]) -> None:
    """Tensors to safetensors (contiguous, detached, on CPU)."""
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    atomic_save(path, lambda tmp: save_file(tensors, tmp), size=_nbytes(tensors))


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except FileNotFoundError:
        raise UserError(f"{path}: weights file not found") from None
    except (SafetensorError, OSError, ValueError) as exc:
        raise UserError(f"{path}: not a readable safetensors file ({exc})") from None


def load_array(path: Path, mmap: bool = False, remedy: str = "run the recipe again to "
                                                                "rebuild it") -> Any:
    """A `.npy` array, never unpickled: object arrays and damaged files are refused."""
    import numpy as np

    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except FileNotFoundError:
        raise UserError(f"{path}: file not found; {remedy}") from None
    except (ValueError, OSError, EOFError) as exc:
        first = (str(exc).splitlines() or [""])[0][:120]
        raise UserError(f"{path}: not a plain array file ({first}); {remedy}") from None


def save_state(path: Path, state: Any) -> None:
    """Training state (optimizer moments, RNG) with torch.save; read back weights-only."""
    atomic_save(path, lambda tmp: torch.save(state, tmp), size=_nbytes(state))


def _nbytes(obj: Any) -> int:
    """Bytes of the tensors in a nested state (what a file of it needs, roughly)."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(_nbytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_nbytes(v) for v in obj)
    return 0


def load_state(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except Exception as exc:  # unpickling refused or corrupt file
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise UserError(f"{path}: not a diffvq training state ({type(exc).__name__}: {first}); "
                        f"delete the checkpoint folder to train from the start") from None


def replace_dir(tmp: Path, final: Path) -> None:
    """Swap a fully written folder `tmp` into place of `final`, never leaving neither."""
    old = final.with_name(final.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    _fsync_dir(final.parent)
    if old.exists():
        shutil.rmtree(old)
