"""The token cache: a data set encoded once by the trained tokenizer, kept as memory-mapped
`.npy` arrays (tokens `[N, *grid]` plus labels `[N]`) so every prior trains on the same tokens
without touching the tokenizer again. It holds every split (train, validation, test): priors
train on train, anything tuned is chosen on validation, the table reads test."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from . import interfaces, storage
from .errors import UserError
from .interfaces import TokenSpec

SPLITS = interfaces.SPLITS  # ("train", "validation", "test"): the cache holds all three


def _dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.int16 if vocab_size <= np.iinfo(np.int16).max else np.int32)


def write_split(dir: Path, split: str, encode: Callable[[Tensor], Tensor], x: Tensor,
                labels: Tensor, spec: TokenSpec, batch_size: int = 256) -> None:
    """Encode `x` `[N, ...]` batch by batch straight into a memory-mapped file."""
    n = x.shape[0]
    tmp = dir / f".{split}.tokens.npy.tmp"
    arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=_dtype(spec.vocab_size),
                                    shape=(n, *spec.grid_shape))
    for i in range(0, n, batch_size):
        arr[i:i + batch_size] = encode(x[i:i + batch_size]).cpu().numpy()
    arr.flush()
    del arr
    tmp.replace(dir / f"{split}.tokens.npy")
    storage.atomic_save(dir / f"{split}.labels.npy",
                        lambda p: np.save(open(p, "wb"), labels.cpu().numpy().astype(np.int64)))


def write_codebook(dir: Path, codebook: Tensor) -> None:
    """The tokenizer's codebook vectors `[K, D]`, for priors that diffuse over them."""
    arr = codebook.detach().float().cpu().numpy()
    storage.atomic_save(dir / "codebook.npy", lambda p: np.save(open(p, "wb"), arr))


def write_meta(dir: Path, spec: TokenSpec, counts: dict[str, int], class_names: list[str]) -> None:
    storage.write_json(dir / "meta.json", {"spec": spec.to_dict(), "counts": counts,
                                           "class_names": class_names})


_CHECKED: set[tuple[Path, int, int]] = set()  # (path, mtime, size) of token files checked


def _load(path: Path, mmap: bool = False) -> np.ndarray:
    return storage.load_array(path, mmap, remedy="delete the run's tokens/ and stages/ to "
                                              "rebuild it")


@dataclass
class TokenCache:
    dir: Path
    spec: TokenSpec
    class_names: list[str]
    counts: dict[str, int] = field(default_factory=dict)  # sequences per split, as written

    @classmethod
    def open(cls, dir: Path) -> "TokenCache":
        path = Path(dir) / "meta.json"
        meta = storage.read_json(path)
        try:
            spec = TokenSpec.from_dict(meta["spec"])
            names = [str(n) for n in meta["class_names"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"{path}: not a token cache's meta data ({exc!r})") from None
        if min(spec.grid_shape, default=0) <= 0 or spec.vocab_size < 1 or spec.n_classes < 0:
            raise UserError(f"{path}: not a token cache's meta data (spec {meta['spec']!r})")
        counts = meta.get("counts") if isinstance(meta.get("counts"), dict) else {}
        return cls(Path(dir), spec, names, counts)

    def tokens(self, split: str) -> np.memmap:
        """`[N, *grid]` integer memory map (read-only), checked against the spec once."""
        path = self.dir / f"{split}.tokens.npy"
        arr = _load(path, mmap=True)
        stat = path.stat()
        if (path, stat.st_mtime_ns, stat.st_size) not in _CHECKED:
            n = self.counts.get(split)
            if arr.dtype.kind not in "iu" or tuple(arr.shape[1:]) != tuple(self.spec.grid_shape) \
                    or (isinstance(n, int) and arr.shape[0] != n):
                raise UserError(f"{path}: holds {arr.dtype} {tuple(arr.shape)}, not tokens "
                                f"[{n if n is not None else 'N'}, "
                                f"{', '.join(map(str, self.spec.grid_shape))}]; delete the "
                                f"run's tokens/ and stages/ to rebuild it")
            if arr.size and (int(arr.min()) < 0 or int(arr.max()) >= self.spec.vocab_size):
                raise UserError(f"{path}: token ids outside 0..{self.spec.vocab_size - 1}; "
                                f"delete the run's tokens/ and stages/ to rebuild it")
            _CHECKED.add((path, stat.st_mtime_ns, stat.st_size))
        return arr

    def sequences(self, split: str) -> np.ndarray:
        """`[N, L]` flattened view of the token grid (still memory-mapped)."""
        t = self.tokens(split)
        return t.reshape(t.shape[0], math.prod(t.shape[1:]))

    def labels(self, split: str) -> np.ndarray:
        path = self.dir / f"{split}.labels.npy"
        labels = _load(path)
        n = self.tokens(split).shape[0]
        if labels.dtype.kind not in "iu" or labels.shape != (n,) or (
                n and self.spec.n_classes and not 0 <= labels.min() <= labels.max()
                < self.spec.n_classes):
            raise UserError(f"{path}: not {n} class labels of 0..{self.spec.n_classes - 1}")
        return labels

    def codebook(self) -> Tensor | None:
        """`[K, D]` codebook vectors, or None when the tokenizer has none."""
        path = self.dir / "codebook.npy"
        if not path.is_file():
            return None
        arr = _load(path)
        if arr.dtype.kind != "f" or arr.ndim != 2 or arr.shape[0] != self.spec.vocab_size:
            raise UserError(f"{path}: not a codebook of {self.spec.vocab_size} float vectors")
        return torch.from_numpy(arr)

    def torch_sequences(self, split: str) -> Tensor:
        return torch.from_numpy(np.asarray(self.sequences(split), dtype=np.int64))


def digest(dir: Path) -> str:
    """SHA-256 of every array in a token cache (tokens, labels, codebook): two runs whose caches
    have the same digest trained their priors on the very same tokens."""
    import hashlib

    h = hashlib.sha256()
    for path in sorted(Path(dir).glob("*.npy")):
        h.update(path.name.encode())
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]
