"""The study map: one column per data fraction, loss against compute above, sample quality
below; a PNG of the promised width that is not blank, with each prior in its own colour."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from matplotlib import image

from diffvq.evaluate.crossover import CurvePoint, crossovers
from diffvq.evaluate.map_plot import DPI, PALETTE, WIDTH_PX, QualityPoint, draw_map
from diffvq.intervals import Interval

PER_EPOCH = 1e14

LAWS = {
    "gpt": ("exact", lambda c, e: 2.0 + 3.0 * (c / 1e12) ** -0.5 + 0.01 * np.maximum(0, e - 4)),
    "masked": ("bound", lambda c, e: 1.8 + 4.5 * (c / 1e12) ** -0.45),
    "block": ("bound", lambda c, e: 2.08 + 3.0 * (c / 1e12) ** -0.5 + 0.01 * np.maximum(0, e - 4)),
    "latent": ("bound", lambda c, e: 2.1 + 3.0 * (c / 1e12) ** -0.5),
}


def study(fractions=(0.1, 1.0), priors=("gpt", "masked", "block"), seeds=2):
    rng = np.random.default_rng(0)
    out = []
    for f in fractions:
        for name in priors:
            family, law = LAWS[name]
            for s in range(seeds):
                for k, size in enumerate(("small", "base")):
                    for b in (1e15, 1e16):
                        c = np.geomspace(b / 1e4, b, 8)
                        loss = law(c, c / PER_EPOCH / f) + 0.02 * k + rng.normal(0, 0.005, 8)
                        out += [CurvePoint(name, family, f, size, s, b, float(x),
                                           float(x / PER_EPOCH / f), float(v), 0.004, i == 7)
                                for i, (x, v) in enumerate(zip(c, loss))]
    return out


def quality(points, skip=()):
    """KID at each run's final point (seed 0) and at half its compute as 'best'."""
    out = []
    for p in points:
        if p.final and p.seed == 0 and p.fraction not in skip:
            v = 3 * p.loss
            out.append(QualityPoint(p.prior, p.fraction, p.flops, v, v - 0.3, v + 0.3,
                                    "KID x1e3", "final"))
            out.append(QualityPoint(p.prior, p.fraction, p.flops / 2, v - 0.2, None, None,
                                    "KID x1e3", "best"))
    return out


def read(path):
    img = image.imread(str(path))  # [H, W, 4] floats in [0, 1]
    return img[..., :3]


def share_of(img, hex_colour, tol=0.06):
    """Share of pixels within `tol` of a colour."""
    rgb = np.array([int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)])
    return float(np.mean(np.all(np.abs(img - rgb) < tol, axis=-1)))


@pytest.fixture(scope="module")
def points():
    return study()


@pytest.fixture(scope="module")
def found(points):
    return crossovers(points, n_boot=300)


def test_a_map_of_two_fractions_and_three_priors_with_quality(tmp_path, points, found):
    assert {x.status for x in found} >= {"crossover", "none within budget"}
    out = draw_map(points, found, quality(points), tmp_path / "map" / "study.png",
                   title="test study", unique={0.1: 405, 1.0: 4050})
    assert out == tmp_path / "map" / "study.png" and out.is_file()
    img = read(out)
    assert img.shape[1] == WIDTH_PX and img.shape[0] == pytest.approx(9.6 * DPI, abs=2)
    assert img.std() > 0.05  # not blank
    for colour in PALETTE[:3]:  # each prior's frontier in its own colour (gpt, block, masked)
        assert share_of(img, colour) > 1e-3
    assert share_of(img, PALETTE[3]) < 1e-4  # no fourth prior, no fourth colour
    assert [p.name for p in (tmp_path / "map").iterdir()] == ["study.png"]  # no temp left


def test_without_quality_the_map_has_one_row(tmp_path, points, found):
    out = draw_map(points, found, None, tmp_path / "study.png")
    img = read(out)
    assert img.shape[1] == WIDTH_PX and img.shape[0] == pytest.approx(6.6 * DPI, abs=2)
    assert img.std() > 0.05
    assert draw_map(points, found, [], tmp_path / "empty.png").is_file()


def test_one_to_four_priors_and_fractions_and_gaps_in_quality(tmp_path):
    one = study(fractions=(0.5,), priors=("gpt",), seeds=1)
    img = read(draw_map(one, [], None, tmp_path / "one.png"))
    assert img.shape[1] == WIDTH_PX and img.std() > 0.05
    many = study(fractions=(0.02, 0.05, 0.2, 1.0), priors=tuple(LAWS), seeds=2)
    found = crossovers(many, n_boot=200)
    # an interval that runs beyond the budget is shaded to the edge, not an error
    found[0] = dataclasses.replace(found[0], status="crossover", flops=2e14,
                                   interval=Interval(2e14, 1e14, math.inf))
    out = draw_map(many, found, quality(many, skip=(0.05,)), tmp_path / "many.png")
    img = read(out)
    assert img.shape[1] == WIDTH_PX and img.std() > 0.05
    for colour in PALETTE[:4]:
        assert share_of(img, colour) > 5e-4


def test_the_equal_budget_reading_draws_its_own_crossovers(tmp_path, points, found):
    both = found + crossovers(points, n_boot=200, reading="equal-budget")
    out = draw_map(points, both, quality(points), tmp_path / "eb.png", reading="equal-budget")
    img = read(out)
    assert img.shape[1] == WIDTH_PX and img.std() > 0.05
    for colour in PALETTE[:3]:
        assert share_of(img, colour) > 1e-3


def test_bad_input_is_refused(tmp_path, points):
    with pytest.raises(ValueError, match="no curve points"):
        draw_map([], [], None, tmp_path / "x.png")
    with pytest.raises(ValueError, match="reading"):
        draw_map(points, [], None, tmp_path / "x.png", reading="best")
    assert not (tmp_path / "x.png").exists()
