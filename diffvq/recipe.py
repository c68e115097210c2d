"""Recipes: YAML files with `base:` inheritance and `key.sub=value` overrides, validated in full
before any work starts. Every problem is reported at once, each on one line with its path.

Component sections (`modality`, `data`, `tokenizer`, `decoder`, each of `priors`) are
`{name: ..., **params}` (or just the name); the params are validated against the component's own
typed signature, found through the plugin registry.
"""

from __future__ import annotations

import copy
import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import yaml
from pydantic import BaseModel, ConfigDict, Field

from . import limits, schema
from .errors import RecipeError, UserError
from .components import build_prior
from .interfaces import INJECTED, SAMPLE_INJECTED, DataInfo, HasCodebook, TokenSpec
from .plugins import Plugins
from .runtime import DeviceName, Precision, default_threads, select_device
from .trainer import TrainConfig

COMPONENT_SECTIONS = {"modality": "modality", "data": "dataset", "tokenizer": "tokenizer",
                      "decoder": "decoder"}
PRIOR_RESERVED = {"name", "train", "sample"}


# ---- reading files and overrides -------------------------------------------------------------

MAX_DEPTH = 32  # nesting a recipe never needs
MAX_NODES = 100_000  # values after aliases are expanded (a "billion laughs" file has 10^9)


def check_structure(data: Any, where: str) -> None:
    """Refuse YAML that only a hostile file has: an alias that contains itself, nesting
    deeper than `MAX_DEPTH`, or aliases that expand to more than `MAX_NODES` values. Walks each
    shared node once, so a bomb is measured without being expanded."""
    sizes: dict[int, int] = {}
    open_: set[int] = set()

    def size(node: Any, depth: int) -> int:
        if not isinstance(node, (dict, list)):
            return 1
        if id(node) in open_:
            raise UserError(f"{where}: a YAML alias refers to the mapping or list that "
                            f"contains it (an endless value)")
        if depth > MAX_DEPTH:
            raise UserError(f"{where}: values nested more than {MAX_DEPTH} levels deep")
        if id(node) not in sizes:
            open_.add(id(node))
            children = list(node.keys()) + list(node.values()) if isinstance(node, dict) \
                else node
            sizes[id(node)] = 1 + sum(size(c, depth + 1) for c in children)
            open_.discard(id(node))
        if sizes[id(node)] > MAX_NODES:
            raise UserError(f"{where}: YAML aliases expand to more than {MAX_NODES:,} values")
        return sizes[id(node)]

    size(data, 0)


