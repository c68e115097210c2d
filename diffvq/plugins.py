"""Plugin discovery on pluggy: entry points in group `diffvq`, plus local plugin files.

Every plugin is loaded in isolation: one that fails to import, implements a hook that does not
exist, has a hook whose signature does not match its spec, or raises inside a hook is recorded
with its error and skipped; the rest load normally. First-party plugins load the same way.

`DIFFVQ_LOAD_PLUGINS=a,b` loads only the named plugins (empty: none), as `llm` does: entry points
by name, local plugin files by file name without `.py`. Whether a recipe's local plugin file may
run at all is decided before this module is called (`recipe.consent`).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Iterable

import pluggy

from . import hookspecs
from .errors import UserError
from .registry import Registry

GROUP = "diffvq"
HOOK_KINDS = {
    "register_modalities": "modality",
    "register_datasets": "dataset",
    "register_tokenizers": "tokenizer",
    "register_priors": "prior",
    "register_decoders": "decoder",
}

# Where first-party names come from, so that an unknown name can say which package provides it.
# tests/test_plugins.py checks this against what the installed plugins really register.
PROVIDERS: dict[tuple[str, str], str] = {
    ("modality", "image"): "diffvq-image (pip install -e plugins/image)",
    **{("dataset", d): "diffvq-image (pip install -e plugins/image)"
       for d in ("mnist", "fashion-mnist", "digits", "folder")},
    ("prior", "multinomial-diffusion"): "diffvq-multinomial (pip install -e plugins/multinomial)",
    ("prior", "latent-diffusion"): "diffvq-latent (pip install -e plugins/latent)",
    ("modality", "audio"): "diffvq-audio (pip install -e plugins/audio)",
    ("dataset", "audio-folder"): "diffvq-audio (pip install -e plugins/audio)",
    ("dataset", "spoken-digits"): "diffvq-speech (pip install -e plugins/speech)",
    **{(kind, name): "diffvq-music (pip install -e plugins/music)"
       for kind, name in (("modality", "music"), ("dataset", "bach-chorales"),
                          ("dataset", "midi-folder"))},
}


@dataclass
class PluginRecord:
    """One plugin as `diffvq plugins` shows it."""

    name: str
    source: str  # "entry point" or the path of a local plugin file
    distribution: str | None = None
    version: str | None = None
    registered: dict[str, list[str]] = field(default_factory=dict)
    error: str | None = None


@dataclass
class Plugins:
    registry: Registry
    records: list[PluginRecord]

    @property
    def failures(self) -> list[PluginRecord]:
        return [r for r in self.records if r.error]

    def explain_missing(self, kind: str, name: str) -> str | None:
        """Why `name` is unusable, with a hint of the plugin it needs, or None if usable."""
        problem = self.registry.lookup_problem(kind, name)
        if problem is None:
            return None
        if (kind, name) in self.registry.conflicts:
            return problem
        provider = PROVIDERS.get((kind, name))
        if provider:
            problem += f"; it is provided by {provider}"
        if self.failures:
            failed = ", ".join(r.name for r in self.failures)
            problem += f"; note: plugin(s) {failed} failed to load (see `diffvq plugins`)"
        return problem


def _error_line(exc: BaseException) -> str:
    """The last frame and message of an exception, enough to find it."""
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" (at {Path(tb[-1].filename).name}:{tb[-1].lineno})" if tb else ""
    return f"{type(exc).__name__}: {exc}{where}"


def _register(pm: pluggy.PluginManager, registry: Registry, plugin: object,
              record: PluginRecord) -> None:
    """Register one plugin object with pluggy, validate its hooks, and call them."""
    try:
        pm.register(plugin, name=record.name)
    except Exception as exc:  # pluggy.PluginValidationError: bad hook signature, ...
        record.error = _error_line(exc)
        return
    unknown = [hc.name for hc in (pm.get_hookcallers(plugin) or []) if not hc.has_spec()]
    if unknown:
        pm.unregister(plugin)
        record.error = f"implements unknown hook(s): {', '.join(unknown)}"
        return
    for hook_name, kind in HOOK_KINDS.items():
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            if impl.plugin is not plugin:
                continue

            def register(cls: type, _kind: str = kind) -> None:
                entry = registry.add(_kind, cls, record.name)
                record.registered.setdefault(_kind, []).append(entry.name)

            try:
                impl.function(register=register)
            except Exception as exc:
                registry.remove_plugin(record.name)
                record.registered.clear()
                record.error = _error_line(exc)
                pm.unregister(plugin)
                return


def _allowed() -> set[str] | None:
    raw = os.environ.get("DIFFVQ_LOAD_PLUGINS")
    if raw is None:
        return None
    return {p.strip() for p in raw.split(",") if p.strip()}


def _entry_points() -> list[importlib.metadata.EntryPoint]:
    return sorted(importlib.metadata.entry_points(group=GROUP), key=lambda ep: ep.name)


def load_module_from_file(path: Path) -> ModuleType:
    """Import a local plugin file as a module (like a conftest.py)."""
    name = "diffvq_local_" + "".join(c if c.isalnum() else "_" for c in str(path.resolve()))
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def load_plugins(files: Iterable[str | Path] = (), *, entry_points: bool = True) -> Plugins:
    """Discover and load every plugin; failures are recorded, never raised."""
    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    registry = Registry()
    records: list[PluginRecord] = []
    allowed = _allowed()
    if entry_points:
        for ep in _entry_points():
            if allowed is not None and ep.name not in allowed:
                continue
            dist = getattr(ep, "dist", None)
            record = PluginRecord(name=ep.name, source="entry point",
                                  distribution=dist.metadata["Name"] if dist else None,
                                  version=dist.version if dist else None)
            records.append(record)
            if pm.has_plugin(ep.name):
                record.error = "another plugin with this name is already loaded"
                continue
            try:
                plugin = ep.load()
            except Exception as exc:
                record.error = _error_line(exc)
                continue
            _register(pm, registry, plugin, record)
    for f in files:
        path = Path(f)
        record = PluginRecord(name=path.stem, source=str(path))
        records.append(record)
        if allowed is not None and path.stem not in allowed:
            record.error = f"not loaded: DIFFVQ_LOAD_PLUGINS does not name {path.stem!r}"
            continue
        if not path.is_file():
            record.error = f"no such plugin file: {path}"
            continue
        try:
            module = load_module_from_file(path)
        except Exception as exc:
            record.error = _error_line(exc)
            continue
        _register(pm, registry, module, record)
    return Plugins(registry, records)


def require_files_loaded(plugins: Plugins, files: Iterable[str | Path]) -> None:
    """A local plugin file the user named explicitly must load: its failure is their error."""
    paths = {str(Path(f)) for f in files}
    for r in plugins.records:
        if r.source in paths and r.error:
            raise UserError(f"plugin file {r.source} failed to load: {r.error}")
