"""What a run ran on: package versions, Python, platform, device - recorded with every run."""

from __future__ import annotations

import hashlib
import importlib.metadata
import platform
import sys
from pathlib import Path
from typing import Any

import torch

PACKAGES = ("diffvq", "torch", "torchvision", "torchaudio", "numpy", "vector-quantize-pytorch",
            "pluggy", "pydantic", "safetensors", "PyYAML", "Pillow")


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def environment(plugin_versions: dict[str, str | None] | None = None,
                device: str | None = None, precision: str | None = None) -> dict[str, Any]:
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "device": device,
        "precision": precision,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "packages": {p: v for p in PACKAGES if (v := _version(p)) is not None},
        "plugins": dict(plugin_versions or {}),
    }


def file_digests(files: dict[str, str | Path]) -> dict[str, str]:
    """`{label: sha256}` of local files a run used (its plugin files): a path says where code
    was, the digest says which code it was."""
    return {label: hashlib.sha256(Path(path).read_bytes()).hexdigest()
            for label, path in files.items()}
