"""The command line: bad input gives one clear line and exit status 2, and leaves nothing behind."""

from __future__ import annotations

import pytest
from PIL import Image

from diffvq.cli import main


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_user_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2
    assert err.startswith("error: ") and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    for f in fragments:
        assert f in err, err


@pytest.mark.parametrize("edit,fragments", [
    (lambda r: r["tokenizer"].update(codebook_sise=4), ["did you mean 'codebook_size'?"]),
    (lambda r: r["train"]["prior"].update(steps="lots"),
     ["train.prior.steps: input should be a valid integer"]),
    (lambda r: r["priors"]["gpt"].update(name="maskgit"),
     ["unknown prior 'maskgit'", "known: autoregressive"]),
    (lambda r: r.update(data={"name": "folder", "path": "/no/such/folder"}),
     ["data.path: /no/such/folder is not a folder"]),
])
def test_bad_recipes_fail_cleanly(capsys, tiny, write_recipe, tmp_path, edit, fragments):
    edit(tiny)
    path = write_recipe(tiny)
    for command in ("validate", "run"):
        extra = ["--runs-dir", str(tmp_path / "runs")] if command == "run" else []
        code, _, err = cli(capsys, command, str(path), *extra)
        assert_user_error(code, err, *fragments)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_missing_recipe_and_invalid_yaml(capsys, write_recipe, tmp_path):
    code, _, err = cli(capsys, "run", str(tmp_path / "nope.yaml"))
    assert_user_error(code, err, "nope.yaml: recipe file not found")
    bad = write_recipe("name: x\ndata: {name: mnist\n")
    code, _, err = cli(capsys, "validate", str(bad))
    assert_user_error(code, err, "invalid YAML at line 3")


def test_bad_override(capsys, tiny, write_recipe):
    code, _, err = cli(capsys, "validate", str(write_recipe(tiny)), "seed")
    assert_user_error(code, err, "override 'seed' is not of the form key.sub=value")


def test_plugin_that_raises_on_import(capsys, tiny, write_recipe, tmp_path):
    plugin = tmp_path / "broken_plugin.py"
    plugin.write_text("raise ImportError('needs a library you do not have')\n")
    code, _, err = cli(capsys, "-p", str(plugin), "validate", str(write_recipe(tiny)))
    assert_user_error(code, err, "plugin file", "broken_plugin.py failed to load",
                      "ImportError: needs a library you do not have")
    # named in the recipe instead, relative to the recipe file
    tiny["plugins"] = ["broken_plugin.py"]
    code, _, err = cli(capsys, "validate", "--allow-plugins", str(write_recipe(tiny)))
    assert_user_error(code, err, "broken_plugin.py failed to load")
    # `diffvq plugins` reports it and keeps going
    code, out, _ = cli(capsys, "plugins", "-p", str(plugin))
    assert code == 0
    assert "broken_plugin" in out and "FAILED" in out and "image" in out


def test_corrupt_image_in_a_folder_is_named_and_nothing_is_left(capsys, tiny, write_recipe,
                                                                 tmp_path):
    root = tmp_path / "pics"
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(4):
            Image.new("L", (8, 8), 40 * i).save(root / cls / f"{i}.png")
    (root / "b" / "9-corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    tiny["data"] = {"name": "folder", "path": str(root), "channels": 1}
    runs = tmp_path / "runs"
    code, _, err = cli(capsys, "run", str(write_recipe(tiny)), "--runs-dir", str(runs), "--quiet")
    assert_user_error(code, err, "cannot read image", "9-corrupt.png")
    assert not (runs / "tiny").exists()


def test_plugins_and_ls(capsys):
    code, out, _ = cli(capsys, "plugins")
    assert code == 0
    assert "image  [diffvq-image 0.1.0, entry point]  ok" in out
    assert "dataset: mnist, fashion-mnist, digits, folder" in out
    code, out, _ = cli(capsys, "ls")
    assert code == 0
    for line in ("modality:", "image", "prior:", "autoregressive", "decoder:", "tokenizer"):
        assert line in out
    code, out, _ = cli(capsys, "ls", "prior", "autoregressive")
    assert "sampling options:" in out and "top_p" in out and "n_embd: int = 192" in out
    code, _, err = cli(capsys, "ls", "prior", "nope")
    assert_user_error(code, err, "unknown prior 'nope'")


def test_threads_are_set_and_recorded(capsys, tiny, write_recipe, tmp_path):
    import torch
    import yaml

    before = torch.get_num_threads()
    path = write_recipe(tiny)
    code, _, err = cli(capsys, "run", str(path), "--runs-dir", str(tmp_path), "--quiet",
                       "--threads", "1", "evaluate.judge=false")
    try:
        assert code == 0, err
        assert torch.get_num_threads() == 1
        resolved = yaml.safe_load((tmp_path / "tiny" / "recipe.resolved.yaml").read_text())
        assert resolved["threads"] == 1 and resolved["environment"]["torch_threads"] == 1
    finally:
        torch.set_num_threads(before)
    code, _, err = cli(capsys, "validate", str(path), "threads=0")
    assert_user_error(code, err, "threads: input should be greater than or equal to 1")
    code, _, err = cli(capsys, "run", str(path), "--threads", "0")
    assert_user_error(code, err, "--threads 0: a positive whole number")
