"""Optional system packages: DIFFVQ_HIDE_OPTIONAL hides them from every place that detects them, and
the tests that need them then skip with a reason instead of failing. This proves it on any machine,
including one where the packages are installed."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from diffvq import optional

ROOT = Path(__file__).resolve().parent.parent

# Every test that needs an optional package, and the package its skip reason must name. A new
# test that needs one belongs here.
SHIPPED = "tests/test_recipe.py::test_every_shipped_recipe_validates"
NEEDS_OPTIONAL = {
    f"{SHIPPED}[image/fashion-mnist.yaml]": "dataset-fashion-mnist",
    f"{SHIPPED}[image/fashion-mnist-compare.yaml]": "dataset-fashion-mnist",
    "plugins/image/tests/test_image_plugin.py::test_installed_fashion_mnist":
        "dataset-fashion-mnist",
    "plugins/music/tests/test_music_plugin.py::test_fluidsynth_renders_scores_and_midi_files_in_key":
        "fluidsynth",
    "tests/test_compare.py::test_report_renders_in_headless_chromium": "chromium",
}


def fake_program(folder: Path, name: str) -> Path:
    """An executable file called `name`: enough for a PATH lookup."""
    path = folder / name
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return path


def test_hidden_takes_names_or_all(monkeypatch):
    monkeypatch.delenv(optional.ENV, raising=False)
    assert not optional.hidden("fluidsynth")
    monkeypatch.setenv(optional.ENV, " Chromium , fluidsynth,")
    assert optional.hidden("fluidsynth") and optional.hidden("chromium")
    assert not optional.hidden("dataset-fashion-mnist")
    monkeypatch.setenv(optional.ENV, "all")
    assert optional.hidden("dataset-fashion-mnist") and optional.hidden("anything")


def test_which_finds_a_program_unless_its_package_is_hidden(tmp_path, monkeypatch):
    second = fake_program(tmp_path, "chromium-browser")
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv(optional.ENV, raising=False)
    assert optional.which("chromium", "chromium-browser", package="chromium") == str(second)
    monkeypatch.setenv(optional.ENV, "fluidsynth")
    assert optional.which("chromium", "chromium-browser", package="chromium") == str(second)
    monkeypatch.setenv(optional.ENV, "chromium")
    assert optional.which("chromium", "chromium-browser", package="chromium") is None


def test_fashion_mnist_files_are_hidden_with_their_package(tmp_path, monkeypatch):
    from diffvq.errors import UserError
    from diffvq_image.datasets import FashionMnist

    for pair in FashionMnist.FILES.values():
        for name in pair:
            (tmp_path / name).write_bytes(b"")  # only their presence is checked here
    monkeypatch.delenv(optional.ENV, raising=False)
    assert FashionMnist(root=str(tmp_path)).missing() == []
    monkeypatch.setenv(optional.ENV, "dataset-fashion-mnist")
    assert len(FashionMnist(root=str(tmp_path)).missing()) == 4
    with pytest.raises(UserError, match="apt-get install dataset-fashion-mnist"):
        FashionMnist(root=str(tmp_path)).info()


def test_fluidsynth_and_its_soundfont_are_hidden_by_package(tmp_path, monkeypatch):
    from diffvq_music import fluid

    fake_program(tmp_path, "fluidsynth")
    soundfont = tmp_path / "GM.sf2"
    soundfont.write_bytes(b"")
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(fluid, "SOUNDFONTS", (str(soundfont),))
    monkeypatch.delenv(optional.ENV, raising=False)
    assert fluid.available() and fluid.find_soundfont(None) == soundfont
    for package in fluid.PACKAGES:
        monkeypatch.setenv(optional.ENV, package)
        assert not fluid.available()


def test_tests_needing_optional_packages_skip_when_all_are_hidden(tmp_path):
    """In a pytest subprocess with DIFFVQ_HIDE_OPTIONAL=all, each of them is skipped (none fails,
    none passes) with a reason that names the package to install."""
    report = tmp_path / "report.xml"
    env = {**os.environ, optional.ENV: "all"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}",
         *NEEDS_OPTIONAL], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    reasons = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        outcomes = [c for c in case if c.tag in ("skipped", "failure", "error")]
        assert [c.tag for c in outcomes] == ["skipped"], case.get("name")  # [] if it passed
        reasons[case.get("name")] = outcomes[0].get("message")
    assert len(reasons) == len(NEEDS_OPTIONAL)
    for node, package in NEEDS_OPTIONAL.items():
        reason = reasons[node.split("::")[-1]]
        assert reason.startswith("needs the Debian package") and package in reason, (node, reason)
