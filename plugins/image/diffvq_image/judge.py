"""The image judge: a small CNN classifier trained on the real training split. Its penultimate
features give the judge Fréchet distance and precision/recall; its predictions the class
accuracy of class-conditional samples."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ImageJudge(nn.Module):
    """conv(32) -> conv(64, /2) -> conv(128, /2) -> global average -> 128-d features -> classes.
    Inputs are model tensors `[B, C, H, W]` in [-1, 1]; light random shifts during training make
    the features care about shape rather than exact position."""

    def __init__(self, channels: int, n_classes: int, width: int = 32):
        super().__init__()
        w = width
        self.body = nn.Sequential(
            nn.Conv2d(channels, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(),
            nn.Conv2d(w, 2 * w, 3, stride=2, padding=1), nn.BatchNorm2d(2 * w), nn.ReLU(),
            nn.Conv2d(2 * w, 4 * w, 3, stride=2, padding=1), nn.BatchNorm2d(4 * w), nn.ReLU(),
            nn.Conv2d(4 * w, 4 * w, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(4 * w, n_classes))

    @staticmethod
    def _shift(x: Tensor, pixels: int = 2) -> Tensor:
        """Random translation by up to `pixels` (padding with the background value -1)."""
        B, _, H, W = x.shape
        padded = F.pad(x, (pixels,) * 4, value=-1.0)
        dy, dx = torch.randint(0, 2 * pixels + 1, (2,)).tolist()
        return padded[:, :, dy:dy + H, dx:dx + W]

    def features(self, x: Tensor) -> Tensor:
        """`[B, C, H, W]` -> `[B, 4 * width]` penultimate features."""
        return self.body(x)

    def logits(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))

    def training_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        logits = self.logits(self._shift(batch["x"]))
        loss = F.cross_entropy(logits.float(), batch["labels"])
        acc = (logits.argmax(-1) == batch["labels"]).float().mean()
        return loss, {"accuracy": acc.item()}
