"""The Evaluator: every figure of `metrics.json`, computed one way for every prior. The pipeline
only says when (the `metrics` stage); what is measured, on which split and with which seeds lives
here and in `docs/protocol.md`."""

from __future__ import annotations

import math
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from .. import storage, tokencache
from ..interfaces import DataInfo, HasJudge, HasSignalMetrics
from ..judge import get_judge
from ..recipe import Recipe
from ..runtime import autocast
from ..stages import derived_seed, fingerprint
from ..stats import distinct_share
from ..trainer import TrainConfig, result_settings
from ..intervals import mean_interval, share_interval
from ..memorisation import CopyReference, copy_reference, nearest, summarise
from ..token_entropy import beside_real
from .judged import (JudgeEvaluation, evenly_spaced, reference_rows, reference_subsets,
                     signal_summary)
from .likelihood import held_out_nll

# what a sampling stage recorded that metrics.json repeats per sampling setting
SAMPLING_KEYS = ("variant", "options", "nfe", "seeds", "n", "batch_size", "seconds_per_sample",
                 "seconds_per_sample_latency", "peak_memory_mb", "peak_memory_mb_per_sample",
                 "peak_memory_mb_latency", "files", "timing")


class RunView(Protocol):
    """What the Evaluator reads of a run (the pipeline's `Run` is one)."""

    recipe: Recipe
    modality: Any
    info: DataInfo
    device: torch.device
    precision: str
    progress: bool
    run_dir: Path
    fp_data: str
    fp_tokens: str

    def signals(self, split: str) -> tuple[Tensor, Tensor]: ...
    def data(self, split: str) -> tuple[Tensor, Tensor]: ...
    def tokenizer(self) -> nn.Module: ...
    def token_cache(self) -> tokencache.TokenCache: ...
    def prior(self, key: str) -> nn.Module: ...
    def decode(self, tok: nn.Module, tokens: Tensor) -> Tensor: ...
    def sample_seed(self, key: str, which: int | str) -> int: ...
    def samples_dir(self, key: str, variant: str) -> Path: ...


