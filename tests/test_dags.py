"""The Airflow schedule: DAG structure, interval consolidation, atomic outputs, idempotent training, and the
``prodemb`` DAG end to end with ``dag.test()`` (real Airflow with a throw-away home and SQLite metadata,
real spark-submit against local[2], real MLflow and Feast), rerun of one interval included.

Airflow reads its configuration when it is imported, so everything that imports it runs in a subprocess
with its environment set; this process never imports airflow.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from tests.conftest import REPO_ROOT

DAGS = REPO_ROOT / "airflow_dags"
VENV_BIN = Path(sys.executable).parent

# Structure and the retrain gate, printed as JSON by a subprocess that loads the DagBag.
DAGBAG_PROBE = r"""
import json, sys
from datetime import datetime, timezone
from airflow.dag_processing.dagbag import DagBag

bag = DagBag(dag_folder=sys.argv[1])
out = {"import_errors": {k: str(v) for k, v in bag.import_errors.items()}, "dag_ids": sorted(bag.dag_ids)}
dag = bag.dags.get("prodemb")
if dag is not None:
    utc = timezone.utc
    gate = dag.get_task("retrain_due").python_callable
    cron = dag.get_task("retrain_due").op_kwargs["cron"]

    class Run:
        def __init__(self, conf): self.conf = conf

    out.update(
        timetable=type(dag.timetable).__name__, expression=dag.timetable.expression, catchup=dag.catchup,
        max_active_runs=dag.max_active_runs, start_date=dag.start_date.isoformat(),
        edges={t.task_id: sorted(t.downstream_task_ids) for t in dag.tasks},
        operators={t.task_id: type(t).__name__ for t in dag.tasks},
        trigger_rules={t.task_id: getattr(t.trigger_rule, "value", t.trigger_rule) for t in dag.tasks},
        queues={t.task_id: t.queue for t in dag.tasks}, pools={t.task_id: t.pool for t in dag.tasks},
        retries={t.task_id: t.retries for t in dag.tasks},
        conn_ids={t.task_id: t._conn_id for t in dag.tasks if hasattr(t, "_conn_id")},
        packages={t.task_id: t.packages for t in dag.tasks if hasattr(t, "application_args")},
        spark_args={t.task_id: t.application_args for t in dag.tasks if hasattr(t, "application_args")},
        spark_env={t.task_id: t.env_vars for t in dag.tasks if hasattr(t, "application_args")},
        commands={t.task_id: t.bash_command for t in dag.tasks
                  if type(t).__name__ != "MappedOperator" and hasattr(t, "bash_command")},
        mapped={t.task_id: t.expand_input.value["bash_command"] for t in dag.tasks
                if type(t).__name__ == "MappedOperator"},
        gate={"cron": cron,
              "monday": gate(cron, data_interval_end=datetime(2024, 1, 8, tzinfo=utc), dag_run=Run({})),
              "tuesday": gate(cron, data_interval_end=datetime(2024, 1, 9, tzinfo=utc), dag_run=Run({})),
              "forced": gate(cron, data_interval_end=datetime(2024, 1, 9, tzinfo=utc), dag_run=Run({"retrain": True})),
              "vetoed": gate(cron, data_interval_end=datetime(2024, 1, 8, tzinfo=utc), dag_run=Run({"retrain": False})),
              "strings": [gate(cron, data_interval_end=datetime(2024, 1, 8, tzinfo=utc), dag_run=Run({"retrain": v}))
                          for v in ("false", "FALSE", "0", "no", " No ", "true", "1", "Yes", 0, 1)]},
    )
    try:
        gate(cron, data_interval_end=datetime(2024, 1, 8, tzinfo=utc), dag_run=Run({"retrain": "nope"}))
        out["bad_retrain"] = None
    except Exception as exc:
        out["bad_retrain"] = f"{type(exc).__name__}: {exc}"
    import os
    os.environ.pop("AIRFLOW_CONN_SPARK_DEFAULT", None)
    try:
        dag.get_task("sessionize")._pre_execute_hook({})
        out["missing_connection"] = None
    except Exception as exc:
        out["missing_connection"] = f"{type(exc).__name__}: {exc}"
