"""Judges: each modality's small classifier, trained once on the real training split and cached
(keyed by the data, the judge's settings and the seed) so every run and every prior is measured
by the very same network. Its penultimate features give the judge Fréchet distance and
precision/recall; its predictions the class accuracy of class-conditional samples."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from . import storage
from .errors import UserError
from .trainer import Batches, TrainConfig, Trainer


def cache_root() -> Path:
    """`$DIFFVQ_CACHE`, else `$XDG_CACHE_HOME/diffvq`, else `~/.cache/diffvq`; a folder
    there that cannot be one, or cannot be written, is the user's to fix."""
    if os.environ.get("DIFFVQ_CACHE"):
        root, var = Path(os.environ["DIFFVQ_CACHE"]), "DIFFVQ_CACHE"
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        root = (Path(xdg) if xdg else Path.home() / ".cache") / "diffvq"
        var = "XDG_CACHE_HOME" if xdg else "the cache folder"
    for p in (root, *root.parents):
        if p.exists():
            if not p.is_dir():
                raise UserError(f"{var}: {p} is a file, not a folder; point {var} at a folder "
                                f"diffvq may write to")
            if not os.access(p, os.W_OK | os.X_OK):
                raise UserError(f"{var}: {p} is not writable; point {var} at a folder diffvq "
                                f"may write to")
            break
    return root


@torch.no_grad()
def batched(fn: Any, x: Tensor, device: torch.device, batch: int = 256) -> Tensor:
    """`fn` over `x` in batches on `device`, results concatenated on the CPU in float32."""
    return torch.cat([fn(x[i:i + batch].to(device)).float().cpu() for i in range(0, len(x), batch)])


@dataclass
class TrainedJudge:
    module: nn.Module
    info: dict[str, Any]  # accuracy on the real test split, training steps and time, cache dir
    device: torch.device

    def features(self, x: Tensor) -> np.ndarray:
        """Model tensors `[N, ...]` -> `[N, F]` float64 features."""
        return batched(self.module.features, x, self.device).double().numpy()

    def predict(self, x: Tensor) -> np.ndarray:
        return batched(self.module.logits, x, self.device).argmax(-1).numpy()


def get_judge(modality: Any, key: str, train: tuple[Tensor, Tensor], test: tuple[Tensor, Tensor],
              cfg: TrainConfig, seed: int, device: torch.device, progress: bool = True,
              log: Any = print) -> TrainedJudge:
    """The modality's judge for this data, from the cache or trained now (resumable)."""
    d = cache_root() / "judges" / key
    with torch.random.fork_rng(devices=[]):  # the same judge whichever run trains it first
        torch.manual_seed(seed)
        module = modality.judge()
    meta = d / "judge.json"
    if meta.is_file():
        try:
            info = json.loads(meta.read_text())
            module.load_state_dict(storage.load_weights(d / "model.safetensors"))
            log(f"judge: cached ({info['test_accuracy']:.1%} on real test) {d}")
            return TrainedJudge(module.to(device).eval(), info, device)
        except Exception as exc:  # a damaged cache entry is rebuilt, never trusted
            log(f"judge: cache entry {d} unusable ({exc}); training again")
            shutil.rmtree(d, ignore_errors=True)
    x, y = train
    log(f"judge: training on {len(x)} real examples for {cfg.steps} steps -> {d}")
    trainer = Trainer(cfg, device=device, precision="fp32", seed=seed, workdir=d,
                      fingerprint=key, desc="judge", progress=progress)
    result = trainer.fit(module, Batches({"x": x, "labels": y}, cfg.batch_size, seed))
    module.eval()
    judge = TrainedJudge(module, {}, device)
    acc = float((judge.predict(test[0]) == test[1].numpy()).mean())
    storage.save_weights(d / "model.safetensors", module.state_dict())
    judge.info = {"test_accuracy": acc, "train_steps": result.steps,
                  "train_time_s": result.wall_time_s, "cache_dir": str(d)}
    storage.write_json(meta, judge.info)
    trainer.clear_checkpoint()
    log(f"judge: {acc:.1%} accuracy on the real test split")
    return judge
