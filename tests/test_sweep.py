"""The α sweep on the tiny registered encoder's data (``tiny`` in tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
import pytest

from prodemb.protocol import EvaluateInputError, best_alpha
from prodemb.sweep import run_sweep
from tests.conftest import tiny_cfg


def sweep_half_and_one(cfg, tiny, tmp_path, **kwargs) -> dict:
    """α ∈ {0.5, 1} on the tiny data's category task, written to tmp_path/sweep."""
    return run_sweep(
        cfg,
        data_dir=str(tiny["work"] / "data"),
        tokenizer_path=str(tiny["work"] / "tok.model"),
        output=tmp_path / "sweep",
        tasks={"category": tiny["tasks"]["category"]},
        alphas=[0.5, 1.0],
        progress=False,
        **kwargs,
    )


def test_alpha_sweep_trains_one_encoder_per_alpha_and_picks_the_best(tiny, tmp_path):
    work = tiny["work"]
    cfg = tiny_cfg(work, "evaluate.samples=1", f"paths.runs_dir={tmp_path}/runs")
    client = mlflow.MlflowClient(tracking_uri=tiny["uri"], registry_uri=tiny["uri"])
    prod_before = client.get_model_version_by_alias("prodemb-encoder", "champion").version
    n_prod = len(client.search_model_versions("name='prodemb-encoder'"))
    summary = sweep_half_and_one(cfg, tiny, tmp_path)
    results = pd.read_csv(tmp_path / "sweep" / "results.csv")
    assert sorted(results.loc[results.method == "prodemb", "alpha"].unique()) == [0.5, 1.0]
    assert results.loc[results.method == "random", "alpha"].isna().all()
    assert [t["alpha"] for t in summary["trained"]] == [0.5, 1.0]
    best, scores = best_alpha(results)
    assert summary["best_alpha"] == best
    assert summary["mean_val_auc_by_alpha"]["0.5"] == pytest.approx(scores[0.5], abs=1e-6)
    assert (tmp_path / "sweep" / "plots" / "category_alpha.png").exists()
    assert "## α sweep" in (tmp_path / "sweep" / "report.md").read_text()
    # Registered under the sweep name: the production model's versions and champion are untouched.
    sweep_versions = client.search_model_versions("name='prodemb-encoder-sweep'")
    assert len(sweep_versions) >= 2
    assert client.get_model_version_by_alias("prodemb-encoder", "champion").version == prod_before
    assert len(client.search_model_versions("name='prodemb-encoder'")) == n_prod
    assert mlflow.get_run(summary["mlflow_run_id"]).data.metrics["best_alpha"] == best
    # Every registered version has its quality card, linked in its tags and logged to its run.
    for t in summary["trained"]:
        tags = client.get_model_version("prodemb-encoder-sweep", t["version"]).tags
        page = Path(tags["promotion.quality_card"])
        assert (
            page
            == Path(t["quality_card"])
            == tmp_path / "runs" / "cards" / "prodemb-encoder-sweep" / f"v{t['version']}" / "card.html"
        )
        html = page.read_text()
        assert 'id="auc"' in html and "<img" in html and "tfidf" in html
        assert tags["promotion.quality_card_artifact"] == f"runs:/{t['run_id']}/quality_card/card.html"
        assert "quality_card" in {a.path for a in client.list_artifacts(t["run_id"])}
    with pytest.raises(EvaluateInputError):
        run_sweep(
            cfg,
            data_dir=str(work / "data"),
            tokenizer_path=str(work / "tok.model"),
            tasks={"category": tiny["tasks"]["category"]},
            alphas=[1.5],
        )


def test_a_time_capped_sweep_trains_every_alpha_as_many_steps_as_the_first(tiny, tmp_path, monkeypatch):
    """Under train.max_minutes the first α's pace sets the steps; the later α train exactly as many even
    when the machine speeds up, as it does here: a clock that advances 0.1 s a read during the first
    α's training and 0.025 s after it (at equal wall time the second α would fit about 4× the steps)."""
    import prodemb.train

    clock = {"t": 0.0, "dt": 0.1}

    def fake_clock():
        clock["t"] += clock["dt"]
        return clock["t"]

    real_run_training = prodemb.train.run_training

    def run_training_then_faster(*args, **kwargs):
        try:
            return real_run_training(*args, **kwargs)
        finally:
            clock["dt"] = 0.025

    monkeypatch.setattr(prodemb.train, "_clock", fake_clock)
    monkeypatch.setattr(prodemb.train, "run_training", run_training_then_faster)
    work = tiny["work"]
    cfg = tiny_cfg(work, "evaluate.samples=1", "train.max_steps=500", "train.max_minutes=0.05", "promote.card=false")
    summary = sweep_half_and_one(cfg, tiny, tmp_path, log_mlflow=False)
    steps = [int(mlflow.get_run(t["run_id"]).data.metrics["train_steps"]) for t in summary["trained"]]
    assert 5 < steps[0] < 500 and steps == [steps[0]] * 2, steps


def test_equal_steps_hold_for_data_with_and_without_categories():
    from prodemb.config import load_config
    from prodemb.sweep import equal_steps

    train = equal_steps(load_config("local").train, 39)  # the default profile: its own no-category budget
    assert train.max_minutes is None
    assert train.for_data(3).max_steps == train.for_data(0).max_steps == 39
    assert train.for_data(0).batch_size == 1024  # the rest of the no-category settings stay
