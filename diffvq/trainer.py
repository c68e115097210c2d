"""One trainer for tokenizers and priors alike.

AdamW, linear warm-up then cosine decay, gradient clipping, an optional EMA of the weights,
bf16 autocast where it is fast, a progress bar with loss and it/s, and periodic checkpoints from
which an interrupted run (Ctrl-C, SIGTERM, or a kill) resumes to exactly the result it would have
reached uninterrupted: batches are a pure function of (seed, step), every RNG's state is saved, and
checkpoints are only ever taken between steps (Ctrl-C and SIGTERM wait for the step to end, since a
half-done step has already drawn its random numbers). A loss that runs away and stays there stops
training with `TrainingDiverged` instead of finishing with a useless model.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Callable, Collection, Mapping, Protocol

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn
from tqdm import tqdm

from . import storage
from .errors import TrainingDiverged
from .runtime import autocast


class TrainConfig(BaseModel):
    """The `train.tokenizer`, `train.prior` and `priors.<key>.train` recipe sections."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    steps: int = Field(1000, gt=0, description="optimizer steps")
    batch_size: int = Field(64, gt=0)
    lr: float = Field(3e-4, gt=0, description="peak learning rate")
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="final lr as a fraction of peak")
    warmup_steps: int = Field(100, ge=0)
    weight_decay: float = Field(0.01, ge=0, le=1, description="AdamW decay of matrices only")
    betas: tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]] = \
        (0.9, 0.95)
    grad_clip: float | None = Field(1.0, gt=0, description="max gradient norm; null: none")
    ema_decay: float | None = Field(None, gt=0, lt=1, description="EMA of weights; null: none")
    checkpoint_every_s: float = Field(30.0, gt=0, description="seconds between checkpoints")
    diverge_factor: float | None = Field(
        4.0, gt=1, description="stop when the smoothed loss stays above this many times its best "
        "(and above where it started), or this many times a uniform guess; null: never stop")
    diverge_patience: int = Field(50, gt=0, description="steps the loss may stay diverged")


def result_settings(cfg: TrainConfig) -> dict[str, Any]:
    """The training settings that change results, for fingerprints (how often we checkpoint,
    or when we give up on a diverging loss, does not)."""
    return cfg.model_dump(mode="json", exclude={"checkpoint_every_s", "diverge_factor",
                                                "diverge_patience"})


class Trainable(Protocol):
    def training_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]: ...


class Batches:
    """Shuffled mini-batches from arrays of equal length (tensors or memory-mapped numpy).

    The batch at step `s` depends only on (seed, s): epoch e is a permutation drawn from
    `seed + e`, so resuming at any step needs no sampler state."""

    def __init__(self, arrays: Mapping[str, Any], batch_size: int, seed: int):
        lengths = {len(a) for a in arrays.values()}
        if len(lengths) != 1:
            raise ValueError(f"arrays differ in length: { {k: len(a) for k, a in arrays.items()} }")
        self.arrays = dict(arrays)
        self.n = lengths.pop()
        if self.n == 0:
            raise ValueError("no training examples")
        self.batch_size = batch_size
        self.seed = seed
        self._perm_epoch = -1
        self._perm = np.empty(0, dtype=np.int64)

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._perm_epoch:
            self._perm = np.random.default_rng([self.seed, epoch]).permutation(self.n)
            self._perm_epoch = epoch
        return self._perm

    def indices(self, step: int) -> np.ndarray:
        start = step * self.batch_size
        out = []
        while len(out) < self.batch_size:
            epoch, pos = divmod(start + len(out), self.n)
            take = min(self.batch_size - len(out), self.n - pos)
            out.extend(self._permutation(epoch)[pos:pos + take])
        return np.asarray(out)

    def batch(self, step: int, device: torch.device) -> dict[str, Tensor]:
        idx = np.sort(self.indices(step))  # sorted reads are friendlier to memory maps
        out = {}
        for k, a in self.arrays.items():
            if isinstance(a, Tensor):
                t = a[torch.from_numpy(idx)]
            else:
                t = torch.from_numpy(np.ascontiguousarray(a[idx]))
                if not t.is_floating_point():
                    t = t.long()  # memory maps store tokens compactly (int16)
            out[k] = t.to(device, non_blocking=True)
        return out


class EMA:
    """Exponential moving average of a module's floating-point parameters."""

    def __init__(self, module: nn.Module, decay: float):
        self.decay = decay
        self.shadow = {k: p.detach().clone().float() for k, p in module.named_parameters()}

    @torch.no_grad()
    def update(self, module: nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))  # short warm-up of the decay
        for k, p in module.named_parameters():
            self.shadow[k].lerp_(p.detach().float(), 1 - d)

    def state_dict(self) -> dict[str, Tensor]:
        return self.shadow

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.shadow = {k: v.clone().float() for k, v in state.items()}

    @torch.no_grad()
    def copy_to(self, module: nn.Module) -> None:
        for k, p in module.named_parameters():
            p.copy_(self.shadow[k].to(p.dtype))


