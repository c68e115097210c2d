"""The stages of a run: finished-stage markers with the fingerprint each was made from, and what
becomes of results that a changed recipe (or changed data) supersedes: they are listed with the
reason, and moved aside, never silently deleted, unless the user asks for that. (Who may touch
a run directory at all: `ownership`.)

    runs/<name>/stages/<stage>.json       {"fingerprint", "finished", "info"}
    runs/<name>/recipe.resolved.yaml      what they were made from (recipe, data, precision)
    runs/<name>/superseded/<time>/...     results of stale stages, at their old relative paths
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import storage


def fingerprint(*parts: Any) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def derived_seed(seed: int, *names: str) -> int:
    """A separate, reproducible seed per prior (so adding a prior changes no other)."""
    return (seed * 1_000_003 + zlib.crc32("/".join(names).encode())) % 2**31


def checkpoint_fingerprint(out_dir: Path) -> str | None:
    """The fingerprint of an interrupted training left in `out_dir`, if any."""
    for name in ("checkpoint", "checkpoint.old"):
        try:
            meta = json.loads((out_dir / name / "trainer.json").read_text())
        except (OSError, ValueError):
            continue
        if isinstance(meta, dict) and isinstance(meta.get("fingerprint"), str):
            return meta["fingerprint"]
    return None


@dataclass
class Stage:
    """One stage: its marker `stages/<id>.json` and the files it makes (`outputs`)."""

    run_dir: Path
    id: str
    fp: str
    outputs: list[Path] = field(default_factory=list)

    @property
    def path(self) -> Path:
        return self.run_dir / "stages" / f"{self.id}.json"

    def _marker(self) -> dict[str, Any] | None:
        try:
            marker = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        return marker if isinstance(marker, dict) else None

    def info(self) -> dict[str, Any] | None:
        """What the finished stage recorded, or None when it is not finished for `fp`."""
        marker = self._marker()
        if marker is None or marker.get("fingerprint") != self.fp:
            return None
        info = marker.get("info", {})
        return info if isinstance(info, dict) else None

    def stale(self) -> bool:
        """Whether this stage holds results made from something else than `fp`: a finished
        stage of another fingerprint, or an interrupted training of another one."""
        marker = self._marker()
        if marker is not None:
            return marker.get("fingerprint") != self.fp
        ckpt = [checkpoint_fingerprint(p) for p in self.outputs if p.is_dir()]
        return any(fp is not None and fp != self.fp for fp in ckpt)

    def finish(self, info: dict[str, Any]) -> None:
        storage.write_json(self.path, {"fingerprint": self.fp, "finished": time.time(),
                                       "info": info})


# ---- what a run was made from, and what changed ----------------------------------------------

def read_inputs(run_dir: Path) -> dict[str, Any] | None:
    """What the last run in `run_dir` was made from, as its `recipe.resolved.yaml` recorded
    it (None when absent or unreadable)."""
    try:
        recipe = yaml.safe_load((run_dir / "recipe.resolved.yaml").read_text())
    except (OSError, ValueError, yaml.YAMLError):
        return None
    if not isinstance(recipe, dict):
        return None
    env = recipe.pop("environment", None)
    env = env if isinstance(env, dict) else {}
    return inputs(recipe, env.get("data_fingerprint"), env.get("precision"))


def inputs(recipe: dict[str, Any], data: str | None, precision: str | None) -> dict[str, Any]:
    """What a run's stages are made from, in the form its YAML record reads back as."""
    return {"recipe": yaml.safe_load(yaml.safe_dump(recipe)), "data": data,
            "precision": precision}


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: value}


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def changes(old: dict[str, Any] | None, new: dict[str, Any], limit: int = 6) -> str:
    """What differs between two runs' inputs, in words: `data.path: 'a' -> 'b'; ...`."""
    if old is None:
        return "what the earlier results were made from is not recorded"
    parts = []
    a, b = _flatten(old.get("recipe", {})), _flatten(new.get("recipe", {}))
    keys = [k for k in dict.fromkeys([*a, *b]) if a.get(k, "<unset>") != b.get(k, "<unset>")]
    parts += [f"{k}: {_short(a.get(k, '<unset>'))} -> {_short(b.get(k, '<unset>'))}"
              for k in keys[:limit]]
    if len(keys) > limit:
        parts.append(f"{len(keys) - limit} more recipe keys")
    if old.get("data") is not None and old["data"] != new.get("data") and not any(
            k.startswith("data.") for k in keys):
        parts.append("the data set's files changed")
    if old.get("precision") is not None and old["precision"] != new.get("precision"):
        parts.append(f"precision: {old['precision']} -> {new.get('precision')}")
    return "; ".join(parts) or "the recipe and data are the same; diffvq's stage versions changed"


def supersede(run_dir: Path, stale: list[Stage], discard: bool,
              extra: tuple[str, ...] = ("recipe.resolved.yaml",)) -> Path | None:
    """Move the results and markers of `stale` stages (and the run's `extra` files) into
    `superseded/<time>/` at their relative paths, or delete them when `discard`; returns the
    folder they went to (None when discarded or there was nothing)."""
    paths = [p for s in stale for p in (*s.outputs, s.path) if p.exists()]
    if not paths:
        return None
    if discard:
        for p in paths:
            shutil.rmtree(p) if p.is_dir() else p.unlink()
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    dest = run_dir / "superseded" / stamp
    n = 1
    while dest.exists():
        n += 1
        dest = run_dir / "superseded" / f"{stamp}-{n}"
    for name in extra:
        if (run_dir / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(run_dir / name, dest / name)
    for p in paths:
        target = dest / p.relative_to(run_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(p, target)
    return dest


def holds_work(run_dir: Path) -> bool:
    """Whether a run directory holds anything worth keeping: a finished stage, a training
    checkpoint, or superseded results."""
    if any((run_dir / "stages").glob("*.json")) or (run_dir / "superseded").exists():
        return True
    return any(run_dir.rglob("checkpoint*/trainer.json"))