print("PROBE " + json.dumps(out, default=str))
"""

# One dag.test() run; prints the run's state and every task's state.
DAG_TEST_DRIVER = r"""
import json, sys
from datetime import datetime, timezone
from airflow.dag_processing.dagbag import DagBag

bag = DagBag(dag_folder=sys.argv[1])
assert not bag.import_errors, bag.import_errors
dag = bag.dags.get("prodemb")
run = dag.test(logical_date=datetime.fromisoformat(sys.argv[2]).replace(tzinfo=timezone.utc),
               run_conf=json.loads(sys.argv[3]))
print("RESULT " + json.dumps({"state": str(run.state),
                              "interval": [str(run.data_interval_start), str(run.data_interval_end)],
                              "tasks": {ti.task_id: str(ti.state) for ti in run.get_task_instances()}}))
"""


def airflow_env(home: Path, overrides: list[str], profile: str = "local") -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW_CONN_SPARK_DEFAULT": json.dumps({"conn_type": "spark", "host": "local[2]"}),
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",  # spark-submit, airflow
            "PRODEMB_PROFILE": profile,
            "PRODEMB_OVERRIDES": "\n".join(overrides),
            "SPARK_LOCAL_IP": "127.0.0.1",
            "TZ": "UTC",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def tiny_run_overrides(tasks: Path, *, vocab: int, steps: int, batch: int, health: int, labels: int) -> list[str]:
    """Overrides that make one DAG run small: no retries, a tiny tokenizer and training, three fast
    evaluation methods and the gate on the generator's task tables under ``tasks``."""
    return [
        "schedule.retries=0",
        "model.profile=small",
        f"tokenizer.vocab_size={vocab}",
        f"train.max_steps={steps}",
        f"train.batch_size={batch}",
        f"train.health_sample={health}",
        "evaluate.methods=[prodemb, random, tfidf]",
        f"evaluate.train_sizes=[{labels}]",
        "evaluate.samples=1",
        f"evaluate.tasks={{condition: {tasks}/condition.parquet, free_shipping: {tasks}/free_shipping.parquet}}",
        f"promote.train_size={labels}",
        "promote.samples=1",
    ]


def run_logged(cmd: list[str], env: dict, log: Path, timeout: int) -> str:
    with open(log, "w") as fh:
        proc = subprocess.run(cmd, env=env, cwd=REPO_ROOT, stdout=fh, stderr=subprocess.STDOUT, timeout=timeout)
    text = log.read_text(errors="replace")
    assert proc.returncode == 0, f"{cmd[:3]} exited {proc.returncode}; log tail:\n{text[-6000:]}"
    return text


def tagged_json(text: str, tag: str) -> dict:
    lines = [line for line in text.splitlines() if line.startswith(tag + " ")]
    assert lines, f"no {tag} line in the output:\n{text[-6000:]}"
    return json.loads(lines[-1][len(tag) + 1 :])


def probe(tmp_path: Path, profile: str, overrides: list[str] = ()) -> dict:
    home = tmp_path / f"airflow-{profile}"
    home.mkdir()
    env = airflow_env(home, list(overrides), profile)
    text = run_logged([sys.executable, "-c", DAGBAG_PROBE, str(DAGS)], env, tmp_path / f"probe-{profile}.log", 300)
    return tagged_json(text, "PROBE")


# --- the DAG's structure ---------------------------------------------------------------------------

EXPECTED_EDGES = {
    "sessionize": ["consolidate"],
    "consolidate": ["retrain_due", "score"],
    "retrain_due": ["train_tokenizer"],
    "train_tokenizer": ["train"],
    "train": ["evaluate", "promote"],  # evaluate is a reporting leaf: its failure blocks no scoring
    "evaluate": [],
    "promote": ["score"],
    "score": ["publish"],
    "publish": [],
}


