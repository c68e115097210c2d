"""The audio judge: a small 1-D CNN over log-mel model tensors, trained on the real training
split. Its penultimate features give the judge Fréchet distance and precision/recall; its
predictions the class accuracy of class-conditional samples."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class AudioJudge(nn.Module):
    """Mel bands are the input channels, time is the convolved axis:
    conv(w) -> conv(2w, /2) -> conv(4w, /2) -> conv(4w) -> mean over time -> 4w features -> classes.
    Random time shifts during training (padding with silence) make the features care about what
    sounds rather than exactly when."""

    def __init__(self, n_mels: int, n_classes: int, width: int = 32, silence: float = -1.0,
                 max_shift: int = 4):
        super().__init__()
        w = width
        self.silence, self.max_shift = silence, max_shift
        self.body = nn.Sequential(
            nn.Conv1d(n_mels, w, 3, padding=1), nn.BatchNorm1d(w), nn.ReLU(),
            nn.Conv1d(w, 2 * w, 3, stride=2, padding=1), nn.BatchNorm1d(2 * w), nn.ReLU(),
            nn.Conv1d(2 * w, 4 * w, 3, stride=2, padding=1), nn.BatchNorm1d(4 * w), nn.ReLU(),
            nn.Conv1d(4 * w, 4 * w, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool1d(1), nn.Flatten())
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(4 * w, n_classes))

    def _shift(self, x: Tensor) -> Tensor:
        """`[B, M, N]` shifted in time by up to `max_shift` frames either way (one shift per
        batch, from torch's global RNG), the gap filled with silence."""
        s = self.max_shift
        if s <= 0:
            return x
        N = x.shape[-1]
        padded = F.pad(x, (s, s), value=self.silence)
        d = int(torch.randint(0, 2 * s + 1, ()).item())
        return padded[..., d:d + N]

    def features(self, x: Tensor) -> Tensor:
        """`[B, n_mels, frames]` -> `[B, 4 * width]` penultimate features."""
        return self.body(x)

    def logits(self, x: Tensor) -> Tensor:
        """`[B, n_mels, frames]` -> `[B, n_classes]`."""
        return self.head(self.features(x))

    def training_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        logits = self.logits(self._shift(batch["x"]))
        loss = F.cross_entropy(logits.float(), batch["labels"])
        acc = (logits.argmax(-1) == batch["labels"]).float().mean()
        return loss, {"accuracy": acc.item()}
