"""What would fail hours into a run fails before any training: a cache or runs folder that
cannot be written, sample sets too small for the evaluation asked for."""

from __future__ import annotations

import pytest

from diffvq import cli, pipeline

from test_errors import cli_run, mount_tmpfs, one_error_line  # noqa: F401 - fixture


@pytest.fixture
def no_training(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Fails the test if any trainer is made; the list of attempts."""
    made: list[str] = []

    def trainer(*args, **kwargs):
        made.append("trainer")
        raise AssertionError("training started")

    monkeypatch.setattr(pipeline, "Trainer", trainer)
    return made


@pytest.mark.parametrize("where", ["cache", "runs"])
def test_an_unwritable_folder_fails_before_any_training(where, tiny, write_recipe, tmp_path,
                                                        mount_tmpfs, monkeypatch, capsys,
                                                        no_training):
    ro = mount_tmpfs(f"ro-{where}", "ro,size=1m")
    runs = ro if where == "runs" else tmp_path / "runs"
    if where == "cache":
        monkeypatch.setenv("DIFFVQ_CACHE", str(ro))
    assert cli_run(write_recipe(tiny), runs) == 2
    line = one_error_line(capsys)
    assert str(ro) in line and ("not writable" in line or "read-only" in line), line
    assert no_training == []
    assert not (tmp_path / "runs").exists() and list(ro.iterdir()) == []


def test_a_cache_below_a_file_fails_before_any_training(tiny, write_recipe, tmp_path,
                                                        monkeypatch, capsys, no_training):
    """The same without root (no tmpfs): a cache path that cannot be a folder."""
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("DIFFVQ_CACHE", str(tmp_path / "file" / "cache"))
    assert cli_run(write_recipe(tiny), tmp_path / "runs") == 2
    assert "DIFFVQ_CACHE" in one_error_line(capsys)
    assert no_training == [] and not (tmp_path / "runs").exists()


def test_too_few_samples_for_the_neighbours_asked_is_found_by_validate(tiny, write_recipe,
                                                                       capsys):
    code = cli.main(["validate", str(write_recipe(tiny)), "sample.n_per_class=1",
                     "sample.seeds=1", "evaluate.k=10"])
    assert code == 2
    line = one_error_line(capsys)
    assert "evaluate.k: k-NN precision and recall with 10 neighbours need more than 10" in line
    assert "draws 10 (1 seeds x 10)" in line
