"""Poisoned files in a finished run directory: whatever is found in `runs/<name>/`, the command
that reads it refuses with exactly one line `error: <the file>: ...` and exit status 2 - no
traceback, no code run from the file (pickle and YAML payloads would create a marker file), and
no allocation sized by the file.

One finished tiny run is made per module and copied per test; each test poisons one file, removes
the stage markers that would let `diffvq run` skip reading it, and runs the command that reads it.
"""

from __future__ import annotations

import contextlib
import json
import pickle
import shutil
import struct
import tempfile
import traceback
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from diffvq import cli


# -- the finished run and its copies --------------------------------------------------------------

@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory, judge_cache: Path) -> Path:
    """`<tmp>/runs/tiny`, a finished run of the tiny recipe (beside it, `<tmp>/tiny.yaml`)."""
    from conftest import TINY  # tests/conftest.py, as tests/test_compare.py takes it

    root = tmp_path_factory.mktemp("finished")
    recipe = root / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(TINY))
    assert cli.main(["run", str(recipe), "--runs-dir", str(root / "runs"), "--quiet"]) == 0
    return root / "runs" / "tiny"


class Copy:
    """A private copy of the finished run: `runs/tiny` beside the recipe `tiny.yaml`."""

    def __init__(self, finished: Path, tmp: Path):
        self.runs = tmp / "runs"
        self.dir = self.runs / "tiny"
        shutil.copytree(finished, self.dir)
        shutil.copy(finished.parent.parent / "tiny.yaml", tmp / "tiny.yaml")
        self.recipe = tmp / "tiny.yaml"
        self.marker = tmp / "PAYLOAD-RAN"  # what every payload below tries to create

    def unmark(self, *stages: str) -> None:
        """Forget that these stages finished, so that `diffvq run` redoes them (and reads
        their inputs again)."""
        for stage in stages:
            (self.dir / "stages" / f"{stage}.json").unlink()

    def fingerprint(self, stage: str) -> str:
        return json.loads((self.dir / "stages" / f"{stage}.json").read_text())["fingerprint"]

    def run_args(self) -> list[str]:
        return ["run", str(self.recipe), "--runs-dir", str(self.runs), "--quiet"]


