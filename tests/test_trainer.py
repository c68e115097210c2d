"""The generic trainer: schedule, batches, determinism, EMA, exact resume and divergence."""

from __future__ import annotations

import json
import os
import random
import signal

import numpy as np
import pytest
import torch
from torch import nn

from diffvq.errors import TrainingDiverged
from diffvq.trainer import Batches, DivergenceGuard, EMA, TrainConfig, Trainer, lr_at


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


def fit(cfg, workdir=None, batches=None, fp="fp", make=Regression, **kw):
    torch.manual_seed(123)
    model = make()
    trainer = Trainer(cfg, device=torch.device("cpu"), precision="fp32", seed=7, workdir=workdir,
                      fingerprint=fp, progress=False)
    result = trainer.fit(model, batches or Batches(data(), cfg.batch_size, seed=7), **kw)
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


def validation_loss(module, step):
    """An evaluation that draws random numbers (as a Monte-Carlo bound does) under its own seed."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        x = torch.randn(64, 4)
        loss = ((module.lin(x).squeeze(-1) - x @ torch.tensor([1.0, -2.0, 0.5, 3.0])) ** 2).mean()
    return {"step": step, "loss": loss.item()}


def test_a_validation_curve_survives_a_resume_and_changes_nothing(tmp_path):
    cfg = TrainConfig(steps=60, batch_size=16, lr=0.02, warmup_steps=5)
    plain, _ = fit(cfg)
    at = [10, 20, 40, 60]
    reference, whole = fit(cfg, evaluate_at=at, evaluate=validation_loss)
    assert [e["step"] for e in whole.evaluations] == at
    assert whole.evaluations[-1]["loss"] < whole.evaluations[0]["loss"]
    assert torch.equal(reference.lin.weight, plain.lin.weight)  # evaluating changed nothing
    with pytest.raises(KeyboardInterrupt):
        fit(cfg, tmp_path, InterruptAt(data(), 16, seed=7, stop=30), evaluate_at=at,
            evaluate=validation_loss)
    resumed, result = fit(cfg, tmp_path, evaluate_at=at, evaluate=validation_loss)
    assert result.resumed_from == 30 and result.evaluations == whole.evaluations
    assert torch.equal(resumed.lin.weight, reference.lin.weight)


def test_training_inside_no_grad_still_trains():
    cfg = TrainConfig(steps=20, batch_size=16, lr=0.02, warmup_steps=2)
    reference, _ = fit(cfg)
    with torch.no_grad():
        model, _ = fit(cfg)
    assert torch.equal(model.lin.weight, reference.lin.weight)


class SignalMidStep(Regression):
    """Sends itself `signum` in the middle of training step number `at` (counted from where this
    process started), after the step's dropout has drawn random numbers: where Ctrl-C lands."""

    def __init__(self, at: list[int], signum: int = signal.SIGINT):
        super().__init__()
        self.at, self.signum, self.calls = at, signum, 0

    def training_loss(self, batch):
        x = self.drop(batch["x"])
        if self.calls in self.at:
            os.kill(os.getpid(), self.signum)
        self.calls += 1
        loss = ((self.lin(x).squeeze(-1) - batch["y"]) ** 2).mean()
        # numpy's and Python's RNGs are part of the state too (plugins may draw from them)
        loss = loss + 1e-3 * (np.random.rand() + random.random())
        return loss, {"mse": loss.item()}


def state_bytes(model: nn.Module) -> bytes:
    return b"".join(t.numpy().tobytes() for t in model.state_dict().values())


def test_ctrl_c_twice_mid_step_resumes_to_the_very_same_bytes(tmp_path):
    """The checkpoint saved on Ctrl-C (and on SIGTERM) is taken at a step boundary."""
    cfg = TrainConfig(steps=60, batch_size=16, lr=0.02, warmup_steps=5, ema_decay=0.9,
                      checkpoint_every_s=1e9)
    np.random.seed(0), random.seed(0)
    reference, ref = fit(cfg, make=lambda: SignalMidStep([]))
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    np.random.seed(0), random.seed(0)
    with pytest.raises(KeyboardInterrupt):
        fit(cfg, tmp_path, make=lambda: SignalMidStep([17]))
    assert json.loads((tmp_path / "checkpoint/trainer.json").read_text())["step"] == 18
    np.random.seed(5), random.seed(5)  # whatever happens in between does not matter
    with pytest.raises(KeyboardInterrupt):
        fit(cfg, tmp_path, make=lambda: SignalMidStep([12], signal.SIGINT))
    assert json.loads((tmp_path / "checkpoint/trainer.json").read_text())["step"] == 31
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers
    resumed, result = fit(cfg, tmp_path, make=lambda: SignalMidStep([]))
    assert result.resumed_from == 31 and result.steps == 60
    assert state_bytes(resumed) == state_bytes(reference)
    assert result.losses == ref.losses and result.logs == ref.logs


def test_sigterm_turned_into_keyboardinterrupt_also_waits_for_the_step(tmp_path):
    def on_sigterm(signum, frame):  # what `diffvq run` installs
        raise KeyboardInterrupt

    cfg = TrainConfig(steps=30, batch_size=16, lr=0.02, warmup_steps=5, checkpoint_every_s=1e9)
    np.random.seed(0), random.seed(0)
    reference, _ = fit(cfg, make=lambda: SignalMidStep([]))
    previous = signal.signal(signal.SIGTERM, on_sigterm)
    np.random.seed(0), random.seed(0)
    try:
        with pytest.raises(KeyboardInterrupt):
            fit(cfg, tmp_path, make=lambda: SignalMidStep([9], signal.SIGTERM))
        assert signal.getsignal(signal.SIGTERM) is on_sigterm
    finally:
        signal.signal(signal.SIGTERM, previous)
    resumed, result = fit(cfg, tmp_path, make=lambda: SignalMidStep([]))
    assert result.resumed_from == 10
    assert state_bytes(resumed) == state_bytes(reference)


