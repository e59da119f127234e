"""The pipeline on a real cluster on this machine (profile ``cluster-local``, prodemb/cluster.py): a Spark
standalone master and 2 workers, Redis, an MLflow tracking server, and Delta tables on ``s3a://`` URIs of
an S3-compatible store (moto's server).

* the ``prodemb`` DAG with ``dag.test()`` under that profile: sessionize, consolidate and score through
  ``SparkSubmitOperator`` on the master, sessionize as the cluster contract has it (``spark-submit
  --master spark://127.0.0.1:7077 jobs/sessionize.py --config-profile cluster-local --input URI
  --input-format clicks --output URI --format delta``, plus the interval's ``--start``/``--end`` and the
  profile's ``--conf`` settings), with no ``--packages``: Delta and s3a come from cluster-up's
  spark-defaults, as for a user who types the contract; the executors are separate JVMs and Python
  workers, which get the model and the package shipped; training logged and registered over HTTP, publish into Redis;
* a consumer with nothing but the Feast SDK: ``get_online_features`` from Redis equals the registered
  model's vectors for the products' titles, and historical retrieval goes through the Spark offline store.

Services are started by the test (or an already running ``make cluster-up`` is used) and stopped after.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from prodemb import cluster, fs
from tests.conftest import REPO_ROOT
from tests.test_dags import DAG_TEST_DRIVER, DAGS, VENV_BIN, airflow_env, run_logged, tagged_json, tiny_run_overrides

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def services(tmp_path_factory):
    """The cluster of `make cluster-up` if it is running, else one started (and stopped) here."""
    running = cluster.status(cluster.DEFAULT_STATE_DIR)
    if all(s["pid"] and s["answering"] for s in running.values()):
        yield {"state": cluster.DEFAULT_STATE_DIR, "started_here": False}
        return
    state = tmp_path_factory.mktemp("cluster")
    # cluster-up writes its Delta/s3a spark-defaults into SPARK_CONF_DIR: a copy of the venv's conf folder as
    # make venv left it (logging, the local block, the class-data archive), so the venv's pyspark (and every
    # later Spark test) is left as it was.
    from prodemb.spark import spark_conf_dir

    saved = os.environ.get("SPARK_CONF_DIR")
    conf = tmp_path_factory.mktemp("spark-conf")
    shutil.copytree(spark_conf_dir(), conf, dirs_exist_ok=True)
    os.environ["SPARK_CONF_DIR"] = str(conf)
    try:
        cluster.up(state)
        try:
            yield {"state": state, "started_here": True}
        finally:
            cluster.down(state)
    finally:
        if saved is None:
            os.environ.pop("SPARK_CONF_DIR", None)
        else:
            os.environ["SPARK_CONF_DIR"] = saved


def listening() -> dict[int, set[str]]:
    out: dict[int, set[str]] = {}
    for line in subprocess.run(["ss", "-ltnH"], capture_output=True, text=True, check=True).stdout.splitlines():
        local = line.split()[3]
        host, port = local.rsplit(":", 1)
        out.setdefault(int(port), set()).add(host)
    return out


def test_services_listen_on_loopback_only_and_up_is_idempotent(services):
    again = cluster.up(services["state"])
    assert not any(s["started"] for s in again.values())  # nothing started twice
    ports = listening()
    for svc in cluster.SERVICES:
        for port in (svc.port, svc.ui_port):
            if port:
                assert ports.get(port), f"{svc.name} does not listen on {port}"
                assert ports[port] <= {"127.0.0.1", "[::ffff:127.0.0.1]"}, (svc.name, port, ports[port])
    assert all(s["answering"] for s in cluster.status(services["state"]).values())


CONSUMER = r"""
import json, os, sys, time
import numpy as np, pandas as pd
from feast import FeatureStore

