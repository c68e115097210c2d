"""`diffvq compare`: the report holds every prior and metric, runs over different tokens are
refused, the finding at matched quality says what the figures say, the judge is accurate."""

from __future__ import annotations

import copy
import re
import shutil
from pathlib import Path

import pytest
import torch

from diffvq import optional
from diffvq.cli import main
from diffvq.judge import get_judge
from diffvq.report import COLUMNS
from diffvq.trainer import TrainConfig


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    """One tiny recipe with an autoregressive and a masked prior (a sweep of steps), compared."""
    from conftest import TINY
    import yaml

    d = tmp_path_factory.mktemp("compare")
    recipe = copy.deepcopy(TINY)
    recipe["priors"]["maskgit"] = {"name": "masked-diffusion", "n_layer": 1, "n_head": 2,
                                   "n_embd": 32, "sample": {"steps": [2, 4]}}
    path = d / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert main(["compare", str(path), "--runs-dir", str(d / "runs"), "--quiet"]) == 0
    return d / "runs" / "tiny", path


def test_report_holds_every_prior_metric_plot_and_gallery(compared, capsys):
    run_dir, _ = compared
    page = (run_dir / "report.html").read_text()
    for header, _ in COLUMNS:
        assert f"<th>{header}</th>" in page
    for text in ("gpt", "maskgit", "steps-2", "steps-4", "real data", "tokenizer reconstructions",
                 "judge FD against cost", "Recipe and versions", "torch"):
        assert text in page, text
    # galleries and the plot are embedded, nothing is linked from outside
    assert len(re.findall(r'src="data:image/png;base64,', page)) == 4  # 3 galleries + 1 plot
    assert "http://" not in page and "https://" not in page
    assert page.count('class=best') >= 8  # a best value marked in each ranked column


def test_signal_metrics_get_columns_and_closest_to_real_is_marked():
    """A modality's own measures (music's tonality) sit after the token entropy, with the floor rows'
    values; the best cell is the one closest to real data, not the highest."""
    from diffvq import summary
    from diffvq.report import columns, table_html

    def sig(v):
        return {"tonality": {"mean": v, "std": 0.01, "lo": round(v - 0.02, 2),
                             "hi": round(v + 0.02, 2)}}

    def row(variant, v):
        return {"variant": variant, "nfe": 4, "seconds_per_sample": 0.01, "signal": sig(v)}

    metrics = {"judge": None, "signal_notes": {"tonality": "how tonal"},
               "signal": {"real data": sig(0.80), "tokenizer reconstructions": sig(0.78)},
               "priors": {"a": {"name": "autoregressive", "parameters": 1e6, "train_time_s": 1,
                                "nll_bits_per_token": None, "nll_kind": "none",
                                "sampling": [row("x", 0.95), row("y", 0.76)]}}}
    header = summary.prior_header(metrics)
    assert header[header.index("entropy bits (real)") + 1] == "tonality"
    assert ("tonality", "real") in columns(metrics)
    rows = summary.prior_rows(metrics)
    assert [r[0] for r in rows[:2]] == ["real data", "reconstructed data"]
    assert [r[header.index("tonality")] for r in rows] == [
        "0.8 [0.78, 0.82]", "0.78 [0.76, 0.8]", "0.95 [0.93, 0.97]", "0.76 [0.74, 0.78]"]
    page = table_html(metrics)
    assert "<td class=best>0.76 [0.74, 0.78]</td>" in page and "class=best>0.95" not in page
    assert "tonality" in summary.format_summary({**metrics, "run": "r", "device": "cpu",
                                                 "precision": "fp32", "tokenizer": {
        "name": "vqvae", "grid_shape": [4], "codebook_size": 8, "codebook_usage": 1.0,
        "perplexity": 7.0}}, Path("runs/r"), width=300)


def test_runs_with_the_same_tokens_merge(compared, tmp_path, capsys):
    run_dir, _ = compared
    twin = tmp_path / "twin"
    shutil.copytree(run_dir, twin)
    out = tmp_path / "out"
    assert main(["compare", str(run_dir), str(twin), "--out", str(out)]) == 0
    page = (out / "report.html").read_text()
    assert "tiny/gpt" in page and "tiny/maskgit" in page
    assert (out / "metrics.json").is_file()


