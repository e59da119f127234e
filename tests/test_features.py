"""Scoring and the Feast feature store end to end: real Spark, real MLflow registry, real Feast + SQLite."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from prodemb.config import load_config
from tests.conftest import REPO_ROOT

# --- byte encodings are Feast's own ---------------------------------------------------------------


def test_bulk_encodings_equal_feast_serializers():
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import FloatList, Value

    from prodemb.features import encode_entity_keys, encode_float_lists, encode_string

    ids = ["MLA123", "", "ñandú-7", "x" * 300]
    for got, pid in zip(encode_entity_keys(ids), ids):
        assert got == serialize_entity_key(
            EntityKey(join_keys=["product_id"], entity_values=[Value(string_val=pid)]),
            entity_key_serialization_version=3,
        )
    for dim in (1, 16, 128, 512):
        m = np.random.default_rng(dim).normal(size=(3, dim)).astype(np.float32)
        for got, row in zip(encode_float_lists(m), m):
            assert got == Value(float_list_val=FloatList(val=row.tolist())).SerializeToString()
    assert encode_string("7") == Value(string_val="7").SerializeToString()


# --- streaming the newest row per product --------------------------------------------------------


def test_streamed_latest_rows_equal_latest_rows(tmp_path):
    """publish streams batches selected by a mask computed without vectors; the rows equal latest_rows."""
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    from prodemb.features import FEATURE_VIEW, iter_routed_rows, latest_row_mask, latest_rows

    rng = np.random.default_rng(0)
    t0 = pd.Timestamp("2024-01-01", tz="UTC")
    parts = []
    for v, n in ((1, 500), (2, 420), (3, 300)):  # later versions cover fewer products
        ids = rng.permutation(500)[:n]
        parts.append(
            pd.DataFrame(
                {
                    "product_id": [f"p{i}" for i in ids],
                    "embedding": list(rng.normal(size=(n, 4)).astype(np.float32)),
                    "model_version": str(v),
                    "event_timestamp": t0 + pd.Timedelta(days=v),
                }
            )
        )
    frame = pd.concat(parts).sample(frac=1, random_state=1).reset_index(drop=True)
    for i in range(3):  # several files, rows of every version in each
        part = frame.iloc[i * 410 : (i + 1) * 410]
        pq.write_table(pa.Table.from_pandas(part, preserve_index=False), tmp_path / f"part-{i}.parquet")
    dataset = ds.dataset(str(tmp_path), format="parquet")
    mask, keys = latest_row_mask(dataset)
    routed = list(iter_routed_rows(dataset, mask, [], batch_rows=97))
    assert {view for view, _ in routed} == {FEATURE_VIEW}
    streamed = pd.concat([chunk for _, chunk in routed])
    expected = latest_rows(frame)
    assert keys.num_rows == len(frame) and mask.sum() == len(expected) == 500
    key = lambda df: df.sort_values("product_id").reset_index(drop=True)  # noqa: E731
    got, want = key(streamed), key(expected)
    assert got["product_id"].tolist() == want["product_id"].tolist()
    assert got["model_version"].tolist() == want["model_version"].tolist()
    assert np.array_equal(np.stack(got["embedding"]), np.stack(want["embedding"]))


# --- a real registered model, two versions ---------------------------------------------------------


@pytest.fixture(scope="module")
def world(spark, tmp_path_factory):
    """Generated clicks → sessionize → tokenizer → two trained versions; a private copy of feature_repo."""
    from prodemb.config import SessionsConfig
    from prodemb.sessions import run_sessionize
    from prodemb.synth import SynthSpec, generate
    from prodemb.tokenizer import train_from_catalog
    from prodemb.train import run_training

    work = tmp_path_factory.mktemp("fs")
    generate(SynthSpec(n_clicks=30_000, n_products=600, seed=3), work / "synth")
    run_sessionize(spark, str(work / "synth" / "clicks"), "clicks", str(work / "data"), SessionsConfig())
    cfg = load_config(
        "local",
        overrides=[
            f"mlflow.tracking_uri=sqlite:///{work}/mlflow.db",
            "model.profile=small",
            "tokenizer.vocab_size=800",
            "train.max_steps=25",
            "train.batch_size=256",
            "train.health_sample=500",
        ],
    )
    train_from_catalog(str(work / "data"), work / "tok.model", cfg.tokenizer)
    for seed in (0, 1):
        run_training(
            str(work / "data"),
            str(work / "tok.model"),
            cfg.model_copy(update={"train": cfg.train.model_copy(update={"seed": seed})}),
            progress=False,
        )
    repo = work / "feature_repo"
    shutil.copytree(REPO_ROOT / "feature_repo", repo, ignore=shutil.ignore_patterns("data"))
    return {"work": work, "uri": cfg.mlflow.tracking_uri, "repo": repo}


def score(spark, world, version, scored_at):
    from prodemb.score import run_score

    return run_score(
        spark,
        str(world["work"] / "data"),
        f"models:/prodemb-encoder/{version}",
        None,
        tracking_uri=world["uri"],
        keep_model_versions=3,
        scored_at=scored_at,
    )


def test_scoring_publishing_and_reading_back(spark, world):
    import mlflow

    from prodemb.features import feature_store, historical_features, online_vectors, run_publish
    from prodemb.tables import read_table

    work = world["work"]
    t1 = datetime(2025, 1, 1, tzinfo=timezone.utc)
    t2 = datetime(2025, 2, 1, tzinfo=timezone.utc)
    r1 = score(spark, world, "1", t1)
    assert r1["products_scored"] == r1["rows_in"] > 100 and r1["dim"] == 128
    emb = read_table(spark, str(work / "data" / "embeddings"))
    assert emb.columns[:6] == ["site", "product_id", "embedding", "model_name", "model_version", "event_timestamp"]

    # Publish v1: the online vector equals the registered model's prediction for the product's title.
    pub = run_publish(str(work / "data"), repo_dir=world["repo"], progress=False)
    assert pub["rows_out"] == r1["products_scored"] and pub["path"] == "sqlite-bulk"
    store = feature_store(world["repo"])
    catalog = read_table(spark, str(work / "data" / "catalog")).select("product_id", "title").limit(5).toPandas()
    online = online_vectors(store, catalog["product_id"].tolist())
    mlflow.set_tracking_uri(world["uri"])
    model = mlflow.pyfunc.load_model("models:/prodemb-encoder/1")
    expected = model.predict(catalog[["title"]])
    for pid, exp in zip(catalog["product_id"], expected):
        got = online[pid]["embedding"]
        assert online[pid]["model_version"] == "1"
        assert np.dot(got, exp) / (np.linalg.norm(got) * np.linalg.norm(exp)) >= 0.999

    # The direct reader returns exactly what the SDK returns.
    from prodemb.features import SqliteVectorReader

    reader = SqliteVectorReader(store)
    direct = reader.get(catalog["product_id"].tolist() + ["no-such-product"])
    reader.close()
    assert direct["no-such-product"] is None
    for pid in catalog["product_id"]:
        np.testing.assert_array_equal(direct[pid], online[pid]["embedding"])

    # Publishing twice leaves one row per product and feature.
    run_publish(str(work / "data"), repo_dir=world["repo"], progress=False)
    import sqlite3

    con = sqlite3.connect(pub["db"])
    n_rows, n_keys = con.execute(f'SELECT count(*), count(DISTINCT entity_key) FROM "{pub["table"]}"').fetchone()
    con.close()
    assert n_keys == r1["products_scored"] and n_rows == 2 * n_keys

    # A new model version replaces the old one online; the offline table keeps both.
    r2 = score(spark, world, "2", t2)
    n = r1["products_scored"]
    assert r2["rows_by_model_version"] == {"prodemb-encoder/1": n, "prodemb-encoder/2": n}
    run_publish(str(work / "data"), repo_dir=world["repo"], progress=False)
    online2 = online_vectors(store, catalog["product_id"].tolist())
    assert all(v["model_version"] == "2" for v in online2.values())
    pid = catalog["product_id"][0]
    assert not np.allclose(online2[pid]["embedding"], online[pid]["embedding"])

    # Point-in-time: the version valid at each entity timestamp.
    frame = pd.DataFrame(
        {
            "product_id": [pid, pid, pid],
            "event_timestamp": [t1 + timedelta(days=3), t2 + timedelta(days=3), t1 - timedelta(days=3)],
        }
    )
    hist = historical_features(store, frame)
    by_time = {pd.Timestamp(t): v for t, v in zip(hist["event_timestamp"], hist["model_version"])}
    assert by_time[pd.Timestamp(t1 + timedelta(days=3))] == "1"
    assert by_time[pd.Timestamp(t2 + timedelta(days=3))] == "2"
    # Before any scoring there is no vector (Feast's file store leaves such entity rows out).
    assert not isinstance(by_time.get(pd.Timestamp(t1 - timedelta(days=3))), str)
    v1_hist = hist[hist["model_version"] == "1"]["embedding"].iloc[0]
    np.testing.assert_allclose(np.asarray(v1_hist, dtype=np.float32), online[pid]["embedding"], rtol=1e-6)

    # Rescoring the same version replaces its rows (no duplicates).
    r3 = score(spark, world, "2", t2 + timedelta(hours=1))
    assert r3["rows_by_model_version"] == {"prodemb-encoder/1": n, "prodemb-encoder/2": n}
    # Another registered name has a version 1 too: it is another model, whose rows sit beside those of
    # prodemb-encoder/1 instead of replacing them.
    mlflow.MlflowClient(world["uri"]).copy_model_version("models:/prodemb-encoder/1", "prodemb-encoder-other")
    from prodemb.score import run_score

    r4 = run_score(
        spark,
        str(work / "data"),
        "models:/prodemb-encoder-other/1",
        None,
        tracking_uri=world["uri"],
        keep_model_versions=3,
        scored_at=t2 + timedelta(hours=2),
    )
    assert r4["rows_by_model_version"] == {"prodemb-encoder-other/1": n, "prodemb-encoder/2": n, "prodemb-encoder/1": n}
    rows = read_table(spark, str(work / "data" / "embeddings")).groupBy("model_name", "model_version").count()
    assert sorted(tuple(r) for r in rows.collect()) == [
        ("prodemb-encoder", "1", n),
        ("prodemb-encoder", "2", n),
        ("prodemb-encoder-other", "1", n),
    ]


def test_a_reader_pinned_to_a_version_keeps_it_after_a_newer_one_is_published(spark, world):
    """product_embeddings_v1 serves v1's vectors online and point-in-time after v2 is scored and published,
    while product_embeddings serves v2; a version that scoring no longer keeps is retired from Feast."""
    import sqlite3

    from prodemb.features import (
        NotPublishedError,
        feature_store,
        historical_features,
        online_vectors,
        require_published,
        run_publish,
    )
    from prodemb.score import run_score

    work = world["work"]
    out = work / "pinned" / "embeddings"
    repo = work / "feature_repo_pinned"
    shutil.copytree(REPO_ROOT / "feature_repo", repo, ignore=shutil.ignore_patterns("data"))
    t1, t2 = datetime(2025, 1, 1, tzinfo=timezone.utc), datetime(2025, 2, 1, tzinfo=timezone.utc)

    def score_and_publish(version, when, keep=3):
        run_score(
            spark,
            str(work / "data"),
            f"models:/prodemb-encoder/{version}",
            str(out),
            tracking_uri=world["uri"],
            keep_model_versions=keep,
            scored_at=when,
        )
        return run_publish(str(work / "data"), repo_dir=repo, embeddings=str(out), progress=False)

    first = score_and_publish("1", t1)
    assert first["pinned_views"] == {"product_embeddings_v1": "prodemb-encoder/1"}
    store = feature_store(repo)
    ids = sorted(pd.read_parquet(os.path.realpath(out))["product_id"].unique())[:6]
    v1 = online_vectors(store, ids, "product_embeddings_v1")
    assert all(v["model_version"] == "1" and v["embedding"] is not None for v in v1.values())

    second = score_and_publish("2", t2)
    assert second["pinned_views"] == {
        "product_embeddings_v1": "prodemb-encoder/1",
        "product_embeddings_v2": "prodemb-encoder/2",
    }
    n = second["rows_out"]
    assert second["rows_by_view"] == {"product_embeddings": n, "product_embeddings_v1": n, "product_embeddings_v2": n}
    # Each version has its similar-products index, built once: v1's is reused.
    assert first["ann"]["prodemb-encoder/1"]["reused"] is False
    assert second["ann"]["prodemb-encoder/1"]["reused"] is True
    assert second["ann"]["prodemb-encoder/2"]["reused"] is False
    assert second["ann"]["prodemb-encoder/2"]["rows"] == n and second["ann"]["prodemb-encoder/2"]["recall_at_10"] >= 0.9
    champion = online_vectors(store, ids)
    pinned1 = online_vectors(store, ids, "product_embeddings_v1")
    pinned2 = online_vectors(store, ids, "product_embeddings_v2")
    for pid in ids:
        assert champion[pid]["model_version"] == "2" and pinned1[pid]["model_version"] == "1"
        np.testing.assert_array_equal(pinned1[pid]["embedding"], v1[pid]["embedding"])
        np.testing.assert_array_equal(pinned2[pid]["embedding"], champion[pid]["embedding"])
        assert not np.allclose(pinned1[pid]["embedding"], champion[pid]["embedding"])
    # Point-in-time, after v2's scoring: the champion view gives v2, the pinned view still v1.
    frame = pd.DataFrame({"product_id": ids[:2], "event_timestamp": [t2 + timedelta(days=3)] * 2})
    assert set(historical_features(store, frame)["model_version"]) == {"2"}
    pinned_hist = historical_features(store, frame, "product_embeddings_v1")
    assert set(pinned_hist["model_version"]) == {"1"}
    for pid, emb in zip(pinned_hist["product_id"], pinned_hist["embedding"]):
        np.testing.assert_allclose(np.asarray(emb, dtype=np.float32), v1[pid]["embedding"], rtol=1e-6)

    # The consumer's command line reads the pinned view too.
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "jobs" / "lookup.py"),
            "--product-id",
            ids[0],
            "--model-version",
            "1",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "FEATURE_REPO_DIR_ENV_VAR": str(repo)},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    import json

    got = json.loads(proc.stdout)[0]
    assert got["model_version"] == "1"
    np.testing.assert_array_equal(np.asarray(got["embedding"], dtype=np.float32), v1[ids[0]]["embedding"])

    # Scoring that keeps one version drops v1 from the table; publishing retires its view and online table.
    table_v1 = (
        sqlite3.connect(second["db"])
        .execute("SELECT name FROM sqlite_master WHERE name LIKE '%product_embeddings_v1'")
        .fetchall()
    )
    assert len(table_v1) == 1
    third = score_and_publish("2", t2 + timedelta(hours=1), keep=1)
    assert third["retired_views"] == ["product_embeddings_v1"] and third["ann_retired"] == ["prodemb-encoder-v1"]
    assert third["pinned_views"] == {"product_embeddings_v2": "prodemb-encoder/2"}
    store.refresh_registry()
    with pytest.raises(NotPublishedError, match="product_embeddings_v1.*retired.*product_embeddings_v2"):
        require_published(store, "product_embeddings_v1")
    assert (
        sqlite3.connect(second["db"])
        .execute("SELECT name FROM sqlite_master WHERE name LIKE '%product_embeddings_v1'")
        .fetchall()
        == []
    )
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "jobs" / "lookup.py"), "--product-id", ids[0], "--model-version", "1"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "FEATURE_REPO_DIR_ENV_VAR": str(repo)},
    )
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "retired" in proc.stderr, proc.stderr[-2000:]


def test_incremental_scoring_embeds_only_new_and_changed_products_and_equals_a_full_rescoring(spark, world):
    from pyspark.sql import functions as F

    from prodemb.score import run_score
    from prodemb.tables import read_table, write_table

    work = world["work"]
    t1, t2 = datetime(2025, 1, 1, tzinfo=timezone.utc), datetime(2025, 1, 2, tzinfo=timezone.utc)
    incremental, full = work / "incr" / "embeddings", work / "incr" / "full_embeddings"
    model = "models:/prodemb-encoder/1"
    first = run_score(spark, str(work / "data"), model, str(incremental), tracking_uri=world["uri"], scored_at=t1)
    assert first["rows_carried"] == 0 and first["rows_embedded"] == first["rows_in"]
    was = {
        r.product_id: np.asarray(r.embedding, dtype=np.float32)
        for r in read_table(spark, str(incremental)).select("product_id", "embedding").collect()
    }

    # The next day's catalog: 5 titles changed, 3 products gone, 2 new ones.
    catalog = read_table(spark, str(work / "data" / "catalog")).orderBy("product_id").cache()
    ids = [r.product_id for r in catalog.select("product_id").collect()]
    changed, gone = ids[:5], ids[5:8]
    edited = (
        catalog.where(~F.col("product_id").isin(gone))
        .withColumn(
            "title",
            F.when(F.col("product_id").isin(changed), F.concat(F.col("title"), F.lit(" usado mini"))).otherwise(
                F.col("title")
            ),
        )
        .withColumn(
            "title_norm",
            F.when(F.col("product_id").isin(changed), F.concat(F.col("title_norm"), F.lit(" usado mini"))).otherwise(
                F.col("title_norm")
            ),
        )
    )
    new = catalog.limit(2).withColumn("product_id", F.concat(F.lit("new-"), F.col("product_id")))
    write_table(edited.unionByName(new), str(work / "incr" / "data" / "catalog"))
    n = len(ids) - 3 + 2

    second = run_score(
        spark, str(work / "incr" / "data"), model, str(incremental), tracking_uri=world["uri"], scored_at=t2
    )
    assert (second["rows_in"], second["rows_embedded"], second["rows_carried"]) == (n, 5 + 2, n - 7)
    assert second["rows_by_model_version"] == {"prodemb-encoder/1": n}  # the gone products' rows are gone too
    rescored = run_score(
        spark, str(work / "incr" / "data"), model, str(full), tracking_uri=world["uri"], scored_at=t2, incremental=False
    )
    assert rescored["rows_carried"] == 0 and rescored["rows_embedded"] == n

    # Row for row, the incremental table equals the full rescoring (vectors to float32 rounding).
    cols = ["site", "product_id", "model_name", "model_version", "event_timestamp", "dim", "content_hash", "model"]
    a = read_table(spark, str(incremental)).orderBy("site", "product_id").toPandas()
    b = read_table(spark, str(full)).orderBy("site", "product_id").toPandas()
    pd.testing.assert_frame_equal(a[cols], b[cols])
    np.testing.assert_allclose(np.stack(a["embedding"]), np.stack(b["embedding"]), rtol=1e-5, atol=1e-6)
    # The changed titles got new vectors; the unchanged products kept theirs, bit for bit.
    now = {p: np.asarray(e, dtype=np.float32) for p, e in zip(a["product_id"], a["embedding"])}
    assert all(not np.allclose(now[p], was[p]) for p in changed)
    assert all(np.array_equal(now[p], was[p]) for p in ids[8:])

    # A new model version embeds everything, carrying nothing over.
    third = run_score(
        spark,
        str(work / "incr" / "data"),
        "models:/prodemb-encoder/2",
        str(incremental),
        tracking_uri=world["uri"],
        scored_at=t2 + timedelta(hours=1),
    )
    assert third["rows_carried"] == 0 and third["rows_embedded"] == n


def test_bad_model_uri_fails_clearly_and_leaves_embeddings_untouched(spark, world):
    from prodemb.tables import table_version

    emb = world["work"] / "data" / "embeddings"
    if not emb.exists():
        score(spark, world, "1", datetime(2025, 1, 1, tzinfo=timezone.utc))
    before = table_version(str(emb))
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "jobs" / "score.py"),
            "--data",
            str(world["work"] / "data"),
            "--model-uri",
            "models:/prodemb-encoder@does-not-exist",
            "--mlflow-uri",
            world["uri"],
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"},
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "cannot resolve model" in proc.stderr
    assert table_version(str(emb)) == before


def test_feast_materialize_still_works_from_the_repo(spark, world):
    """The standard, slow path: `feast apply` + `feast materialize` from the repo folder."""
    from prodemb.features import repo_objects

    emb = world["work"] / "data" / "embeddings"
    if not emb.exists():
        score(spark, world, "1", datetime(2025, 1, 1, tzinfo=timezone.utc))
    repo = world["work"] / "feature_repo_cli"
    shutil.copytree(REPO_ROOT / "feature_repo", repo, ignore=shutil.ignore_patterns("data"))
    env = {**os.environ, "PRODEMB_EMBEDDINGS": str(emb.resolve())}
    feast = [os.path.join(os.path.dirname(sys.executable), "feast")]
    for args in (["apply"], ["materialize", "2000-01-01T00:00:00", "2100-01-01T00:00:00"]):
        proc = subprocess.run(feast + args, cwd=repo, capture_output=True, text=True, timeout=600, env=env)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    from feast import FeatureStore

    store = FeatureStore(repo_path=str(repo))
    pid = spark.read.parquet(str(emb)).first().product_id
    got = store.get_online_features(
        features=["product_embeddings:embedding"], entity_rows=[{"product_id": pid}]
    ).to_dict()
    assert got["embedding"][0] is not None and len(got["embedding"][0]) == 128
    assert len(repo_objects(emb)) == 3  # no pinned view unless publishing names the versions


def test_empty_titles_are_quarantined_and_a_table_with_bad_vectors_is_refused(spark, world):
    """Scoring gives a title with no token a quarantine row, not a vector of padding; publishing checks every
    vector of the table and refuses one that is not servable, before the registry or the store is touched."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from prodemb.features import UnservableVectorsError, feature_store, online_vectors, run_publish
    from prodemb.score import run_score
    from prodemb.tables import read_table, write_table

    work = world["work"]
    data = work / "titles"
    good = read_table(spark, str(work / "data" / "catalog")).orderBy("product_id").limit(20)
    blank = spark.createDataFrame(
        [("default", f"blank-{i}", t) for i, t in enumerate([None, "", "¡¡!!", "de la"])],
        "site string, product_id string, title string",
    )
    write_table(good.unionByName(blank, allowMissingColumns=True), str(data / "catalog"))
    t = datetime(2025, 3, 1, tzinfo=timezone.utc)
    report = run_score(spark, str(data), "models:/prodemb-encoder/1", None, tracking_uri=world["uri"], scored_at=t)
    assert (report["rows_in"], report["rows_out"], report["rows_quarantined"]) == (24, 20, 4)
    assert report["rows_quarantined_by_reason"] == {"empty_title": 4}
    quarantine = read_table(spark, report["quarantine"]).orderBy("product_id").collect()
    assert [(r.product_id, r.title, r.reason, r.model_version) for r in quarantine] == [
        (f"blank-{i}", t_, "empty_title", "1") for i, t_ in enumerate([None, "", "¡¡!!", "de la"])
    ]
    emb = read_table(spark, str(data / "embeddings"))
    assert emb.count() == 20 and emb.where(emb.product_id.startswith("blank-")).count() == 0
    # A rescoring with nothing to quarantine replaces the quarantine of the previous one.
    write_table(good, str(data / "catalog"))
    again = run_score(spark, str(data), "models:/prodemb-encoder/1", None, tracking_uri=world["uri"], scored_at=t)
    assert again["rows_quarantined"] == 0 and read_table(spark, f"{data}/embeddings_quarantine").count() == 0

    repo = work / "feature_repo_refuse"
    shutil.copytree(REPO_ROOT / "feature_repo", repo, ignore=shutil.ignore_patterns("data"))
    assert run_publish(str(data), repo_dir=repo, progress=False)["rows_out"] == 20
    store = feature_store(repo)
    ids = [r.product_id for r in good.collect()]
    before = online_vectors(store, ids)
    # The same table with one vector made NaN and one of the wrong length, outside prodemb's writers.
    table = pq.read_table(os.path.realpath(data / "embeddings"))
    vectors = table.column("embedding").to_pylist()
    vectors[3] = [float("nan")] * len(vectors[3])
    vectors[7] = vectors[7][:-1]
    bad = table.set_column(
        table.schema.get_field_index("embedding"), "embedding", pa.array(vectors, pa.list_(pa.float32()))
    )
    (work / "bad_embeddings").mkdir()
    pq.write_table(bad, work / "bad_embeddings" / "part-0.parquet")
    with pytest.raises(UnservableVectorsError, match=r"2 of 20 rows .*non_finite_vector: 1, wrong_dimension: 1"):
        run_publish(str(data), repo_dir=repo, progress=False, embeddings=str(work / "bad_embeddings"))
    after = online_vectors(store, ids)
    assert all(np.array_equal(before[p]["embedding"], after[p]["embedding"]) for p in ids)
    store.refresh_registry()
    source = store.get_feature_view("product_embeddings").batch_source.path
    assert source == os.path.abspath(data / "embeddings")  # the registry still names the good table