class DivergenceGuard:
    """Tells a loss that ran away from one that is merely noisy or slow.

    A step is *bad* when the smoothed loss is above `factor` times its best so far and above its
    first value (so losses near zero or below it never trip the ratio), or above `factor` times
    the loss of a uniform guess where the caller knows it. `patience` bad steps in a row mean the
    run diverged. Early training is safe: a falling loss only lowers the best it is compared to."""

    SMOOTHING = 0.9  # EMA of the per-step loss, about ten steps: one bad batch is not divergence

    def __init__(self, factor: float | None, patience: int, uniform: float | None = None):
        self.factor = factor
        self.patience = patience
        self.uniform = uniform
        self.first: float | None = None
        self.smoothed: float | None = None
        self.best: float | None = None
        self.bad = 0  # bad steps in a row

    def bad_now(self) -> bool:
        if self.factor is None or self.smoothed is None:
            return False
        assert self.first is not None and self.best is not None
        if self.smoothed > self.factor * self.best and self.smoothed > self.first:
            return True
        return self.uniform is not None and self.smoothed > self.factor * self.uniform

    def update(self, loss: float) -> bool:
        """Account one step's loss; True when the run has diverged."""
        if self.smoothed is None:
            self.first = self.smoothed = self.best = loss
        else:
            self.smoothed = self.SMOOTHING * self.smoothed + (1 - self.SMOOTHING) * loss
            self.best = min(self.best, self.smoothed)  # type: ignore[type-var]
        self.bad = self.bad + 1 if self.bad_now() else 0
        return self.bad >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return {"first": self.first, "smoothed": self.smoothed, "best": self.best, "bad": self.bad}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for k in ("first", "smoothed", "best", "bad"):
            if k in state:
                setattr(self, k, state[k])


class DeferredInterrupt:
    """Holds Ctrl-C and SIGTERM back until the current training step ends.

    A signal's handler runs between two bytecodes, in the middle of a step that has already drawn
    random numbers; a checkpoint taken there resumes to a different result. So the first signal
    is only noted, and `fire` (called between steps) runs the handler it displaced, which raises
    KeyboardInterrupt. A second signal runs it at once: the user insists, and the last periodic
    checkpoint is still exact. Only the main thread can handle signals; elsewhere this does
    nothing. Handlers that are not Python functions (ignored, default) are left alone."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.pending: int | None = None
        self.previous: dict[int, Callable[[int, Any], Any]] = {}

    def __enter__(self) -> DeferredInterrupt:
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                handler = signal.getsignal(signum)
                if callable(handler):
                    self.previous[signum] = handler
                    signal.signal(signum, self._note)
        return self

    def _note(self, signum: int, frame: Any) -> None:
        if self.pending is None:
            self.pending = signum
        else:
            self.previous[signum](signum, frame)

    def fire(self) -> None:
        """Let a held signal act now (between steps)."""
        if self.pending is not None:
            signum, self.pending = self.pending, None
            self.previous[signum](signum, None)

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        if exc_type is None:
            self.fire()  # one that came after the last step still stops the program


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up to `lr`, then cosine decay to `lr * min_lr_ratio` at the last step."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    span = max(1, cfg.steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    floor = cfg.lr * cfg.min_lr_ratio
    return floor + 0.5 * (cfg.lr - floor) * (1 + math.cos(math.pi * progress))


def make_optimizer(module: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    decay = [p for p in module.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in module.parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas)


def rng_state() -> dict[str, Any]:
    """Every RNG a training step may draw from (dropout, masks, noise; numpy and `random` for
    plugins), in a form `torch.load(weights_only=True)` reads back."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": version, "internal": list(internal), "gauss": py_gauss}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "numpy" in state:  # absent from checkpoints of older versions
        n = state["numpy"]
        np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"],
                             n["has_gauss"], n["gauss"]))
    if "python" in state:
        py = state["python"]
        random.setstate((py["version"], tuple(py["internal"]), py["gauss"]))


@dataclass
class TrainResult:
    steps: int
    wall_time_s: float  # across resumes
    final_loss: float
    losses: list[tuple[int, float]]  # (step, mean loss over the preceding log interval)
    resumed_from: int | None = None
    logs: dict[str, float] = field(default_factory=dict)
    evaluations: list[dict[str, Any]] = field(default_factory=list)  # what `evaluate` returned


