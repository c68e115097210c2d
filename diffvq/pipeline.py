"""The run pipeline: data -> tokenizer -> token cache -> prior(s) -> samples -> metrics.

Everything lands in `runs/<name>/`:

    recipe.resolved.yaml   the recipe with every default filled in, plus seed and versions
    tokenizer/             config.json + model.safetensors + train.json
    tokens/                {train,test}.tokens.npy (memory-mapped) + labels + meta.json
    priors/<key>/          config.json + model.safetensors + train.json
    samples/<key>/         tokens.npy, labels.npy, the modality's gallery, sample.json
    metrics.json           tokenizer and prior figures
    stages/<stage>.json    which recipe fingerprint each finished stage was made from
    superseded/<time>/     what stale stages had made, moved aside (see diffvq.stages)

Each stage's fingerprint hashes the part of the recipe it depends on plus its inputs'
fingerprints. A finished stage with the same fingerprint is skipped; a changed one is redone, and
so is everything downstream, after saying why and moving the old results aside. Training
interrupted mid-way resumes from its last checkpoint.
"""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from . import measure, stages, storage, tokencache
from .components import build_prior, load_component, save_component, wants_codebook
from .errors import UserError
from .evaluate import Evaluator
from .flops import counted_train_flops, step_flops
from .interfaces import DataInfo, HasCodebook, TokenSpec
from .judge import cache_root
from .nn.transformer import count_parameters
from .ownership import claim
from .plugins import Plugins
from .provenance import environment, file_digests
from .recipe import Recipe
from .runtime import autocast, resolve_precision, select_device, set_threads
from .stages import Stage, derived_seed, fingerprint
from .study.cells import Cell, cells as study_cells
from .study.results import MAP_FILE, StudyResults
from .study.training import train_cell
from .trainer import Batches, Trainer, TrainConfig, result_settings


def compute(steps: int, batch_size: int, unique: int, cost: dict[str, Any],
            seq_len: int | None, wall_s: float) -> dict[str, Any]:
    """What a training spent: FLOPs (per step, as `diffvq.flops.step_flops` counts them, and in
    all), examples (and tokens) seen, epochs over the unique training examples, seconds."""
    out = {**cost, "flops": float(steps) * cost["flops_per_step"],
           "examples_seen": steps * batch_size, "epochs": steps * batch_size / unique,
           "wall_time_s": wall_s}
    if seq_len is not None:
        out["tokens_seen"] = steps * batch_size * seq_len
    return out


def log(msg: str) -> None:
    print(f"diffvq: {msg}", file=sys.stderr, flush=True)