def test_similar_recall_uses_exactly_the_sessions_the_model_held_out(spark, world):
    import json

    import mlflow

    from prodemb.registry import training_params
    from prodemb.tables import read_table

    data = world["work"] / "data"
    if not (data / "embeddings").exists():
        score(spark, world, "1", datetime(2025, 1, 1, tzinfo=timezone.utc))
    pid = read_table(spark, str(data / "embeddings")).first().product_id
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "jobs" / "similar.py"),
            "--data",
            str(data),
            "--product-id",
            pid,
            "--k",
            "5",
            "--recall",
            "--json",
            "--mlflow-uri",
            world["uri"],
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    name, version = out["holdout"]["model"].rsplit("/", 1)
    mlflow.set_tracking_uri(world["uri"])
    mlflow.set_registry_uri(world["uri"])
    params = training_params(name, version)
    assert out["holdout"]["holdout.fraction"] == params["holdout.fraction"]
    assert out["holdout"]["holdout.cutoff"] == params["holdout.cutoff"]
    assert out["holdout_pairs"] == int(params["data.rows_pairs_holdout"]) > 0  # the same pairs, every one
    assert len(out["neighbours"][pid]) == 5 and 0 <= out["recall_at_5"] <= 1
    assert out["search"] == "exact"  # this table was never published: no index, an exact search

    # Published: the neighbours come from the model's HNSW index, the same as the exact search's here.
    from prodemb.features import run_publish

    repo = world["work"] / "feature_repo_similar"
    shutil.copytree(REPO_ROOT / "feature_repo", repo, ignore=shutil.ignore_patterns("data"))
    published = run_publish(str(data), repo_dir=repo, progress=False)
    answers = {}
    for flag in ([], ["--exact"]):
        proc = subprocess.run(
            [
                sys.executable,
                str(REPO_ROOT / "jobs" / "similar.py"),
                "--data",
                str(data),
                "--product-id",
                pid,
                "--k",
                "5",
                "--json",
                *flag,
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        answers[tuple(flag)] = json.loads(proc.stdout)
    indexed, exact = answers[()], answers[("--exact",)]
    assert indexed["search"] == "hnsw" and exact["search"] == "exact"
    assert indexed["index"]["recall_at_10"] == published["ann"][indexed["model"]]["recall_at_10"] >= 0.9
    assert [n["product_id"] for n in indexed["neighbours"][pid]] == [n["product_id"] for n in exact["neighbours"][pid]]
    np.testing.assert_allclose(
        [n["cosine"] for n in indexed["neighbours"][pid]], [n["cosine"] for n in exact["neighbours"][pid]], atol=2e-4
    )