def test_dagbag_loads_with_the_expected_graph(tmp_path):
    out = probe(tmp_path, "local", [f"paths.data_dir={tmp_path}/data"])
    assert out["import_errors"] == {}
    assert out["dag_ids"] == ["prodemb"]
    assert out["timetable"] == "CronDataIntervalTimetable" and out["expression"] == "0 0 * * *"  # daily
    assert out["catchup"] is False and out["max_active_runs"] == 1
    assert out["start_date"].startswith("2024-01-01T00:00:00")
    assert out["edges"] == EXPECTED_EDGES
    assert (
        out["operators"]["sessionize"]
        == out["operators"]["consolidate"]
        == out["operators"]["score"]
        == "SparkSubmitOperator"
    )
    assert {out["operators"][t] for t in ("train_tokenizer", "train", "evaluate", "promote", "publish")} == {
        "BashOperator"
    }
    assert out["operators"]["retrain_due"] == "ShortCircuitOperator"
    # score runs once the training branch is over, however it ended; everything else needs success.
    assert out["trigger_rules"]["score"] == "all_done_min_one_success"
    assert {r for t, r in out["trigger_rules"].items() if t != "score"} == {"all_success"}
    assert set(out["conn_ids"].values()) == {"spark_default"}
    # Interval-scoped arguments come from the run's data interval; paths from the profile.
    assert (
        out["spark_args"]["sessionize"][out["spark_args"]["sessionize"].index("--start") + 1]
        == "{{ data_interval_start.isoformat() }}"
    )
    assert (
        out["spark_args"]["sessionize"][out["spark_args"]["sessionize"].index("--output") + 1]
        == f"{tmp_path}/data/intervals"
    )
    assert '--run-key "$PRODEMB_RUN_KEY"' in out["commands"]["train"]
    assert "--config-profile local --set " in out["commands"]["train"]
    assert "models:/prodemb-encoder@candidate" in out["commands"]["evaluate"]
    evaluate = out["commands"]["evaluate"]
    assert "--keep-going" in evaluate and '/eval/"$PRODEMB_INTERVAL"' in evaluate
    # Daily scoring, retraining on schedule.retrain_cron ("@daily" locally), forced or vetoed by run conf
    # (JSON booleans, 0/1 or true/false/1/0/yes/no strings in any case; anything else fails the task).
    assert out["gate"] == {
        "cron": "@daily",
        "monday": True,
        "tuesday": True,
        "forced": True,
        "vetoed": False,
        "strings": [False] * 5 + [True] * 3 + [False, True],
    }
    assert (
        out["bad_retrain"] == "ValueError: run conf \"retrain\" must be a boolean (true/false, 1/0, yes/no), got 'nope'"
    )
    assert out["packages"]["sessionize"] is None and out["queues"]["train"] == "default"
    # PySpark runs this interpreter; the venv's spark-submit is first on PATH.
    env = out["spark_env"]["sessionize"]
    assert env["PYSPARK_PYTHON"] == env["PYSPARK_DRIVER_PYTHON"] == sys.executable
    assert env["PATH"].split(os.pathsep)[0] == str(VENV_BIN)
    # Without the connection the provider would submit to yarn: the Spark tasks stop with a clear message.
    assert out["missing_connection"].startswith("RuntimeError: Airflow connection 'spark_default' is not defined")


