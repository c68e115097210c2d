"""Recipes: base inheritance, overrides, and validation that reports every problem at once."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from diffvq import recipe as recipe_mod
from diffvq.errors import RecipeError, UserError


def problems(exc: pytest.ExceptionInfo) -> list[str]:
    return exc.value.problems


def test_tiny_recipe_resolves_with_defaults_filled(tiny, write_recipe, plugins):
    r, _ = recipe_mod.load(write_recipe(tiny), plugins=plugins)
    d = r.to_dict()
    assert d["tokenizer"]["codebook_size"] == 32
    assert d["tokenizer"]["commitment_weight"] == 0.25  # default from the VQVAE signature
    gpt = d["priors"]["gpt"]
    assert gpt["train"]["steps"] == 40 and gpt["train"]["lr"] == 1e-3  # prior's own default
    assert gpt["sample"]["guidance"] == 3.0 and gpt["sample"]["top_p"] is None
    # the resolved recipe is itself a valid recipe that resolves to the same thing
    again, _ = recipe_mod.load(write_recipe(d, "again.yaml"), plugins=plugins)
    assert again.to_dict() == d


def test_base_inheritance_merges_nested_keys(tiny, write_recipe, plugins):
    write_recipe(tiny, "base.yaml")
    child = write_recipe({"base": "base.yaml", "name": "child",
                          "tokenizer": {"codebook_size": 16}}, "child.yaml")
    r, _ = recipe_mod.load(child, plugins=plugins)
    assert r.name == "child"
    assert r.tokenizer.params["codebook_size"] == 16
    assert r.tokenizer.params["channels"] == 8  # kept from base


def test_base_cycle_and_missing_base_are_errors(write_recipe):
    write_recipe({"base": "b.yaml", "name": "a"}, "a.yaml")
    b = write_recipe({"base": "a.yaml", "name": "b"}, "b.yaml")
    with pytest.raises(UserError, match="cycle"):
        recipe_mod.read_recipe(b)
    c = write_recipe({"base": "nope.yaml"}, "c.yaml")
    with pytest.raises(UserError, match="base recipe 'nope.yaml' not found"):
        recipe_mod.read_recipe(c)


def test_overrides_parse_yaml_values_and_nest():
    d = recipe_mod.apply_overrides({"tokenizer": "vqvae", "train": {"prior": {"steps": 1}}},
                                   ["train.prior.steps=500", "tokenizer.codebook_size=64",
                                    "priors.x.sample.steps=[4, 8]", "seed=3", "sample.top_p=null"])
    assert d["train"]["prior"]["steps"] == 500
    assert d["tokenizer"] == {"name": "vqvae", "codebook_size": 64}
    assert d["priors"]["x"]["sample"]["steps"] == [4, 8]
    assert d["seed"] == 3 and d["sample"]["top_p"] is None


@pytest.mark.parametrize("bad", ["novalue", "=3", "a..b=1"])
def test_malformed_override_is_a_user_error(bad):
    with pytest.raises(UserError, match="not of the form key.sub=value"):
        recipe_mod.apply_overrides({}, [bad])


def test_all_problems_reported_at_once(tiny, write_recipe, plugins):
    tiny["tokenizer"]["codebook_sise"] = 64  # misspelt
    tiny["train"]["prior"]["steps"] = "many"  # wrong type
    tiny["priors"]["mg"] = {"name": "masked-difusion"}  # unknown prior
    tiny["sedd"] = 1  # misspelt top-level key
    with pytest.raises(RecipeError) as exc:
        recipe_mod.load(write_recipe(tiny), plugins=plugins)
    p = problems(exc)
    assert len(p) == 4, p
    text = "\n".join(p)
    assert "tokenizer.codebook_sise: unknown key 'codebook_sise'; did you mean 'codebook_size'?" in text
    assert "train.prior.steps: input should be a valid integer" in text
    assert "priors.mg.name: unknown prior 'masked-difusion'" in text and "known: autoregressive" in text
    assert "sedd: unknown key 'sedd'; did you mean 'seed'?" in text


def test_unknown_modality_names_the_plugin_that_provides_it(tiny, write_recipe, monkeypatch):
    monkeypatch.setenv("DIFFVQ_LOAD_PLUGINS", "vqvae,autoregressive,decoders")  # no image plugin
    with pytest.raises(RecipeError) as exc:
        recipe_mod.load(write_recipe(tiny))
    text = "\n".join(problems(exc))
    assert "unknown modality 'image'" in text
    assert "provided by diffvq-image (pip install -e plugins/image)" in text


@pytest.mark.parametrize("option,value,message", [
    ("top_p", 1.5, "priors.gpt.sample.top_p: input should be less than or equal to 1"),
    ("top_p", 0, "priors.gpt.sample.top_p: input should be greater than 0"),
    ("temperature", 0, "priors.gpt.sample.temperature: input should be greater than 0"),
    ("top_k", 0, "priors.gpt.sample.top_k: input should be greater than 0"),
    ("guidance", "lots", "priors.gpt.sample.guidance: input should be a valid number"),
])
def test_invalid_sampling_options(tiny, write_recipe, plugins, option, value, message):
    tiny["priors"]["gpt"]["sample"] = {option: value}
    with pytest.raises(RecipeError) as exc:
        recipe_mod.load(write_recipe(tiny), plugins=plugins)
    assert message in "\n".join(problems(exc))


def test_common_sample_option_must_suit_every_prior(tiny, write_recipe, plugins):
    tiny["sample"]["steps"] = 8  # autoregressive has no 'steps'
    with pytest.raises(RecipeError) as exc:
        recipe_mod.load(write_recipe(tiny), plugins=plugins)
    assert "sample.steps: not a sampling option of prior 'gpt'" in "\n".join(problems(exc))


def test_constructor_checks_run_before_any_work(tiny, write_recipe, plugins):
    tiny["tokenizer"]["downsample"] = 16  # 8x8 digits cannot be downsampled 16x
    with pytest.raises(RecipeError) as exc:
        recipe_mod.load(write_recipe(tiny), plugins=plugins)
    assert "not divisible by downsample 16" in "\n".join(problems(exc))


def test_dataset_of_another_modality_is_rejected(tiny, write_recipe, plugins):
    from diffvq.registry import Registry

    class FakeSpeech:
        name, modality = "fake-speech", "speech"

        def info(self): ...

        def load(self, split): ...

        def fingerprint(self): ...

    reg = Registry()
    for e in plugins.registry:
        reg.add(e.kind, e.cls, e.plugin)
    reg.add("dataset", FakeSpeech, "test")
    from diffvq.plugins import Plugins

    tiny["data"] = {"name": "fake-speech"}
    with pytest.raises(RecipeError) as exc:
        recipe_mod.resolve(tiny, Plugins(reg, plugins.records))
    assert "data set 'fake-speech' is 'speech' data, but the recipe's modality is 'image'" in \
        "\n".join(problems(exc))


def test_invalid_yaml_reports_line(write_recipe):
    path = write_recipe("name: x\npriors: {gpt: [\n  oops\n")
    with pytest.raises(UserError, match=r"invalid YAML at line \d+, column \d+"):
        recipe_mod.read_recipe(path)


def test_missing_file_and_non_mapping(write_recipe, tmp_path):
    with pytest.raises(UserError, match="recipe file not found"):
        recipe_mod.read_recipe(tmp_path / "nope.yaml")
    with pytest.raises(UserError, match="a recipe is a mapping of keys, got a list"):
        recipe_mod.read_recipe(write_recipe("- a\n- b\n"))


def test_sweeps_validate_every_value(tiny, write_recipe, plugins):
    tiny["priors"]["gpt"]["sample"] = {"top_p": [0.9, 1.0], "temperature": [1.0, 0.5]}
    r, _ = recipe_mod.load(write_recipe(tiny), plugins=plugins)
    names = [name for name, _ in r.priors["gpt"].variants]
    assert names == ["temperature-1.0_top_p-0.9", "temperature-1.0_top_p-1.0",
                     "temperature-0.5_top_p-0.9", "temperature-0.5_top_p-1.0"]
    assert r.to_dict()["priors"]["gpt"]["sample"]["top_p"] == [0.9, 1.0]
    tiny["priors"]["gpt"]["sample"] = {"top_p": [0.9, 1.5], "temperature": []}
    with pytest.raises(RecipeError) as exc:
        recipe_mod.load(write_recipe(tiny), plugins=plugins)
    assert problems(exc) == ["priors.gpt.sample.temperature: a sweep needs at least one value"]
    tiny["priors"]["gpt"]["sample"] = {"top_p": [0.9, 1.5]}
    with pytest.raises(RecipeError) as exc:
        recipe_mod.load(write_recipe(tiny), plugins=plugins)
    assert problems(exc) == ["priors.gpt.sample.top_p: input should be less than or equal to 1"
                             " (got 1.5)"]


def test_guidance_on_an_unconditional_prior_is_an_error(tiny, write_recipe, plugins, tmp_path):
    from PIL import Image

    for i in range(6):
        Image.new("L", (8, 8), 30 * i).save(tmp_path / f"{i}.png")
    tiny["data"] = {"name": "folder", "path": str(tmp_path), "channels": 1}
    recipe_mod.load(write_recipe(tiny), plugins=plugins)  # fine without guidance
    tiny["priors"]["gpt"]["sample"] = {"guidance": 2.0}
    with pytest.raises(RecipeError) as exc:
        recipe_mod.load(write_recipe(tiny), plugins=plugins)
    assert "priors.gpt.sample.guidance: classifier-free guidance needs class labels" in \
        "\n".join(problems(exc))


SHIPPED = sorted((Path(__file__).parent.parent / "recipes").rglob("*.yaml"))
NEEDS = re.compile(r"^# Needs: .*apt-get install (\S+)", re.M)  # a recipe's optional package


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.parent.name + "/" + p.name)
def test_every_shipped_recipe_validates(path, plugins):
    """The recipes we ship stay valid as components change; those for your own files ask for
    the one key only you can give (data.path) and nothing else; those whose data comes from an
    optional package (a `# Needs: ... apt-get install X` line) skip where it is missing, if that
    is the only problem found."""
    text = path.read_text()
    if "data.path=" in text:  # run with data.path=/your/files
        with pytest.raises(RecipeError) as e:
            recipe_mod.load(path, [], plugins=plugins)
        assert str(e.value).count("\n") == 0 and "data.path: required key is missing" in str(e.value)
        return
    overrides = []
    if re.search(r"^device: cuda", text, re.M) and not torch.cuda.is_available():
        with pytest.raises(RecipeError, match="no CUDA device is available"):  # said at once
            recipe_mod.load(path, [], plugins=plugins)
        overrides = ["device=cpu"]  # and everything else in it is still checked
    try:
        r, _ = recipe_mod.load(path, overrides, plugins=plugins)
    except RecipeError as e:
        needs = NEEDS.search(text)
        if needs and all(p.startswith("data:") and needs[1] in p for p in e.problems):
            pytest.skip(f"needs the Debian package {needs[1]}")
        raise
    assert r.name and r.priors
