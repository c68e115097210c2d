"""CONTRIBUTING.md's plugin tutorial, run as written (so it stays true)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import tomllib

from diffvq.cli import main

DOC = (Path(__file__).resolve().parent.parent / "CONTRIBUTING.md").read_text()


def block(lang: str, index: int = 0) -> str:
    return re.findall(rf"```{lang}\n(.*?)```", DOC, flags=re.S)[index]


@pytest.fixture
def tutorial(tmp_path: Path) -> Path:
    (tmp_path / "shapes.py").write_text(block("python"))
    (tmp_path / "shapes.yaml").write_text(block("yaml"))
    return tmp_path


def test_tutorial_recipe_validates_and_runs(tutorial, capsys):
    recipe = str(tutorial / "shapes.yaml")
    assert main(["validate", recipe]) == 2  # a recipe's plugin file runs only with consent
    assert "--allow-plugins" in capsys.readouterr().err
    assert main(["validate", "--allow-plugins", recipe]) == 0
    assert main(["validate", "--allow-plugins", recipe, "data.n=0"]) == 2
    assert "data.n: input should be greater than 0" in capsys.readouterr().err
    assert main(["-p", str(tutorial / "shapes.py"), "ls", "dataset", "shapes"]) == 0
    assert "n: int = 1000" in capsys.readouterr().out
    code = main(["run", "--allow-plugins", recipe, "--runs-dir", str(tutorial / "runs"), "--quiet",
                 "train.tokenizer.steps=20", "train.prior.steps=20", "precision=fp32"])
    assert code == 0
    assert (tutorial / "runs/shapes/samples/gpt/grid.png").is_file()
    # the shared record names the plugin relative to the run, with the digest of its code
    import hashlib

    import yaml

    resolved = yaml.safe_load((tutorial / "runs/shapes/recipe.resolved.yaml").read_text())
    assert resolved["plugins"] == ["../../shapes.py"] and str(tutorial) not in str(resolved)
    digest = hashlib.sha256((tutorial / "shapes.py").read_bytes()).hexdigest()
    assert resolved["environment"]["plugin_files"] == {"../../shapes.py": digest}


def test_tutorial_data_set_draws_squares_and_discs(tutorial):
    from diffvq.plugins import load_plugins

    plugins = load_plugins([tutorial / "shapes.py"], entry_points=False)
    shapes = plugins.registry.entries["dataset"]["shapes"].cls(n=50)
    x, y = shapes.load("train")
    assert x.shape == (50, 1, 16, 16) and set(y.tolist()) == {0, 1}
    # a square of half-width r fills (2r+1)^2 pixels; a disc of radius r fewer
    area = x.sum(dim=(1, 2, 3))
    assert area[y == 0].mean() > area[y == 1].mean()


def test_packaging_snippet_declares_an_entry_point():
    meta = tomllib.loads(block("toml"))
    assert meta["project"]["entry-points"]["diffvq"] == {"shapes": "diffvq_shapes"}