def test_runs_with_different_token_caches_are_refused(compared, tmp_path, capsys):
    run_dir, recipe = compared
    other = tmp_path / "other"
    shutil.copytree(run_dir, other)
    tokens = other / "tokens" / "test.tokens.npy"
    data = bytearray(tokens.read_bytes())
    data[-1] ^= 1  # one token differs
    tokens.write_bytes(bytes(data))
    capsys.readouterr()
    assert main(["compare", str(run_dir), str(other), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "have different token caches" in err and "cannot be compared" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert main(["compare", str(tmp_path / "nowhere"), str(run_dir)]) == 2
    assert main(["compare", str(tmp_path)]) == 2  # a directory that is not a run
    assert "not a finished run" in capsys.readouterr().err


@pytest.mark.parametrize("edit, says", [
    (lambda recipe, metrics: recipe["sample"].update(seeds=2), "sample.seeds 2 vs 3"),
    (lambda recipe, metrics: recipe["evaluate"].update(k=5), "evaluate.k 5 vs 3"),
    (lambda recipe, metrics: metrics.update(precision="bf16"), "precision 'bf16' vs 'fp32'"),
    (lambda recipe, metrics: recipe.update(threads=7), "threads 7 vs"),
])
def test_runs_measured_under_another_protocol_are_refused(compared, tmp_path, capsys, edit,
                                                          says):
    import json

    import yaml

    run_dir, _ = compared
    other = tmp_path / "other"
    shutil.copytree(run_dir, other)
    recipe = yaml.safe_load((other / "recipe.resolved.yaml").read_text())
    metrics = json.loads((other / "metrics.json").read_text())
    edit(recipe, metrics)
    (other / "recipe.resolved.yaml").write_text(yaml.safe_dump(recipe))
    (other / "metrics.json").write_text(json.dumps(metrics))
    capsys.readouterr()
    out = tmp_path / "out"
    assert main(["compare", str(run_dir), str(other), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "was measured under another protocol" in err and says in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


def test_image_judge_is_accurate_on_real_test_data(plugins, tmp_path):
    reg = plugins.registry
    data = reg.entries["dataset"]["digits"].cls()
    modality = reg.entries["modality"]["image"].cls(info=data.info())
    (x, y), (xt, yt) = data.load("train"), data.load("test")
    cfg = TrainConfig(**{**modality.judge_train, "steps": 300})
    judge = get_judge(modality, "digits-test", (modality.to_model(x), y),
                      (modality.to_model(xt), yt), cfg, seed=0, device=torch.device("cpu"),
                      progress=False, log=lambda m: None)
    assert judge.info["test_accuracy"] > 0.9
    again = get_judge(modality, "digits-test", (modality.to_model(x), y),
                      (modality.to_model(xt), yt), cfg, seed=0, device=torch.device("cpu"),
                      progress=False, log=lambda m: None)  # from the cache, the same network
    assert again.info == judge.info
    assert (again.predict(modality.to_model(xt)) == judge.predict(modality.to_model(xt))).all()
    torch.manual_seed(99)  # trained afresh after other work: the same network all the same
    fresh = get_judge(modality, "digits-test-2", (modality.to_model(x), y),
                      (modality.to_model(xt), yt), cfg, seed=0, device=torch.device("cpu"),
                      progress=False, log=lambda m: None)
    for a, b in zip(fresh.module.state_dict().values(), judge.module.state_dict().values()):
        assert torch.equal(a, b)


# Found at collection, so that a skip does not build `compared` first (hidden by
# DIFFVQ_HIDE_OPTIONAL=chromium).
BROWSER = optional.which("chromium", "chromium-browser", "google-chrome", package="chromium")


@pytest.mark.skipif(BROWSER is None, reason="needs the Debian package chromium")
def test_report_renders_in_headless_chromium(compared, tmp_path):
    """The browser sees the table, the plot and the galleries (all images decoded)."""
    import subprocess

    run_dir, _ = compared
    script = ("<script>window.onload=()=>{document.title=[...document.images].filter("
              "i=>i.complete&&i.naturalWidth>0).length+' images'}</script>")
    page = tmp_path / "report.html"
    page.write_text((run_dir / "report.html").read_text().replace("</head>", script + "</head>"))
    dom = subprocess.run([BROWSER, "--headless", "--no-sandbox", "--disable-gpu",
                          "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    assert "<title>4 images</title>" in dom  # 3 galleries + the plot, all decoded
    assert "<table>" in dom and "maskgit" in dom and "judge FD" in dom