def test_cluster_profile_sends_train_to_the_gpu_queue_and_retrains_weekly(tmp_path):
    out = probe(tmp_path, "cluster")
    assert out["import_errors"] == {} and out["edges"] == EXPECTED_EDGES
    assert out["queues"]["train"] == "gpu" and out["pools"]["train"] == "gpu"
    assert out["queues"]["sessionize"] == "default"
    assert out["retries"]["train"] == 1 and out["retries"]["sessionize"] == 2
    assert out["gate"]["monday"] is True and out["gate"]["tuesday"] is False
    assert out["packages"]["sessionize"].startswith("io.delta:delta-spark_")  # Delta jars via spark-submit
    args = out["spark_args"]["sessionize"]
    assert args[args.index("--input") + 1] == "s3a://prodemb-lake/raw/clicks"
    assert args[args.index("--output") + 1] == "s3a://prodemb-lake/tables/intervals"
    assert out["spark_env"]["sessionize"] == {
        "PYSPARK_PYTHON": "/opt/prodemb/venv/bin/python",
        "PYSPARK_DRIVER_PYTHON": "/opt/prodemb/venv/bin/python",
    }
    # evaluate and promote need tasks: the profile lists tables on the shared volume.
    from prodemb.config import load_config

    assert load_config("cluster").evaluate.tasks == {
        "condition": "/mnt/prodemb/tasks/condition.parquet",
        "free_shipping": "/mnt/prodemb/tasks/free_shipping.parquet",
    }


def test_with_sites_train_evaluate_and_promote_map_over_them(tmp_path):
    """One model per site: the training branch is one mapped task instance per configured site (dynamic
    task mapping), each training, evaluating and promoting that site's registered model; the graph stays."""
    out = probe(tmp_path, "local", [f"paths.data_dir={tmp_path}/data", "sites=[MLA, MLB]"])
    assert out["import_errors"] == {} and out["edges"] == EXPECTED_EDGES
    assert set(out["mapped"]) == {"train", "evaluate", "promote"}
    train, evaluate, promote = (out["mapped"][t] for t in ("train", "evaluate", "promote"))
    assert [("--site MLA" in c, "--site MLB" in c) for c in train] == [(True, False), (False, True)]
    assert all('--run-key "$PRODEMB_RUN_KEY"' in c and "--json" in c for c in train)
    assert [
        "models:/prodemb-encoder-MLA@candidate" in evaluate[0],
        "models:/prodemb-encoder-MLB@candidate" in evaluate[1],
    ] == [True, True]
    assert ["--model-name prodemb-encoder-MLA" in promote[0], "--model-name prodemb-encoder-MLB" in promote[1]] == [
        True,
        True,
    ]
    # score and publish stay single tasks: score runs every site's champion, publish keys by site.
    assert out["operators"]["score"] == "SparkSubmitOperator" and "publish" in out["commands"]


def test_unknown_task_in_task_retries_is_an_import_error(tmp_path):
    out = probe(tmp_path, "local", ["schedule.task_retries={trian: 0}"])
    assert "prodemb" not in out["dag_ids"]
    assert any("trian" in err for err in out["import_errors"].values())


# --- consolidation of interval tables ---------------------------------------------------------------


def test_daily_intervals_consolidate_to_the_full_run(spark, tmp_path):
    from prodemb.config import SessionsConfig
    from prodemb.sessions import run_consolidate, run_sessionize
    from prodemb.synth import SynthSpec, generate
    from prodemb.tables import read_table

    generate(SynthSpec(n_clicks=5000, n_products=300, seed=5, start="2024-01-01", days=2), tmp_path / "synth")
    clicks, cfg = str(tmp_path / "synth" / "clicks"), SessionsConfig()
    run_sessionize(spark, clicks, "clicks", str(tmp_path / "full"), cfg)
    start = datetime(2023, 12, 31, tzinfo=timezone.utc)  # a day before the data, and one after it
    for day in range(4):
        run_sessionize(
            spark,
            clicks,
            "clicks",
            str(tmp_path / "daily" / "intervals"),
            cfg,
            start=start + timedelta(days=day),
            end=start + timedelta(days=day + 1),
        )
    report = run_consolidate(spark, str(tmp_path / "daily" / "intervals"), str(tmp_path / "daily"))
    assert report["intervals"] == ["20240101T000000", "20240102T000000"]  # the intervals that have data

    def rows(root, table):
        df = read_table(spark, str(tmp_path / root / table))
        return sorted(tuple(r) for r in df.select(*sorted(df.columns)).collect())

    full_catalog = rows("full", "catalog")
    assert len(full_catalog) > 250
    assert rows("daily", "catalog") == full_catalog  # one row per product, same title/counts/times
    assert rows("daily", "pairs") == rows("full", "pairs")
    assert rows("daily", "sessions") == rows("full", "sessions")
    assert report["rows"]["catalog"] == len(full_catalog)
    assert json.loads((tmp_path / "daily" / "_consolidated.json").read_text())["intervals"] == report["intervals"]


