"""Training killed after registering, two trainings racing on one run key, a write the disk refuses."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import mlflow

from prodemb.tokenizer import train_from_catalog
from tests.conftest import REPO_ROOT
from tests.faults.conftest import SMALL_TRAINING, assert_killed, assert_one_line_error, run_job


def _train_args(world, uri: str, key: str) -> list[str]:
    return [
        "--data",
        str(world["data"]),
        "--tokenizer",
        str(world["tokenizer"]),
        "--mlflow-uri",
        uri,
        "--run-key",
        key,
        "--no-progress",
        *SMALL_TRAINING,
    ]


def _versions(uri: str) -> dict[str, dict]:
    client = mlflow.MlflowClient(uri, registry_uri=uri)
    return {str(v.version): v.tags for v in client.search_model_versions("name = 'prodemb-encoder'")}


def _aliases(uri: str) -> dict[str, str]:
    client = mlflow.MlflowClient(uri, registry_uri=uri)
    return {k: str(v) for k, v in client.get_registered_model("prodemb-encoder").aliases.items()}


def test_killed_after_registering_the_rerun_completes_that_version(world, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    assert_killed(run_job("train", *_train_args(world, uri, "prodemb/k1"), faults="train.registered"))
    assert list(_versions(uri)) == ["1"] and "health" not in _versions(uri)["1"] and _aliases(uri) == {}
    rerun = run_job("train", *_train_args(world, uri, "prodemb/k1"), "--json")
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    summary = json.loads(rerun.stdout.strip().splitlines()[-1])
    assert summary["reused"] is True and summary["model_version"] == "1"  # nothing trained twice
    tags = _versions(uri)["1"]
    assert list(_versions(uri)) == ["1"] and tags["health"] == "ok" and tags["run_key"] == "prodemb/k1"
    assert _aliases(uri) == {"candidate": "1", "champion": "1"}


def test_two_trainings_racing_on_one_run_key_leave_one_version(world, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    # The store exists before the runs, as in any deployment: MLflow's schema migrations of a new SQLite file
    # race when two processes create it at once. The experiment and the registered model do not exist yet.
    mlflow.MlflowClient(uri, registry_uri=uri).search_experiments()
    cmd = [sys.executable, str(REPO_ROOT / "jobs" / "train.py"), *_train_args(world, uri, "prodemb/k2"), "--json"]
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"}
    procs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e[-2000:] for _, e in outs]
    summaries = [json.loads(o.strip().splitlines()[-1]) for o, _ in outs]
    versions = _versions(uri)
    assert list(versions) == ["1"] and [s["model_version"] for s in summaries] == ["1", "1"]
    # Both passed the run-key check before either registered: the second registered version 2, found version 1
    # first under the key, deleted its own and reported version 1 (as a rerun would).
    assert sorted(str(s.get("raced")) for s in summaries) == ["2", "None"], summaries
    assert versions["1"]["run_key"] == "prodemb/k2" and _aliases(uri) == {"candidate": "1", "champion": "1"}


def test_a_refused_write_is_one_line_and_the_previous_tokenizer_stays(world, tmp_path):
    out = tmp_path / "tok.model"
    train_from_catalog(str(world["data"]), out, world["cfg"].tokenizer)
    before = hashlib.sha256(out.read_bytes()).hexdigest()
    proc = run_job(
        "train_tokenizer",
        "--data",
        str(world["data"]),
        "--output",
        str(out),
        "--vocab-size",
        "300",
        faults="fs.write:error",
    )
    assert proc.returncode == 1
    assert_one_line_error(proc, "train_tokenizer", "No space left on device")
    assert hashlib.sha256(out.read_bytes()).hexdigest() == before
    assert sorted(os.listdir(tmp_path)) == [".tok.model.lock", "tok.model"]  # no temp file left


def test_an_unreachable_tracking_server_stops_training_before_it_trains_in_one_line(world, tmp_path):
    # A million steps: a job that trained before it talked to the server would outlast the 120 s timeout.
    proc = run_job(
        "train",
        *_train_args(world, "http://127.0.0.1:9", "prodemb/k3"),
        "--max-steps",
        "1000000",
        env={"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"},
        timeout=120,
    )
    assert proc.returncode == 1
    assert_one_line_error(proc, "train", "127.0.0.1:9")
