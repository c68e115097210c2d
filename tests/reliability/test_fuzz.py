"""The recipe fuzzer (fuzz.py beside this file) as tests: whatever a recipe holds, `diffvq
validate` answers exit 0, or exit 2 with one `error: ...` message - no traceback (nor exit 1,
`internal error`), no hang past 30 s, and a YAML tag never runs code.

The fast test fuzzes a fixed subset of recipes/quickstart.yaml's mutants (every mutation kind,
all whole-file damage); the slow one every mutant of the three quickstart recipes (minutes).
Validation does no work, so the music recipe's corpus is not rendered (its data set only looks
for the rendered cache's metadata). `python tests/reliability/fuzz.py --run RECIPE` also runs
the mutants that validate (long; not a test).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
TIMEOUT = 30.0  # seconds a validation may take, the rule being tested

_spec = importlib.util.spec_from_file_location("diffvq_reliability_fuzz", HERE / "fuzz.py")
fuzz = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = fuzz
_spec.loader.exec_module(fuzz)


@pytest.fixture(scope="module")
def fuzzer(tmp_path_factory: pytest.TempPathFactory):
    with fuzz.Fuzzer(timeout=TIMEOUT, workdir=tmp_path_factory.mktemp("fuzz")) as fz:
        yield fz


def test_mutants_are_deterministic_and_raw_yaml():
    doc = {"name": "r", "seed": 0, "tokenizer": {"name": "vqvae", "sizes": [1, 2]},
           "priors": {"gpt": {"name": "autoregressive", "train": {"lr": 0.001}}}}
    first, again = fuzz.mutants(doc), fuzz.mutants(doc)
    assert [(m.path, m.mutation, m.text) for m in first] == \
           [(m.path, m.mutation, m.text) for m in again]
    assert len({m.text for m in first}) == len(first)
    kinds = {m.mutation for m in first}
    assert set(fuzz.mutation_kinds()) <= kinds
    paths = {m.path for m in first}
    assert {"tokenizer.sizes[1]", "priors.gpt.train.lr", "priors.gpt.name", fuzz.TOP} <= paths
    by = {(m.path, m.mutation): m.render() for m in first}
    assert b"seed: !!python/object/apply:os.system" in by[("seed", "tag-python")]
    assert b"lr: &fuzzself [*fuzzself]" in by[("priors.gpt.train.lr", "alias-self-list")]
    base_self = next(m for m in first if m.mutation == "base-self")
    assert base_self.render().startswith(f"base: {base_self.filename}\n".encode())


def test_error_message_rule():
    one = fuzz.one_error_message
    assert one("error: r.yaml: seed: bad\n") is None
    assert one("error: r.yaml: 2 problems\n  - a: bad\n  - b: bad\n") is None
    assert one("diffvq: tokenizer: training\nerror: disk full\n") is None
    assert one("error: x\nException raised from y\n") is not None
    assert one("Traceback (most recent call last):\nerror: x\n") is not None
    assert one("error: r.yaml: 2 problems\n  - a: bad\n") is not None
    assert one("") is not None


def test_quickstart_subset(fuzzer):
    """~90 mutants of the quickstart recipe, validated in one worker; all must answer cleanly."""
    recipe = REPO / "recipes" / "quickstart.yaml"
    subset = fuzz.ci_subset(fuzz.mutants(fuzzer.resolve(recipe)))
    assert set(fuzz.mutation_kinds()) <= {m.mutation for m in subset}
    assert sum(m.path == fuzz.TOP for m in subset) >= 20  # whole-file damage
    assert 60 <= len(subset) <= 110
    report = fuzzer.fuzz(recipe, subset)
    if report.failures:
        pytest.fail(report.format(), pytrace=False)


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("DIFFVQ_FULL_FUZZ"),
                    reason="the full fuzz (about 9,200 mutants, 7 min idle) runs with "
                           "DIFFVQ_FULL_FUZZ=1, or as python tests/reliability/fuzz.py RECIPE")
@pytest.mark.parametrize("recipe", ["recipes/quickstart.yaml",
                                    "recipes/speech/digits-quickstart.yaml",
                                    "recipes/music/bach-quickstart.yaml"])
def test_full_validate_fuzz(fuzzer, recipe):
    """Every mutant (2,500-3,800 per recipe) through `diffvq validate`."""
    report = fuzzer.fuzz(REPO / recipe)
    if report.failures:
        pytest.fail(report.format(), pytrace=False)
