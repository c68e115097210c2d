"""`kill -9` at any moment loses no work and changes no result: a `diffvq run` killed again and
again - before its first checkpoint, mid-training, while a checkpoint is being written, while the
token cache is written, while sampling - and then run to the end gives the very bytes (weights,
tokens, samples) of a run never interrupted. Ctrl-C stops a run with exit 130 and a checkpoint
taken between two steps; interrupted twice and run again, it too ends with those very bytes.

End-to-end in subprocesses on the tiny recipe with longer training and a checkpoint every
twentieth of a second; a minute or so in all on an idle machine.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest
import yaml

from run_results import layout, results

pytestmark = pytest.mark.slow

TOKENIZER_STEPS, PRIOR_STEPS = 200, 240


@pytest.fixture(scope="module")
def recipe(tmp_path_factory: pytest.TempPathFactory, judge_cache: Path) -> Path:
    from conftest import TINY  # tests/conftest.py

    r = copy.deepcopy(TINY)
    r["train"]["tokenizer"].update(steps=TOKENIZER_STEPS, checkpoint_every_s=0.05)
    r["train"]["prior"].update(steps=PRIOR_STEPS, checkpoint_every_s=0.05)
    path = tmp_path_factory.mktemp("recipe") / "tiny.yaml"
    path.write_text(yaml.safe_dump(r))
    return path


def command(recipe: Path, runs: Path) -> list[str]:
    return [sys.executable, "-m", "diffvq", "run", str(recipe), "--runs-dir", str(runs), "--quiet"]


def env(tmp: Path) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "DIFFVQ_CACHE": os.environ["DIFFVQ_CACHE"],
            "TMPDIR": str(tmp)}


def ctrl_c_as_in_a_terminal() -> None:
    """In the child before it starts: SIGINT back to its default, as a terminal gives it (a
    suite started in the background of a non-interactive shell inherits it ignored, and a
    Python started so never sees Ctrl-C)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(recipe: Path, runs: Path) -> subprocess.Popen:
    """`diffvq run` in the background, its stderr going to a file beside `runs`."""
    err = runs.parent / f"stderr-{time.monotonic_ns()}.txt"
    with open(err, "w") as f:
        proc = subprocess.Popen(command(recipe, runs), stdout=subprocess.DEVNULL, stderr=f,
                                env=env(runs.parent), preexec_fn=ctrl_c_as_in_a_terminal)
    proc.stderr_path = err  # type: ignore[attr-defined]
    return proc


def stderr_of(proc: subprocess.Popen) -> str:
    return proc.stderr_path.read_text()  # type: ignore[attr-defined]