@pytest.fixture
def run(finished: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Copy:
    # whatever diffvq leaves in the temporary folder (crash reports) stays with the test
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return Copy(finished, tmp_path)


# -- payloads -------------------------------------------------------------------------------------

class Payload:
    """Unpickling this runs code: it creates the file `marker`."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


def yaml_payload(marker: Path) -> str:
    return f"!!python/object/apply:os.system [\"touch '{marker}'\"]"


def test_the_payloads_are_live(tmp_path):
    """What the tests below feed diffvq would run code if it were loaded carelessly."""
    marker = tmp_path / "PAYLOAD-RAN"
    torch.save({"state": Payload(marker)}, tmp_path / "p.pt")
    torch.load(tmp_path / "p.pt", weights_only=False)
    assert marker.exists()
    marker.unlink()
    pickle.loads(pickle.dumps(Payload(marker)))
    assert marker.exists()
    marker.unlink()
    yaml.unsafe_load(f"x: {yaml_payload(marker)}")
    assert marker.exists()
    marker.unlink()
    np.save(tmp_path / "o.npy", np.array([Payload(marker)] * 3, dtype=object), allow_pickle=True)
    np.load(tmp_path / "o.npy", allow_pickle=True)
    assert marker.exists()


# -- running diffvq and judging its answer -------------------------------------------------------

def diffvq_in_process(capfd: pytest.CaptureFixture, argv: list[str]) -> tuple[int | str, str]:
    """`diffvq ARGV` in this process: (exit status, stderr). An exception that escapes `main`
    is returned as stderr ending in its traceback, with status 'raised'."""
    capfd.readouterr()
    try:
        rc: int | str = cli.main(argv)
        tb = ""
    except BaseException:  # noqa: BLE001 - anything escaping main is what the test reports
        rc, tb = "raised", traceback.format_exc()
    err = capfd.readouterr().err
    return rc, err + tb


@contextlib.contextmanager
def address_space_cap(extra: int = 3 << 30) -> Iterator[None]:
    """Cap this process's address space at what it uses now plus `extra` (Linux), so that a
    file which makes diffvq allocate the sizes it names fails at once instead of taking the
    machine's memory; the limit is lifted again afterwards."""
    try:
        import resource

        size = next(int(line.split()[1]) * 1024
                    for line in Path("/proc/self/status").read_text().splitlines()
                    if line.startswith("VmSize:"))
    except (ImportError, OSError, StopIteration):  # not Linux: no cap
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (size + extra, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def assert_refused(rc: int | str, err: str, file: str, marker: Path) -> None:
    """Exit 2; on stderr, besides diffvq's progress lines, exactly one line `error: ...` that
    names `file`; no traceback; the payload never ran."""
    last = err.strip().splitlines()[-1] if err.strip() else ""
    assert not marker.exists(), f"a payload in {file} ran"
    assert "Traceback" not in err, f"exit {rc} with a traceback; last line: {last}\n{err[-3000:]}"
    assert rc == 2, f"exit {rc}, expected 2; last line: {last}\n{err[-3000:]}"
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("diffvq: ")]
    assert len(lines) == 1 and lines[0].startswith("error: "), \
        f"expected exactly one line 'error: ...' on stderr, got:\n{err}"
    assert str(Path(file)) in lines[0], f"the error does not name {file}: {lines[0]}"


# -- the poisons that `diffvq run` reads ---------------------------------------------------------

def _torch_pickle(path: Path, marker: Path) -> None:
    torch.save({"weights": Payload(marker)}, path)


def _raw_pickle(path: Path, marker: Path) -> None:
    path.write_bytes(pickle.dumps({"weights": Payload(marker)}))


def _checkpoint_with_pickled_optimizer(run: Copy) -> None:
    """An interrupted prior training whose checkpoint matches the recipe, but whose
    optimizer.pt would run code when unpickled."""
    ck = run.dir / "priors/gpt/checkpoint"
    ck.mkdir()
    shutil.copy(run.dir / "priors/gpt/model.safetensors", ck / "model.safetensors")
    torch.save({"optimizer": Payload(run.marker), "rng": {"torch": torch.get_rng_state()}},
               ck / "optimizer.pt")
    (ck / "trainer.json").write_text(json.dumps({
        "step": 20, "fingerprint": run.fingerprint("prior-gpt"), "elapsed_s": 0.5,
        "losses": [[10, 3.0], [20, 2.9]]}))


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def _header_length_bomb(path: Path) -> None:
    """The 8-byte header length claims 2^60 bytes."""
    path.write_bytes(struct.pack("<Q", 2 ** 60) + b'{"w":' + b"\x00" * 64)


def _tensor_size_bomb(path: Path) -> None:
    """A well-formed header describing one 2^60-byte tensor, in a file of a few bytes."""
    header = json.dumps({"w": {"dtype": "F32", "shape": [2 ** 29, 2 ** 29],
                               "data_offsets": [0, 2 ** 60]}}).encode()
    header += b" " * (-len(header) % 8)
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\x00" * 64)


def _wrong_shape(path: Path) -> None:
    """The same tensor names, one matrix a row taller."""
    state = load_file(str(path))
    name = next(k for k, v in state.items() if v.dim() == 2)
    rows, cols = state[name].shape
    state[name] = torch.zeros(rows + 1, cols)
    save_file(state, str(path))


def _object_array(path: Path, marker: Path) -> None:
    """A numpy object array (stored pickled) holding payloads, in place of an integer array."""
    n = len(np.load(path, mmap_mode="r"))
    np.save(path, np.array([Payload(marker)] * n, dtype=object), allow_pickle=True)


def _rewrite_tokens(path: Path, change: Callable[[np.ndarray], np.ndarray]) -> None:
    arr = np.array(np.load(path))
    np.save(path, change(arr))


def _ids(value: int) -> Callable[[np.ndarray], np.ndarray]:
    def change(arr: np.ndarray) -> np.ndarray:
        arr[::5, 0, 0] = value  # every fifth sequence: every batch of a training step has some
        return arr
    return change


# (file poisoned, how, stage markers removed so that `diffvq run` reads it)
RUN_CASES: dict[str, tuple[str, Callable[[Copy], Any], tuple[str, ...]]] = {
    "checkpoint-optimizer-torch-pickle": (
        "priors/gpt/checkpoint/optimizer.pt", _checkpoint_with_pickled_optimizer, ("prior-gpt",)),
    "prior-weights-torch-pickle": (
        "priors/gpt/model.safetensors",
        lambda r: _torch_pickle(r.dir / "priors/gpt/model.safetensors", r.marker), ("metrics",)),
    "tokenizer-weights-raw-pickle": (
        "tokenizer/model.safetensors",
        lambda r: _raw_pickle(r.dir / "tokenizer/model.safetensors", r.marker), ("metrics",)),
    "prior-weights-truncated": (
        "priors/gpt/model.safetensors",
        lambda r: _truncate(r.dir / "priors/gpt/model.safetensors"), ("metrics",)),
    "tokenizer-weights-header-length-2^60": (
        "tokenizer/model.safetensors",
        lambda r: _header_length_bomb(r.dir / "tokenizer/model.safetensors"), ("metrics",)),
    "prior-weights-tensor-of-2^60-bytes": (
        "priors/gpt/model.safetensors",
        lambda r: _tensor_size_bomb(r.dir / "priors/gpt/model.safetensors"), ("metrics",)),
    "prior-weights-wrong-shape": (
        "priors/gpt/model.safetensors",
        lambda r: _wrong_shape(r.dir / "priors/gpt/model.safetensors"), ("metrics",)),
    "train-tokens-object-array": (
        "tokens/train.tokens.npy",
        lambda r: _object_array(r.dir / "tokens/train.tokens.npy", r.marker), ("prior-gpt",)),
    "test-tokens-object-array": (
        "tokens/test.tokens.npy",
        lambda r: _object_array(r.dir / "tokens/test.tokens.npy", r.marker), ("metrics",)),
    "sample-tokens-object-array": (
        "samples/gpt/tokens.npy",
        lambda r: _object_array(r.dir / "samples/gpt/tokens.npy", r.marker), ("metrics",)),
    "train-tokens-id-too-large": (
        "tokens/train.tokens.npy",
        lambda r: _rewrite_tokens(r.dir / "tokens/train.tokens.npy", _ids(32767)), ("prior-gpt",)),
    "train-tokens-id-negative": (
        "tokens/train.tokens.npy",
        lambda r: _rewrite_tokens(r.dir / "tokens/train.tokens.npy", _ids(-1)), ("prior-gpt",)),
    "train-tokens-float-dtype": (
        "tokens/train.tokens.npy",
        lambda r: _rewrite_tokens(r.dir / "tokens/train.tokens.npy",
                                  lambda a: a.astype(np.float32)), ("prior-gpt",)),
    "train-tokens-wrong-grid": (
        "tokens/train.tokens.npy",
        lambda r: _rewrite_tokens(r.dir / "tokens/train.tokens.npy",
                                  lambda a: np.zeros((len(a), 5, 5), a.dtype)), ("prior-gpt",)),
    "train-tokens-fewer-than-labels": (
        "tokens/train.tokens.npy",
        lambda r: _rewrite_tokens(r.dir / "tokens/train.tokens.npy", lambda a: a[:-7]),
        ("prior-gpt",)),
}


@pytest.mark.parametrize("case", list(RUN_CASES))
def test_poisoned_file_is_refused_by_run(case, run, capfd):
    file, poison, stages = RUN_CASES[case]
    poison(run)
    run.unmark(*stages)
    rc, err = diffvq_in_process(capfd, run.run_args())
    assert_refused(rc, err, file, run.marker)


# -- a component config.json asking for huge sizes: refused before anything is allocated --------

HUGE_CONFIGS = {
    "prior-n_embd-1e9": ("priors/gpt/config.json", "n_embd", 10 ** 9),
    "prior-n_layer-1e9": ("priors/gpt/config.json", "n_layer", 10 ** 9),
    "tokenizer-codebook_size-1e12": ("tokenizer/config.json", "codebook_size", 10 ** 12),
}


@pytest.mark.parametrize("case", list(HUGE_CONFIGS))
def test_config_with_huge_sizes_is_refused_before_allocating(case, run, capfd):
    """With the address space capped a little above what a tiny run needs: an attempt to build
    the model (and fail for want of memory) is not a refusal."""
    file, key, value = HUGE_CONFIGS[case]
    cfg = json.loads((run.dir / file).read_text())
    cfg["params"][key] = value
    (run.dir / file).write_text(json.dumps(cfg, indent=2))
    run.unmark("metrics")
    with address_space_cap():
        rc, err = diffvq_in_process(capfd, run.run_args())
    assert_refused(rc, err, file, run.marker)


# -- the recipe a run writes, run as a recipe ------------------------------------------------------

def test_resolved_recipe_with_a_python_tag_is_refused(run, capfd):
    resolved = run.dir / "recipe.resolved.yaml"
    resolved.write_text(resolved.read_text() + f"evil: {yaml_payload(run.marker)}\n")
    rc, err = diffvq_in_process(capfd, ["run", str(resolved), "--runs-dir", str(run.runs),
                                        "--quiet"])
    assert_refused(rc, err, "tiny/recipe.resolved.yaml", run.marker)
    # the same file is also a tag deep inside a section
    text = resolved.read_text().replace(f"evil: {yaml_payload(run.marker)}\n", "")
    resolved.write_text(text.replace("seed: 0", f"seed: {yaml_payload(run.marker)}", 1))
    rc, err = diffvq_in_process(capfd, ["run", str(resolved), "--runs-dir", str(run.runs),
                                        "--quiet"])
    assert_refused(rc, err, "tiny/recipe.resolved.yaml", run.marker)
    # `diffvq compare RUN_DIR` shows that recipe in its report as text and never loads it
    rc, err = diffvq_in_process(capfd, ["compare", str(run.dir), "--out", str(run.runs / "c"),
                                        "--quiet"])
    assert rc == 0, err
    assert not run.marker.exists()


# -- what `diffvq compare RUN_DIR` reads ----------------------------------------------------------

def test_truncated_metrics_are_refused_by_compare(run, capfd):
    _truncate(run.dir / "metrics.json")
    rc, err = diffvq_in_process(capfd, ["compare", str(run.dir), "--out", str(run.runs / "c"),
                                        "--quiet"])
    assert_refused(rc, err, "tiny/metrics.json", run.marker)
