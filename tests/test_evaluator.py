"""The Evaluator end to end on a tiny run: every quality figure carries an interval, the
validation split is scored beside test, and a prior whose samples are training sequences
verbatim is caught as a copier (and flagged in the table)."""

from __future__ import annotations

import numpy as np
import pytest

from diffvq import recipe as recipe_mod
from diffvq import storage, summary
from diffvq.pipeline import Run


@pytest.fixture(scope="module")
def finished(tmp_path_factory, plugins):
    import yaml
    from conftest import TINY

    d = tmp_path_factory.mktemp("evaluator")
    (d / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    r, _ = recipe_mod.load(d / "tiny.yaml", plugins=plugins)
    job = Run(r, plugins, runs_dir=d / "runs", progress=False)
    return job, job.execute()


def test_every_quality_figure_has_an_interval(finished):
    _, metrics = finished
    row = metrics["priors"]["gpt"]["sampling"][0]
    for split in ("test", "validation"):
        for name in ("kid", "fd"):
            iv = row["judge"][split][name]
            assert iv["lo"] <= iv["value"] <= iv["hi"], (split, name, iv)
    for name in ("accuracy", "precision", "recall"):
        iv = row["judge"]["test"][name]
        assert 0 <= iv["lo"] <= iv["value"] <= iv["hi"] <= 1, (name, iv)
    nll = metrics["priors"]["gpt"]["nll"]
    assert nll["interval"][0] < nll["bits_per_token"] < nll["interval"][1]
    assert nll["bits_per_dim"] == pytest.approx(nll["bits_per_token"] * 16 / 64)  # 4x4 of 8x8
    timing = row["timing"]
    assert len(timing["batch_s"]) >= 5 and len(timing["latency_s"]) >= 5
    assert row["seconds_per_sample"] == pytest.approx(np.median(timing["batch_s"]))


def test_a_prior_that_copies_training_sequences_is_caught(finished):
    job, _ = finished
    samples = job.samples_dir("gpt", "") / "tokens.npy"
    tokens = storage.load_array(samples)  # [seeds, n, *grid]
    train = np.asarray(job.token_cache().tokens("train"))  # [N, *grid]
    rng = np.random.default_rng(0)
    copies = train[rng.choice(len(train), tokens.shape[0] * tokens.shape[1], replace=False)]
    np.save(samples, copies.reshape(tokens.shape).astype(tokens.dtype))
    (job.run_dir / "stages" / "metrics.json").unlink()  # the metrics are made again
    metrics = job.execute()
    m = metrics["priors"]["gpt"]["sampling"][0]["memorisation"]
    assert m["token_copy_share"] == 1.0 and m["hamming_nn_mean"] == 0.0
    assert m["token_copy_share_real"] < 0.5
    assert m["feature_near_copy_share"] > m["feature_near_copy_share_real"]
    assert any("memorises" in f for f in summary.flags(metrics))
