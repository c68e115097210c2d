"""One study cell's training: the prior at one size on one data subset for one budget, with a
validation curve (held-out NLL, exact or a bound, with its standard error, at fixed steps and a
fixed evaluation seed), the weights at its best validation point and at the end, and samples
from both for the judge.

    <cell>/curve.json         the curve and what the run spent (FLOPs, tokens, epochs, seconds)
    <cell>/final/             the prior at the end (a saved component)
    <cell>/best.safetensors   its weights at the lowest validation loss (early stopping)
    <cell>/samples-{best,final}.npy   `[n, L]` tokens drawn from each, class-balanced
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Protocol

import numpy as np
import torch
from torch import nn

from .. import storage, tokencache
from ..components import build_prior, save_component, wants_codebook
from ..errors import UserError
from ..evaluate.likelihood import held_out_nll
from ..flops import step_flops
from ..interfaces import DataInfo
from ..nn.transformer import count_parameters
from ..recipe import Recipe
from ..runtime import autocast
from ..stages import derived_seed
from ..trainer import Batches, TrainConfig, Trainer
from .cells import Cell, evaluation_steps, steps_for, subset


class CellRun(Protocol):
    """What a cell's training reads of a run (the pipeline's `Run` is one)."""

    recipe: Recipe
    info: DataInfo
    device: torch.device
    precision: str

    def token_cache(self) -> tokencache.TokenCache: ...
    def trainer(self, cfg: TrainConfig, workdir: Any, fp: str, seed: int, desc: str,
                settings: str) -> Trainer: ...


def train_cell(run: CellRun, cell: Cell, fp: str, log: Callable[[str], None]) -> dict[str, Any]:
    """Train one cell; write its curve, weights and samples under `run_dir / cell.path`."""
    r = run.recipe
    study = r.study
    assert study is not None
    p = r.priors[cell.prior]
    out = run.run_dir / cell.path  # type: ignore[attr-defined]
    cache = run.token_cache()
    spec = cache.spec
    train_all = cache.sequences("train")
    idx = subset(len(train_all), cell.fraction, r.seed)
    arrays: dict[str, Any] = {"tokens": np.asarray(train_all[idx])}
    if spec.n_classes:
        arrays["labels"] = np.asarray(cache.labels("train"))[idx]
    val = cache.torch_sequences("validation")
    val_labels = torch.from_numpy(cache.labels("validation")) if spec.n_classes else None
    cap = study.section.validation_sequences
    if cap:
        val, val_labels = val[:cap], (val_labels[:cap] if val_labels is not None else None)

    seed = derived_seed(r.seed, "study", cell.prior, cell.size, str(cell.seed))
    torch.manual_seed(seed)  # initial weights: a function of (prior, size, seed) alone
    params = study.params[(cell.prior, cell.size)]
    codebook = cache.codebook()
    prior = build_prior(p.cls, spec, params, codebook)
    batches = Batches(arrays, p.train.batch_size, seed)
    cost = step_flops(prior, batches.batch(0, torch.device("cpu")))
    unique = len(idx)
    steps = steps_for(cell.budget, study.unit, cost["flops_per_step"], p.train.batch_size, unique)
    cfg = p.train.model_copy(update={"steps": steps,
                                     "warmup_steps": min(p.train.warmup_steps, steps // 10)})
    at = evaluation_steps(steps, study.section.evaluations)
    per_token = p.train.batch_size * spec.seq_len
    best = {"loss": math.inf}
    t_start = time.monotonic()

    def evaluate(module: nn.Module, step: int) -> dict[str, Any]:
        t0 = time.monotonic()
        with torch.random.fork_rng(devices=[run.device] if run.device.type == "cuda" else []):
            nll = held_out_nll(module, val, val_labels, run.device,
                               derived_seed(r.seed, "study-validation"), math.prod(run.info.shape))
        point = {"step": step, "flops": float(step) * cost["flops_per_step"],
                 "tokens_seen": step * per_token, "epochs": step * p.train.batch_size / unique,
                 "loss": nll["bits_per_token"], "se": nll["se"],
                 "eval_s": round(time.monotonic() - t0, 3)}
        if point["loss"] < best.get("loss", math.inf) and not _better_on_disk(out, point["loss"]):
            storage.save_weights(out / "best.safetensors", module.state_dict())
            storage.write_json(out / "best.json", point)
        best.update(point)
        return point

    out.mkdir(parents=True, exist_ok=True)
    log(f"{cell.id}: {p.name} {cell.size} ({count_parameters(prior):,} parameters), {unique} "
        f"sequences, {steps} steps of {cost['flops_per_step']:.3g} FLOPs")
    trainer = run.trainer(cfg, out, fp, seed, cell.id, f"priors.{cell.prior}.train")
    result = trainer.fit(prior, batches, evaluate_at=at, evaluate=evaluate)
    injected: dict[str, Any] = {"spec": spec}
    if wants_codebook(p.cls):
        injected["codebook"] = codebook
    save_component(out / "final", prior, "prior", p.name, params, injected)
    trainer.clear_checkpoint()
    curve = {"prior": cell.prior, "name": p.name, "family": p.cls.likelihood,
             "fraction": cell.fraction, "size": cell.size, "budget": cell.budget,
             "unit": study.unit, "seed": cell.seed, "unique_sequences": unique,
             "unique_tokens": unique * spec.seq_len, "batch_size": p.train.batch_size,
             "steps": steps, "parameters": count_parameters(prior), **cost,
             "flops": float(steps) * cost["flops_per_step"], "tokens_seen": steps * per_token,
             "epochs": steps * p.train.batch_size / unique, "train_wall_s": result.wall_time_s,
             "points": result.evaluations, "best": storage.read_json(out / "best.json")}
    curve["samples"] = draw_samples(run, cell, prior, out)
    curve["wall_s"] = round(time.monotonic() - t_start, 3)
    storage.write_json(out / "curve.json", curve)
    return {k: curve[k] for k in ("steps", "flops", "epochs", "train_wall_s", "wall_s", "best")}


def _better_on_disk(out: Any, loss: float) -> bool:
    """Whether a saved best point (from before a resume) is already at or below `loss`."""
    path = out / "best.json"
    if not path.is_file():
        return False
    try:
        return float(storage.read_json(path)["loss"]) <= loss
    except (UserError, KeyError, TypeError, ValueError):
        return False


@torch.no_grad()
def draw_samples(run: CellRun, cell: Cell, prior: nn.Module, out: Any) -> dict[str, Any]:
    """`quality_per_class` samples per class from the final and the best weights, with the
    prior's first sampling setting; tokens saved for the judge (`results`)."""
    r = run.recipe
    study, p = r.study, r.priors[cell.prior]
    assert study is not None
    per_class = study.section.quality_per_class
    if not per_class:
        return {}
    n_cls = run.token_cache().spec.n_classes
    n = per_class * max(n_cls, 1)
    labels = (torch.arange(n_cls, device=run.device).repeat_interleave(per_class)
              if n_cls else None)
    options = p.variants[0][1]
    files = {}
    for which in ("final", "best"):
        if which == "best":
            prior.load_state_dict(storage.load_weights(out / "best.safetensors"))
        prior.to(run.device).eval()
        gen = torch.Generator(run.device).manual_seed(
            derived_seed(r.seed, "study-sample", cell.id, which))
        chunks = []
        for i in range(0, n, r.sample.batch_size):
            lab = labels[i:i + r.sample.batch_size] if labels is not None else None
            with autocast(run.device, run.precision):
                chunks.append(prior.sample(min(r.sample.batch_size, n - i), lab, generator=gen,
                                           **options).cpu())
        tokens = torch.cat(chunks).numpy()  # [n, L]
        name = f"samples-{which}.npy"
        storage.atomic_save(out / name, lambda f, t=tokens: np.save(open(f, "wb"), t))
        files[which] = name
    lab = (labels.cpu().numpy() if labels is not None else np.zeros(n, dtype=np.int64))
    storage.atomic_save(out / "labels.npy", lambda f: np.save(open(f, "wb"), lab))
    return {"files": files, "n": n, "options": options}
