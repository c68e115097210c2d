"""Running a name again with other data or settings says which finished stages it redoes and
why, and moves what they had made aside (recoverable, byte for byte) unless --replace-stale."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diffvq import cli


def image_folder(root: Path, seed: int, per_class: int = 12) -> Path:
    """Two classes of 8x8 greyscale images: bright blobs left or right, with noise."""
    rng = np.random.default_rng(seed)
    for c, name in enumerate(("left", "right")):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            img = rng.integers(0, 60, (8, 8))
            img[:, 4 * c:4 * c + 4] += 180
            Image.fromarray(img.astype(np.uint8)).save(root / name / f"{i}.png")
    return root


@pytest.fixture
def recipe(tiny, write_recipe, tmp_path):
    tiny["data"] = {"name": "folder", "path": str(image_folder(tmp_path / "a", 0))}
    tiny["evaluate"] = {"judge": False}
    tiny["train"]["tokenizer"]["steps"] = tiny["train"]["prior"]["steps"] = 10
    return write_recipe(tiny)


def run(recipe: Path, runs: Path, *extra: str) -> int:
    return cli.main(["run", str(recipe), "--runs-dir", str(runs), "--quiet", *extra])


def test_changed_data_path_is_said_and_the_old_results_kept(recipe, tmp_path, capsys):
    runs = tmp_path / "runs"
    assert run(recipe, runs) == 0
    weights = (runs / "tiny" / "tokenizer" / "model.safetensors").read_bytes()
    samples = (runs / "tiny" / "samples" / "gpt" / "tokens.npy").read_bytes()
    capsys.readouterr()
    other = image_folder(tmp_path / "b", 1)
    assert run(recipe, runs, f"data.path={other}") == 0
    err = capsys.readouterr().err
    said = [l for l in err.splitlines() if "was made from something else" in l]
    assert len(said) == 1, err
    assert f"data.path: '{tmp_path / 'a'}' -> '{other}'" in said[0]
    assert said[0].endswith("redoing tokenizer, tokens, prior-gpt, samples-gpt, metrics")
    [kept] = (runs / "tiny" / "superseded").iterdir()
    assert f"kept in {kept}" in err
    assert (kept / "tokenizer" / "model.safetensors").read_bytes() == weights
    assert (kept / "samples" / "gpt" / "tokens.npy").read_bytes() == samples
    assert (kept / "stages" / "tokenizer.json").is_file() and (kept / "metrics.json").is_file()
    assert str(tmp_path / "a") in (kept / "recipe.resolved.yaml").read_text()
    assert (runs / "tiny" / "tokenizer" / "model.safetensors").read_bytes() != weights
    assert str(other) in (runs / "tiny" / "recipe.resolved.yaml").read_text()


def test_changed_files_in_the_same_folder_are_said(recipe, tmp_path, capsys):
    runs = tmp_path / "runs"
    assert run(recipe, runs) == 0
    capsys.readouterr()
    Image.fromarray(np.full((8, 8), 255, np.uint8)).save(tmp_path / "a" / "left" / "new.png")
    assert run(recipe, runs) == 0
    err = capsys.readouterr().err
    assert "(the data set's files changed); redoing tokenizer, tokens" in err
    assert len(list((runs / "tiny" / "superseded").iterdir())) == 1


def test_only_what_a_change_affects_is_moved(recipe, tmp_path, capsys):
    runs = tmp_path / "runs"
    assert run(recipe, runs) == 0
    tokenizer = (runs / "tiny" / "tokenizer" / "model.safetensors").read_bytes()
    capsys.readouterr()
    assert run(recipe, runs, "sample.n_per_class=3") == 0
    err = capsys.readouterr().err
    assert "sample.n_per_class: 2 -> 3" in err and "redoing samples-gpt, metrics" in err
    [kept] = (runs / "tiny" / "superseded").iterdir()
    assert not (kept / "tokenizer").exists() and (kept / "samples" / "gpt").is_dir()
    assert (runs / "tiny" / "tokenizer" / "model.safetensors").read_bytes() == tokenizer


def test_replace_stale_deletes_instead(recipe, tmp_path, capsys):
    runs = tmp_path / "runs"
    assert run(recipe, runs) == 0
    capsys.readouterr()
    assert run(recipe, runs, "seed=1", "--replace-stale") == 0
    err = capsys.readouterr().err
    assert "seed: 0 -> 1" in err and "kept in" not in err
    assert not (runs / "tiny" / "superseded").exists()
