"""Scoring and publishing killed mid-write, a corrupt model artifact, a lost Feast registry."""

from __future__ import annotations

import json
import shutil
import sqlite3
from datetime import datetime, timezone

import pytest

from prodemb.score import ModelNotFoundError, run_score
from prodemb.tables import table_version
from tests.conftest import REPO_ROOT
from tests.faults.conftest import QUICK_JVM, assert_killed, assert_one_line_error, rows, run_job, unfinished_versions

T1, T2 = datetime(2025, 1, 1, tzinfo=timezone.utc), datetime(2025, 2, 1, tzinfo=timezone.utc)


def test_a_killed_scoring_leaves_the_previous_embeddings_and_a_rerun_converges(spark, world, tmp_path):
    out = tmp_path / "embeddings"
    run_score(spark, str(world["data"]), world["model"], str(out), tracking_uri=world["uri"], scored_at=T1)
    before = rows(spark, out)
    assert_killed(
        run_job(
            "score",
            "--data",
            str(world["data"]),
            "--model-uri",
            world["model"],
            "--output",
            str(out),
            "--mlflow-uri",
            world["uri"],
            *QUICK_JVM,
            faults="tables.parquet_written",
        )
    )
    assert rows(spark, out) == before and unfinished_versions(tmp_path)
    # The rerun, with the first scoring's time, gives exactly the undisturbed first scoring's rows.
    run_score(spark, str(world["data"]), world["model"], str(out), tracking_uri=world["uri"], scored_at=T1)
    assert rows(spark, out) == before and unfinished_versions(tmp_path) == []


def online_rows(repo) -> list[tuple]:
    with sqlite3.connect(repo / "data" / "online_store.db") as db:
        table = db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE '%embeddings%'"
        ).fetchone()[0]
        return sorted(db.execute(f'SELECT entity_key, feature_name, value, event_ts FROM "{table}"').fetchall())


def test_a_publish_killed_inside_its_transaction_changes_nothing_online(spark, world, tmp_path):
    from prodemb.features import run_publish

    data = tmp_path / "data"
    shutil.copytree(world["data"] / "catalog", data / "catalog", symlinks=True)
    shutil.copytree(world["data"] / "_versions" / "catalog", data / "_versions" / "catalog", symlinks=True)
    run_score(spark, str(data), world["model"], None, tracking_uri=world["uri"], scored_at=T1)
    repo, undisturbed = tmp_path / "repo", tmp_path / "repo-undisturbed"
    for r in (repo, undisturbed):
        shutil.copytree(REPO_ROOT / "feature_repo", r, ignore=shutil.ignore_patterns("data"))
    run_publish(str(data), repo_dir=repo, progress=False)
    before = online_rows(repo)
    run_score(spark, str(data), world["model"], None, tracking_uri=world["uri"], scored_at=T2)  # newer vectors
    # Killed after its batch was written, inside the one transaction: the store keeps the previous rows.
    assert_killed(
        run_job(
            "publish", "--data", str(data), "--set", f"feast.repo_dir={repo}", "--no-progress", faults="publish.batch"
        )
    )
    assert online_rows(repo) == before
    run_publish(str(data), repo_dir=repo, progress=False)
    run_publish(str(data), repo_dir=undisturbed, progress=False)
    after = online_rows(repo)
    assert after != before and after == online_rows(undisturbed)  # converged, nothing doubled


def test_a_corrupt_model_artifact_is_refused_before_any_write(spark, world, tmp_path):
    import mlflow

    out = tmp_path / "embeddings"
    run_score(spark, str(world["data"]), world["model"], str(out), tracking_uri=world["uri"], scored_at=T1)
    version = table_version(str(out))
    mlflow.set_tracking_uri(world["uri"])
    model = mlflow.artifacts.download_artifacts(artifact_uri=world["model"], dst_path=str(tmp_path / "model"))
    weights = next(p for p in (tmp_path / "model").rglob("encoder.pt"))
    weights.write_bytes(weights.read_bytes()[:1000])  # truncated, as by a failed upload
    with pytest.raises(ModelNotFoundError, match="cannot be loaded"):
        run_score(spark, str(world["data"]), model, str(out), tracking_uri=world["uri"], scored_at=T2)
    assert table_version(str(out)) == version


def test_a_lost_feast_registry_is_a_clear_error_and_publishing_rebuilds_it(spark, world, tmp_path):
    from prodemb.features import feature_store, online_vectors, run_publish

    data = tmp_path / "data"
    shutil.copytree(world["data"] / "catalog", data / "catalog", symlinks=True)
    shutil.copytree(world["data"] / "_versions" / "catalog", data / "_versions" / "catalog", symlinks=True)
    run_score(spark, str(data), world["model"], None, tracking_uri=world["uri"], scored_at=T1)
    repo = tmp_path / "repo"
    shutil.copytree(REPO_ROOT / "feature_repo", repo, ignore=shutil.ignore_patterns("data"))
    run_publish(str(data), repo_dir=repo, progress=False)
    pid = rows(spark, data / "catalog")[0][4]  # sorted columns: product_id is 5th
    store = feature_store(repo)
    before = online_vectors(store, [pid])[pid]["embedding"]
    (repo / "data" / "registry.db").unlink()
    proc = run_job("lookup", "--product-id", pid, "--set", f"feast.repo_dir={repo}")
    assert proc.returncode == 2
    assert_one_line_error(proc, "lookup", "not in the registry", "jobs/publish.py")
    run_publish(str(data), repo_dir=repo, progress=False)
    store.refresh_registry()
    assert (online_vectors(store, [pid])[pid]["embedding"] == before).all()
    # A job finds the rebuilt repo through Feast's own variables too (the Feast CLI's conventions).
    proc = run_job(
        "lookup",
        "--product-id",
        pid,
        "--json",
        cwd=tmp_path,
        env={"FEATURE_REPO_DIR_ENV_VAR": "repo", "FEAST_FS_YAML_FILE_PATH": "repo/feature_store.yaml"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)[0]["embedding"] == pytest.approx(before.tolist())