# --- training is idempotent per run key ---------------------------------------------------------------


def test_train_run_key_reuses_the_registered_version(spark, tmp_path):
    import mlflow

    from prodemb.config import SessionsConfig, load_config
    from prodemb.registry import ALIASES_SET_TAG
    from prodemb.sessions import run_sessionize
    from prodemb.synth import SynthSpec, generate
    from prodemb.tokenizer import train_from_catalog
    from prodemb.train import run_training

    generate(SynthSpec(n_clicks=8000, n_products=300, seed=2), tmp_path / "synth")
    run_sessionize(spark, str(tmp_path / "synth" / "clicks"), "clicks", str(tmp_path / "data"), SessionsConfig())
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    cfg = load_config(
        "local",
        [
            f"mlflow.tracking_uri={uri}",
            "model.profile=small",
            "tokenizer.vocab_size=500",
            "train.max_steps=3",
            "train.batch_size=128",
            "train.health_sample=300",
        ],
    )
    train_from_catalog(str(tmp_path / "data"), tmp_path / "tok.model", cfg.tokenizer)
    args = (str(tmp_path / "data"), str(tmp_path / "tok.model"), cfg)
    first = run_training(*args, progress=False, run_key="prodemb/20240101T000000-20240102T000000")
    assert first["reused"] is False and first["model_version"] == "1"
    again = run_training(*args, progress=False, run_key="prodemb/20240101T000000-20240102T000000")
    assert again["reused"] is True and again["model_version"] == "1" and again["run_id"] == first["run_id"]
    other = run_training(*args, progress=False, run_key="prodemb/20240102T000000-20240103T000000")
    assert other["reused"] is False and other["model_version"] == "2"
    client = mlflow.MlflowClient(uri)
    assert str(client.get_model_version_by_alias("prodemb-encoder", "candidate").version) == "2"
    # Reusing version 1 leaves the aliases where they are (candidate stays on 2).
    reused = run_training(*args, progress=False, run_key="prodemb/20240101T000000-20240102T000000")
    assert reused["model_version"] == "1"
    assert str(client.get_model_version_by_alias("prodemb-encoder", "candidate").version) == "2"
    assert len(client.search_model_versions("name = 'prodemb-encoder'")) == 2
    # A job killed after registering version 2 but before tagging it and setting its aliases: the rerun
    # finds the version through its run, restores the tags from the run (health=ok, which the promotion
    # gate needs) and completes the aliases.
    tags = client.get_model_version("prodemb-encoder", "2").tags
    assert tags["health"] == "ok" and float(tags["dim_std_mean"]) > 0 and len(tags["content_sha256"]) == 64
    for key in ("health", "dim_std_mean", "content_sha256", "run_key", ALIASES_SET_TAG):
        client.delete_model_version_tag("prodemb-encoder", "2", key)
    client.set_registered_model_alias("prodemb-encoder", "candidate", "1")
    assert run_training(*args, progress=False, run_key="prodemb/20240102T000000-20240103T000000")["reused"] is True
    assert str(client.get_model_version_by_alias("prodemb-encoder", "candidate").version) == "2"
    assert client.get_model_version("prodemb-encoder", "2").tags == tags
    # Only the health tag lost (aliases already set): it comes back too, the aliases stay.
    client.delete_model_version_tag("prodemb-encoder", "2", "health")
    client.set_registered_model_alias("prodemb-encoder", "candidate", "1")
    assert run_training(*args, progress=False, run_key="prodemb/20240102T000000-20240103T000000")["reused"] is True
    assert client.get_model_version("prodemb-encoder", "2").tags == tags
    assert str(client.get_model_version_by_alias("prodemb-encoder", "candidate").version) == "1"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "jobs" / "train.py"),
            "--data",
            args[0],
            "--tokenizer",
            args[1],
            "--mlflow-uri",
            uri,
            "--run-key",
            "bad key'",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "run key" in proc.stderr


