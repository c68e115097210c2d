"""The registry of named components, recording which plugin provided each name.

Two plugins registering the same name is a conflict: the name becomes unusable, and any recipe that
uses it fails with an error that names both plugins (nothing silently wins).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Iterator

from .errors import UserError
from .interfaces import KINDS, PROTOCOLS


def required_methods(kind: str) -> list[str]:
    """Public methods a component of `kind` must have, read from its Protocol."""
    proto = PROTOCOLS[kind]
    return sorted(n for n, v in vars(proto).items() if callable(v) and not n.startswith("_"))


@dataclass(frozen=True)
class Entry:
    kind: str
    name: str
    cls: type
    plugin: str  # the plugin that registered it


@dataclass
class Registry:
    entries: dict[str, dict[str, Entry]] = field(default_factory=lambda: {k: {} for k in KINDS})
    conflicts: dict[tuple[str, str], list[str]] = field(default_factory=dict)

    def add(self, kind: str, cls: type, plugin: str) -> Entry:
        """Validate `cls` as a `kind` component and record it under its `name`."""
        name = getattr(cls, "name", None)
        if not isinstance(cls, type):
            raise TypeError(f"register() takes a class, got {cls!r}")
        if not isinstance(name, str) or not name:
            raise TypeError(f"{kind} class {cls.__qualname__} has no string attribute 'name'")
        missing = [m for m in required_methods(kind) if not callable(getattr(cls, m, None))]
        if missing:
            raise TypeError(f"{kind} {name!r} ({cls.__qualname__}) lacks {', '.join(missing)}")
        if kind == "dataset" and not isinstance(getattr(cls, "modality", None), str):
            raise TypeError(f"dataset {name!r} has no string attribute 'modality'")
        key = (kind, name)
        if key in self.conflicts:
            self.conflicts[key].append(plugin)
        elif name in self.entries[kind]:
            first = self.entries[kind].pop(name)
            self.conflicts[key] = [first.plugin, plugin]
        else:
            self.entries[kind][name] = Entry(kind, name, cls, plugin)
        return Entry(kind, name, cls, plugin)

    def remove_plugin(self, plugin: str) -> None:
        """Forget everything `plugin` registered (used when its hook raised half-way)."""
        for kind in KINDS:
            for name in [n for n, e in self.entries[kind].items() if e.plugin == plugin]:
                del self.entries[kind][name]

    def names(self, kind: str) -> list[str]:
        return sorted(self.entries[kind])

    def __iter__(self) -> Iterator[Entry]:
        for kind in KINDS:
            yield from (self.entries[kind][n] for n in sorted(self.entries[kind]))

    def lookup_problem(self, kind: str, name: str) -> str | None:
        """Why `name` cannot be used as a `kind`, or None when it can."""
        if (kind, name) in self.conflicts:
            both = " and ".join(repr(p) for p in self.conflicts[(kind, name)])
            return (f"{kind} {name!r} is registered by more than one plugin ({both}); "
                    f"uninstall or block one of them (DIFFVQ_LOAD_PLUGINS)")
        if name in self.entries[kind]:
            return None
        known = self.names(kind)
        msg = f"unknown {kind} {name!r}"
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        if close:
            msg += f"; did you mean {close[0]!r}?"
        msg += f" (known: {', '.join(known) if known else 'none'})"
        return msg

    def get(self, kind: str, name: str) -> Entry:
        problem = self.lookup_problem(kind, name)
        if problem:
            raise UserError(problem)
        return self.entries[kind][name]
