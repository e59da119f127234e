"""One model per site (paper A.1): two sites that reuse product ids, each with its own model, through
training, scoring, publishing and the Feast SDK, without one site's vector overwriting the other's."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from prodemb.config import load_config
from tests.conftest import REPO_ROOT


@pytest.fixture(scope="module")
def two_sites(spark, tmp_path_factory):
    """Clicks of sites MLA and MLB (generated separately, different titles) where MLB's products carry
    MLA's product ids; sessionized together; a tokenizer; one model trained per site."""
    from prodemb.config import SessionsConfig
    from prodemb.sessions import run_sessionize
    from prodemb.synth import SynthSpec, generate
    from prodemb.tokenizer import train_from_catalog
    from prodemb.train import run_training

    work = tmp_path_factory.mktemp("sites")
    tables = {}
    for site, seed in (("MLA", 11), ("MLB", 12)):
        generate(SynthSpec(n_clicks=15_000, n_products=300, seed=seed, site=site), work / f"synth-{site}")
        tables[site] = ds.dataset(os.path.realpath(work / f"synth-{site}" / "clicks"), format="parquet").to_table()
    ids_a = sorted(pc.unique(tables["MLA"].column("product_id")).to_pylist())
    ids_b = sorted(pc.unique(tables["MLB"].column("product_id")).to_pylist())
    same_ids = dict(zip(ids_b, ids_a))  # MLB's products get MLA's ids (their titles stay MLB's)
    b = tables["MLB"]
    b = b.set_column(
        b.schema.get_field_index("product_id"),
        "product_id",
        pa.array([same_ids.get(p, p) for p in b.column("product_id").to_pylist()], pa.string()),
    )
    (work / "clicks").mkdir()
    pq.write_table(pa.concat_tables([tables["MLA"], b.cast(tables["MLA"].schema)]), work / "clicks" / "part-0.parquet")
    run_sessionize(spark, str(work / "clicks"), "clicks", str(work / "data"), SessionsConfig())
    uri = f"sqlite:///{work}/mlflow.db"
    cfg = load_config(
        "local",
        overrides=[
            f"mlflow.tracking_uri={uri}",
            "model.profile=small",
            "sites=[MLA, MLB]",
            "tokenizer.vocab_size=800",
            "train.max_steps=20",
            "train.batch_size=128",
            "train.health_sample=300",
        ],
    )
    train_from_catalog(str(work / "data"), work / "tok.model", cfg.tokenizer)
    trained = {
        site: run_training(
            str(work / "data"),
            str(work / "tok.model"),
            cfg.model_copy(update={"train": cfg.train.model_copy(update={"site": site})}),
            progress=False,
        )
        for site in ("MLA", "MLB")
    }
    repo = work / "feature_repo"
    shutil.copytree(REPO_ROOT / "feature_repo", repo, ignore=shutil.ignore_patterns("data"))
    return {
        "work": work,
        "uri": uri,
        "trained": trained,
        "repo": repo,
        "shared": sorted(set(ids_a) & set(same_ids.values())),
    }


def test_each_site_trains_its_own_registered_model_on_its_own_data(two_sites):
    import mlflow

    trained = two_sites["trained"]
    assert {s: (t["model_name"], t["model_version"]) for s, t in trained.items()} == {
        "MLA": ("prodemb-encoder-MLA", "1"),
        "MLB": ("prodemb-encoder-MLB", "1"),
    }
    client = mlflow.MlflowClient(two_sites["uri"], registry_uri=two_sites["uri"])
    for site, t in trained.items():
        assert str(client.get_model_version_by_alias(t["model_name"], "champion").version) == "1"
        params = client.get_run(t["run_id"]).data.params
        assert params["train.site"] == site
        # Trained on its site's products only: half the catalog, by site.
        catalog = ds.dataset(os.path.realpath(two_sites["work"] / "data" / "catalog")).to_table(columns=["site"])
        n_site = pc.sum(pc.equal(catalog.column("site"), site)).as_py()
        assert int(params["data.rows_products"]) == n_site < catalog.num_rows