# A consumer that is already up (Feast imported, store built) when the pipeline publishes: it waits for
# the product ids in a file, then reads the registry as it is now.
repo, yaml_file, request = sys.argv[1], sys.argv[2], sys.argv[3]
store = FeatureStore(repo_path=repo, fs_yaml_file=f"{repo}/{yaml_file}")
deadline = time.monotonic() + 900
while not os.path.exists(request):
    if time.monotonic() > deadline:
        sys.exit("no request came")
    time.sleep(0.2)
ids = json.load(open(request))
store.refresh_registry()
online = store.get_online_features(
    features=["product_embeddings:embedding", "product_embeddings:model_version"],
    entity_rows=[{"product_id": p} for p in ids]).to_dict()
# "now" (the feature view's TTL is ten years: a timestamp far in the future would find nothing).
entity = pd.DataFrame({"product_id": ids * 2,
                       "event_timestamp": [pd.Timestamp.now(tz="UTC") + pd.Timedelta(hours=1)] * len(ids)
                       + [pd.Timestamp("2000-01-01", tz="UTC")] * len(ids)})
hist = store.get_historical_features(entity_df=entity, features=["product_embeddings:embedding"]).to_df()
# The pinned view of the one version (its offline source a query on the Delta table's model partition).
pinned = sorted(fv.name for fv in store.list_feature_views() if fv.name.startswith("product_embeddings_"))
pinned_online = store.get_online_features(features=[f"{pinned[0]}:embedding"],
                                          entity_rows=[{"product_id": p} for p in ids]).to_dict()
pinned_hist = store.get_historical_features(entity_df=entity.iloc[:len(ids)],
                                            features=[f"{pinned[0]}:embedding"]).to_df()
out = {"offline_store": type(store._get_provider().offline_store).__name__,
       "pinned_views": pinned,
       "pinned_online": {p: list(map(float, e))
                         for p, e in zip(pinned_online["product_id"], pinned_online["embedding"])},
       "pinned_historical": {r.product_id: list(map(float, r.embedding)) for r in pinned_hist.itertuples()},
       "online": {p: (None if e is None else list(map(float, e)))
                  for p, e in zip(online["product_id"], online["embedding"])},
       "online_versions": online["model_version"],
       "historical": [{"product_id": r.product_id, "ts": str(r.event_timestamp),
                       "embedding": None if r.embedding is None or isinstance(r.embedding, float)
                       else list(map(float, r.embedding))}
                      for r in hist.itertuples()]}
