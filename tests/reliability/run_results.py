"""What a run's results are, byte for byte: shared by the kill-and-resume and concurrency tests,
which compare a run that was disturbed with one that ran alone."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

RESULTS = ("tokenizer/model.safetensors", "tokenizer/config.json", "tokens/train.tokens.npy",
           "tokens/test.tokens.npy", "tokens/train.labels.npy", "tokens/test.labels.npy",
           "tokens/codebook.npy", "tokens/meta.json", "priors/gpt/model.safetensors",
           "priors/gpt/config.json", "samples/gpt/tokens.npy", "samples/gpt/labels.npy")


def results(run_dir: Path) -> dict[str, str]:
    """SHA-256 of every file whose bytes a run determines, and each stage's fingerprint."""
    out = {f: hashlib.sha256((run_dir / f).read_bytes()).hexdigest() for f in RESULTS}
    for marker in sorted((run_dir / "stages").glob("*.json")):
        out[f"stages/{marker.name}"] = json.loads(marker.read_text()).get("fingerprint")
    return out


def layout(run_dir: Path) -> set[str]:
    return {str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.name != ".lock"}