def finish(recipe: Path, runs: Path) -> str:
    done = subprocess.run(command(recipe, runs), capture_output=True, text=True,
                          env=env(runs.parent), timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stderr


@pytest.fixture(scope="module")
def reference(recipe: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same recipe run once, uninterrupted."""
    runs = tmp_path_factory.mktemp("reference") / "runs"
    finish(recipe, runs)
    return runs / "tiny"


# -- moments to kill at ------------------------------------------------------------------------
# Each is a condition on the run directory, polled from the moment a process starts; `t0` is that
# moment (ns), so that what an earlier, killed process left behind does not count.

def fresh(path: Path, t0: int) -> bool:
    try:
        return path.stat().st_mtime_ns >= t0
    except FileNotFoundError:
        return False


def checkpoint_step(workdir: Path) -> int:
    try:
        return json.loads((workdir / "checkpoint" / "trainer.json").read_text())["step"]
    except (OSError, ValueError, KeyError):
        return -1


def training(workdir: str, steps_on: int) -> Callable[[Path, int], bool]:
    """This process has checkpointed at least `steps_on` steps beyond where it started."""
    state: dict[str, int] = {}

    def cond(d: Path, t0: int) -> bool:
        if state.get("t0") != t0:
            state.update(t0=t0, start=max(checkpoint_step(d / workdir), 0))
        return fresh(d / workdir / "checkpoint" / "trainer.json", t0) and \
            checkpoint_step(d / workdir) >= state["start"] + steps_on
    return cond


MOMENTS: list[tuple[str, Callable[[Path, int], bool]]] = [
    ("start: the resolved recipe written, data loading",
     lambda d, t0: fresh(d / "recipe.resolved.yaml", t0)),
    ("tokenizer: mid-training", training("tokenizer", 30)),
    ("tokenizer: writing a checkpoint", lambda d, t0: fresh(d / "tokenizer/checkpoint.tmp", t0)),
    ("tokens: writing the token cache", lambda d, t0: fresh(d / "tokens", t0)),
    ("prior: mid-training", training("priors/gpt", 30)),
    ("prior: writing a checkpoint", lambda d, t0: fresh(d / "priors/gpt/checkpoint.tmp", t0)),
    ("samples: sampling", lambda d, t0: fresh(d / "stages/prior-gpt.json", t0)),
]


def test_kill_9_at_any_moment_then_rerun_gives_identical_results(recipe, reference, tmp_path):
    runs = tmp_path / "runs"
    run_dir = runs / "tiny"
    resumed = 0
    for what, reached in MOMENTS:
        t0 = time.time_ns()
        proc = start(recipe, runs)
        deadline = time.monotonic() + 120
        while not reached(run_dir, t0):
            assert proc.poll() is None, (f"the run ended (exit {proc.returncode}) before "
                                         f"'{what}':\n{stderr_of(proc)[-3000:]}")
            assert time.monotonic() < deadline, f"'{what}' not reached in 120 s"
            time.sleep(0.0005)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL
        resumed += "resuming from step" in stderr_of(proc)
    finish(recipe, runs)
    assert resumed >= 3, "killed processes hardly ever resumed from a checkpoint"
    assert results(run_dir) == results(reference)
    assert layout(run_dir) == layout(reference), "leftovers or missing files"


# -- Ctrl-C -------------------------------------------------------------------------------------

INTERRUPTS = 2


def interrupt(recipe: Path, runs: Path, steps_on: int) -> dict:
    """Start `diffvq run`, let it checkpoint `steps_on` prior steps, then send it SIGINT."""
    t0 = time.time_ns()
    proc = start(recipe, runs)
    reached = training("priors/gpt", steps_on)
    deadline = time.monotonic() + 120
    while not reached(runs / "tiny", t0) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    alive = proc.poll() is None
    proc.send_signal(signal.SIGINT)
    try:
        rc = proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        rc = "still running 60 s after SIGINT"
    ckpt = runs / "tiny/priors/gpt/checkpoint/trainer.json"
    step = json.loads(ckpt.read_text())["step"] if ckpt.is_file() else None
    return {"alive": alive, "rc": rc, "stderr": stderr_of(proc), "step": step}


@pytest.fixture(scope="module")
def interrupted(recipe: Path, reference: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The reference run with its prior forgotten, run again and sent SIGINT mid-way through
    prior training, twice, then run again to the end."""
    runs = tmp_path_factory.mktemp("sigint") / "runs"
    shutil.copytree(reference, runs / "tiny")
    for stage in ("prior-gpt", "samples-gpt", "metrics"):
        (runs / "tiny/stages" / f"{stage}.json").unlink()
    for folder in ("priors", "samples"):
        shutil.rmtree(runs / "tiny" / folder)
    interrupts = [interrupt(recipe, runs, 60) for _ in range(INTERRUPTS)]
    return {"interrupts": interrupts, "rerun": finish(recipe, runs), "run_dir": runs / "tiny"}


def test_ctrl_c_stops_with_130_and_a_checkpoint_the_rerun_resumes_from(interrupted):
    later = [i["stderr"] for i in interrupted["interrupts"][1:]] + [interrupted["rerun"]]
    previous = 0
    for run, next_stderr in zip(interrupted["interrupts"], later):
        assert run["alive"], "prior training ended before the test could interrupt it"
        assert run["rc"] == 130, run["stderr"][-3000:]
        assert "Traceback" not in run["stderr"]
        step = run["step"]
        assert step is not None and previous < step < PRIOR_STEPS, "no checkpoint saved on Ctrl-C"
        assert f"interrupted at step {step}; checkpoint saved" in run["stderr"]
        assert f"resuming from step {step}" in next_stderr
        previous = step


def test_ctrl_c_then_rerun_gives_identical_results(interrupted, reference):
    """Twice interrupted mid-step, the prior's weights and samples are those of a run never
    interrupted: the checkpoint waits for the step to end (diffvq.trainer.DeferredInterrupt)."""
    assert [run["rc"] for run in interrupted["interrupts"]] == [130] * INTERRUPTS
    assert results(interrupted["run_dir"]) == results(reference)
