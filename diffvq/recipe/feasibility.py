"""Settings that cannot work, found before any work starts: every component is constructed once
(its size counted on the meta device first), a training step is measured, sampling sizes are
checked against the memory there is."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable

import torch

from .. import limits, schema
from ..components import build_prior
from ..errors import UserError
from ..interfaces import INJECTED, DataInfo, HasCodebook, TokenSpec
from ..runtime import select_device

if TYPE_CHECKING:
    from .resolve import Recipe


def dry_build(recipe: Recipe, problems: list[str]) -> None:
    """Construct every component once (cheap) so that errors only a constructor can see -
    an input size the tokenizer cannot downsample, a data folder that is missing, sizes that
    cannot fit in memory - are found before any work starts."""
    try:
        dataset = recipe.data.cls(**recipe.data.params)
        info: DataInfo = dataset.info()
    except (UserError, ValueError, TypeError, OSError) as exc:
        msg = str(exc)
        problems.append(msg if msg.startswith("data") else f"data: {msg}")
        return
    try:
        device = select_device(recipe.device)  # type: ignore[arg-type]
        modality = recipe.modality.cls(info=info, **recipe.modality.params)
    except (UserError, ValueError, TypeError) as exc:
        problems.append(f"modality: {exc}")
        return
    avail = limits.available_memory(device)
    shape = tuple(modality.model_shape())
    tok_cls = recipe.tokenizer.cls
    tokenizer = _build_within(
        "tokenizer", tok_cls, recipe.tokenizer.params,
        lambda p: tok_cls(input_shape=shape, **p), avail, problems)
    if tokenizer is None:
        return
    spec = TokenSpec(tuple(tokenizer.grid_shape), int(tokenizer.codebook_size), info.n_classes)
    codebook = tokenizer.codebook() if isinstance(tokenizer, HasCodebook) else None
    _check_training(tokenizer, "tokenizer", "train.tokenizer", recipe.tokenizer_train.batch_size,
                    avail, lambda b: {"x": torch.randn(b, *shape)}, problems)
    n = recipe.sample.n_per_class * max(spec.n_classes, 1)
    pooled = n * recipe.sample.seeds
    if recipe.evaluate.judge and spec.n_classes and pooled <= recipe.evaluate.k:
        problems.append(f"evaluate.k: k-NN precision and recall with {recipe.evaluate.k} "
                        f"neighbours need more than {recipe.evaluate.k} samples, and the recipe "
                        f"draws {pooled:,} ({recipe.sample.seeds} seeds x {n:,}); lower "
                        f"evaluate.k or raise sample.n_per_class")
    per_sample = spec.seq_len * 8 + 4 * (2 * math.prod(shape) + math.prod(info.shape))
    held = recipe.sample.seeds * n * per_sample
    if held > avail:
        problems.append(f"sample: {recipe.sample.seeds} seeds x {n:,} samples need about "
                        f"{limits.size(held)} to decode and judge, and {limits.size(avail)} "
                        f"is available; lower sample.n_per_class or sample.seeds")
    for key, p in recipe.priors.items():
        if not spec.n_classes and "guidance" in p.explicit:
            problems.append(f"priors.{key}.sample.guidance: classifier-free guidance needs class "
                            f"labels, and data set {recipe.data.name!r} has none; give the data "
                            f"classes (for a folder: one sub-folder per class, path/<class>/"
                            f"<file>) or sample without guidance (sample.guidance=1.0)")
        prior = _build_within(f"priors.{key}", p.cls, p.params,
                              lambda q, p=p: build_prior(p.cls, spec, q, codebook), avail, problems)
        if prior is None:
            continue
        for _, options in p.variants:
            try:
                prior.check_options(**options)
            except ValueError as exc:
                problems.append(f"priors.{key}.sample: {exc}")
                break

        def tokens(b: int) -> dict[str, torch.Tensor]:
            batch = {"tokens": torch.randint(spec.vocab_size, (b, spec.seq_len))}
            if spec.n_classes:
                batch["labels"] = torch.randint(spec.n_classes, (b,))
            return batch

        act = _check_training(prior, f"priors.{key}", f"priors.{key}.train", p.train.batch_size,
                              avail, tokens, problems)
        sampling = act * min(recipe.sample.batch_size, n) if act is not None else 0
        if sampling > avail:
            problems.append(f"sample.batch_size: {min(recipe.sample.batch_size, n):,} samples "
                            f"at a time need about {limits.size(sampling)} for prior {key!r}, "
                            f"and {limits.size(avail)} is available; lower it")


def _build_within(path: str, cls: type, params: dict[str, Any],
                  build: Callable[[dict[str, Any]], Any], avail: int,
                  problems: list[str]) -> Any | None:
    """Build a component for real, once its parameters (counted on the meta device, in
    bounded time) are known to fit in memory with their training state; None on a problem."""
    kind = "prior" if path.startswith("priors") else "tokenizer"
    model = schema.signature_model(cls.__init__, INJECTED[kind])
    defaults = {k: f.default for k, f in model.model_fields.items() if not f.is_required()}
    problem = limits.too_large(build, params, defaults, avail, path)
    if problem is not None:
        problems.append(f"{path}: {problem}")
        return None
    try:
        return build(params)
    except (UserError, ValueError, TypeError) as exc:
        problems.append(f"{path}: {limits.one_line(exc, 500)}")
    except Exception as exc:  # noqa: BLE001 - a size no tensor can have, a library's refusal
        problems.append(f"{path}: cannot be built with these sizes ({type(exc).__name__}: "
                        f"{limits.one_line(exc)})")
    return None


def _check_training(module: Any, component: str, path: str, batch_size: int, avail: int,
                    batch: Callable[[int], dict[str, torch.Tensor]],
                    problems: list[str]) -> int | None:
    """Activation bytes per example of one training step of `module` (None if it could not
    be measured); a problem if a batch of `batch_size` cannot fit beside its parameters."""
    try:
        act = limits.activation_bytes(module, batch)
    except RuntimeError as exc:
        if "overflow" in str(exc).lower():  # a setting no float can hold
            problems.append(f"{component}: a training step fails with these settings "
                            f"({limits.one_line(exc)}); a value is out of range")
        return None
    except Exception:  # noqa: BLE001 - a component that cannot train on made-up data is
        return None    # measured by its real run; this is only an estimate
    need = act * batch_size + limits.parameter_count(module) * limits.TRAIN_BYTES_PER_PARAM
    if need > avail:
        problems.append(f"{path}.batch_size: {batch_size:,} examples need about "
                        f"{limits.size(need)} to train ({limits.size(act)} of activations "
                        f"each), and {limits.size(avail)} is available; lower it")
    return act
