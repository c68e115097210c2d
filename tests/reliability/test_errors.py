"""Faults of the user's input or machine end in one line and exit 2, never a traceback, and
leave no half-written run: a negative seed, an over-long name, sizes that cannot fit in memory
(found at validation, in bounded time, naming the key), an unwritable or non-folder
--runs-dir or cache, a full disk while checkpointing, a loss that diverges; a bug is one line
and exit 1 with its traceback kept in a file."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from diffvq import cli
from diffvq.errors import DiskFullError, explain


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    """The single `error: ...` line on stderr (progress lines start with `diffvq:`)."""
    err = capsys.readouterr().err
    lines = [l for l in err.splitlines() if not l.startswith("diffvq:") and l.strip()]
    assert "Traceback" not in err
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    return lines[0]


def cli_run(recipe: Path, runs: Path, *extra: str) -> int:
    return cli.main(["run", str(recipe), "--runs-dir", str(runs), "--quiet", *extra])


@pytest.fixture
def mount_tmpfs(tmp_path: Path):
    """Mount a small tmpfs (root only); unmounted afterwards. Skips where not permitted."""
    mounted: list[Path] = []

    def mount(name: str, options: str) -> Path:
        point = tmp_path / name
        point.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)],
                              capture_output=True)
        if done.returncode:
            pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()})")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


@pytest.mark.parametrize("override, says", [
    ("seed=-1", "seed: input should be greater than or equal to 0"),
    ("seed=4294967296", "seed: input should be less than 4294967296"),
    ("name=" + "a" * 300, "name: string should have at most 100 characters"),
    ("tokenizer.codebook_size=1000000000000", "lower tokenizer.codebook_size"),
    ("tokenizer.channels=1000000000", "tokenizer: its sizes make tensors larger than any memory"),
    ("priors.gpt.n_embd=1000000000", "lower priors.gpt.n_embd"),
    ("priors.gpt.n_layer=1000000000", "building it takes over 2 s, so its sizes are far too "
                                      "large; lower priors.gpt.n_layer"),
    ("train.tokenizer.batch_size=1000000000", "train.tokenizer.batch_size: 1,000,000,000 "
                                              "examples need about"),
    ("sample.n_per_class=1000000000", "lower sample.n_per_class or sample.seeds"),
    ("tokenizer.dead_code_threshold=1e40", "tokenizer: a training step fails with these settings"),
])
def test_bad_settings_are_one_line_before_any_work(override, says, tiny, write_recipe, tmp_path,
                                                   capsys):
    runs = tmp_path / "runs"
    assert cli_run(write_recipe(tiny), runs, override) == 2
    assert says in one_error_line(capsys)
    assert not runs.exists()


def test_runs_dir_that_is_a_file(tiny, write_recipe, tmp_path, capsys):
    runs = tmp_path / "runs"
    runs.write_text("not a folder")
    assert cli_run(write_recipe(tiny), runs / "deeper") == 2
    assert "is a file; runs need a folder there" in one_error_line(capsys)
    assert runs.read_text() == "not a folder"


def test_read_only_runs_dir(tiny, write_recipe, mount_tmpfs, capsys):
    runs = mount_tmpfs("ro", "ro,size=1m")
    assert cli_run(write_recipe(tiny), runs) == 2
    line = one_error_line(capsys)
    assert str(runs / "tiny") in line and "read-only file system" in line
    assert list(runs.iterdir()) == []


def test_cache_that_is_a_file(tiny, write_recipe, tmp_path, capsys, monkeypatch):
    cache = tmp_path / "cache"
    cache.write_text("")
    monkeypatch.setenv("DIFFVQ_CACHE", str(cache))
    runs = tmp_path / "runs"
    assert cli_run(write_recipe(tiny), runs, "train.tokenizer.steps=2", "train.prior.steps=2") == 2
    assert f"DIFFVQ_CACHE: {cache} is a file, not a folder" in one_error_line(capsys)
    assert not runs.exists()


def test_read_only_cache(tiny, write_recipe, tmp_path, mount_tmpfs, capsys, monkeypatch):
    cache = mount_tmpfs("cache", "ro,size=1m")
    monkeypatch.setenv("DIFFVQ_CACHE", str(cache))
    runs = tmp_path / "runs"
    assert cli_run(write_recipe(tiny), runs) == 2
    assert f"DIFFVQ_CACHE: {cache} is not writable" in one_error_line(capsys)
    assert not runs.exists()


def test_disk_full_while_checkpointing(tiny, write_recipe, mount_tmpfs, capsys):
    """The first checkpoint of the tokenizer (~50 KB of weights, twice that of optimizer
    state) cannot fit in 64 KB: one line naming the file and the space, no `checkpoint.tmp`,
    no run left; with room again the same command runs to the end."""
    runs = mount_tmpfs("small", "size=64k")
    recipe = write_recipe(tiny)
    every = ["train.tokenizer.checkpoint_every_s=0.001", "train.tokenizer.steps=5",
             "train.prior.steps=5", "evaluate.judge=false"]
    assert cli_run(recipe, runs, *every) == 2
    line = one_error_line(capsys)
    assert "the disk is full" in line and str(runs / "tiny" / "tokenizer") in line
    assert "needs about" in line and "free there" in line
    assert list(runs.iterdir()) == []
    subprocess.run(["mount", "-o", "remount,size=64m", str(runs)], check=True)
    assert cli_run(recipe, runs, *every) == 0
    assert (runs / "tiny" / "metrics.json").is_file()
    assert not list(runs.rglob("*.tmp"))


def test_disk_full_error_names_space():
    exc = DiskFullError("runs/x/model.safetensors", needed=3 * 2**20, free=1024)
    assert str(exc).startswith("runs/x/model.safetensors: the disk is full (needs about 3.0 MB, "
                               "1.0 KB free there)")


def test_diverging_loss_is_one_line_naming_the_setting(tiny, write_recipe, tmp_path, capsys):
    runs = tmp_path / "runs"
    assert cli_run(write_recipe(tiny), runs, "train.tokenizer.lr=1e30",
                   "train.tokenizer.warmup_steps=0") == 2
    line = one_error_line(capsys)
    assert "tokenizer: the loss became" in line and "lower train.tokenizer.lr" in line
    assert not runs.exists()


@pytest.mark.parametrize("exc, says", [
    (MemoryError(), "out of memory"),
    (RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate "
                  "memory: you tried to allocate 800000000000 bytes."), "out of memory"),
    (PermissionError(13, "Permission denied", "/x/y"), "/x/y: not allowed"),
    (OSError(28, "No space left on device", "/x/y"), "/x/y: the disk is full"),
    (OSError(36, "File name too long", "/x/" + "a" * 300), "longer than the file system allows"),
])
def test_environment_errors_are_explained(exc, says):
    user = explain(exc)
    assert user is not None and says in str(user) and "\n" not in str(user)


def test_a_bug_is_one_line_exit_1_with_the_traceback_kept(tiny, write_recipe, tmp_path, capsys,
                                                          monkeypatch):
    from diffvq import pipeline

    def broken(self):
        raise KeyError("a bug")

    monkeypatch.setattr(pipeline.Run, "_execute", broken)
    runs = tmp_path / "runs"
    assert cli_run(write_recipe(tiny), runs) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("internal error: KeyError: 'a bug'")
    saved = Path(err[0].split("traceback in ")[1].split(";")[0])
    assert "Traceback" in saved.read_text() and "broken" in saved.read_text()
    saved.unlink()
    assert not runs.exists()


def test_sampling_options_no_float_can_carry(tiny, write_recipe, tmp_path, capsys):
    """A guidance of 10^40 trains fine and then cannot sample: one line saying which options,
    exit 2, and the finished training is kept."""
    runs = tmp_path / "runs"
    assert cli_run(write_recipe(tiny), runs, "sample.guidance=" + "1" + "0" * 40,
                   "evaluate.judge=false") == 2
    assert "sampling: the token probabilities became infinite or NaN" in one_error_line(capsys)
    assert (runs / "tiny" / "stages" / "prior-gpt.json").is_file()