def _safe_load(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except RecursionError:
        raise UserError("values nested too deeply (more than Python's recursion limit)") from None


def _load_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UserError(f"{path}: recipe file not found")
    try:
        data = _safe_load(path.read_text(encoding="utf-8"))
        check_structure(data, str(path))
    except UserError as exc:
        raise UserError(str(exc) if str(exc).startswith(str(path)) else f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"{path}: invalid YAML{where}: {problem}") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a text file (UTF-8 expected)") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: a recipe is a mapping of keys, got a {type(data).__name__}")
    return data


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` wins; nested mappings merge key by key."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def read_recipe(path: str | Path, _chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A recipe file with its `base:` chain merged in (base first, this file on top)."""
    path = Path(path)
    if path.resolve() in _chain:
        cycle = " -> ".join(str(p) for p in (*_chain, path.resolve()))
        raise UserError(f"{path}: 'base' inheritance forms a cycle: {cycle}")
    data = _load_yaml(path)
    plugins = data.get("plugins")
    if isinstance(plugins, list):  # plugin files are relative to the recipe that names them
        data["plugins"] = [str((path.parent / p).resolve()) if isinstance(p, str) else p
                           for p in plugins]
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise UserError(f"{path}: 'base' must be the path of another recipe, got {base!r}")
    base_path = path.parent / base
    if not base_path.is_file():
        raise UserError(f"{path}: base recipe {base!r} not found (looked at {base_path})")
    return deep_merge(read_recipe(base_path, (*_chain, path.resolve())), data)


def parse_override(text: str) -> tuple[list[str], Any]:
    key, sep, value = text.partition("=")
    parts = key.strip().split(".")
    if not sep or not key.strip() or any(not p for p in parts):
        raise UserError(f"override {text!r} is not of the form key.sub=value")
    try:
        parsed = _safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        parsed = value
    except UserError as exc:
        raise UserError(f"override {key.strip()}: {exc}") from None
    check_structure(parsed, f"override {key.strip()}")
    return parts, parsed


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `a.b.c=value` overrides (values parsed as YAML: 3, 0.5, true, [4, 8], null)."""
    out = copy.deepcopy(data)
    for text in overrides:
        parts, value = parse_override(text)
        node = out
        for i, p in enumerate(parts[:-1]):
            nxt = node.get(p)
            if isinstance(nxt, str) and (i > 0 or p in COMPONENT_SECTIONS):
                nxt = node[p] = {"name": nxt}  # `tokenizer: vqvae` shorthand grows params
            elif nxt is None:
                nxt = node[p] = {}
            elif not isinstance(nxt, dict):
                where = ".".join(parts[: i + 1])
                raise UserError(f"override {text!r}: {where} is {nxt!r}, not a mapping")
            node = nxt
        node[parts[-1]] = value
    return out


# ---- the validated recipe ---------------------------------------------------------------------

class SampleSection(BaseModel):
    """`sample:` - how many samples and, as extra keys, options passed to every prior."""

    model_config = ConfigDict(extra="allow")
    n_per_class: int = Field(8, gt=0, description="samples per class (unlabelled data: in all)")
    batch_size: int = Field(64, gt=0, description="samples drawn per sampler call (the "
                                                   "throughput regime is timed at this size)")
    seeds: int = Field(3, gt=0, description="sampling seeds; judge FD is mean ± std over them")
    latency_samples: int = Field(4, ge=0, description="samples drawn one at a time to time "
                                                      "the latency regime; 0: not timed")
    gallery_per_class: int = Field(10, gt=0, description="samples per class in the gallery")
    measure_memory: bool = Field(True, description="peak tensor memory of one sampler call")


class EvaluateSection(BaseModel):
    model_config = ConfigDict(extra="forbid")
    nll: bool = True
    nll_max_sequences: int | None = Field(None, gt=0, description="cap on held-out sequences")
    judge: bool = Field(True, description="judge FD, accuracy, precision/recall (labelled data "
                                          "of a modality with a judge)")
    judge_steps: int | None = Field(None, gt=0, description="judge training steps; null: the "
                                                            "modality's default")
    k: int = Field(3, gt=0, description="neighbours of the k-NN precision/recall manifolds")
    max_reconstructions: int | None = Field(
        1000, gt=0, description="test signals (evenly spaced over the split) decoded through the "
        "tokenizer for reconstruction metrics and the judge's accuracy on reconstructions; "
        "null: all (audio decodes by Griffin-Lim, about 0.1 s a 2 s clip on 2 cores)")


class TrainSection(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tokenizer: dict[str, Any] = {}
    prior: dict[str, Any] = {}


class RecipeModel(BaseModel):
    """The top level of a recipe."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100,
                      description="run directory name under runs/")
    description: str = ""
    seed: int = Field(0, ge=0, lt=2**32, description="a 32-bit unsigned integer")
    modality: str | dict[str, Any]
    data: str | dict[str, Any]
    tokenizer: str | dict[str, Any]
    decoder: str | dict[str, Any] = "tokenizer"
    priors: dict[str, str | dict[str, Any]] = Field(min_length=1)
    train: TrainSection = TrainSection()
    sample: SampleSection = SampleSection()
    evaluate: EvaluateSection = EvaluateSection()
    plugins: list[str] = []
    device: DeviceName = "auto"
    precision: Precision = "auto"
    threads: int | None = Field(None, ge=1, le=4096, description="CPU threads for torch; null: "
                                "$DIFFVQ_THREADS, else half the physical cores")
    environment: dict[str, Any] | None = Field(None, description="written by diffvq; ignored")


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

    def to_dict(self) -> dict[str, Any]:
        """The fully resolved recipe: every default filled in; itself a valid recipe."""
        return {
            "name": self.name, "description": self.description, "seed": self.seed,
            "modality": self.modality.to_dict(), "data": self.data.to_dict(),
            "tokenizer": self.tokenizer.to_dict(), "decoder": self.decoder.to_dict(),
            "priors": {k: p.to_dict() for k, p in self.priors.items()},
            "train": {"tokenizer": self.tokenizer_train.model_dump(mode="json"),
                      "prior": dict(self.train_prior)},
            "sample": self.sample.model_dump(mode="json"),
            "evaluate": self.evaluate.model_dump(mode="json"),
            "plugins": list(self.plugins), "device": self.device, "precision": self.precision,
            "threads": self.threads,
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
        source=source)
    recipe.sample = SampleSection.model_validate({**recipe.sample.model_dump(), **common_options})
    _dry_build(recipe, problems)
    if problems:
        raise RecipeError(source, problems)
    return recipe


def _dry_build(recipe: Recipe, problems: list[str]) -> None:
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


def load(path: str | Path, overrides: list[str] = (), plugin_files: list[str] = (),
         plugins: Plugins | None = None) -> tuple[Recipe, Plugins]:
    """Read, override, load the plugins it names, and validate: the one entry point for a
    recipe on disk."""
    from .plugins import load_plugins, require_files_loaded

    raw = apply_overrides(read_recipe(path), list(overrides))
    named = raw.get("plugins") if isinstance(raw.get("plugins"), list) else []
    files = [p for p in named if isinstance(p, str)]
    extra = [str(Path(f).resolve()) for f in plugin_files if str(Path(f).resolve()) not in files]
    if extra:  # plugins given on the command line are recorded with the resolved recipe
        raw["plugins"] = [*named, *extra]
        files += extra
    if plugins is None:
        plugins = load_plugins(files)
    require_files_loaded(plugins, files)
    return resolve(raw, plugins, str(path)), plugins
