"""Recipes: YAML files with `base:` inheritance and `key.sub=value` overrides, validated in full
before any work starts. Every problem is reported at once, each on one line with its path.

Component sections (`modality`, `data`, `tokenizer`, `decoder`, each of `priors`) are
`{name: ..., **params}` (or just the name); the params are validated against the component's own
typed signature, found through the plugin registry. A recipe is data: the local plugin files it
names run only with the user's consent (`consent`).

    files        reading YAML, `base:` chains, overrides
    sections     diffvq's own sections (sample, evaluate, train, the top level)
    resolve      the validated `Recipe`
    feasibility  settings that cannot work, found before any work
    consent      which local plugin files may run

Imports the contract (errors, plugins, interfaces, schema) and the trainer's config; nothing
imports upward from here but the pipeline and the cli.
"""

from __future__ import annotations

from pathlib import Path

from ..plugins import Plugins
from ..trainer import TrainConfig
from . import consent
from .files import (COMPONENT_SECTIONS, apply_overrides, check_structure, deep_merge,
                    parse_override, read_recipe)
from .resolve import PRIOR_RESERVED, Component, PriorSpec, Recipe, resolve
from .sections import EvaluateSection, RecipeModel, SampleSection, TrainSection

__all__ = ["COMPONENT_SECTIONS", "PRIOR_RESERVED", "Component", "EvaluateSection", "PriorSpec",
           "Recipe", "RecipeModel", "SampleSection", "TrainConfig", "TrainSection",
           "apply_overrides", "check_structure", "deep_merge", "load", "parse_override",
           "read_recipe", "resolve"]


def load(path: str | Path, overrides: list[str] = (), plugin_files: list[str] = (),
         plugins: Plugins | None = None, *, allow_plugins: bool = False
         ) -> tuple[Recipe, Plugins]:
    """Read, override, load the plugins it names, and validate: the one entry point for a
    recipe on disk. Plugin files named by the recipe, its bases or an override load only with
    consent: `plugin_files` (`-p FILE`, consent for those), `allow_plugins` (`--allow-plugins`)
    or the user's trusted list; without it, nothing is imported and the error says how."""
    from ..plugins import load_plugins, require_files_loaded

    named_by: dict[str, str] = {}
    raw = apply_overrides(read_recipe(path, named_by=named_by), list(overrides))
    named = raw.get("plugins") if isinstance(raw.get("plugins"), list) else []
    # an override's plugin paths are relative to where the command runs
    named = [str(Path(p).resolve()) if isinstance(p, str) else p for p in named]
    files = [p for p in named if isinstance(p, str)]
    for f in files:
        named_by.setdefault(f, "an override")
    given = [str(Path(f).resolve()) for f in plugin_files]
    extra = [f for f in given if f not in files]
    raw["plugins"] = [*named, *extra]  # -p files are recorded with the resolved recipe
    files += extra
    consent.require({f: named_by[f] for f in files if f not in given},
                    given=given, allow_all=allow_plugins)
    if plugins is None:
        plugins = load_plugins(files)
    require_files_loaded(plugins, files)
    return resolve(raw, plugins, str(path)), plugins
