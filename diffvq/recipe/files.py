"""Reading recipe files: YAML that only a hostile file would have is refused, `base:` chains are
merged (plugin paths made relative to the recipe that names them), and `key.sub=value`
overrides are applied."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from ..errors import UserError

# sections that name a component (`tokenizer: vqvae` or `tokenizer: {name: vqvae, ...}`)
COMPONENT_SECTIONS = {"modality": "modality", "data": "dataset", "tokenizer": "tokenizer",
                      "decoder": "decoder"}

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
    return load_mapping(path)


def load_mapping(path: Path, what: str = "recipe") -> dict[str, Any]:
    """A YAML file holding a mapping, read safely; anything else is a one-line error."""
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
        raise UserError(f"{path}: a {what} is a mapping of keys, got a {type(data).__name__}")
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


def read_recipe(path: str | Path, _chain: tuple[Path, ...] = (),
                named_by: dict[str, str] | None = None) -> dict[str, Any]:
    """A recipe file with its `base:` chain merged in (base first, this file on top).
    `named_by` gets, for each plugin file named anywhere in the chain (as an absolute path),
    the recipe file that names it."""
    path = Path(path)
    if path.resolve() in _chain:
        cycle = " -> ".join(str(p) for p in (*_chain, path.resolve()))
        raise UserError(f"{path}: 'base' inheritance forms a cycle: {cycle}")
    data = _load_yaml(path)
    plugins = data.get("plugins")
    if isinstance(plugins, list):  # plugin files are relative to the recipe that names them
        data["plugins"] = [str((path.parent / p).resolve()) if isinstance(p, str) else p
                           for p in plugins]
        if named_by is not None:
            for p in data["plugins"]:
                if isinstance(p, str):
                    named_by.setdefault(p, str(path))
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise UserError(f"{path}: 'base' must be the path of another recipe, got {base!r}")
    base_path = path.parent / base
    if not base_path.is_file():
        raise UserError(f"{path}: base recipe {base!r} not found (looked at {base_path})")
    return deep_merge(read_recipe(base_path, (*_chain, path.resolve()), named_by), data)


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