class Evaluator:
    def __init__(self, run: RunView, log: Any = print):
        self.run = run
        self.log = log
        self._recon_test: tuple[Tensor, ...] | None = None
        self._copies: CopyReference | None = None
        self._train_features: np.ndarray | None = None

    @cached_property
    def tokenizer(self) -> nn.Module:
        """The run's tokenizer, loaded once for every figure."""
        return self.run.tokenizer()

    @cached_property
    def cache(self) -> tokencache.TokenCache:
        """The run's token cache, opened once."""
        return self.run.token_cache()

    def metrics(self, stage_infos: dict[str, Any]) -> dict[str, Any]:
        """`metrics.json` of a run whose stages left `stage_infos`."""
        run, r = self.run, self.run.recipe
        metrics = {"run": r.name, "seed": r.seed, "device": str(run.device),
                   "precision": run.precision,
                   "data": {"name": r.data.name, **run.info.to_dict(),
                            **stage_infos["tokens"]["counts"]},
                   "tokens_fingerprint": run.fp_tokens,
                   "tokenizer": self.tokenizer_metrics(stage_infos["tokenizer"])}
        jev = self.judge
        compared = [k for k in r.priors if f"prior-{k}" in stage_infos]
        metrics["judge"], metrics["signal"] = self.reference(jev) if compared else (None, None)
        metrics["signal_notes"] = dict(getattr(run.modality, "signal_metric_notes", {}))
        metrics["priors"] = {k: self.prior_metrics(k, stage_infos, jev) for k in compared}
        return metrics

    # -- the judge and the floor rows -------------------------------------------------------
    def judge_key(self) -> tuple[str, TrainConfig]:
        """The judge's cache key (data, modality, its settings; not the recipe seed, so runs
        with different seeds are measured by the same judge) and its training settings."""
        run, ev = self.run, self.run.recipe.evaluate
        cfg = TrainConfig(**{**getattr(run.modality, "judge_train", {}),
                             **({"steps": ev.judge_steps} if ev.judge_steps else {})})
        key = fingerprint(run.fp_data, type(run.modality).__qualname__, result_settings(cfg),
                          "judge-v2")
        return f"{run.recipe.data.name}-{key}", cfg

    @cached_property
    def judge(self) -> JudgeEvaluation | None:
        """`judge_evaluation()`, made once per Evaluator."""
        return self.judge_evaluation()

    def judge_evaluation(self) -> JudgeEvaluation | None:
        """The judge for this data (cached across runs), or None where there is none: judging
        is off, the data is unlabelled, or the modality provides no judge."""
        run = self.run
        if not (run.recipe.evaluate.judge and run.info.n_classes
                and isinstance(run.modality, HasJudge)):
            return None
        key, cfg = self.judge_key()
        judge = get_judge(run.modality, key, run.data("train"), run.data("test"), cfg,
                          seed=0, device=run.device, progress=run.progress, log=self.log)
        ev = run.recipe.evaluate
        real = {split: run.data(split)[0] for split in tokencache.SPLITS if split != "train"}
        real = {split: x for split, x in real.items() if len(x) > ev.k}
        return JudgeEvaluation(judge, real, k=ev.k, resamples=ev.bootstrap,
                               seed=derived_seed(run.recipe.seed, "bootstrap"))

    def reference(self, jev: JudgeEvaluation | None) -> tuple[dict | None, dict | None]:
        """The floor rows: sets of real training signals the size of a prior's (one per sampling
        seed) and their tokenizer reconstructions, in judge terms and in the modality's signal
        metrics (None where there is no judge / the modality has no signal metrics)."""
        run, r = self.run, self.run.recipe
        n_classes = run.info.n_classes
        has_signal = isinstance(run.modality, HasSignalMetrics)
        if jev is None and not has_signal:
            return None, None
        tok = self.tokenizer
        raw, y = run.signals("train")
        subsets = reference_subsets(y, r.sample.n_per_class, n_classes,
                                    [run.sample_seed("reference", s) for s in range(r.sample.seeds)])
        recon = [self._reconstruct_signals(tok, run.data("train")[0][i]) for i in subsets]
        judge = signal = None
        if jev is not None:
            judge = {**jev.judge.info, "reference": reference_rows(
                jev, [run.data("train")[0][i] for i in subsets],
                [run.modality.to_model(s) for s in recon], run.data("test"),
                self.test_reconstructions()[2:], n_classes)}
        if has_signal:
            labels = [y[i] if n_classes else None for i in subsets]
            measure = run.modality.signal_metrics
            signal = {"real data": signal_summary([measure(raw[i], lab)
                                                   for i, lab in zip(subsets, labels)]),
                      "tokenizer reconstructions": signal_summary([
                          measure(s, lab) for s, lab in zip(recon, labels)])}
        return judge, signal

    def _reconstruct_signals(self, tok: nn.Module, x: Tensor) -> Tensor:
        """Model tensors -> tokens -> the recipe's decoder -> signals (what a prior that
        reproduced the data's tokens exactly would give)."""
        run = self.run
        with torch.no_grad(), autocast(run.device, run.precision):
            tokens = torch.cat([tok.encode(x[i:i + 256].to(run.device)).cpu()
                                for i in range(0, len(x), 256)])
        return run.decode(tok, tokens)

    def test_reconstructions(self) -> tuple[Tensor, ...]:
        """(indices, reconstructed signals, the same as model tensors, labels) of up to
        `evaluate.max_reconstructions` test signals spread evenly over the split, made once."""
        if self._recon_test is None:
            run = self.run
            x, y = run.data("test")
            idx = evenly_spaced(len(x), run.recipe.evaluate.max_reconstructions)
            signals = self._reconstruct_signals(self.tokenizer, x[idx])
            self._recon_test = (idx, signals, run.modality.to_model(signals), y[idx])
        return self._recon_test

    def memorisation(self, jev: JudgeEvaluation | None, tokens: np.ndarray,
                     train_tokens: np.ndarray, copies: CopyReference,
                     train_features: np.ndarray | None = None) -> dict[str, Any]:
        """`memorisation.memorisation` of the pooled sets `[seeds, n, *grid]`, plus 95 %
        intervals of the two copy shares (bootstrap over seeds and samples). `train_features`:
        the judge features of `train_tokens` (default: of the whole training split)."""
        pooled = tokens.reshape(len(tokens) * tokens.shape[1], *tokens.shape[2:])
        feats = self.token_features(jev, pooled) if jev is not None else None
        ham, dist = nearest(pooled.reshape(len(pooled), -1), train_tokens, copies, feats,
                            self._train_features if train_features is None else train_features)
        out = summarise(ham, dist, copies)
        kw = {"resamples": self.run.recipe.evaluate.bootstrap,
              "seed": derived_seed(self.run.recipe.seed, "bootstrap")}
        per_seed = (lambda flags: list(flags.numpy().reshape(len(tokens), -1)))
        out["token_copy"] = share_interval(per_seed(ham == 0), **kw).to_dict()
        if dist is not None:
            out["feature_near_copy"] = share_interval(
                per_seed(dist <= copies.feature_threshold), **kw).to_dict()
        return out

    @torch.no_grad()
    def token_features(self, jev: JudgeEvaluation, tokens: np.ndarray) -> np.ndarray:
        """Judge features `[N, F]` of token grids `[N, *grid]` decoded by the tokenizer (model
        tensors, no vocoder): the space where memorisation is measured, so that a sequence
        copied from training sits at distance 0 from it, whatever the tokenizer's quality."""
        run, tok = self.run, self.tokenizer
        out = []
        for i in range(0, len(tokens), 256):
            t = torch.from_numpy(np.array(tokens[i:i + 256], dtype=np.int64))
            with autocast(run.device, run.precision):
                out.append(tok.decode(t.to(run.device)).float().cpu())
        return jev.features([torch.cat(out)])[0]

    def copy_reference(self, jev: JudgeEvaluation | None) -> CopyReference:
        """How close held-out real data comes to the training set, made once: what a prior's
        samples are held against to count near-copies. Tokens: the test sequences decoded for
        the reconstruction metrics, against every training sequence; judge features: of the
        same sequences decoded by the tokenizer (`token_features`)."""
        if self._copies is None:
            run = self.run
            cache = self.cache
            idx = self.test_reconstructions()[0].numpy()
            train_f = test_f = None
            if jev is not None:
                train_f = self._train_features = self.token_features(jev, cache.tokens("train"))
                test_f = self.token_features(jev, np.asarray(cache.tokens("test"))[idx])
            self._copies = copy_reference(cache.sequences("train"),
                                          cache.sequences("test")[idx], train_f, test_f,
                                          quantile=run.recipe.evaluate.copy_quantile)
        return self._copies

    # -- the tokenizer ------------------------------------------------------------------------
    @torch.no_grad()
    def tokenizer_metrics(self, train_info: dict[str, Any]) -> dict[str, Any]:
        run = self.run
        tok, cache = self.tokenizer, self.cache
        x, _ = run.data("test")
        sq = 0.0
        for i in range(0, len(x), 256):
            xb = x[i:i + 256].to(run.device)
            with autocast(run.device, run.precision):
                x_hat = tok.decode(tok.encode(xb)).float()
            sq += torch.sum((x_hat - xb) ** 2).item()
        idx, recon_signals, _, _ = self.test_reconstructions()
        modality_metrics = run.modality.reconstruction_metrics(run.signals("test")[0][idx],
                                                                recon_signals)
        counts = np.bincount(np.asarray(cache.tokens("test")).ravel(),
                             minlength=cache.spec.vocab_size).astype(np.float64)
        p = counts[counts > 0] / counts.sum()
        return {"name": run.recipe.tokenizer.name, "codebook_size": cache.spec.vocab_size,
                "grid_shape": list(cache.spec.grid_shape),
                "recon_mse": sq / x.numel(), **modality_metrics,
                "codebook_usage": float((counts > 0).mean()),
                "perplexity": float(np.exp(-(p * np.log(p)).sum())),
                "parameters": train_info.get("parameters"),
                "train_steps": train_info.get("steps"),
                "train_time_s": train_info.get("wall_time_s"),
                "compute": train_info.get("compute")}

    # -- the priors ---------------------------------------------------------------------------
    def likelihood(self, key: str, prior: nn.Module) -> dict[str, Any] | None:
        """Held-out NLL on the test split (None when off or the prior reports none)."""
        run, ev = self.run, self.run.recipe.evaluate
        if not ev.nll or getattr(prior, "likelihood", "none") == "none":
            return None
        cache = self.cache
        tokens = cache.torch_sequences("test")
        labels = torch.from_numpy(cache.labels("test")) if cache.spec.n_classes else None
        if ev.nll_max_sequences:
            tokens = tokens[:ev.nll_max_sequences]
            labels = labels[:ev.nll_max_sequences] if labels is not None else None
        return held_out_nll(prior, tokens, labels, run.device,
                            derived_seed(run.recipe.seed, "nll", key),
                            math.prod(run.info.shape))

    @torch.no_grad()
    def prior_metrics(self, key: str, infos: dict[str, Any],
                      jev: JudgeEvaluation | None) -> dict[str, Any]:
        run, p = self.run, self.run.recipe.priors[key]
        train = infos[f"prior-{key}"]
        out: dict[str, Any] = {"name": p.name, "parameters": train["parameters"],
                               "train_steps": train["steps"], "train_time_s": train["wall_time_s"],
                               "compute": train.get("compute")}
        prior = run.prior(key)
        nll = self.likelihood(key, prior)
        out["nll_bits_per_token"] = nll["bits_per_token"] if nll else None
        out["nll_kind"] = getattr(prior, "likelihood", "none") if nll else "none"
        out["nll"] = nll
        tok = self.tokenizer
        copies = self.copy_reference(jev)
        train_tokens = self.cache.sequences("train")
        real_tokens = np.asarray(self.cache.tokens("test"))  # entropy at the same n
        out["sampling"] = []
        for v in infos["samples"][key]:
            row = {k: v.get(k) for k in SAMPLING_KEYS}
            d = run.samples_dir(key, v["variant"])
            tokens = storage.load_array(d / "tokens.npy")  # [seeds, n, *grid]
            labels = storage.load_array(d / "labels.npy") if run.info.n_classes else None
            ent = [beside_real(t, real_tokens, self.cache.spec.vocab_size,
                               seed=derived_seed(run.recipe.seed, "entropy", str(i)))
                   for i, t in enumerate(tokens)]
            row["token_entropy"] = {
                "samples": mean_interval([e["samples"] for e in ent]).to_dict(),
                "real": float(np.mean([e["real"] for e in ent])), "n": ent[0]["n"]}
            shares = [distinct_share(t) for t in tokens]
            row["distinct_share"] = float(np.mean(shares))
            row["distinct"] = mean_interval(shares).clipped(0.0, 1.0).to_dict()
            if jev is not None or isinstance(run.modality, HasSignalMetrics):
                signals = [run.decode(tok, torch.from_numpy(t)) for t in tokens]
            if jev is not None:
                models = [run.modality.to_model(x) for x in signals]
                feats = jev.features(models)
                row["judge"] = jev.score(models, labels, feats=feats)
            row["memorisation"] = self.memorisation(jev, tokens, train_tokens, copies)
            if isinstance(run.modality, HasSignalMetrics):
                lab = torch.from_numpy(labels) if labels is not None else None
                row["signal"] = signal_summary([run.modality.signal_metrics(x, lab)
                                                for x in signals])
            out["sampling"].append(row)
        return out