class Trainer:
    """Train a module on `Batches`, checkpointing into `workdir/checkpoint/`."""

    LOG_EVERY = 10

    def __init__(self, cfg: TrainConfig, *, device: torch.device, precision: str, seed: int,
                 workdir: Path | None = None, fingerprint: str = "", desc: str = "train",
                 progress: bool = True, settings: str = "train"):
        self.cfg = cfg
        self.device = device
        self.precision = precision
        self.seed = seed
        self.workdir = Path(workdir) if workdir is not None else None
        self.fingerprint = fingerprint
        self.desc = desc
        self.progress = progress
        self.settings = settings  # the recipe section of these settings, named in errors

    # -- checkpoints ---------------------------------------------------------------------------
    @property
    def ckpt_dir(self) -> Path | None:
        return self.workdir / "checkpoint" if self.workdir is not None else None

    def _save(self, module: nn.Module, opt: torch.optim.Optimizer, ema: EMA | None,
              meta: dict[str, Any]) -> None:
        """Checkpoint between two steps; `meta` is the loop's state (`trainer.json`)."""
        if self.ckpt_dir is None:
            return
        tmp = self.ckpt_dir.with_name("checkpoint.tmp")
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        try:
            storage.save_weights(tmp / "model.safetensors", module.state_dict())
            if ema is not None:
                storage.save_weights(tmp / "ema.safetensors", ema.state_dict())
            storage.save_state(tmp / "optimizer.pt", {"optimizer": opt.state_dict(),
                                                      "rng": rng_state()})
            storage.write_json(tmp / "trainer.json", {**meta, "fingerprint": self.fingerprint})
            storage.replace_dir(tmp, self.ckpt_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)  # the previous checkpoint stays usable
            raise

    def _find_checkpoint(self) -> Path | None:
        if self.ckpt_dir is None:
            return None
        for d in (self.ckpt_dir, self.ckpt_dir.with_name("checkpoint.old")):
            try:
                meta = json.loads((d / "trainer.json").read_text())
            except (OSError, json.JSONDecodeError):
                continue  # absent, or a checkpoint that never finished writing
            if meta.get("fingerprint") == self.fingerprint:
                return d
        return None

    def _load(self, d: Path, module: nn.Module, opt: torch.optim.Optimizer,
              ema: EMA | None) -> dict[str, Any]:
        module.load_state_dict(storage.load_weights(d / "model.safetensors"))
        if ema is not None:
            ema.load_state_dict(storage.load_weights(d / "ema.safetensors"))
        state = storage.load_state(d / "optimizer.pt")
        opt.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"])
        return storage.read_json(d / "trainer.json")

    def clear_checkpoint(self) -> None:
        if self.ckpt_dir is not None:
            for name in ("checkpoint", "checkpoint.old", "checkpoint.tmp"):
                shutil.rmtree(self.ckpt_dir.with_name(name), ignore_errors=True)

    def _diverged(self, what: str, step: int) -> TrainingDiverged:
        return TrainingDiverged(
            f"{self.desc}: {what} at step {step} (learning rate {lr_at(step, self.cfg):.3g}); "
            f"training stopped (its last checkpoint, if any, is kept); lower "
            f"{self.settings}.lr or raise {self.settings}.warmup_steps")

    # -- the loop -----------------------------------------------------------------------------
    def fit(self, module: nn.Module, batches: Batches, *,
            uniform_loss: float | None = None, evaluate_at: Collection[int] = (),
            evaluate: Callable[[nn.Module, int], dict[str, Any]] | None = None) -> TrainResult:
        """Train to `cfg.steps`, resuming from a checkpoint of the same fingerprint.

        `uniform_loss`: the loss of a uniform guess where the caller knows it (log of the
        vocabulary size for a cross-entropy in nats); a loss far above it counts as diverged.
        `evaluate(module, step)` runs after each step in `evaluate_at` (a validation curve); it
        must leave the module's weights and every random generator as it found them. What it
        returns is kept in checkpoints, so a resumed run has the whole curve."""
        cfg = self.cfg
        module.to(self.device)
        torch.manual_seed(self.seed)
        opt = make_optimizer(module, cfg)
        ema = EMA(module, cfg.ema_decay) if cfg.ema_decay else None
        guard = DivergenceGuard(cfg.diverge_factor, cfg.diverge_patience, uniform_loss)
        step, losses, elapsed, resumed_from = 0, [], 0.0, None
        window: list[float] = []  # per-step losses since the last logged mean
        logs: dict[str, float] = {}
        evaluations: list[dict[str, Any]] = []
        evaluate_at = frozenset(evaluate_at) if evaluate is not None else frozenset()
        found = self._find_checkpoint()
        if found is not None:
            meta = self._load(found, module, opt, ema)
            step, elapsed = int(meta["step"]), float(meta["elapsed_s"])
            losses = [tuple(x) for x in meta["losses"]]
            window, logs = list(meta.get("window", [])), dict(meta.get("logs", {}))
            guard.load_state_dict(meta.get("guard", {}))
            evaluations = list(meta.get("evaluations", []))
            resumed_from = step
        saved_at = resumed_from  # the step of the checkpoint on disk from this process's view
        module.train()
        bar = tqdm(total=cfg.steps, initial=step, desc=self.desc, unit="step", leave=True,
                   dynamic_ncols=True, disable=not self.progress, file=sys.stderr,
                   mininterval=0.5 if sys.stderr.isatty() else 10.0)
        if resumed_from is not None:
            print(f"{self.desc}: resuming from step {step}", file=sys.stderr, flush=True)
        last_ckpt = time.monotonic()
        t0 = time.monotonic()

        def meta_now() -> dict[str, Any]:
            return {"step": step, "elapsed_s": elapsed + time.monotonic() - t0, "losses": losses,
                    "window": window, "logs": logs, "guard": guard.state_dict(),
                    "evaluations": evaluations}

        between_steps = True  # False while a step is half done: no checkpoint can be taken then
        try:
            # training needs gradients whatever mode the caller is in
            with DeferredInterrupt() as interrupt, torch.enable_grad():
                while True:
                    interrupt.fire()
                    if step >= cfg.steps:
                        break
                    batch = batches.batch(step, self.device)  # a pure function of the step
                    for g in opt.param_groups:
                        g["lr"] = lr_at(step, cfg)
                    between_steps = False  # from here on the step draws random numbers
                    with autocast(self.device, self.precision):
                        loss, step_logs = module.training_loss(batch)
                    if not torch.isfinite(loss):
                        raise self._diverged(f"the loss became {loss.item()}", step)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    if cfg.grad_clip is not None:
                        nn.utils.clip_grad_norm_(module.parameters(), cfg.grad_clip)
                    try:
                        opt.step()
                    except RuntimeError as exc:
                        if "overflow" not in str(exc):
                            raise
                        raise self._diverged("the update overflowed float32", step) from None
                    if ema is not None:
                        ema.update(module, step)
                    value = loss.item()
                    if guard.update(value):
                        raise self._runaway(guard, step, saved_at)
                    step += 1
                    window.append(value)
                    logs = {k: float(v) for k, v in step_logs.items()}
                    if step % self.LOG_EVERY == 0 or step == cfg.steps:
                        losses.append((step, float(np.mean(window))))
                        bar.set_postfix(loss=f"{losses[-1][1]:.4f}", refresh=False)
                        window = []
                    bar.update(1)
                    if step in evaluate_at:
                        assert evaluate is not None
                        module.eval()
                        evaluations.append(evaluate(module, step))
                        module.train()
                    between_steps = True
                    if time.monotonic() - last_ckpt > cfg.checkpoint_every_s and \
                            step < cfg.steps and not guard.bad:  # never save a diverging state
                        self._save(module, opt, ema, meta_now())
                        saved_at, last_ckpt = step, time.monotonic()
        except KeyboardInterrupt:
            bar.close()
            if between_steps and not guard.bad and self.ckpt_dir is not None:
                self._save(module, opt, ema, meta_now())
                print(f"{self.desc}: interrupted at step {step}; checkpoint saved, run again to "
                      f"resume", file=sys.stderr)
            else:
                kept = f"its checkpoint of step {saved_at} is kept" if saved_at is not None \
                    else "no checkpoint was saved"
                print(f"{self.desc}: stopped at step {step}; {kept}", file=sys.stderr)
            raise
        finally:
            bar.close()
        elapsed += time.monotonic() - t0
        if ema is not None:
            ema.copy_to(module)
        if not all(torch.isfinite(p).all() for p in module.parameters()):
            raise self._diverged("the weights became infinite or NaN", step)
        module.eval()
        return TrainResult(steps=step, wall_time_s=elapsed,
                           final_loss=losses[-1][1] if losses else float("nan"),
                           losses=losses, resumed_from=resumed_from, logs=logs,
                           evaluations=evaluations)

    def _runaway(self, guard: DivergenceGuard, step: int, saved_at: int | None) -> TrainingDiverged:
        assert guard.smoothed is not None and guard.best is not None and guard.factor is not None
        if guard.uniform is not None and guard.smoothed > guard.factor * guard.uniform:
            over = f"{guard.factor:g} x the {guard.uniform:.4g} of a uniform guess"
        else:
            over = f"{guard.factor:g} x its best {guard.best:.4g}"
        kept = f"its checkpoint of step {saved_at} is kept" if saved_at is not None \
            else "no checkpoint was saved"
        return TrainingDiverged(
            f"{self.desc}: the loss diverged at step {step}: {guard.smoothed:.4g} (smoothed), "
            f"above {over} for {guard.patience} steps (learning rate "
            f"{lr_at(step, self.cfg):.3g}); training stopped, {kept}; lower {self.settings}.lr "
            f"or raise {self.settings}.warmup_steps (or loosen {self.settings}.diverge_factor, "
            f"diverge_patience; null: no check)")
