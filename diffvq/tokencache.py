"""The token cache: a data set encoded once by the trained tokenizer, kept as memory-mapped
`.npy` arrays (tokens `[N, *grid]` plus labels `[N]`) so every prior trains on the same tokens
without touching the tokenizer again."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from . import storage
from .interfaces import TokenSpec

SPLITS = ("train", "test")


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


@dataclass
class TokenCache:
    dir: Path
    spec: TokenSpec
    class_names: list[str]

    @classmethod
    def open(cls, dir: Path) -> "TokenCache":
        meta = storage.read_json(Path(dir) / "meta.json")
        return cls(Path(dir), TokenSpec.from_dict(meta["spec"]), list(meta["class_names"]))

    def tokens(self, split: str) -> np.memmap:
        """`[N, *grid]` integer memory map (read-only)."""
        return np.load(self.dir / f"{split}.tokens.npy", mmap_mode="r")

    def sequences(self, split: str) -> np.ndarray:
        """`[N, L]` flattened view of the token grid (still memory-mapped)."""
        t = self.tokens(split)
        return t.reshape(t.shape[0], math.prod(t.shape[1:]))

    def labels(self, split: str) -> np.ndarray:
        return np.load(self.dir / f"{split}.labels.npy")

    def codebook(self) -> Tensor | None:
        """`[K, D]` codebook vectors, or None when the tokenizer has none."""
        path = self.dir / "codebook.npy"
        return torch.from_numpy(np.load(path)) if path.is_file() else None

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