class SignalTwice(Regression):
    """Ctrl-C, and Ctrl-C again before the step ends: stop at once, keep the older checkpoint."""

    def __init__(self, at: int):
        super().__init__()
        self.at, self.calls = at, 0

    def training_loss(self, batch):
        if self.calls == self.at:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
        self.calls += 1
        return super().training_loss(batch)


def test_a_second_ctrl_c_stops_at_once_without_a_checkpoint(tmp_path, capsys):
    cfg = TrainConfig(steps=30, batch_size=16, lr=0.02, warmup_steps=5, checkpoint_every_s=1e9)
    with pytest.raises(KeyboardInterrupt):
        fit(cfg, tmp_path, make=lambda: SignalMidStep([9]))
    with pytest.raises(KeyboardInterrupt):
        fit(cfg, tmp_path, make=lambda: SignalTwice(4))  # mid-step 14
    assert json.loads((tmp_path / "checkpoint/trainer.json").read_text())["step"] == 10
    assert "stopped at step 14; its checkpoint of step 10 is kept" in capsys.readouterr().err


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


# -- divergence ---------------------------------------------------------------------------------

class BlowsUpAt(Regression):
    """A loss that jumps a million-fold at call `at` and stays there, finite (an lr schedule
    that grows without bound does the same more slowly)."""

    def __init__(self, at: int):
        super().__init__()
        self.at, self.calls = at, 0

    def training_loss(self, batch):
        loss, logs = super().training_loss(batch)
        self.calls += 1
        return (loss * 1e6 + 1e3 if self.calls > self.at else loss), logs


def test_a_runaway_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path):
    cfg = TrainConfig(steps=200, batch_size=16, lr=0.02, warmup_steps=5, checkpoint_every_s=1e-9,
                      diverge_patience=20)
    with pytest.raises(TrainingDiverged) as caught:
        fit(cfg, tmp_path, make=lambda: BlowsUpAt(50))
    message = str(caught.value)
    assert "\n" not in message and "the loss diverged at step" in message
    assert "4 x its best" in message and "train.diverge_factor" in message
    meta = json.loads((tmp_path / "checkpoint/trainer.json").read_text())
    assert meta["step"] <= 51 and meta["guard"]["bad"] == 0, "a diverging state was saved"
    failed_at = int(message.split("at step ")[1].split(":")[0])
    assert 50 + 20 - 1 <= failed_at < 50 + 20 + 10  # patience, plus a few steps of smoothing


def test_the_guard_can_be_switched_off():
    cfg = TrainConfig(steps=80, batch_size=16, lr=0.02, warmup_steps=5, diverge_patience=5,
                      diverge_factor=None)
    _, result = fit(cfg, make=lambda: BlowsUpAt(20))
    assert result.steps == 80


def test_a_loss_far_above_a_uniform_guess_is_diverged_from_the_start():
    cfg = TrainConfig(steps=80, batch_size=16, lr=0.02, warmup_steps=5, diverge_patience=10)
    with pytest.raises(TrainingDiverged, match="uniform guess"):
        fit(cfg, make=lambda: BlowsUpAt(0), uniform_loss=3.0)  # never better than where it began
    _, result = fit(cfg, uniform_loss=5.0)  # starts near 14, below 4 x 5: no divergence
    assert result.steps == 80


def test_guard_is_quiet_on_noisy_small_and_negative_losses():
    rng = np.random.default_rng(0)
    for start, end in ((6.0, 2.0), (1.0, 1e-8), (-1.0, -50.0), (0.5, 0.5)):
        guard = DivergenceGuard(4.0, patience=5)
        curve = np.geomspace(abs(start), abs(end), 300) * np.sign(start)
        for x in curve * rng.uniform(0.5, 2.0, size=300):  # batches a factor 2 apart
            assert not guard.update(float(x))
    guard = DivergenceGuard(4.0, patience=5)
    assert not any(guard.update(x) for x in [6.0, 3.0, 2.0, 2.0])
    assert [guard.update(x) for x in [1e4] * 5] == [False] * 4 + [True]


def test_a_diverging_prior_fails_the_run_with_one_line_and_is_not_marked_done(
        capsys, tiny, write_recipe, tmp_path):
    from diffvq.cli import main

    # lr 3 without warm-up: the loss leaps from 3.5 to hundreds and stays there, never NaN
    tiny["train"]["prior"].update(lr=3.0, warmup_steps=0, steps=120)
    code = main(["run", str(write_recipe(tiny)), "--runs-dir", str(tmp_path / "runs"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    errors = [line for line in err.splitlines() if not line.startswith("diffvq: ")]
    assert len(errors) == 1, err
    assert errors[0].startswith("error: prior gpt: the loss diverged at step "), err
    assert "priors.gpt.train.diverge_factor" in errors[0]
    run = tmp_path / "runs/tiny"
    assert (run / "stages/tokens.json").is_file()
    assert not (run / "stages/prior-gpt.json").exists() and not (run / "samples").exists()


def test_guard_settings_are_not_part_of_the_fingerprint():
    """Loosening the guard after a TrainingDiverged resumes from the last good checkpoint."""
    from diffvq.trainer import result_settings

    assert result_settings(TrainConfig()) == result_settings(TrainConfig(diverge_factor=None,
                                                              diverge_patience=7))