print("CONSUMER " + json.dumps(out))
"""


@contextlib.contextmanager
def waiting_consumer(repo: Path, request: Path, env: dict, log: Path):
    """The CONSUMER process, started and left waiting for ``request``; killed if the test ends first."""
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", CONSUMER, str(repo), "feature_store.cluster-local.yaml", str(request)],
            env=env,
            cwd=REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_pipeline_on_the_cluster(services, tmp_path, monkeypatch):
    import mlflow
    import numpy as np
    import redis

    from prodemb.synth import SynthSpec, generate

    # The lake is on the local object store, under a prefix of its own (the store outlives this test).
    lake = f"s3a://{cluster.LAKE_BUCKET}/e2e-{uuid.uuid4().hex[:8]}"
    for var, value in cluster.S3_ENV.items():  # this process reads the lake too (fs layer, delta-rs)
        monkeypatch.setenv(var, value)
    generate(SynthSpec(n_clicks=6000, n_products=300, seed=5, start="2024-01-01", days=3), tmp_path / "raw")
    clicks = (tmp_path / "raw" / "clicks").as_uri()
    repo = tmp_path / "feature_repo"
    shutil.copytree(REPO_ROOT / "feature_repo", repo, ignore=shutil.ignore_patterns("data"))
    model_name = f"prodemb-encoder-e2e-{uuid.uuid4().hex[:8]}"  # the server outlives this test
    env = {
        **os.environ,
        "PRODEMB_LAKE": lake,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "SPARK_LOCAL_IP": "127.0.0.1",
        "PYSPARK_PYTHON": sys.executable,
        "TZ": "UTC",
    }
    env.pop("MLFLOW_TRACKING_URI", None)

    # 1. The DAG under the cluster-local profile, Spark stages on the standalone master, the lake on s3a://.
    tasks = tmp_path / "raw" / "tasks"
    overrides = [
        f"schedule.source_path={clicks}",
        f"feast.repo_dir={repo}",
        f"mlflow.model_name={model_name}",
        f"paths.runs_dir={tmp_path}/runs",
        f"schedule.work_dir={tmp_path}/runs",
        *tiny_run_overrides(tasks, vocab=500, steps=10, batch=128, health=300, labels=40),
    ]
    home = tmp_path / "airflow"
    home.mkdir()
    aenv = {
        **airflow_env(home, overrides, profile="cluster-local"),
        "PRODEMB_LAKE": lake,
        "AIRFLOW_CONN_SPARK_DEFAULT": json.dumps({"conn_type": "spark", "host": cluster.SPARK_MASTER_URL}),
    }
    aenv.pop("MLFLOW_TRACKING_URI", None)
    run_logged([str(VENV_BIN / "airflow"), "db", "migrate"], aenv, tmp_path / "migrate.log", 300)
    # 2. The Feast consumer starts now and waits, as a service would, for products to look up.
    tables = f"{lake}/tables"
    request = tmp_path / "consumer-request.json"
    cenv = {
        **env,
        "PRODEMB_FEATURE_REPO": str(repo),
        "PRODEMB_FEAST_OFFLINE": "spark",
        "PRODEMB_EMBEDDINGS": f"{tables}/embeddings",
    }
    with waiting_consumer(repo, request, cenv, tmp_path / "consumer.log") as consumer:
        text = run_logged(
            [sys.executable, "-c", DAG_TEST_DRIVER, str(DAGS), "2024-01-03", "{}"], aenv, tmp_path / "dag.log", 900
        )
        result = tagged_json(text, "RESULT")
        assert result["state"] == "success" and set(result["tasks"].values()) == {"success"}, result
        # The consumer gets its products at once and works while the pipeline's outputs are checked.
        from prodemb.tables import arrow_dataset

        catalog = arrow_dataset(f"{tables}/catalog").to_table(columns=["product_id", "title"]).to_pandas()
        sample = catalog.sort_values("product_id").head(4)
        ids, titles = sample["product_id"].tolist(), sample["title"].tolist()
        partial = request.with_suffix(".partial")
        partial.write_text(json.dumps(ids))
        partial.rename(request)  # the consumer never reads a half-written request
        # Sessionize ran as the cluster contract has it: spark-submit on the master, URIs in and out, Delta, and
        # no --packages (the jars come from cluster-up's spark-defaults, as for a hand-typed run).
        submit_lines = re.findall(r"Spark-Submit cmd: (spark-submit .*?/jobs/(\w+)\.py [^\n]*)", text)
        submits = {job: cmd for cmd, job in submit_lines}
        assert set(submits) == {"sessionize", "consolidate", "score"}, submits.keys()
        assert all(cmd.startswith(f"spark-submit --master {cluster.SPARK_MASTER_URL} ") for cmd in submits.values())
        for flag in (
            f"--input {clicks} ",
            "--input-format clicks ",
            f"--output {lake}/tables/intervals ",
            "--format delta ",
            "--config-profile cluster-local ",
        ):
            assert flag in submits["sessionize"], (flag, submits["sessionize"])
        assert "--packages" not in submits["sessionize"] and "--jars" not in submits["sessionize"]
        interval = fs.read_json(f"{lake}/tables/intervals/_runs/20240102T000000.json")
        assert (
            interval["rows_in"]
            == (interval["rows_valid"] + interval["rows_filtered"] + interval["rows_quarantined"])
            > 0
        )
        assert set(interval["delta_versions"]) == {"quarantine", "catalog", "sessions", "pairs"}
        # The executors imported this package from what the driver shipped, not from the repository.
        shipped = re.findall(r'"executor_package": "([^"]+)"', text)
        assert shipped and all(not p.startswith(str(REPO_ROOT)) and ".zip" in p for p in shipped), shipped
        # The executors of this machine's workers started from the class-data archive, Spark's jars first.
        if services["started_here"]:
            from prodemb import class_data

            launches = [
                f.read_text().split("\n", 1)[0] for f in Path(services["state"]).glob("spark-work/*/app-*/*/stderr")
            ]
            assert launches and all(
                f'"-XX:SharedArchiveFile={class_data.archive_path()}"' in ln
                and f'"-cp" "{class_data.spark_jars_classpath()}:' in ln
                for ln in launches
            )

        # Training talked to the tracking server over HTTP and registered exactly one version.
        # Both URIs given: a registry URI that an earlier test in this process set must not answer instead.
        client = mlflow.MlflowClient(cluster.MLFLOW_URL, registry_uri=cluster.MLFLOW_URL)
        versions = client.search_model_versions(f"name = '{model_name}'")
        assert [v.version for v in versions] == ["1"]
        assert client.get_model_version(model_name, "1").tags["health"] == "ok"
        assert client.get_model_version_by_alias(model_name, "champion").version == "1"

        # Scoring wrote the Delta embeddings table on the lake; publish filled Redis.
        assert fs.is_dir(f"{tables}/embeddings/_delta_log")
        emb = arrow_dataset(f"{tables}/embeddings").to_table(columns=["product_id", "model_version"])
        assert emb.num_rows == len(catalog) > 50 and set(emb.column("model_version").to_pylist()) == {"1"}
        assert redis.Redis(host="127.0.0.1", port=6379).dbsize() > 0

        # 2. The Feast consumer's answers (it has been looking the products up meanwhile).
        # Meanwhile the registered model, loaded over HTTP here, is the oracle: what it makes of the titles
        # is what Redis and the offline store must hold.
        import pandas as pd

        mlflow.set_tracking_uri(cluster.MLFLOW_URL)
        mlflow.set_registry_uri(cluster.MLFLOW_URL)
        expected = np.asarray(
            mlflow.pyfunc.load_model(f"models:/{model_name}@champion").predict(pd.DataFrame({"title": titles})),
            dtype=np.float32,
        )
        consumer.wait(timeout=600)
        text = (tmp_path / "consumer.log").read_text()
        assert consumer.returncode == 0, text[-3000:]
        out = tagged_json(text, "CONSUMER")
        assert out["offline_store"] == "SparkOfflineStore"
        online = np.asarray([out["online"][p] for p in ids], dtype=np.float32)
        np.testing.assert_allclose(online, expected, rtol=1e-5, atol=1e-6)
        assert out["online_versions"] == ["1"] * len(ids)
        now = {r["product_id"]: r["embedding"] for r in out["historical"] if not r["ts"].startswith("2000")}
        before = [r["embedding"] for r in out["historical"] if r["ts"].startswith("2000")]
        np.testing.assert_allclose(np.asarray([now[p] for p in ids], dtype=np.float32), expected, rtol=1e-5, atol=1e-6)
        assert before == [None] * len(ids)  # nothing had been scored in 2000
        # Version 1's pinned view, online (Redis) and point-in-time (Spark over its Delta partition).
        from prodemb.features import pinned_view_name

        assert out["pinned_views"] == [pinned_view_name(model_name, "1", model_name)] == ["product_embeddings_v1"]
        for got in (out["pinned_online"], out["pinned_historical"]):
            np.testing.assert_allclose(
                np.asarray([got[p] for p in ids], dtype=np.float32), expected, rtol=1e-5, atol=1e-6
            )