# --- end to end: dag.test() on tiny generated data ----------------------------------------------------


def snapshot(work: Path, interval: str) -> dict:
    """What one interval's run leaves behind, read without Spark or Airflow."""

    def count(path: Path) -> int:
        return ds.dataset(os.path.realpath(path), format="parquet").count_rows()

    part = work / "data" / "intervals" / "sessions" / f"interval={interval}"
    sessions = ds.dataset(os.path.realpath(part), format="parquet").to_table(columns=["session_id"])
    with sqlite3.connect(work / "mlflow.db") as db:
        versions = db.execute("SELECT version FROM model_versions WHERE name = 'prodemb-encoder'").fetchall()
        keys = db.execute("SELECT version, value FROM model_version_tags WHERE key = 'run_key'").fetchall()
        aliases = dict(
            db.execute("SELECT alias, version FROM registered_model_aliases WHERE name = 'prodemb-encoder'").fetchall()
        )
    with sqlite3.connect(work / "feature_repo" / "data" / "online_store.db") as db:
        table = db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE '%embeddings%'"
        ).fetchone()[0]
        online = db.execute(f'SELECT COUNT(*), COUNT(DISTINCT entity_key) FROM "{table}"').fetchone()
    emb = ds.dataset(os.path.realpath(work / "data" / "embeddings"), format="parquet").to_table(
        columns=["product_id", "model_version"]
    )
    tok = work / "runs" / "tokenizers" / interval / "tokenizer.model"
    return {
        "session_ids": sorted(sessions.column("session_id").to_pylist()),
        "partition_version": os.readlink(part),
        "pairs_partition": count(work / "data" / "intervals" / "pairs" / f"interval={interval}"),
        "catalog": count(work / "data" / "catalog"),
        "pairs": count(work / "data" / "pairs"),
        "intervals": json.loads((work / "data" / "_consolidated.json").read_text())["intervals"],
        "model_versions": sorted(v for (v,) in versions),
        "run_keys": sorted(keys),
        "aliases": aliases,
        "embeddings": emb.num_rows,
        "embedding_versions": sorted(set(emb.column("model_version").to_pylist())),
        "online_rows": online[0],
        "online_products": online[1],
        "tokenizer_sha256": hashlib.sha256(tok.read_bytes()).hexdigest() if tok.exists() else None,
    }


