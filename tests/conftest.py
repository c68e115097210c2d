"""Shared fixtures: a tiny recipe on scikit-learn's 8x8 digits that runs end to end in seconds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from diffvq.plugins import Plugins, load_plugins

TINY: dict[str, Any] = {
    "name": "tiny",
    "seed": 0,
    "modality": "image",
    "data": {"name": "digits"},
    "tokenizer": {"name": "vqvae", "codebook_size": 32, "codebook_dim": 8, "downsample": 2,
                  "channels": 8, "n_res_blocks": 0},
    "priors": {"gpt": {"name": "autoregressive", "n_layer": 1, "n_head": 2, "n_embd": 32}},
    "train": {"tokenizer": {"steps": 40, "batch_size": 32, "warmup_steps": 5},
              "prior": {"steps": 40, "batch_size": 32, "warmup_steps": 5}},
    "sample": {"n_per_class": 2},
    "evaluate": {"judge_steps": 60, "bootstrap": 20},
    "precision": "fp32",
}


@pytest.fixture(autouse=True, scope="session")
def judge_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Judges are cached per user; tests keep theirs to themselves (one per session)."""
    import os

    path = tmp_path_factory.mktemp("diffvq-cache")
    os.environ["DIFFVQ_CACHE"] = str(path)
    return path


@pytest.fixture(autouse=True, scope="session")
def user_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """No test reads the user's own diffvq config (its trusted plugin folders)."""
    import os

    path = tmp_path_factory.mktemp("xdg-config")
    os.environ["XDG_CONFIG_HOME"] = str(path)
    return path


@pytest.fixture(autouse=True, scope="session")
def threads() -> None:
    """Tests use diffvq's default thread count, as a run does (on a busy 2-core machine torch's
    own two threads make the suite many times slower: bench/threads.py)."""
    import torch

    from diffvq.runtime import default_threads

    torch.set_num_threads(default_threads())


@pytest.fixture(autouse=True, scope="session")
def ctrl_c() -> None:
    """Ctrl-C raises KeyboardInterrupt, as in a terminal, even where the suite was started in
    the background of a non-interactive shell (which starts it with SIGINT ignored): the tests
    of interrupted training send it to themselves."""
    import signal

    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def plugins() -> Plugins:
    return load_plugins()


@pytest.fixture
def write_recipe(tmp_path: Path):
    """Write a recipe mapping (or raw text) to a YAML file and return its path."""

    def write(content: dict[str, Any] | str, name: str = "recipe.yaml") -> Path:
        path = tmp_path / name
        path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
        return path

    return write


@pytest.fixture
def tiny() -> dict[str, Any]:
    import copy

    return copy.deepcopy(TINY)
