"""Images: `[C, H, W]` floats in [0, 1]; the model sees them in [-1, 1]."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, ClassVar

import torch
from PIL import Image, ImageDraw, ImageFont
from pydantic import Field
from torch import Tensor

from diffvq.interfaces import DataInfo
from diffvq.storage import atomic_save

from .judge import ImageJudge


class ImageModality:
    """Grayscale or RGB images; galleries are PNG grids with one row per class."""

    name: ClassVar[str] = "image"
    judge_train: ClassVar[dict] = {"steps": 1500, "batch_size": 64, "lr": 2e-3,
                                   "warmup_steps": 50, "weight_decay": 1e-4}

    def __init__(self, info: DataInfo, *, gallery_scale: Annotated[int, Field(ge=1, le=16)] = 3,
                 gallery_columns: Annotated[int, Field(ge=1)] = 16):
        if len(info.shape) != 3 or info.shape[0] not in (1, 3):
            raise ValueError(f"image data must be [C, H, W] with C in (1, 3), got {info.shape}")
        self.info = info
        self.scale = gallery_scale
        self.columns = gallery_columns

    def model_shape(self) -> tuple[int, ...]:
        return tuple(self.info.shape)

    def to_model(self, signals: Tensor) -> Tensor:
        return signals.float() * 2 - 1

    def from_model(self, x: Tensor) -> Tensor:
        return ((x.float() + 1) / 2).clamp(0, 1)

    def reconstruction_metrics(self, x: Tensor, x_hat: Tensor) -> dict[str, float]:
        """PSNR in dB on [0, 1] pixels (mean over images) and mean absolute error."""
        err = (x.float() - x_hat.float()).flatten(1)
        mse = err.pow(2).mean(1).clamp_min(1e-10)  # [N]
        return {"psnr_db": float((10 * torch.log10(1 / mse)).mean()),
                "mae": float(err.abs().mean())}

    def judge(self) -> ImageJudge:
        """A small CNN classifier of model tensors for judge FD and class accuracy."""
        if not self.info.n_classes:
            raise ValueError("a judge needs labelled data (class sub-folders)")
        return ImageJudge(self.info.shape[0], self.info.n_classes)

    def _to_pil(self, img: Tensor) -> Image.Image:
        arr = (img.clamp(0, 1) * 255).round().byte().cpu().numpy()  # [C, H, W]
        mode = "L" if arr.shape[0] == 1 else "RGB"
        pil = Image.fromarray(arr[0] if mode == "L" else arr.transpose(1, 2, 0), mode)
        return pil.resize((pil.width * self.scale, pil.height * self.scale), Image.NEAREST)

    def grid(self, signals: Tensor, labels: Tensor, title: str = "") -> Image.Image:
        """One block of rows per class (wrapping at `gallery_columns`), class names on the left."""
        names = self.info.class_names or ("",)
        font = ImageFont.load_default()
        _, _, H, W = signals.shape
        cell_h, cell_w, pad = H * self.scale, W * self.scale, 2
        rows: list[tuple[str, list[int]]] = []
        for c in range(len(names)):
            idx = (labels == c).nonzero().flatten().tolist()
            for r in range(0, len(idx), self.columns):
                rows.append((names[c] if r == 0 else "", idx[r:r + self.columns]))
        label_w = max([int(font.getlength(n)) for n in names] + [0]) + 8 if any(names) else 0
        top = 16 if title else 0
        ncol = max((len(r[1]) for r in rows), default=1)
        canvas = Image.new("RGB", (label_w + ncol * (cell_w + pad) + pad,
                                   top + len(rows) * (cell_h + pad) + pad), (255, 255, 255))
        draw = ImageDraw.Draw(canvas)
        if title:
            draw.text((4, 2), title, fill=(0, 0, 0), font=font)
        for r, (name, idx) in enumerate(rows):
            y = top + pad + r * (cell_h + pad)
            if name:
                draw.text((4, y + cell_h // 2 - 6), name, fill=(0, 0, 0), font=font)
            for c, i in enumerate(idx):
                canvas.paste(self._to_pil(signals[i]), (label_w + pad + c * (cell_w + pad), y))
        return canvas

    def write_gallery(self, signals: Tensor, labels: Tensor, out_dir: Path,
                      title: str = "") -> list[Path]:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / "grid.png"
        image = self.grid(signals, labels, title)
        atomic_save(path, lambda tmp: image.save(tmp, format="PNG"))
        return [path]
