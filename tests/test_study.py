"""Studies: the `study:` section is validated like the rest of a recipe, each cell is a stage of
its own (a finished study grows by its new cells only), and every cell records what it spent and
its validation curve."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from diffvq import recipe as recipe_mod
from diffvq.errors import RecipeError
from diffvq.compare import report_for_run
from diffvq.pipeline import Run
from diffvq.study.cells import evaluation_steps, steps_for, subset
from diffvq.summary import format_summary

STUDY = {"data_fractions": [0.5], "model_sizes": {"a": {}}, "budget_flops": [1e9, 3e9], "seeds": 2,
         "evaluations": 3, "quality_per_class": 2}


@pytest.fixture
def study_recipe(tiny):
    r = copy.deepcopy(tiny)
    r["name"] = "tiny-study"
    r["priors"]["masked"] = {"name": "masked-diffusion", "loss": "elbo", "n_layer": 1,
                             "n_head": 2, "n_embd": 32, "sample": {"steps": 4}}
    r["study"] = copy.deepcopy(STUDY)
    return r


def load(recipe, write_recipe, plugins, overrides=()):
    return recipe_mod.load(write_recipe(recipe), list(overrides), plugins=plugins)[0]


def markers(run_dir: Path) -> dict[str, int]:
    return {p.stem: p.stat().st_mtime_ns for p in (run_dir / "stages").glob("study-*.json")}


@pytest.mark.parametrize("change, message", [
    ({"budget_flops": None}, "exactly one of budget_flops or budget_epochs"),
    ({"budget_epochs": [3]}, "exactly one of budget_flops or budget_epochs"),
    ({"priors": ["gpt", "nope"]}, "'nope' is not a prior of this recipe"),
    ({"reference": "masked"}, "has no exact likelihood"),
    ({"priors": ["gpt"]}, "at least two priors"),
    ({"data_fractions": [0.0]}, "study.data_fractions"),
    ({"model_sizes": {"a": {"n_layr": 2}}}, "study.model_sizes.a"),
    ({"seeds": 0}, "study.seeds"),
    ({"priors": ["gpt", "masked", "latent"]}, "'latent' (latent-diffusion) reports no likelihood"),
])
def test_a_bad_study_is_refused_before_any_work(study_recipe, write_recipe, plugins, change,
                                                message):
    study_recipe["priors"]["latent"] = {"name": "latent-diffusion", "n_layer": 1, "n_head": 2,
                                        "n_embd": 32}
    study_recipe["study"].update({"priors": ["gpt", "masked"], **change})
    study_recipe["study"] = {k: v for k, v in study_recipe["study"].items() if v is not None}
    with pytest.raises(RecipeError) as err:
        load(study_recipe, write_recipe, plugins)
    assert message in str(err.value)


def test_a_study_without_a_validation_split_stops_before_any_work(study_recipe, write_recipe,
                                                                   plugins, tmp_path, capsys):
    from diffvq.cli import main

    study_recipe["data"] = {"name": "digits", "validation_fraction": 0.0}
    code = main(["run", str(write_recipe(study_recipe)), "--runs-dir", str(tmp_path / "runs"),
                 "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "study: the validation split of 'digits' holds fewer than 2" in err
    assert "Traceback" not in err and not (tmp_path / "runs" / "tiny-study").exists()


def test_subsets_are_nested_and_fixed():
    small, large = subset(1000, 0.02, 7), subset(1000, 0.5, 7)
    assert len(small) == 20 and len(large) == 500
    assert set(small) <= set(large)
    assert np.array_equal(small, subset(1000, 0.02, 7))
    assert not np.array_equal(large, subset(1000, 0.5, 8))


def test_budgets_buy_steps_and_curves_see_early_training():
    assert steps_for(1e12, "flops", 1e9, 32, 100) == 1000
    assert steps_for(4, "epochs", 1e9, 32, 100) == 12  # 400 sequences in batches of 32
    assert evaluation_steps(1000, 4) == [125, 250, 500, 1000]
    assert evaluation_steps(3, 8)[-1] == 3 and evaluation_steps(1, 8) == [1]


@pytest.mark.slow
def test_a_study_records_its_curves_and_grows_by_its_new_cells(study_recipe, write_recipe,
                                                                  plugins, tmp_path):
    runs = tmp_path / "runs"
    job = Run(load(study_recipe, write_recipe, plugins), plugins, runs_dir=runs, progress=False)
    metrics = job.execute()
    study = metrics["study"]
    assert len(study["cells"]) == 8 and not metrics["priors"]  # 2 priors x 2 budgets x 2 seeds
    for cell in study["cells"]:
        curve = json.loads((job.run_dir / cell["path"] / "curve.json").read_text())
        pts = curve["points"]
        assert [p["step"] for p in pts] == evaluation_steps(curve["steps"], 3)
        assert all(b["flops"] > a["flops"] for a, b in zip(pts, pts[1:]))
        assert curve["epochs"] == pytest.approx(curve["steps"] * 32 / curve["unique_sequences"])
        assert curve["flops"] == pytest.approx(curve["budget"], rel=0.02)
        assert curve["best"]["loss"] == min(p["loss"] for p in pts)
        assert all(p["se"] > 0 for p in pts)
        ratio = curve["flops_per_step"] / curve["flops_per_step_counted"]
        assert 0.9 < ratio < 1.1
        assert set(cell["quality"]) == {"best", "final"}
        for q in cell["quality"].values():
            assert q["kid"]["lo"] <= q["kid"]["value"] <= q["kid"]["hi"]
            assert 0 <= q["memorisation"]["token_copy"]["value"] <= 1
    assert {c["reading"] for c in study["crossovers"]} == {"frontier", "equal-budget"}
    assert all(c["status"] in ("crossover", "ahead throughout", "none within budget",
                               "cannot tell") for c in study["crossovers"])
    assert (job.run_dir / study["map"]).stat().st_size > 10_000
    text = format_summary(metrics, job.run_dir, width=200)
    assert "study: validation loss against training compute (8 runs" in text
    assert "equal-budget" in text and "epochs to best" in text
    page = report_for_run(job.run_dir, metrics).read_text()
    assert "Where diffusion overtakes autoregression" in page and "data:image/png;base64" in page
    before = markers(job.run_dir)
    assert len(before) == 8

    study_recipe["study"]["data_fractions"] = [0.5, 1.0]
    grown = Run(load(study_recipe, write_recipe, plugins), plugins, runs_dir=runs, progress=False)
    metrics = grown.execute()
    after = markers(job.run_dir)
    assert {k: after[k] for k in before} == before  # the finished cells were reused as they were
    assert len(after) == 16
    assert {c["fraction"] for c in metrics["study"]["crossovers"]} == {0.5, 1.0}


def test_runs_of_one_budget_end_at_the_same_compute():
    """Whole steps overshoot a FLOPs budget by up to a step; the map places each run's points
    at their share of the budget, so runs of one budget are compared at their ends."""
    from diffvq.study.results import curve_points

    def curve(prior, steps, per_step):
        return {"prior": prior, "family": "exact", "fraction": 0.1, "size": "a", "seed": 0,
                "budget": 1.5e12, "unit": "flops", "steps": steps, "flops": steps * per_step,
                "points": [{"step": s, "flops": s * per_step, "epochs": s / 10, "loss": 5.0,
                            "se": 0.1} for s in (steps // 2, steps)]}

    a, b = curve_points(curve("gpt", 780, 1.92e9)), curve_points(curve("masked", 758, 1.98e9))
    assert a[-1].flops == b[-1].flops == 1.5e12 and a[-1].final and b[-1].final
    assert a[0].flops == pytest.approx(0.75e12)