def test_each_sites_vector_is_its_own_models_through_scoring_publishing_and_the_sdk(spark, two_sites):
    import mlflow

    from prodemb.features import feature_store, historical_features, online_vectors, run_publish
    from prodemb.tables import read_table

    work, uri = two_sites["work"], two_sites["uri"]
    # The score job with `sites:` scores every site with that site's champion, in turn.
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "jobs" / "score.py"),
            "--data",
            str(work / "data"),
            "--mlflow-uri",
            uri,
            "--set",
            "sites=[MLA, MLB]",
            "--set",
            "spark.master=local[1]",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert {s: r["model_name"] for s, r in report["sites"].items()} == {
        "MLA": "prodemb-encoder-MLA",
        "MLB": "prodemb-encoder-MLB",
    }
    emb = read_table(spark, str(work / "data" / "embeddings"))
    by_site = {r["site"]: (r["model_name"], r["count"]) for r in emb.groupBy("site", "model_name").count().collect()}
    assert {s: m for s, (m, _) in by_site.items()} == {"MLA": "prodemb-encoder-MLA", "MLB": "prodemb-encoder-MLB"}
    assert report["rows_out"] == sum(n for _, n in by_site.values())

    # Keyed by product_id alone, the two sites would overwrite each other: refused.
    with pytest.raises(ValueError, match="several sites .*MLA, MLB"):
        run_publish(str(work / "data"), repo_dir=two_sites["repo"], progress=False)
    published = run_publish(str(work / "data"), repo_dir=two_sites["repo"], progress=False, by_site=True)
    assert published["keyed_by"] == ["product_id", "site"]
    assert set(published["pinned_views"]) == {"product_embeddings_MLA_v1", "product_embeddings_MLB_v1"}
    assert published["rows_out"] == report["rows_out"]  # every (site, product): none overwritten

    catalog = read_table(spark, str(work / "data" / "catalog")).select("site", "product_id", "title").toPandas()
    shared = catalog[catalog["product_id"].isin(two_sites["shared"][:30])]
    assert shared.groupby("product_id")["site"].nunique().max() == 2  # the same ids on both sites
    store = feature_store(two_sites["repo"])
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    vectors = {}
    for site in ("MLA", "MLB"):
        rows = shared[shared["site"] == site]
        expected = mlflow.pyfunc.load_model(f"models:/prodemb-encoder-{site}/1").predict(rows[["title"]])
        online = online_vectors(store, rows["product_id"].tolist(), sites=[site] * len(rows))
        pinned = online_vectors(
            store, rows["product_id"].tolist(), f"product_embeddings_{site}_v1", sites=[site] * len(rows)
        )
        for pid, exp in zip(rows["product_id"], expected):
            got = online[(site, pid)]["embedding"]
            np.testing.assert_allclose(got, exp, rtol=1e-5, atol=1e-6)
            np.testing.assert_array_equal(pinned[(site, pid)]["embedding"], got)
        vectors[site] = {pid: online[(site, pid)]["embedding"] for pid in rows["product_id"]}
    both = sorted(set(vectors["MLA"]) & set(vectors["MLB"]))
    assert both and all(not np.allclose(vectors["MLA"][p], vectors["MLB"][p]) for p in both)

    # Point in time through the offline store, keyed the same way.
    pid = both[0]
    frame = pd.DataFrame(
        {
            "site": ["MLA", "MLB"],
            "product_id": [pid, pid],
            "event_timestamp": [datetime.now(timezone.utc) + timedelta(hours=1)] * 2,
        }
    )
    hist = historical_features(store, frame)
    for site, emb_ in zip(hist["site"], hist["embedding"]):
        np.testing.assert_allclose(np.asarray(emb_, dtype=np.float32), vectors[site][pid], rtol=1e-6)

    # The consumer's command line: --site picks the site's vector.
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "jobs" / "lookup.py"),
            "--product-id",
            pid,
            "--site",
            "MLB",
            "--set",
            "sites=[MLA, MLB]",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "FEATURE_REPO_DIR_ENV_VAR": str(two_sites["repo"])},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout)[0]
    assert got["site"] == "MLB"
    np.testing.assert_array_equal(np.asarray(got["embedding"], dtype=np.float32), vectors["MLB"][pid])
