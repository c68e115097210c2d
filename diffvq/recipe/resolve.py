"""A recipe mapping validated against the schemas: every component found in the plugin registry
and its parameters checked against its own typed signature; every problem reported at once."""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from .. import schema
from ..errors import RecipeError
from ..interfaces import INJECTED, SAMPLE_INJECTED
from ..plugins import Plugins
from ..runtime import default_threads
from ..trainer import TrainConfig
from .feasibility import dry_build
from .files import COMPONENT_SECTIONS
from .sections import EvaluateSection, RecipeModel, SampleSection
from .study import Study, resolve_study

PRIOR_RESERVED = {"name", "train", "sample"}


@dataclass
class Component:
    kind: str
    name: str
    params: dict[str, Any]
    cls: type

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **self.params}


@dataclass
class PriorSpec(Component):
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: dict[str, Any] = field(default_factory=dict)  # resolved; a list value is a sweep
    variants: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (name, options)
    explicit: frozenset[str] = frozenset()  # sampling options the recipe set itself

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "train": self.train.model_dump(mode="json"),
                "sample": dict(self.sample)}


def _variant_name(options: dict[str, Any], swept: list[str]) -> str:
    """`steps-8` or `steps-8_guidance-2.0`; "" when nothing is swept."""
    return "_".join(f"{k}-{options[k]}" for k in swept)


def _sample_variants(model: type[BaseModel], values: dict[str, Any], path: str
                     ) -> tuple[dict[str, Any] | None, list[tuple[str, dict[str, Any]]], list[str]]:
    """Sampling options with sweeps: a list value (`steps: [4, 8, 16]`) asks for one set of
    samples per value (per combination, when several are lists). Each combination is validated."""
    swept = sorted(k for k, v in values.items() if isinstance(v, list))
    empty = [k for k in swept if not values[k]]
    if empty:
        return None, [], [f"{path}.{k}: a sweep needs at least one value" for k in empty]
    problems: list[str] = []
    variants: list[tuple[str, dict[str, Any]]] = []
    for combo in itertools.product(*(values[k] for k in swept)):
        resolved, errs = schema.validate(model, {**values, **dict(zip(swept, combo))}, path)
        problems.extend(e for e in errs if e not in problems)
        if resolved is not None:
            variants.append((_variant_name(resolved, swept), resolved))
    if problems:
        return None, [], problems
    options = dict(variants[0][1])
    for k in swept:  # the validated values, in the recipe's order
        options[k] = list(dict.fromkeys(v[k] for _, v in variants))
    return options, variants, []


@dataclass
class Recipe:
    name: str
    description: str
    seed: int
    modality: Component
    data: Component
    tokenizer: Component
    decoder: Component
    priors: dict[str, PriorSpec]
    tokenizer_train: TrainConfig
    train_prior: dict[str, Any]
    sample: SampleSection
    evaluate: EvaluateSection
    plugins: list[str]
    device: str
    precision: str
    threads: int
    source: str
    study: Study | None = None

    def to_dict(self, relative_to: Path | None = None) -> dict[str, Any]:
        """The fully resolved recipe: every default filled in; itself a valid recipe. With
        `relative_to` (the folder the dict is written into), plugin files are recorded relative
        to it, as a recipe there names them: no absolute paths in a file made to be shared."""
        plugins = [os.path.relpath(p, relative_to) if relative_to is not None else p
                   for p in self.plugins]
        return {
            "name": self.name, "description": self.description, "seed": self.seed,
            "modality": self.modality.to_dict(), "data": self.data.to_dict(),
            "tokenizer": self.tokenizer.to_dict(), "decoder": self.decoder.to_dict(),
            "priors": {k: p.to_dict() for k, p in self.priors.items()},
            "train": {"tokenizer": self.tokenizer_train.model_dump(mode="json"),
                      "prior": dict(self.train_prior)},
            "sample": self.sample.model_dump(mode="json"),
            "evaluate": self.evaluate.model_dump(mode="json"),
            "plugins": plugins, "device": self.device, "precision": self.precision,
            "threads": self.threads,
            **({"study": self.study.to_dict()} if self.study is not None else {}),
        }


def _split_spec(value: Any, path: str, problems: list[str]) -> tuple[str | None, dict[str, Any]]:
    if isinstance(value, str):
        return value, {}
    if isinstance(value, dict):
        params = dict(value)
        name = params.pop("name", None)
        if name is None:
            problems.append(f"{path}.name: required key is missing")
        elif not isinstance(name, str):
            problems.append(f"{path}.name: must be a string (got {name!r})")
            name = None
        return name, params
    problems.append(f"{path}: must be a name or a mapping with 'name' (got {value!r})")
    return None, {}


def _component(kind: str, value: Any, path: str, plugins: Plugins, problems: list[str],
               reserved: set[str] = frozenset()) -> tuple[Component | None, dict[str, Any]]:
    name, params = _split_spec(value, path, problems)
    extra = {k: params.pop(k) for k in list(params) if k in reserved}
    if name is None:
        return None, extra
    missing = plugins.explain_missing(kind, name)
    if missing:
        problems.append(f"{path}.name: {missing}")
        return None, extra
    cls = plugins.registry.entries[kind][name].cls
    model = schema.signature_model(cls.__init__, INJECTED[kind])
    resolved, errs = schema.validate(model, params, path)
    problems.extend(errs)
    if resolved is None:
        return None, extra
    return Component(kind, name, resolved, cls), extra


