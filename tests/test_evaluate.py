"""The evaluation job on a tiny encoder trained and registered in a real MLflow (SQLite) registry
(``tiny`` in tests/conftest.py): the two encoder methods end to end, the job in process and as a CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import mlflow
import numpy as np
import pandas as pd
import pytest

from prodemb.config import load_config
from prodemb.evaluate import run_evaluate
from prodemb.protocol import RESULT_COLUMNS, build_context, mean_validation_auc
from tests.conftest import REPO_ROOT, TINY, tiny_cfg


def test_encoder_methods_embed_like_the_registered_model(tiny):
    from prodemb.baselines import make_method

    cfg = tiny_cfg(tiny["work"])
    ctx = build_context(cfg, ["prodemb", "random"], model_uri="models:/prodemb-encoder@champion")
    # The Text-CNN baseline gets the model's own tokenizer, and the model's normalization language.
    assert open(ctx.tokenizer_path, "rb").read() == (tiny["work"] / "tok.model").read_bytes()
    assert ctx.language == "es" and ctx.tracking_uri == tiny["uri"]
    # ... and the model's architecture, even when the config names another profile (small: 64-d, 32 filters).
    other = build_context(
        load_config("local", overrides=[f"mlflow.tracking_uri={tiny['uri']}"]),
        ["textcnn"],
        model_uri="models:/prodemb-encoder@champion",
    )
    assert (other.model_cfg.embed_dim, other.model_cfg.n_filters, other.model_cfg.max_len) == (16, 8, 12)
    prod, rand = make_method("prodemb", ctx), make_method("random", ctx)
    assert prod.alpha == 0.9 and prod.model_ref == "prodemb-encoder/1" and rand.alpha is None
    table = pd.read_parquet(tiny["tasks"]["condition"]).head(50)
    got = prod.embed(table)
    want = mlflow.pyfunc.load_model("models:/prodemb-encoder/1").predict(table[["title"]])
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    assert got.shape == (50, 32) and got.dtype == np.float32
    r1 = rand.embed(table)
    r2 = make_method("random", build_context(cfg, ["random"])).embed(table)  # a fresh context: same seed
    assert r1.shape == got.shape and np.array_equal(r1, r2)
    assert not np.allclose(r1, got)
    assert {k: tuple(v.shape) for k, v in rand.encoder.state_dict().items()} == {
        k: tuple(v.shape) for k, v in prod.model.pyfunc.unwrap_python_model().encoder.state_dict().items()
    }
    # A bad URI fails clearly, before any evaluation.
    from prodemb.score import ModelNotFoundError

    with pytest.raises(ModelNotFoundError):
        build_context(cfg, ["prodemb"], model_uri="models:/prodemb-encoder@nope")


def test_run_evaluate_writes_results_plots_report_and_an_mlflow_run(tiny, tmp_path):
    cfg = tiny_cfg(tiny["work"])
    dirty = pd.read_parquet(tiny["tasks"]["free_shipping"]).head(300)
    dirty = dirty.astype({"label": object})
    dirty.loc[0, "title"] = "  "
    dirty.loc[1, "label"] = "sí"
    out = tmp_path / "out"
    summary = run_evaluate(
        cfg,
        output=out,
        tasks={"category": tiny["tasks"]["category"], "dirty": dirty},
        methods=["prodemb", "random"],
        progress=False,
    )
    results = pd.read_csv(out / "results.csv")
    assert list(results.columns) == RESULT_COLUMNS and len(results) == 2 * 2 * 2 * 2
    assert set(results["method"]) == {"prodemb", "random"}
    assert set(results["train_size"]) == {50, 360, 178}  # 298 valid rows
    assert results.loc[results.method == "prodemb", "alpha"].eq(0.9).all()
    assert results.loc[results.method == "prodemb", "model"].eq("prodemb-encoder/1").all()
    top = results[(results.task == "category") & (results.train_size == 360)]
    assert top["auc"].min() > 0.7  # both encoders carry the words
    assert summary["tasks"]["dirty"] == {
        "rows_in": 300,
        "rows_valid": 298,
        "rows_quarantined": 2,
        "positives": summary["tasks"]["dirty"]["positives"],
        "quarantined_empty_title": 1,
        "quarantined_invalid_label": 1,
    }
    assert pd.read_csv(out / "quarantine" / "dirty.csv")["reason"].tolist() == ["empty_title", "invalid_label"]
    assert summary["mean_val_auc_prodemb"] == pytest.approx(mean_validation_auc(results), abs=1e-6)
    assert {p.rsplit("/", 1)[1] for p in summary["plots"]} == {"category_methods.png", "dirty_methods.png"}
    report = (out / "report.md").read_text()
    assert "| category | 360 |" in report and "prodemb α=0.9" in report and "invalid_label 1" in report
    assert "| category | 50 |" in report and "| dirty | 178 |" in report  # the few-labels table
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left
    run = mlflow.get_run(summary["mlflow_run_id"])
    assert mlflow.get_experiment(run.info.experiment_id).name == "prodemb-eval"
    assert run.data.params["model_version"] == "prodemb-encoder/1"
    assert run.data.metrics["auc.category.prodemb_0_9"] == pytest.approx(top[top.method == "prodemb"]["auc"].mean())
    arts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id)}
    assert {"results.csv", "report.md", "summary.json", "plots", "quarantine"} <= arts


def _cli(*args, timeout=300):
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "jobs" / "evaluate.py"), "--json", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=str(REPO_ROOT),
    )


def test_evaluate_cli(tiny, tmp_path):
    uri, tasks = tiny["uri"], tiny["tasks"]
    common = [
        "--mlflow-uri",
        uri,
        "--no-progress",
        "--set",
        "evaluate.train_sizes=[40]",
        "--samples",
        "2",
        *sum((["--set", o] for o in TINY), []),
    ]
    proc = _cli(
        "--model-uri",
        "models:/prodemb-encoder@champion",
        "--task",
        f"condition={tasks['condition']}",
        "--methods",
        "prodemb,random",
        "--output",
        tmp_path / "out",
        "--no-mlflow",
        *common,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["model_version"] == "prodemb-encoder/1" and summary["rows"] == 2 * 2
    assert len(pd.read_csv(tmp_path / "out" / "results.csv")) == 4
    # Bad input: exit 2 with a clear message, nothing written.
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"title": ["a", "b"], "etiqueta": [0, 1]}).to_csv(bad, index=False)
    for args, msg in (
        (("--task", f"bad={bad}"), "lacks column"),
        (("--task", f"condition={tasks['condition']}", "--methods", "prodemb,word2vec"), "unknown method"),
        (
            ("--task", f"condition={tasks['condition']}", "--model-uri", "models:/prodemb-encoder@nope"),
            "cannot resolve model",
        ),
        (("--config-profile", "base"), "no tasks"),
    ):  # base: no evaluate.tasks configured
        proc = _cli(*args, "--output", tmp_path / "bad_out", *common)
        assert proc.returncode == 2 and msg in proc.stderr, (args, proc.returncode, proc.stderr[-2000:])
    assert not (tmp_path / "bad_out").exists()