@pytest.mark.slow
def test_dag_end_to_end_rerun_is_idempotent_and_a_failed_training_still_scores_with_the_champion(tmp_path):
    from prodemb.synth import SynthSpec, generate

    work = tmp_path / "work"
    generate(SynthSpec(n_clicks=20_000, n_products=500, seed=11, start="2024-01-01", days=3), work / "synth")
    shutil.copytree(REPO_ROOT / "feature_repo", work / "feature_repo", ignore=shutil.ignore_patterns("data"))
    tasks = work / "synth" / "tasks"
    overrides = [
        f"paths.data_dir={work}/data",
        f"paths.runs_dir={work}/runs",
        f"paths.synth_dir={work}/synth",
        f"mlflow.tracking_uri=sqlite:///{work}/mlflow.db",
        f"feast.repo_dir={work}/feature_repo",
        *tiny_run_overrides(tasks, vocab=800, steps=20, batch=256, health=500, labels=50),
        "spark.conf.spark.sql.shuffle.partitions=4",
        "spark.conf.spark.driver.memory=1g",
        # Short-lived JVMs: C1 only, as conf/cluster-local.yaml's (~2 s less per Spark task here).
        "spark.conf.spark.driver.extraJavaOptions=-XX:TieredStopAtLevel=1 -XX:+UseSerialGC",
    ]
    home = tmp_path / "airflow"
    home.mkdir()
    env = airflow_env(home, overrides)
    run_logged([str(VENV_BIN / "airflow"), "db", "migrate"], env, tmp_path / "migrate.log", 300)

    def dag_test(logical_date: str, conf: dict, name: str, more: tuple[str, ...] = ()) -> dict:
        run_env = {**env, "PRODEMB_OVERRIDES": "\n".join([*overrides, *more])}
        text = run_logged(
            [sys.executable, "-c", DAG_TEST_DRIVER, str(DAGS), logical_date, json.dumps(conf)],
            run_env,
            tmp_path / f"{name}.log",
            900,
        )
        return tagged_json(text, "RESULT")

    # Run for logical date 2024-01-03: the data interval [2024-01-02, 2024-01-03).
    first = dag_test("2024-01-03", {}, "run-1")
    assert first["state"] == "success", first
    assert first["interval"][0].startswith("2024-01-02") and first["interval"][1].startswith("2024-01-03")
    assert set(first["tasks"].values()) == {"success"} and len(first["tasks"]) == 9
    a = snapshot(work, "20240102T000000")
    assert len(a["session_ids"]) > 100 and a["pairs_partition"] > 0
    assert a["intervals"] == ["20240102T000000"]
    assert a["model_versions"] == [1] and a["run_keys"] == [(1, "prodemb/20240102T000000-20240103T000000")]
    assert a["aliases"] == {"candidate": 1, "champion": 1}  # the first version is both
    assert a["embeddings"] == a["catalog"] > 100 and a["embedding_versions"] == ["1"]
    assert a["online_products"] == a["catalog"] and a["online_rows"] == 2 * a["catalog"]  # embedding + version
    assert a["tokenizer_sha256"] is not None
    results = work / "runs" / "eval" / "20240102T000000" / "results.csv"
    assert results.exists() and results.read_text().count("\n") > 1

    # Rerun of the same interval: every output is rewritten, nothing is duplicated or re-registered.
    again = dag_test("2024-01-03", {}, "run-2")
    assert again["state"] == "success" and set(again["tasks"].values()) == {"success"}
    b = snapshot(work, "20240102T000000")
    assert b["partition_version"] != a["partition_version"]  # the partition was replaced, not skipped
    assert {k: v for k, v in b.items() if k != "partition_version"} == {
        k: v for k, v in a.items() if k != "partition_version"
    }
    assert results.exists()

    # The next interval, retraining forced, and the training fails for real (its health check refuses the
    # encoder: exit 3, nothing registered). The champion in place still scores and publishes the two days.
    nxt = dag_test("2024-01-04", {"retrain": True}, "run-3", ("train.min_dim_std_ratio=1000",))
    assert nxt["state"] == "failed", nxt
    assert {t: s for t, s in nxt["tasks"].items() if s != "success"} == {
        "train": "failed",
        "evaluate": "upstream_failed",
        "promote": "upstream_failed",
    }
    c = snapshot(work, "20240103T000000")
    assert c["intervals"] == ["20240102T000000", "20240103T000000"]
    assert c["catalog"] > a["catalog"] and c["pairs"] > a["pairs"]  # the second day brought new products
    assert c["model_versions"] == [1] and c["aliases"] == {"candidate": 1, "champion": 1}
    assert c["tokenizer_sha256"] is not None  # train_tokenizer ran, train failed
    assert c["embeddings"] == c["catalog"] and c["embedding_versions"] == ["1"]
    assert c["online_products"] == c["catalog"]
    assert "collapsed" in (tmp_path / "run-3.log").read_text()
