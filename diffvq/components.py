"""Saving a trained component as safetensors weights beside a JSON config, and building it back
through the registry - never by unpickling code."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import __version__, limits, schema, storage
from .errors import UserError
from .interfaces import INJECTED, TokenSpec
from .registry import Registry


def wants_codebook(cls: type) -> bool:
    """Whether a prior's constructor takes the tokenizer's codebook vectors."""
    return "codebook" in inspect.signature(cls.__init__).parameters


def build_prior(cls: type, spec: TokenSpec, params: dict[str, Any],
                codebook: torch.Tensor | None = None) -> nn.Module:
    """Construct a prior, handing it the codebook `[K, D]` only if it asks for one."""
    if not wants_codebook(cls):
        return cls(spec=spec, **params)
    if codebook is None:
        raise ValueError(f"prior {cls.name!r} works on codebook vectors, and this tokenizer "
                         f"has none (it needs a codebook() method)")
    return cls(spec=spec, codebook=codebook, **params)


def _encode_injected(injected: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in injected.items():
        if isinstance(v, torch.Tensor):  # the tensor is in the weights; keep its shape
            out[f"{k}_shape"] = list(v.shape)
        elif isinstance(v, TokenSpec):
            out[k] = v.to_dict()
        else:
            out[k] = list(v) if isinstance(v, tuple) else v
    return out


def _decode_injected(kind: str, injected: dict[str, Any]) -> dict[str, Any]:
    if kind == "prior":
        out: dict[str, Any] = {"spec": TokenSpec.from_dict(injected["spec"])}
        if "codebook_shape" in injected:  # placeholder; load_state_dict fills in the values
            out["codebook"] = torch.zeros(injected["codebook_shape"])
        return out
    if kind == "tokenizer":
        return {"input_shape": tuple(injected["input_shape"])}
    return dict(injected)


def save_component(dir: Path, module: nn.Module, kind: str, name: str, params: dict[str, Any],
                   injected: dict[str, Any]) -> None:
    dir.mkdir(parents=True, exist_ok=True)
    storage.save_weights(dir / "model.safetensors", module.state_dict())
    storage.write_json(dir / "config.json", {
        "format": "diffvq-component", "kind": kind, "name": name, "params": params,
        "injected": _encode_injected(injected), "diffvq_version": __version__})


def load_component(dir: Path, registry: Registry, kind: str,
                   device: torch.device | str = "cpu") -> nn.Module:
    """Rebuild a saved component from `dir/config.json` and load `dir/model.safetensors`."""
    dir = Path(dir)
    cfg = storage.read_json(dir / "config.json")
    if not isinstance(cfg, dict) or cfg.get("format") != "diffvq-component":
        raise UserError(f"{dir / 'config.json'}: not a diffvq component config")
    if cfg.get("kind") != kind:
        raise UserError(f"{dir}: holds a {cfg.get('kind')}, expected a {kind}")
    if not isinstance(cfg.get("name"), str) or not isinstance(cfg.get("params"), dict) \
            or not isinstance(cfg.get("injected"), dict):
        raise UserError(f"{dir / 'config.json'}: not a diffvq component config (name, params "
                        f"and injected expected)")
    entry = registry.get(kind, cfg["name"])
    where = f"{dir / 'config.json'}"
    model = schema.signature_model(entry.cls.__init__, INJECTED[kind])
    params, problems = schema.validate(model, cfg["params"], "params")
    if problems:
        raise UserError(f"{where}: {problems[0]}")
    shape = cfg["injected"].get("codebook_shape")
    if shape is not None and not (isinstance(shape, list) and len(shape) == 2 and all(
            isinstance(n, int) and 0 < n <= 2**31 for n in shape)):
        raise UserError(f"{where}: injected.codebook_shape is not a codebook's [K, D] ({shape!r})")
    try:
        injected = _decode_injected(kind, cfg["injected"])
    except (TypeError, ValueError, KeyError) as exc:
        raise UserError(f"{where}: config does not build a {kind} {cfg['name']!r} "
                        f"({limits.one_line(exc)})") from None
    defaults = {k: f.default for k, f in model.model_fields.items() if not f.is_required()}
    problem = limits.too_large(lambda p: entry.cls(**injected, **p), params, defaults,
                               limits.available_memory(torch.device(device)), "params")
    if problem is not None:
        raise UserError(f"{where}: {problem}")
    try:
        module = entry.cls(**injected, **params)
    except (TypeError, ValueError, KeyError) as exc:
        raise UserError(f"{where}: config does not build a {kind} {cfg['name']!r} "
                        f"({limits.one_line(exc)})") from None
    state = storage.load_weights(dir / "model.safetensors")
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise UserError(f"{dir / 'model.safetensors'}: weights do not match {kind} "
                        f"{cfg['name']!r} ({' '.join(first[:2])[:300]})") from None
    return module.to(device).eval()
