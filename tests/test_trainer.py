"""The generic trainer: schedule, batches, determinism, EMA and exact resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from diffvq.trainer import Batches, EMA, TrainConfig, Trainer, lr_at


class Regression(nn.Module):
    """y = x @ w with noise-free targets: the loss must go to ~0."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 1)
        self.drop = nn.Dropout(0.1)  # consumes RNG: resume must restore it

    def training_loss(self, batch):
        pred = self.lin(self.drop(batch["x"]))
        loss = ((pred.squeeze(-1) - batch["y"]) ** 2).mean()
        return loss, {"mse": loss.item()}


def data(n=256):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    return {"x": x, "y": x @ torch.tensor([1.0, -2.0, 0.5, 3.0])}


def fit(cfg, workdir=None, batches=None, fp="fp"):
    torch.manual_seed(123)
    model = Regression()
    trainer = Trainer(cfg, device=torch.device("cpu"), precision="fp32", seed=7, workdir=workdir,
                      fingerprint=fp, progress=False)
    result = trainer.fit(model, batches or Batches(data(), cfg.batch_size, seed=7))
    return model, result


def test_lr_schedule_warms_up_then_decays_to_floor():
    cfg = TrainConfig(steps=100, lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    lrs = [lr_at(s, cfg) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert lr_at(100, cfg) == pytest.approx(0.1)


def test_batches_cover_each_epoch_once_and_depend_only_on_seed_and_step():
    b = Batches({"i": np.arange(10)}, batch_size=4, seed=1)
    first_epoch = np.concatenate([b.indices(0), b.indices(1), b.indices(2)[:2]])
    assert sorted(first_epoch) == list(range(10))
    again = Batches({"i": np.arange(10)}, batch_size=4, seed=1)
    assert np.array_equal(again.indices(5), b.indices(5))
    assert not np.array_equal(Batches({"i": np.arange(10)}, 4, seed=2).indices(0), b.indices(0))


def test_loss_goes_down_and_runs_are_deterministic():
    cfg = TrainConfig(steps=150, batch_size=32, lr=0.05, warmup_steps=5, weight_decay=0.0)
    m1, r1 = fit(cfg)
    m2, r2 = fit(cfg)
    assert r1.losses[-1][1] < 0.1 * r1.losses[0][1]
    assert torch.equal(m1.lin.weight, m2.lin.weight)


class InterruptAt(Batches):
    def __init__(self, *args, stop: int, **kw):
        super().__init__(*args, **kw)
        self.stop = stop

    def batch(self, step, device):
        if step == self.stop:
            raise KeyboardInterrupt
        return super().batch(step, device)


def test_interrupted_training_resumes_to_the_same_result(tmp_path):
    cfg = TrainConfig(steps=60, batch_size=16, lr=0.02, warmup_steps=5, ema_decay=0.9)
    reference, _ = fit(cfg)
    with pytest.raises(KeyboardInterrupt):
        fit(cfg, tmp_path, InterruptAt(data(), 16, seed=7, stop=25))
    assert (tmp_path / "checkpoint" / "model.safetensors").is_file()
    resumed, result = fit(cfg, tmp_path)
    assert result.resumed_from == 25 and result.steps == 60
    assert torch.equal(resumed.lin.weight, reference.lin.weight)


def test_checkpoint_of_another_recipe_is_not_resumed(tmp_path):
    cfg = TrainConfig(steps=30, batch_size=16, lr=0.02, warmup_steps=5)
    with pytest.raises(KeyboardInterrupt):
        fit(cfg, tmp_path, InterruptAt(data(), 16, seed=7, stop=10), fp="old")
    _, result = fit(cfg, tmp_path, fp="new")
    assert result.resumed_from is None


def test_ema_tracks_weights():
    model = nn.Linear(2, 1)
    ema = EMA(model, decay=0.5)
    with torch.no_grad():
        model.weight.add_(1.0)
    for step in range(100):
        ema.update(model, step)
    ema.copy_to(model)
    assert torch.allclose(ema.shadow["weight"], model.weight)
