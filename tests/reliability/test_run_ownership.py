"""Only the process holding a run directory's lock may clean or delete it; making the folder and
taking the lock are one step. Interleavings are forced by delaying one start's `mkdir` until a
rival has claimed the folder (in-process: flock conflicts between open files of one process)."""

from __future__ import annotations

from pathlib import Path

import pytest

from diffvq import ownership, pipeline
from diffvq.errors import UserError
from diffvq.ownership import claim


def delay_first_mkdir(monkeypatch: pytest.MonkeyPatch, rival) -> None:
    """The next `Path.mkdir` first lets `rival()` run to completion (a start that was faster)."""
    real = Path.mkdir
    pending = [rival]

    def mkdir(self: Path, *args, **kwargs) -> None:
        if pending:
            pending.pop()()
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)


def test_a_start_that_loses_the_race_for_its_run_never_deletes_it(tmp_path, monkeypatch):
    run_dir = tmp_path / "runs" / "tiny"
    held = []

    def winner() -> None:  # claims the folder, is live: a file written, no stage finished
        c = claim(run_dir)
        held.append((c, c.__enter__()))
        (run_dir / "live.txt").write_text("training")

    delay_first_mkdir(monkeypatch, winner)
    with pytest.raises(UserError, match=ownership.LOCKED):
        with claim(run_dir) as c:
            raise AssertionError("the loser must not get the run")
    assert (run_dir / "live.txt").read_text() == "training"
    assert held[0][1].made and held[0][1].made_parents == [run_dir.parent]
    held[0][0].__exit__(None, None, None)


def test_a_failed_start_never_deletes_a_neighbours_live_run(tiny, write_recipe, plugins,
                                                            tmp_path, monkeypatch):
    """Two recipes start at once in a `runs/` neither found: both made it, as far as each can
    tell. The one that fails before any stage takes back its own run and leaves `runs/`, which
    holds the other's live run."""
    from diffvq import recipe as recipe_mod

    runs = tmp_path / "runs"
    held = []

    def neighbour() -> None:
        c = claim(runs / "other")
        held.append((c, c.__enter__()))
        (runs / "other" / "live.txt").write_text("training")

    r, _ = recipe_mod.load(write_recipe(tiny), plugins=plugins)
    run = pipeline.Run(r, plugins, runs_dir=runs, progress=False)

    def fail() -> None:
        raise RuntimeError("failed before any stage")

    monkeypatch.setattr(run, "_execute", fail)
    delay_first_mkdir(monkeypatch, neighbour)
    with pytest.raises(RuntimeError, match="failed before any stage"):
        run.execute()
    assert not (runs / "tiny").exists()  # its own half-made run is gone
    assert (runs / "other" / "live.txt").read_text() == "training"
    held[0][0].__exit__(None, None, None)


def test_a_failed_start_takes_back_empty_parents_it_made(tmp_path):
    run_dir = tmp_path / "a" / "b" / "run"
    with claim(run_dir) as c:
        assert c.made and c.made_parents == [tmp_path / "a" / "b", tmp_path / "a"]
        c.take_back()
    assert not (tmp_path / "a").exists()


def test_an_existing_run_is_not_made_here_and_not_taken_back(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "old.txt").write_text("kept")
    with claim(run_dir) as c:
        assert not c.made and c.made_parents == []
        c.take_back()
    assert (run_dir / "old.txt").read_text() == "kept"


def test_a_run_folder_replaced_while_starting_is_refused(tmp_path, monkeypatch):
    """The lock taken must be the lock of the folder now at the path, not of one that a
    rival removed (and another made again) between opening and locking."""
    import os
    import shutil

    run_dir = tmp_path / "run"
    real_open = os.open

    def open_then_replace(path, *args, **kwargs):
        fd = real_open(path, *args, **kwargs)
        if str(path).endswith(".lock"):
            shutil.rmtree(run_dir)
            run_dir.mkdir()
            (run_dir / ".lock").write_text("")
        return fd

    monkeypatch.setattr(os, "open", open_then_replace)
    with pytest.raises(UserError, match="removed while this run started"):
        with claim(run_dir):
            pass