def _train_config(layers: list[tuple[str, dict[str, Any]]], defaults: dict[str, Any],
                  problems: list[str]) -> TrainConfig | None:
    """Merge train sections (later wins) on top of a component's defaults; validate each."""
    merged = dict(defaults)
    ok = True
    for path, section in layers:
        if not isinstance(section, dict):
            problems.append(f"{path}: must be a mapping (got {section!r})")
            ok = False
            continue
        _, errs = schema.validate(TrainConfig, section, path)
        if errs:
            problems.extend(errs)
            ok = False
        merged.update(section)
    if not ok:
        return None
    resolved, errs = schema.validate(TrainConfig, merged, layers[-1][0])
    problems.extend(errs)
    return TrainConfig.model_validate(resolved) if resolved is not None else None


def resolve(raw: dict[str, Any], plugins: Plugins, source: str = "recipe") -> Recipe:
    """Validate a merged recipe mapping against the schemas; raise RecipeError with every
    problem found."""
    problems: list[str] = []
    top = {k: v for k, v in raw.items()}
    resolved_top, errs = schema.validate(RecipeModel, top, "")
    problems.extend(errs)
    get = (lambda k, d=None: top.get(k, d))
    comps: dict[str, Component | None] = {}
    for section, kind in COMPONENT_SECTIONS.items():
        default = "tokenizer" if section == "decoder" else None
        value = get(section, default)
        if value is None:
            continue  # reported by the top-level validation
        if not isinstance(value, (str, dict)):
            if not any(p.startswith((f"{section}:", f"{section}.")) for p in problems):
                problems.append(f"{section}: must be a name or a mapping with 'name' (got a "
                                f"{type(value).__name__})")  # bytes pass as str up there
            continue
        comps[section], _ = _component(kind, value, section, plugins, problems)
    data, modality = comps.get("data"), comps.get("modality")
    if data is not None and modality is not None and data.cls.modality not in (
            modality.name, *getattr(modality.cls, "data_modalities", ())):
        problems.append(f"data.name: data set {data.name!r} is {data.cls.modality!r} data, "
                        f"but the recipe's modality is {modality.name!r}")

    tok = comps.get("tokenizer")
    train = get("train") if isinstance(get("train"), dict) else {}
    tok_train = _train_config([("train.tokenizer", train.get("tokenizer") or {})],
                              getattr(tok.cls, "train_defaults", {}) if tok else {}, problems)
    sample = get("sample") if isinstance(get("sample"), dict) else {}
    common_options = {k: v for k, v in sample.items() if k not in SampleSection.model_fields}
    priors: dict[str, PriorSpec] = {}
    raw_priors = get("priors")
    for key, value in (raw_priors.items() if isinstance(raw_priors, dict) else []):
        path = f"priors.{key}"
        if not isinstance(key, str) or not key.replace("-", "").replace("_", "").isalnum():
            problems.append(f"{path}: prior keys are letters, digits, '-' and '_' (got {key!r})")
            continue
        comp, extra = _component("prior", value, path, plugins, problems, PRIOR_RESERVED)
        if comp is None:
            continue
        tcfg = _train_config([("train.prior", train.get("prior") or {}),
                              (f"{path}.train", extra.get("train") or {})],
                             getattr(comp.cls, "train_defaults", {}), problems)
        options_model = schema.signature_model(comp.cls.sample, SAMPLE_INJECTED)
        for k in common_options:
            if k not in options_model.model_fields:
                problems.append(f"sample.{k}: not a sampling option of prior {key!r} "
                                f"({comp.name}: {', '.join(options_model.model_fields) or 'none'})")
        own = extra.get("sample") or {}
        if not isinstance(own, dict):
            problems.append(f"{path}.sample: must be a mapping (got {own!r})")
            own = {}
        chosen = {k: v for k, v in common_options.items() if k in options_model.model_fields}
        merged = {**chosen, **own}
        options, variants, errs = _sample_variants(options_model, merged, f"{path}.sample")
        problems.extend(errs)
        if tcfg is not None and options is not None:
            priors[key] = PriorSpec("prior", comp.name, comp.params, comp.cls, tcfg, options,
                                    variants, frozenset(merged))

    study = resolve_study(get("study"), priors, problems) if get("study") is not None else None
    if problems:
        raise RecipeError(source, problems)
    assert resolved_top is not None and tok_train is not None
    top_model = RecipeModel.model_validate(top)
    recipe = Recipe(
        name=top_model.name, description=top_model.description, seed=top_model.seed,
        modality=comps["modality"], data=comps["data"], tokenizer=comps["tokenizer"],
        decoder=comps["decoder"], priors=priors, tokenizer_train=tok_train,
        train_prior=dict(train.get("prior") or {}),
        sample=SampleSection(**{k: v for k, v in sample.items()
                                if k in SampleSection.model_fields}),
        evaluate=top_model.evaluate, plugins=top_model.plugins, device=top_model.device,
        precision=top_model.precision, threads=top_model.threads or default_threads(),
        source=source, study=study)
    recipe.sample = SampleSection.model_validate({**recipe.sample.model_dump(), **common_options})
    dry_build(recipe, problems)
    if problems:
        raise RecipeError(source, problems)
    return recipe
