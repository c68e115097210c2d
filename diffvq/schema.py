"""Recipe schemas read from the components themselves.

A component's typed `__init__` keywords (or a prior's `sample` options) *are* its schema: this
module turns a signature into a pydantic model, validates recipe values against it, and turns
pydantic's errors into one readable line each, with a did-you-mean for misspelt keys.
"""

from __future__ import annotations

import difflib
import inspect
import typing
from functools import lru_cache
from typing import Any, Callable, Iterable

import pydantic
from pydantic import BaseModel, ConfigDict, ValidationError


@lru_cache(maxsize=None)
def signature_model(func: Callable[..., Any], skip: frozenset[str]) -> type[BaseModel]:
    """A pydantic model whose fields are `func`'s keyword parameters minus `skip`."""
    hints = typing.get_type_hints(func, include_extras=True)
    fields: dict[str, Any] = {}
    for p in inspect.signature(func).parameters.values():
        if p.name in skip or p.name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        annotation = hints.get(p.name, Any)
        default = ... if p.default is inspect.Parameter.empty else p.default
        fields[p.name] = (annotation, default)
    name = getattr(func, "__qualname__", "component").replace(".", "_")
    # no size, rate or option of a component is infinite or NaN
    return pydantic.create_model(name, __config__=ConfigDict(extra="forbid", allow_inf_nan=False),
                                 **fields)


def field_names(model: type[BaseModel]) -> list[str]:
    return list(model.model_fields)


def format_errors(exc: ValidationError, prefix: str, known: Iterable[str]) -> list[str]:
    """One line per pydantic error: `prefix.key: what is wrong` (with did-you-mean)."""
    known = list(known)
    lines = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"])
        path = f"{prefix}.{loc}" if prefix and loc else (prefix or loc)
        kind = err["type"]
        if kind == "extra_forbidden":
            key = str(err["loc"][-1])
            msg = f"{path}: unknown key {key!r}"
            candidates = known if len(err["loc"]) == 1 else []
            close = difflib.get_close_matches(key, candidates, n=1, cutoff=0.6)
            if close:
                msg += f"; did you mean {close[0]!r}?"
            elif candidates:
                msg += f" (valid keys: {', '.join(candidates)})"
        elif kind == "missing":
            msg = f"{path}: required key is missing"
        else:
            got = err.get("input")
            got_s = f" (got {got!r})" if not isinstance(got, (dict, list)) else ""
            msg = f"{path}: {err['msg'].lower()}{got_s}"
        lines.append(msg)
    return lines


def validate(model: type[BaseModel], values: dict[str, Any], prefix: str
             ) -> tuple[dict[str, Any] | None, list[str]]:
    """Validate `values`; return (resolved values with defaults filled, problems)."""
    try:
        obj = model.model_validate(values)
    except ValidationError as exc:
        return None, format_errors(exc, prefix, field_names(model))
    return obj.model_dump(mode="json"), []


def describe(model: type[BaseModel]) -> list[tuple[str, str, str]]:
    """(key, type, default) for each field, for `diffvq ls --keys` and docs."""
    rows = []
    for name, f in model.model_fields.items():
        ann = f.annotation
        type_s = getattr(ann, "__name__", None) or str(ann).replace("typing.", "")
        default = "required" if f.is_required() else repr(f.default)
        rows.append((name, type_s, default))
    return rows
