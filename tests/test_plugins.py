"""Plugin discovery through entry points and local files, and failure isolation."""

from __future__ import annotations

from pathlib import Path

import pytest

from diffvq.plugins import PROVIDERS, load_plugins
from diffvq.registry import Registry

GOOD = '''
import diffvq

class EchoPrior:
    """A prior that is not one (tests only)."""
    name = "echo"
    likelihood = "none"
    train_defaults = {}
    def __init__(self, spec, *, width: int = 3): self.width = width
    def training_loss(self, batch): ...
    def sample(self, n, labels, *, generator, loud: bool = False): ...
    def nll(self, tokens, labels): ...
    def nfe(self, **options): return 1
    def check_options(self, **options): pass

@diffvq.hookimpl
def register_priors(register):
    register(EchoPrior)
'''


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_first_party_plugins_come_from_entry_points(plugins):
    by_name = {r.name: r for r in plugins.records}
    assert by_name["image"].source == "entry point"
    assert by_name["image"].distribution == "diffvq-image"
    assert by_name["image"].registered == {"modality": ["image"],
                                           "dataset": ["mnist", "fashion-mnist", "digits", "folder"]}
    assert by_name["vqvae"].registered == {"tokenizer": ["vqvae"]}
    assert by_name["autoregressive"].registered == {"prior": ["autoregressive"]}
    assert plugins.registry.entries["prior"]["autoregressive"].plugin == "autoregressive"
    assert not plugins.failures


def test_provider_hints_match_what_plugins_register(plugins):
    for (kind, name), provider in PROVIDERS.items():
        entry = plugins.registry.entries[kind].get(name)
        assert entry is not None, f"{kind} {name} is in PROVIDERS but nobody registers it"
        rec = next(r for r in plugins.records if r.name == entry.plugin)
        assert provider.startswith(rec.distribution)


def test_local_plugin_file_registers(tmp_path):
    plugins = load_plugins([write(tmp_path, "echo.py", GOOD)])
    entry = plugins.registry.entries["prior"]["echo"]
    assert entry.plugin == "echo"
    rec = plugins.records[-1]
    assert rec.source.endswith("echo.py") and rec.registered == {"prior": ["echo"]}


@pytest.mark.parametrize("text,error", [
    ("raise RuntimeError('boom at import')", "RuntimeError: boom at import"),
    ("import diffvq\n@diffvq.hookimpl\ndef register_priors(regster):\n    pass\n",
     "regster"),  # pluggy: argument not in the hook spec
    ("import diffvq\n@diffvq.hookimpl\ndef register_widgets(register):\n    pass\n",
     "unknown hook(s): register_widgets"),
    ("import diffvq\n@diffvq.hookimpl\ndef register_priors(register):\n    register(object)\n",
     "has no string attribute 'name'"),
    ("import diffvq\nclass P:\n    name = 'p'\n@diffvq.hookimpl\ndef register_priors(register):\n"
     "    register(P)\n", "prior 'p' (P) lacks check_options, nfe, nll, sample, training_loss"),
])
def test_broken_plugin_is_recorded_and_the_rest_still_load(tmp_path, text, error):
    plugins = load_plugins([write(tmp_path, "broken.py", text), write(tmp_path, "echo.py", GOOD)])
    broken = next(r for r in plugins.records if r.name == "broken")
    assert broken.error and error in broken.error, broken.error
    assert broken.registered == {}
    assert "echo" in plugins.registry.entries["prior"]  # unaffected
    assert "image" in plugins.registry.entries["modality"]  # entry points unaffected


def test_hook_that_raises_half_way_registers_nothing(tmp_path):
    text = GOOD + "\n@diffvq.hookimpl\ndef register_decoders(register):\n    raise ValueError('no')\n"
    plugins = load_plugins([write(tmp_path, "half.py", text)])
    rec = plugins.records[-1]
    assert "ValueError: no" in rec.error
    assert "echo" not in plugins.registry.entries["prior"]


def test_duplicate_name_is_a_conflict_naming_both(tmp_path):
    a = write(tmp_path, "a.py", GOOD)
    b = write(tmp_path, "b.py", GOOD)
    plugins = load_plugins([a, b])
    assert "echo" not in plugins.registry.entries["prior"]
    problem = plugins.explain_missing("prior", "echo")
    assert "registered by more than one plugin ('a' and 'b')" in problem


def test_allow_list_env_var(monkeypatch):
    monkeypatch.setenv("DIFFVQ_LOAD_PLUGINS", "vqvae")
    plugins = load_plugins()
    assert [r.name for r in plugins.records] == ["vqvae"]
    assert plugins.registry.names("tokenizer") == ["vqvae"]
    assert plugins.registry.names("prior") == []


def test_missing_plugin_file_is_recorded(tmp_path):
    plugins = load_plugins([tmp_path / "nope.py"])
    assert "no such plugin file" in plugins.records[-1].error


def test_unknown_name_suggests_close_match(plugins):
    msg = plugins.explain_missing("prior", "autoregresive")
    assert "did you mean 'autoregressive'?" in msg


def test_registry_rejects_non_classes():
    with pytest.raises(TypeError, match="takes a class"):
        Registry().add("prior", object(), "x")  # type: ignore[arg-type]
