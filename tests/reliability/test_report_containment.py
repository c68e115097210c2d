"""A crafted run directory cannot pull a file from elsewhere into report.html.

`diffvq compare RUN RUN` embeds every file a run's metrics.json names. An entry that is absolute,
climbs out with `..`, or reaches out through a symbolic link (to the file or to a folder above
it) stops the whole compare: one line naming metrics.json and the entry, exit status 2, and
nothing written to the output folder. Links that stay inside the run are still followed.

The runs are made by hand (metrics.json, a token cache of one array, a PNG): no training.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from diffvq import compare
from diffvq.cli import main
from diffvq.errors import UserError

SECRET = b"top-secret-6f1c2a marker that must never reach a report\n"


def png() -> bytes:
    buf = io.BytesIO()
    Image.new("L", (4, 4), 128).save(buf, format="PNG")
    return buf.getvalue()


def make_run(path: Path, name: str, files: list[Any]) -> Path:
    """A finished run as compare reads it: metrics.json naming `files`, tokens/, a recipe."""
    (path / "samples" / "gpt").mkdir(parents=True)
    (path / "samples" / "gpt" / "grid.png").write_bytes(png())
    (path / "tokens").mkdir()
    np.save(path / "tokens" / "test.tokens.npy", np.arange(8).reshape(2, 4))
    (path / "recipe.resolved.yaml").write_text(f"name: {name}\n")
    metrics = {
        "run": name, "device": "cpu", "precision": "fp32", "data": {"name": "digits"},
        "tokenizer": {"name": "vqvae", "grid_shape": [4], "codebook_size": 8,
                      "codebook_usage": 1.0, "perplexity": 7.0},
        "judge": None,
        "priors": {"gpt": {"name": "autoregressive", "parameters": 1e6, "train_time_s": 1,
                           "nll_bits_per_token": None, "nll_kind": "none",
                           "sampling": [{"variant": "", "nfe": 4, "seconds_per_sample": 0.01,
                                         "files": files}]}}}
    (path / "metrics.json").write_text(json.dumps(metrics))
    return path


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "private" / "secret.png"  # an image name: it would be embedded as one
    path.parent.mkdir()
    path.write_bytes(SECRET)
    return path


def assert_refused(capsys, tmp_path: Path, runs: list[Path], entry: str) -> str:
    out = tmp_path / "out"
    capsys.readouterr()
    assert main(["compare", *map(str, runs), "--out", str(out)]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert "outside the run directory" in err and repr(entry) in err, err
    assert not out.exists()  # nothing written, not even metrics.json
    leaked = (SECRET, base64.b64encode(SECRET))
    assert not any(s.decode() in captured.out + captured.err for s in leaked)
    return err


def test_a_normal_compare_writes_the_report_and_follows_links_inside_the_run(tmp_path):
    a = make_run(tmp_path / "a", "a", ["samples/gpt/grid.png"])
    b = make_run(tmp_path / "b", "b", ["samples/gpt/link.png", "samples/gpt/../gpt/grid.png"])
    (b / "samples" / "gpt" / "link.png").symlink_to("grid.png")  # a link that stays inside
    out = tmp_path / "out"
    assert main(["compare", str(a), str(b), "--out", str(out)]) == 0
    page = (out / "report.html").read_text()
    assert page.count(f'src="data:image/png;base64,{base64.b64encode(png()).decode()}"') == 3
    assert "a/gpt" in page and "b/gpt" in page and "missing:" not in page
    assert json.loads((out / "metrics.json").read_text())["run"] == "a + b"


@pytest.mark.parametrize("entry", ["/etc/hostname", "ABSOLUTE"])
def test_an_absolute_path_is_refused(entry, tmp_path, secret, capsys):
    entry = str(secret) if entry == "ABSOLUTE" else entry
    a = make_run(tmp_path / "runs" / "a", "a", ["samples/gpt/grid.png"])
    b = make_run(tmp_path / "runs" / "b", "b", ["samples/gpt/grid.png", entry])
    err = assert_refused(capsys, tmp_path, [a, b], entry)
    assert str(b / "metrics.json") in err and f"run directory {b};" in err


def test_dot_dot_out_of_the_run_is_refused(tmp_path, secret, capsys):
    a = make_run(tmp_path / "runs" / "a", "a", ["samples/gpt/grid.png"])
    b = make_run(tmp_path / "runs" / "b", "b", ["samples/gpt/grid.png"])
    entry = "../../private/secret.png"
    assert (b / entry).read_bytes() == SECRET  # it does reach the file
    metrics = json.loads((a / "metrics.json").read_text())
    metrics["priors"]["gpt"]["sampling"][0]["files"] = [entry]
    (a / "metrics.json").write_text(json.dumps(metrics))
    err = assert_refused(capsys, tmp_path, [a, b], entry)
    assert str(a / "metrics.json") in err


def test_links_out_of_the_run_are_refused_at_any_level(tmp_path, secret, capsys):
    runs = tmp_path / "runs"
    a = make_run(runs / "a", "a", ["samples/gpt/grid.png"])
    b = make_run(runs / "b", "b", ["samples/gpt/out.png"])
    (b / "samples" / "gpt" / "out.png").symlink_to(secret)  # the file itself
    assert_refused(capsys, tmp_path, [a, b], "samples/gpt/out.png")
    c = make_run(runs / "c", "c", ["samples/away/secret.png"])
    (c / "samples" / "away").symlink_to(secret.parent, target_is_directory=True)  # a folder
    assert_refused(capsys, tmp_path, [a, c], "samples/away/secret.png")


def test_the_recipe_and_metrics_are_read_only_from_inside_the_run(tmp_path, secret, capsys):
    runs = tmp_path / "runs"
    a = make_run(runs / "a", "a", ["samples/gpt/grid.png"])
    b = make_run(runs / "b", "b", ["samples/gpt/grid.png"])
    (b / "recipe.resolved.yaml").unlink()
    (b / "recipe.resolved.yaml").symlink_to(secret)  # embedded as the recipe's text
    assert_refused(capsys, tmp_path, [a, b], "recipe.resolved.yaml")
    c = make_run(runs / "c", "c", ["samples/gpt/grid.png"])
    elsewhere = tmp_path / "private" / "metrics.json"
    (c / "metrics.json").rename(elsewhere)
    (c / "metrics.json").symlink_to(elsewhere)
    assert_refused(capsys, tmp_path, [a, c], "metrics.json")


def test_a_malformed_files_entry_is_one_line(tmp_path, capsys):
    a = make_run(tmp_path / "a", "a", ["samples/gpt/grid.png"])
    b = make_run(tmp_path / "b", "b", [{"path": "x"}])
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not a relative path inside the run directory" in err
    assert not (tmp_path / "out").exists()


def test_the_report_of_one_run_refuses_too(tmp_path, secret):
    run = make_run(tmp_path / "run", "run", [str(secret)])
    metrics = json.loads((run / "metrics.json").read_text())
    with pytest.raises(UserError, match="outside the run directory"):
        compare.report_for_run(run, metrics)
    assert not (run / "report.html").exists()
