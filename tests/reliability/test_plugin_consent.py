"""A recipe is data: the local plugin files it names (itself, through a base in another folder,
or by an override) run only with the user's consent (`-p`, `--allow-plugins`, or the trusted
list in the user's config). Without it nothing is imported, whatever the command."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from diffvq import recipe as recipe_mod
from diffvq.cli import main


def marker_plugin(folder: Path, name: str = "evil") -> tuple[Path, Path]:
    """A plugin file that leaves a marker file when imported; (plugin, marker)."""
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / f"{name}.ran"
    plugin = folder / f"{name}.py"
    plugin.write_text(f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n")
    return plugin, marker


def cli(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err


def refused(code: int, err: str, *fragments: str) -> None:
    assert code == 2, err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    for f in fragments:
        assert f in err, err


@pytest.fixture
def evil(tmp_path: Path) -> tuple[Path, Path]:
    return marker_plugin(tmp_path / "elsewhere")


def test_validate_does_not_run_a_recipes_plugin_file(capsys, tiny, write_recipe, evil):
    plugin, marker = evil
    tiny["plugins"] = [str(plugin)]
    code, err = cli(capsys, "validate", str(write_recipe(tiny)))
    refused(code, err, str(plugin), "--allow-plugins", f"-p {plugin}", "trusted_plugins")
    assert not marker.exists()
    # `run` and `compare` refuse before any work: no run directory either
    runs = write_recipe(tiny).parent / "runs"
    for command in ("run", "compare"):
        code, err = cli(capsys, command, "--runs-dir", str(runs), str(write_recipe(tiny)))
        refused(code, err, str(plugin))
    assert not marker.exists() and not runs.exists()


def test_a_base_recipe_in_another_folder_cannot_smuggle_one_in(capsys, tiny, tmp_path, evil):
    plugin, marker = evil
    base = tmp_path / "shared" / "base.yaml"
    base.parent.mkdir()
    base.write_text(yaml.safe_dump({**tiny, "plugins": [f"../elsewhere/{plugin.name}"]}))
    child = tmp_path / "mine.yaml"
    child.write_text(yaml.safe_dump({"base": "shared/base.yaml", "seed": 1}))
    code, err = cli(capsys, "validate", str(child))
    refused(code, err, f"{base} names {plugin}")
    assert not marker.exists()


def test_an_override_cannot_either(capsys, tiny, write_recipe, evil, monkeypatch):
    plugin, marker = evil
    monkeypatch.chdir(plugin.parent)
    code, err = cli(capsys, "validate", str(write_recipe(tiny)), f"plugins=[{plugin.name}]")
    refused(code, err, f"an override names {plugin}")
    assert not marker.exists()


@pytest.mark.parametrize("consent", ["--allow-plugins", "-p"])
def test_with_consent_the_plugin_loads(capsys, tiny, write_recipe, evil, consent):
    plugin, marker = evil
    tiny["plugins"] = [str(plugin)]
    flags = ["--allow-plugins"] if consent == "--allow-plugins" else ["-p", str(plugin)]
    code, err = cli(capsys, *flags, "validate", str(write_recipe(tiny)))
    assert code == 0, err
    assert marker.read_text() == "ran"


def test_consent_for_one_file_is_not_consent_for_another(capsys, tiny, write_recipe, tmp_path):
    good, good_marker = marker_plugin(tmp_path / "mine", "good")
    bad, bad_marker = marker_plugin(tmp_path / "theirs", "bad")
    tiny["plugins"] = [str(good), str(bad)]
    code, err = cli(capsys, "-p", str(good), "validate", str(write_recipe(tiny)))
    refused(code, err, str(bad))
    assert str(good) not in err.split("(")[1].split(")")[0]  # only the unconsented one is named
    assert not good_marker.exists() and not bad_marker.exists()


def write_config(user_config: Path, text: str) -> Path:
    path = user_config / "diffvq" / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_the_users_trusted_list(capsys, tiny, write_recipe, evil, user_config):
    plugin, marker = evil
    tiny["plugins"] = [str(plugin)]
    recipe = write_recipe(tiny)
    config = write_config(user_config, yaml.safe_dump({"trusted_plugins": ["/nowhere"]}))
    try:
        refused(*cli(capsys, "validate", str(recipe)), str(config))
        assert not marker.exists()
        for trusted in (plugin, plugin.parent):  # a file, or a folder of them
            marker.unlink(missing_ok=True)
            write_config(user_config, yaml.safe_dump({"trusted_plugins": [str(trusted)]}))
            code, err = cli(capsys, "validate", str(recipe))
            assert code == 0, err
            assert marker.exists()
    finally:
        config.unlink()


@pytest.mark.parametrize("text,fragment", [
    ("trusted_plugins: relative/folder\n", "must be a list of paths"),
    ("trusted_plugins: [relative/folder]\n", "is not an absolute path"),
    ("trust_everything: true\n", "unknown key(s) trust_everything"),
    ("[1, 2]\n", "a config file is a mapping"),
])
def test_a_malformed_config_is_an_error_not_a_guess(capsys, tiny, write_recipe, evil,
                                                    user_config, text, fragment):
    plugin, marker = evil
    tiny["plugins"] = [str(plugin)]
    config = write_config(user_config, text)
    try:
        refused(*cli(capsys, "validate", str(write_recipe(tiny))), str(config), fragment)
        assert not marker.exists()
    finally:
        config.unlink()


def test_load_plugins_env_stops_local_files_too(capsys, tiny, write_recipe, evil, monkeypatch):
    plugin, marker = evil
    monkeypatch.setenv("DIFFVQ_LOAD_PLUGINS", "")
    code, err = cli(capsys, "-p", str(plugin), "plugins")
    assert code == 0 and not marker.exists()
    tiny["plugins"] = [str(plugin)]
    refused(*cli(capsys, "--allow-plugins", "validate", str(write_recipe(tiny))),
            "DIFFVQ_LOAD_PLUGINS")
    assert not marker.exists()


def test_resolved_recipe_names_plugin_files_relative_to_its_folder(tiny, write_recipe, evil,
                                                                  tmp_path):
    plugin, _ = evil
    tiny["plugins"] = [str(plugin)]
    r, _ = recipe_mod.load(write_recipe(tiny), allow_plugins=True)
    run_dir = tmp_path / "runs" / "tiny"
    assert r.to_dict(relative_to=run_dir)["plugins"] == ["../../elsewhere/evil.py"]
    assert (run_dir / "../../elsewhere/evil.py").resolve() == plugin.resolve()