@dataclass
class Run:
    recipe: Recipe
    plugins: Plugins
    runs_dir: Path = Path("runs")
    progress: bool = True
    replace_stale: bool = False  # delete results a changed recipe supersedes, not move aside
    _data: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    _signals: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        r = self.recipe
        self.run_dir = Path(self.runs_dir) / r.name
        self.device = select_device(r.device)  # type: ignore[arg-type]
        self.precision = resolve_precision(r.precision, self.device)  # type: ignore[arg-type]
        self.dataset = r.data.cls(**r.data.params)
        self.info: DataInfo = self.dataset.info()
        self.modality = r.modality.cls(info=self.info, **r.modality.params)
        self.fp_data = fingerprint(r.modality.to_dict(), r.data.to_dict(),
                                   self.dataset.fingerprint())
        self.fp_tokenizer = fingerprint(self.fp_data, r.tokenizer.to_dict(), result_settings(r.tokenizer_train),
                                        r.seed, self.precision)
        self.fp_tokens = fingerprint(self.fp_tokenizer, "tokens-v2")
        self.fp_prior = {k: fingerprint(self.fp_tokens, p.name, p.params, result_settings(p.train),
                                        r.seed, self.precision, "prior-v2")
                         for k, p in r.priors.items()}
        self.fp_samples = {(k, name): fingerprint("samples-v4", self.fp_prior[k], options,
                                                  r.sample.model_dump(), r.decoder.to_dict(), r.seed,
                                                  self.precision)
                           for k, p in r.priors.items() for name, options in p.variants}
        self.cells = study_cells(r.study) if r.study is not None else []
        self.fp_cells = {c: self._cell_fingerprint(c) for c in self.cells}
        self.fp_metrics = fingerprint(self.fp_tokens, self.fp_prior,
                                      sorted(self.fp_samples.values()),
                                      r.evaluate.model_dump(), "metrics-v5",
                                      *([sorted(self.fp_cells.values()), r.study.to_dict()]
                                        if r.study is not None else []))

    def _cell_fingerprint(self, cell: Cell) -> str:
        """What a study cell's results depend on: the tokens, the prior at its size, its
        training settings but the steps (the budget sets them), the cell's coordinates, and how
        its curve and samples are measured. Not the other cells: adding one reuses the rest."""
        r, p = self.recipe, self.recipe.priors[cell.prior]
        s = r.study
        assert s is not None
        train = {k: v for k, v in result_settings(p.train).items() if k != "steps"}
        return fingerprint(self.fp_tokens, p.name, s.params[(cell.prior, cell.size)], train,
                           cell.fraction, cell.budget, s.unit, cell.seed, r.seed, self.precision,
                           s.section.evaluations, s.section.validation_sequences,
                           s.section.quality_per_class, p.variants[0][1], r.sample.batch_size,
                           "study-cell-v1")

    @property
    def compares(self) -> bool:
        """Whether the single-point comparison runs: always without a study, and beside one
        when it asks (`study.compare`)."""
        return self.recipe.study is None or self.recipe.study.section.compare

    # -- data -------------------------------------------------------------------------------------
    def signals(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(signals `[N, *info.shape]`, labels `[N]`) of a split as the data set gives them,
        checked, loaded once."""
        if split not in self._signals:
            signals, labels = self.dataset.load(split)
            if tuple(signals.shape[1:]) != tuple(self.info.shape):
                raise RuntimeError(f"data set {self.recipe.data.name!r} gave {split} signals of "
                                   f"shape {tuple(signals.shape[1:])}, its info says {self.info.shape}")
            if len(signals) == 0 and split != "validation":  # validation may be off
                raise UserError(f"data: the {split} split of {self.recipe.data.name!r} is empty")
            self._signals[split] = (signals, labels.long())
        return self._signals[split]

    def data(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(model tensors `[N, C, *spatial]`, labels `[N]`) of a split, made once."""
        if split not in self._data:
            signals, labels = self.signals(split)
            self._data[split] = (self.modality.to_model(signals), labels)
        return self._data[split]

    # -- stages -----------------------------------------------------------------------------------
    def all_stages(self) -> dict[str, Stage]:
        """Every stage of the recipe, in order, with the fingerprint it must be made from and
        the files it makes."""
        d, r = self.run_dir, self.recipe
        out = [Stage(d, "tokenizer", self.fp_tokenizer, [d / "tokenizer"]),
               Stage(d, "tokens", self.fp_tokens, [d / "tokens"])]
        out += [Stage(d, c.id, self.fp_cells[c], [d / c.path]) for c in self.cells]
        if self.compares:
            out += [Stage(d, f"prior-{k}", self.fp_prior[k], [d / "priors" / k])
                    for k in r.priors]
            out += [Stage(d, f"samples-{k}" + (f"-{v}" if v else ""), self.fp_samples[(k, v)],
                          [d / "samples" / k / v if v else d / "samples" / k])
                    for k, p in r.priors.items() for v, _ in p.variants]
        out.append(Stage(d, "metrics", self.fp_metrics,
                         [d / "metrics.json", d / "report.html", d / "study" / MAP_FILE]))
        return {s.id: s for s in out}

    def _supersede_stale(self) -> None:
        """Say which finished stages a changed recipe or data makes stale, and why; move their
        results aside (or delete them when asked to) before any is redone."""
        stale = [s for s in self.all_stages().values() if s.stale()]
        if stale:
            now = stages.inputs(self.recipe.to_dict(self.run_dir), self.dataset.fingerprint(),
                                self.precision)
            why = stages.changes(stages.read_inputs(self.run_dir), now)
            log(f"{self.run_dir} was made from something else ({why}); redoing "
                f"{', '.join(s.id for s in stale)}")
            dest = stages.supersede(self.run_dir, stale, discard=self.replace_stale)
            if dest is not None:
                log(f"the superseded results are kept in {dest} (at their old paths; "
                    f"--replace-stale deletes them instead)")

    def _stage(self, stage_id: str, work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        stage = self.all_stages()[stage_id]
        done = stage.info()
        if done is not None:
            log(f"{stage_id}: up to date, skipped")
            return done
        stage.path.unlink(missing_ok=True)
        for out in stage.outputs:  # leftovers of an unfinished attempt, unless it can resume
            if out.is_dir() and stages.checkpoint_fingerprint(out) != stage.fp:
                shutil.rmtree(out)
        t0 = time.monotonic()
        info = work()
        info["stage_wall_time_s"] = round(time.monotonic() - t0, 3)
        stage.finish(info)
        return info

    def trainer(self, cfg: TrainConfig, workdir: Path, fp: str, seed: int, desc: str,
                 settings: str) -> Trainer:
        return Trainer(cfg, device=self.device, precision=self.precision, seed=seed,
                       workdir=workdir, fingerprint=fp, desc=desc, progress=self.progress,
                       settings=settings)

    def train_tokenizer(self) -> dict[str, Any]:
        r, out = self.recipe, self.run_dir / "tokenizer"

        def work() -> dict[str, Any]:
            x, _ = self.data("train")
            input_shape = tuple(x.shape[1:])
            torch.manual_seed(r.seed)  # the initial weights depend on the seed alone, not on history
            tok = r.tokenizer.cls(input_shape=input_shape, **r.tokenizer.params)
            log(f"tokenizer: training {r.tokenizer.name} ({count_parameters(tok):,} parameters) "
                f"for {r.tokenizer_train.steps} steps on {len(x)} examples, {self.device}/{self.precision}")
            trainer = self.trainer(r.tokenizer_train, out, self.fp_tokenizer, r.seed, "tokenizer",
                                    "train.tokenizer")
            batches = Batches({"x": x}, r.tokenizer_train.batch_size, r.seed)
            per_step = counted_train_flops(tok, batches.batch(0, torch.device("cpu")))
            result = trainer.fit(tok, batches)
            save_component(out, tok, "tokenizer", r.tokenizer.name, r.tokenizer.params,
                           {"input_shape": input_shape})
            info = {"steps": result.steps, "wall_time_s": result.wall_time_s,
                    "final_loss": result.final_loss, "resumed_from": result.resumed_from,
                    "parameters": count_parameters(tok), "last_logs": result.logs,
                    "compute": compute(result.steps, r.tokenizer_train.batch_size, len(x),
                                       {"flops_per_step": per_step,
                                        "flops_per_step_counted": per_step}, None,
                                       result.wall_time_s)}
            storage.write_json(out / "train.json", {**info, "losses": result.losses})
            trainer.clear_checkpoint()
            return info

        return self._stage("tokenizer", work)

    def tokenizer(self) -> torch.nn.Module:
        return load_component(self.run_dir / "tokenizer", self.plugins.registry, "tokenizer",
                              self.device)

    def encode_tokens(self) -> dict[str, Any]:
        out = self.run_dir / "tokens"

        def work() -> dict[str, Any]:
            tok = self.tokenizer()
            spec = TokenSpec(tuple(tok.grid_shape), int(tok.codebook_size), self.info.n_classes)
            out.mkdir(parents=True, exist_ok=True)
            counts = {}
            for split in tokencache.SPLITS:
                x, labels = self.data(split)
                with autocast(self.device, self.precision):
                    tokencache.write_split(out, split, lambda b: tok.encode(b.to(self.device)),
                                           x, labels, spec)
                counts[split] = len(x)
            if isinstance(tok, HasCodebook):
                tokencache.write_codebook(out, tok.codebook())
            tokencache.write_meta(out, spec, counts, list(self.info.class_names))
            log(f"tokens: cached {', '.join(f'{counts[s]} {s}' for s in tokencache.SPLITS)} "
                f"sequences of {spec.seq_len} tokens (grid {spec.grid_shape}, codebook "
                f"{spec.vocab_size})")
            return {"counts": counts, "spec": spec.to_dict()}

        return self._stage("tokens", work)

    def token_cache(self) -> tokencache.TokenCache:
        return tokencache.TokenCache.open(self.run_dir / "tokens")

    def train_prior(self, key: str) -> dict[str, Any]:
        r, p, out = self.recipe, self.recipe.priors[key], self.run_dir / "priors" / key

        def work() -> dict[str, Any]:
            cache = self.token_cache()
            codebook = cache.codebook()
            seed = derived_seed(r.seed, "prior", key)
            # seeded here, so a prior's initial weights do not depend on which stages ran
            # before it in this process (a re-run that skips the tokenizer gives the same prior)
            torch.manual_seed(seed)
            prior = build_prior(p.cls, cache.spec, p.params, codebook)
            arrays: dict[str, Any] = {"tokens": cache.sequences("train")}
            if cache.spec.n_classes:
                arrays["labels"] = cache.labels("train")
            n_params = count_parameters(prior)
            log(f"prior {key}: training {p.name} ({n_params:,} parameters) for {p.train.steps} "
                f"steps, {self.device}/{self.precision}")
            trainer = self.trainer(p.train, out, self.fp_prior[key], seed, f"prior {key}",
                                    f"priors.{key}.train")
            batches = Batches(arrays, p.train.batch_size, seed)
            cost = step_flops(prior, batches.batch(0, torch.device("cpu")))
            result = trainer.fit(prior, batches)
            injected: dict[str, Any] = {"spec": cache.spec}
            if wants_codebook(p.cls):
                injected["codebook"] = codebook
            save_component(out, prior, "prior", p.name, p.params, injected)
            info = {"steps": result.steps, "wall_time_s": result.wall_time_s,
                    "final_loss": result.final_loss, "resumed_from": result.resumed_from,
                    "parameters": n_params,
                    "compute": compute(result.steps, p.train.batch_size, batches.n, cost,
                                       cache.spec.seq_len, result.wall_time_s)}
            storage.write_json(out / "train.json", {**info, "losses": result.losses})
            trainer.clear_checkpoint()
            return info

        return self._stage(f"prior-{key}", work)

    def prior(self, key: str) -> torch.nn.Module:
        return load_component(self.run_dir / "priors" / key, self.plugins.registry, "prior",
                              self.device)

    def sample_prior(self, key: str, variant: str, options: dict[str, Any]) -> dict[str, Any]:
        """Draw `n_per_class` samples per class for each of `seeds` sampling seeds with one set
        of sampling options; write the tokens `[seeds, n, *grid]`, a gallery of the first seed,
        and the cost: seconds per sample in batches (throughput) and one at a time (latency),
        and peak memory of one sampler call in each regime."""
        r, p = self.recipe, self.recipe.priors[key]
        out = self.samples_dir(key, variant)

        def work() -> dict[str, Any]:
            prior, tok, cache = self.prior(key), self.tokenizer(), self.token_cache()
            spec, S = cache.spec, r.sample
            n_cls = spec.n_classes
            n = S.n_per_class * max(n_cls, 1)
            labels = (torch.arange(n_cls, device=self.device).repeat_interleave(S.n_per_class)
                      if n_cls else None)

            def draw(m: int, lab: torch.Tensor | None, gen: torch.Generator) -> torch.Tensor:
                with autocast(self.device, self.precision):
                    return prior.sample(m, lab, generator=gen, **options)

            def draw_all(gen: torch.Generator) -> torch.Tensor:
                return torch.cat([draw(min(S.batch_size, n - i),
                                       labels[i:i + S.batch_size] if labels is not None else None,
                                       gen) for i in range(0, n, S.batch_size)])

            sets = []  # the samples kept: drawn untimed
            for s in range(S.seeds):
                gen = torch.Generator(self.device).manual_seed(self.sample_seed(key, s))
                sets.append(draw_all(gen).view(n, *spec.grid_shape).cpu())
            # cost: warm calls (one untimed warm-up, then the median of >= 5), as in bench/
            m = min(S.batch_size, n)
            first = labels[:m] if labels is not None else None
            gen = torch.Generator(self.device).manual_seed(self.sample_seed(key, "timing"))
            batch = measure.time_calls(lambda: draw(m, first, gen), self.device).per(m)
            info: dict[str, Any] = {
                "variant": variant, "n": n, "seeds": S.seeds, "nfe": prior.nfe(**options),
                "options": options, "batch_size": S.batch_size,
                "seconds_per_sample": batch.median_s,
                "timing": {"warmup": 1, "batch": m, "batch_s": list(batch.times),
                           "device": str(self.device), "precision": self.precision,
                           "threads": torch.get_num_threads()}}
            one = labels[:1] if labels is not None else None
            if S.latency_samples:  # the latency regime: one sample per sampler call
                gen = torch.Generator(self.device).manual_seed(self.sample_seed(key, "latency"))
                lat = measure.time_calls(lambda: draw(1, one, gen), self.device,
                                         repeats=max(5, S.latency_samples))
                info["seconds_per_sample_latency"] = lat.median_s
                info["timing"]["latency_s"] = list(lat.times)
            if S.measure_memory:
                m = min(S.batch_size, n)
                gen = torch.Generator(self.device).manual_seed(self.sample_seed(key, "memory"))
                batch_bytes = measure.peak_memory_bytes(
                    lambda: draw(m, labels[:m] if labels is not None else None, gen), self.device)
                info["peak_memory_mb"] = batch_bytes / 2**20
                info["peak_memory_mb_per_sample"] = batch_bytes / 2**20 / m
                info["peak_memory_mb_latency"] = measure.peak_memory_bytes(
                    lambda: draw(1, one, gen), self.device) / 2**20
            tokens = torch.stack(sets)  # [seeds, n, *grid]
            lab = labels.cpu() if labels is not None else torch.zeros(n, dtype=torch.long)
            out.mkdir(parents=True, exist_ok=True)
            storage.atomic_save(out / "tokens.npy",
                                lambda f: np.save(open(f, "wb"), tokens.numpy()))
            storage.atomic_save(out / "labels.npy", lambda f: np.save(open(f, "wb"), lab.numpy()))
            shown = torch.cat([torch.nonzero(lab == c).flatten()[:S.gallery_per_class]
                               for c in range(max(n_cls, 1))])
            signals = self.decode(tok, tokens[0][shown])
            title = f"{key} ({p.name}{', ' + variant if variant else ''})"
            files = self.modality.write_gallery(signals, lab[shown], out, title=title)
            info["files"] = [str(Path(f).relative_to(self.run_dir)) for f in files]
            storage.write_json(out / "sample.json", info)
            log(f"samples {key}{' ' + variant if variant else ''}: {S.seeds} x {n}, "
                f"{info['seconds_per_sample'] * 1000:.1f} ms each in batches of {S.batch_size}"
                + (f", {info['seconds_per_sample_latency'] * 1000:.1f} ms one at a time"
                   if S.latency_samples else "")
                + f" (NFE {info['nfe']}) -> {out / files[0].name if files else out}")
            return info

        stage_id = f"samples-{key}" + (f"-{variant}" if variant else "")
        return self._stage(stage_id, work)

    def samples_dir(self, key: str, variant: str) -> Path:
        return self.run_dir / "samples" / key / variant if variant else \
            self.run_dir / "samples" / key

    def sample_seed(self, key: str, which: int | str) -> int:
        """Seed 0 keeps the historical stream; others are derived from their index or role."""
        names = ("sample", key) if which == 0 else ("sample", key, str(which))
        return derived_seed(self.recipe.seed, *names)

    def decode(self, tok: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens `[N, *grid]` -> signals `[N, *info.shape]` (CPU float) via the recipe's decoder."""
        r = self.recipe
        decoder = r.decoder.cls(modality=self.modality, tokenizer=tok, **r.decoder.params)
        with torch.no_grad(), autocast(self.device, self.precision):
            return torch.cat([decoder.decode(tokens[i:i + 256].to(self.device)).float().cpu()
                              for i in range(0, len(tokens), 256)])

    def evaluate(self, stage_infos: dict[str, Any]) -> dict[str, Any]:
        """The metrics stage: the Evaluator's figures, written to `metrics.json`."""

        def work() -> dict[str, Any]:
            ev = Evaluator(self, log)
            metrics = ev.metrics(stage_infos)
            if self.cells:
                metrics["study"] = StudyResults(ev, ev.judge, log).metrics(self.cells)
            storage.write_json(self.run_dir / "metrics.json", metrics)
            return {}

        self._stage("metrics", work)
        return storage.read_json(self.run_dir / "metrics.json")

    # -- the whole run ------------------------------------------------------------------------
    def execute(self) -> dict[str, Any]:
        set_threads(self.recipe.threads)
        cache_root()  # a cache folder that cannot be written fails now, not after training
        with claim(self.run_dir) as claimed:  # only its holder may take the folder back
            try:
                return self._execute()
            except BaseException:
                if not stages.holds_work(self.run_dir):
                    claimed.take_back()  # leave nothing half-made
                raise

    def _execute(self) -> dict[str, Any]:
        r = self.recipe
        self._supersede_stale()
        plugin_versions = {rec.name: rec.version for rec in self.plugins.records if not rec.error}
        env = environment(plugin_versions, str(self.device), self.precision)
        resolved = r.to_dict(self.run_dir)
        resolved["environment"] = {**env, "data_fingerprint": self.dataset.fingerprint(),
                                   "plugin_files": file_digests(dict(zip(resolved["plugins"],
                                                                         r.plugins)))}
        storage.write_yaml(self.run_dir / "recipe.resolved.yaml", resolved,
                           header=f"# resolved from {r.source}; re-run with: diffvq run "
                                  f"{self.run_dir / 'recipe.resolved.yaml'}\n")
        if self.cells and len(self.signals("validation")[0]) < 2:  # before any training
            raise UserError(f"study: the validation split of {r.data.name!r} holds fewer than 2 "
                            f"examples, and a study's curves are measured on it; give the data "
                            f"set a validation share (see `diffvq ls dataset {r.data.name}`)")
        torch.manual_seed(r.seed)
        infos: dict[str, Any] = {"tokenizer": self.train_tokenizer(), "tokens": self.encode_tokens()}
        for cell in self.cells:
            infos[cell.id] = self._stage(cell.id, lambda c=cell: train_cell(
                self, c, self.fp_cells[c], log))
        if self.compares:
            for key in r.priors:
                infos[f"prior-{key}"] = self.train_prior(key)
            infos["samples"] = {key: [self.sample_prior(key, name, options)
                                      for name, options in p.variants]
                                for key, p in r.priors.items()}
        return self.evaluate(infos)
