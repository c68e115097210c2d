"""Two `diffvq run` processes on one run directory: one works, the other exits 2 with "another
diffvq process is working on this run" (or they finish in turn), and what is left is exactly what
a run done alone leaves - the loser neither deletes nor half-writes anything.

End-to-end in subprocesses on the tiny recipe with longer training; half a minute or so.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from run_results import layout, results

pytestmark = pytest.mark.slow

LOCKED = "another diffvq process is working on this run"


@pytest.fixture(scope="module")
def recipe(tmp_path_factory: pytest.TempPathFactory, judge_cache: Path) -> Path:
    from conftest import TINY  # tests/conftest.py

    r = copy.deepcopy(TINY)
    r["train"]["tokenizer"]["steps"] = 200  # a few seconds of work to overlap with
    r["train"]["prior"]["steps"] = 200
    path = tmp_path_factory.mktemp("recipe") / "tiny.yaml"
    path.write_text(yaml.safe_dump(r))
    return path


def start(recipe: Path, runs: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DIFFVQ_CACHE": os.environ["DIFFVQ_CACHE"],
           "TMPDIR": str(runs.parent)}
    return subprocess.Popen([sys.executable, "-m", "diffvq", "run", str(recipe), "--runs-dir",
                             str(runs), "--quiet"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=env)


def wait(proc: subprocess.Popen) -> tuple[int, str]:
    _, err = proc.communicate(timeout=300)
    return proc.returncode, err


@pytest.fixture(scope="module")
def alone(recipe: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs = tmp_path_factory.mktemp("alone") / "runs"
    rc, err = wait(start(recipe, runs))
    assert rc == 0, err[-3000:]
    return runs / "tiny"


def assert_one_worked(outcomes: list[tuple[int, str]]) -> None:
    for rc, err in outcomes:
        assert "Traceback" not in err and "internal error" not in err, err[-3000:]
        assert rc in (0, 2), f"exit {rc}:\n{err[-3000:]}"
        if rc == 2:
            lines = [ln for ln in err.splitlines() if ln.startswith("error: ")]
            assert len(lines) == 1 and LOCKED in lines[0], err[-3000:]
    assert 0 in [rc for rc, _ in outcomes], "neither run finished"


def test_two_runs_started_at_once_on_a_new_run(recipe, alone, tmp_path):
    runs = tmp_path / "runs"  # not there yet: both processes find nothing and make it
    a, b = start(recipe, runs), start(recipe, runs)
    outcomes = [wait(a), wait(b)]
    assert_one_worked(outcomes)
    assert layout(runs / "tiny") == layout(alone), "files missing or left over"
    assert results(runs / "tiny") == results(alone)


def test_a_second_run_while_the_first_is_working(recipe, alone, tmp_path):
    runs = tmp_path / "runs"
    first = start(recipe, runs)
    deadline = time.monotonic() + 120
    while not (runs / "tiny").is_dir():  # the first is about to take the lock
        assert first.poll() is None, first.communicate()[1][-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.01)
    second = start(recipe, runs)
    rc2, err2 = wait(second)
    still_working = first.poll() is None
    rc1, err1 = wait(first)
    assert_one_worked([(rc1, err1), (rc2, err2)])
    assert rc1 == 0
    if still_working and rc2 == 0:  # the first had finished its stages (and let go of the
        # run) but was still printing its table: the second found everything done
        assert "metrics: up to date, skipped" in err2, err2[-3000:]
    elif still_working:  # the second came while the first held the run
        assert rc2 == 2, err2[-3000:]
    assert layout(runs / "tiny") == layout(alone), "files missing or left over"
    assert results(runs / "tiny") == results(alone)
