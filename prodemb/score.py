"""Scoring: embed every catalog product with a registered encoder, into the ``embeddings`` table.

    catalog (site, product_id, title, ...) ──mapInArrow(pyfunc, loaded once per Python worker)──▶
    embeddings (site, product_id, embedding array<float>, model_name, model_version, event_timestamp, dim)
    + embeddings_quarantine (site, product_id, title, model_name, model_version, event_timestamp, reason)
      (embeddings_quarantine_<site> for one site's scoring)

A product whose vector could not be served (``prodemb.vectors``: an empty title, a wrong dimension, a
non-finite or zero vector) gets no row in ``embeddings`` but one in ``<embeddings>_quarantine`` with
its reason; the report's rows in = out + quarantined.

The table keeps the rows of the last ``keep_model_versions`` versions of each registered name (a model
is a registered name and version; each site's model has its own name), so a feature store's
point-in-time join can return the vector that was current at any entity timestamp; rescoring with the
same model replaces that model's rows. It is partitioned by model (column ``model``, e.g.
``model=prodemb-encoder-v3``): each partition is the offline source of that version's pinned feature
view (prodemb.features). Every write is an atomic table replace
(prodemb.tables), so a failed or killed scoring leaves the previous table readable.
"""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

log = logging.getLogger(__name__)


class ModelNotFoundError(ValueError):
    """The model URI does not resolve to a registered model version or a logged model."""


@dataclass
class ResolvedModel:
    uri: str
    name: str
    version: str
    local_dir: str
    dim: int
    pyfunc: object = None  # the model loaded on the driver by resolve_model (reused, not loaded again)


def resolve_model(model_uri: str, tracking_uri: str | None, download_dir: str) -> ResolvedModel:
    """Resolve ``models:/name@alias`` / ``models:/name/N`` (or any MLflow model URI) to a concrete
    version and download it once, on the driver. Fails with ModelNotFoundError before any write."""
    import json
    from pathlib import Path

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow

    from prodemb.registry import resolve_version, use_tracking

    if tracking_uri:
        use_tracking(tracking_uri)

    try:
        name, version = resolve_version(model_uri)
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{name}/{version}" if model_uri.startswith("models:/") else model_uri,
            dst_path=download_dir,
        )
    except (mlflow.exceptions.MlflowException, OSError, ValueError) as exc:
        raise ModelNotFoundError(f"cannot resolve model {model_uri!r}: {exc}") from exc
    meta = next(Path(local).rglob("encoder_meta.json"), None)
    if meta is None:
        raise ModelNotFoundError(f"{model_uri!r} is not a prodemb encoder (no encoder_meta.json)")
    dim = json.loads(meta.read_text())["dim"]
    # Loaded and run once here, on the driver: a corrupt or truncated artifact fails now, in one line and
    # before any write, not as a stack trace from every Spark worker.
    try:
        import pandas as pd

        pyfunc = mlflow.pyfunc.load_model(local)
        vectors = np.asarray(pyfunc.predict(pd.DataFrame({"title": ["producto"]})))
    except Exception as exc:  # whatever the artifact's defect: torch, pickle, zip or YAML errors
        raise ModelNotFoundError(
            f"model {model_uri!r} cannot be loaded: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
        ) from exc
    if vectors.shape != (1, dim):
        raise ModelNotFoundError(
            f"model {model_uri!r} returns vectors of shape {vectors.shape[1:]}, its encoder_meta.json says {dim}"
        )
    return ResolvedModel(model_uri, name, version, local, dim, pyfunc)


_MODELS: dict[str, object] = {}  # per Python worker process: one load per model, not per batch


def _load_cached(local_dir: str):
    model = _MODELS.get(local_dir)
    if model is None:
        import mlflow

        model = _MODELS[local_dir] = mlflow.pyfunc.load_model(local_dir)
    return model


def _embed(model, titles: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(vectors, tokens per title) from a loaded prodemb pyfunc. A version logged before its ``embed``
    existed answers through ``predict``, its tokens counted with its own tokenizer."""
    import pandas as pd

    impl = model.unwrap_python_model()
    if hasattr(impl, "embed"):
        return impl.embed(titles)
    vectors = model.predict(pd.DataFrame({"title": titles}))
    tokens = impl.tokenizer.encode_raw(titles, impl.meta["max_len"], language=impl.meta["language"])
    return vectors, (tokens != impl.tokenizer.pad_id).sum(axis=1)


SCORED_SCHEMA = "site string, product_id string, embedding array<float>, reason string, title string, content_hash long"
CONTENT_HASH = "content_hash"  # of (title_norm, category): what a product's vector is computed from


def embed_batches(model_dir: str, dim: int, shipped: str | None = None):
    """mapInArrow function: (site, product_id, title) batches → (site, product_id, embedding, reason, title).
    A row whose vector is not servable (``prodemb.vectors``: empty title, wrong dimension, non-finite,
    zero) gets no embedding, a reason and its title; servable rows get no title (it is not stored).
    ``shipped``: the name of the model's archive sent to the executors with ``SparkContext.addArchive``
    (a cluster): each worker loads its unpacked copy, not a path on the driver's disk."""
    import pyarrow.compute as pc

    from prodemb.vectors import OK, problem_codes, reason_names

    def run(batches):
        model = None
        for batch in batches:
            if batch.num_rows == 0:
                continue
            if model is None:  # loaded on the first row: a partition with nothing to embed loads no model
                model = _load_cached(_worker_path(shipped) if shipped else model_dir)
            titles = [t if isinstance(t, str) else "" for t in batch.column("title").to_pylist()]
            vectors, n_tokens = _embed(model, titles)
            vectors = np.ascontiguousarray(vectors, dtype=np.float32)
            if vectors.ndim != 2 or len(vectors) != len(titles):  # not one vector per title: none is usable
                vectors = np.zeros((len(titles), 0), dtype=np.float32)
            codes = problem_codes(vectors, dim, n_tokens)
            bad = pa.array(codes != OK)
            width = vectors.shape[1]
            offsets = pa.array(np.arange(0, (len(vectors) + 1) * width, width, dtype=np.int32))
            yield pa.RecordBatch.from_arrays(
                [
                    batch.column("site"),
                    batch.column("product_id"),
                    pa.ListArray.from_arrays(offsets, pa.array(vectors.reshape(-1)), mask=bad),
                    pa.array(reason_names(codes), pa.string()),
                    pc.if_else(bad, batch.column("title"), pa.scalar(None, pa.string())),  # kept for the quarantine
                    batch.column(CONTENT_HASH),
                ],
                names=["site", "product_id", "embedding", "reason", "title", CONTENT_HASH],
            )

    return run


def _worker_path(archive_name: str) -> str:
    """The executor's unpacked copy of a model archive shipped with SparkContext.addArchive."""
    from pyspark import SparkFiles

    return SparkFiles.get(archive_name)


def ship_model(spark, model: ResolvedModel) -> str:
    """Zip the downloaded model folder next to it and send it to every executor (Spark ships files and
    archives, not local folders, to a cluster). Returns the archive's name, the executors' key to it."""
    import shutil
    from pathlib import Path

    base = Path(model.local_dir).resolve()
    archive = shutil.make_archive(str(base.parent / f"prodemb-model-{model.version}"), "zip", root_dir=base)
    spark.sparkContext.addArchive(archive)
    return os.path.basename(archive)


def with_content_hash(catalog: DataFrame) -> DataFrame:
    """The catalog with ``content_hash``: a hash of the normalized title and the category, so a product
    whose hash is unchanged since a scoring by the same model has the same vector (incremental scoring)."""
    title = "title_norm" if "title_norm" in catalog.columns else "title"  # a hand-made catalog: the raw title
    category = F.col("category") if "category" in catalog.columns else F.lit(None).cast("string")
    return catalog.withColumn(
        CONTENT_HASH, F.xxhash64(F.coalesce(F.col(title), F.lit("")), F.coalesce(category, F.lit("")))
    )


def score_catalog(
    catalog: DataFrame, model: ResolvedModel, scored_at: datetime, shipped: str | None = None
) -> DataFrame:
    """catalog → one row per product for ``model`` (pure DataFrame → DataFrame; the model runs in workers):
    the embeddings table's columns plus ``reason`` (null: servable) and ``title`` (kept for quarantined
    rows only). ``servable`` and ``quarantined`` split it."""
    if CONTENT_HASH not in catalog.columns:
        catalog = with_content_hash(catalog)
    vectors = catalog.select("site", "product_id", "title", CONTENT_HASH).mapInArrow(
        embed_batches(model.local_dir, model.dim, shipped), SCORED_SCHEMA
    )
    return scored_columns(
        vectors, model, scored_at, dim=F.lit(model.dim), reason=F.col("reason"), title=F.col("title"), carried=False
    )


def scored_columns(
    rows: DataFrame, model: ResolvedModel, scored_at: datetime, *, dim, reason, title, carried: bool
) -> DataFrame:
    """``score_catalog``'s columns, in one order for embedded and carried-over rows (they are unioned)."""
    return rows.select(
        "site",
        "product_id",
        "embedding",
        F.lit(model.name).alias("model_name"),
        F.lit(model.version).alias("model_version"),
        F.lit(scored_at).cast("timestamp").alias("event_timestamp"),
        dim.alias("dim"),
        reason.alias("reason"),
        title.alias("title"),
        CONTENT_HASH,
        F.lit(carried).alias("carried"),
    )


INCREMENTAL_KEYS = ["site", "product_id", CONTENT_HASH]


BROADCAST_MAX_KEYS = 2_000_000  # catalog keys broadcast by incremental scoring (~100 MB on the driver)


def carry_over(
    catalog: DataFrame,
    previous: DataFrame | None,
    model: ResolvedModel,
    scored_at: datetime,
    broadcast: bool | None = None,
) -> tuple[DataFrame, DataFrame | None]:
    """Incremental scoring: (products to embed, rows carried over). A product keeps its vector from the
    previous scoring by the same model (name and version) when its ``content_hash`` is unchanged; new
    products, changed ones, and all of them for a model with no rows yet, are embedded. The carried rows
    have ``score_catalog``'s columns and this scoring's time, so the table equals a full rescoring's.
    ``broadcast`` None: broadcast the keys when the catalog has at most ``BROADCAST_MAX_KEYS`` products."""
    if previous is None or CONTENT_HASH not in previous.columns:
        return catalog, None
    if broadcast is None:
        broadcast = catalog.count() <= BROADCAST_MAX_KEYS
    same = (F.col("model_name") == model.name) & (F.col("model_version") == model.version)
    before = previous.where(same & F.col(CONTENT_HASH).isNotNull()).select(*INCREMENTAL_KEYS, "embedding", "dim")
    # The keys are small next to the vectors: broadcast, no vector is shuffled (measured: 43 → 35 s for
    # 10^6 products). Past BROADCAST_MAX_KEYS the joins shuffle instead of filling the driver's memory.
    hint = F.broadcast if broadcast else (lambda df: df)
    no_text = F.lit(None).cast("string")
    carried = scored_columns(
        before.join(hint(catalog.select(*INCREMENTAL_KEYS)), INCREMENTAL_KEYS, "inner"),
        model,
        scored_at,
        dim=F.col("dim"),
        reason=no_text,
        title=no_text,
        carried=True,
    )
    return catalog.join(hint(before.select(*INCREMENTAL_KEYS)), INCREMENTAL_KEYS, "left_anti"), carried


def servable(scored: DataFrame) -> DataFrame:
    """The rows of ``score_catalog`` that go into the embeddings table, with its columns."""
    return scored.where(F.col("reason").isNull()).drop("reason", "title", "carried")


def quarantined(scored: DataFrame) -> DataFrame:
    """The rows of ``score_catalog`` that get no vector: who, which model, when, the title and why."""
    return scored.where(F.col("reason").isNotNull()).select(
        "site", "product_id", "title", "model_name", "model_version", "event_timestamp", "reason"
    )


def model_key(name: str, version: str) -> str:
    """How a model is named in reports: its registered name and version, as in ``models:/name/version``
    (version numbers alone collide: every registered name has a version 1)."""
    return f"{name}/{version}"


MODEL_PARTITION = "model"  # the embeddings table's partition column: one folder per model
_NOT_IN_PATH = r"[^A-Za-z0-9_.-]"  # characters of a model name replaced by "_" in its partition value


def model_partition(name: str, version: str) -> str:
    """A model's partition value, safe in a path: ``prodemb-encoder-v3``."""
    return re.sub(_NOT_IN_PATH, "_", f"{name}-v{version}")


def with_model_partition(table: DataFrame) -> DataFrame:
    """The table with its ``model`` column computed from model_name and model_version (as model_partition)."""
    key = F.concat(F.col("model_name"), F.lit("-v"), F.col("model_version"))
    return table.withColumn(MODEL_PARTITION, F.regexp_replace(key, _NOT_IN_PATH, "_"))


def merge_versions(
    previous: DataFrame | None, new: DataFrame, name: str, version: str, keep: int
) -> tuple[DataFrame, dict[str, int]]:
    """New rows + previous rows of other models, keeping the ``keep`` newest versions of each registered
    name (one name per site's model: a site's scoring never drops another site's rows). A model is a
    (model_name, model_version) pair, so rescoring replaces only its own rows. Returns the table and the
    row count of every kept previous model by ``model_key`` (the report needs no read-back)."""
    if previous is None:
        return new, {}
    same = (F.col("model_name") == name) & (F.col("model_version") == version)
    others = previous.where(~same)
    models = (
        others.groupBy("model_name", "model_version")
        .agg(F.max("event_timestamp").alias("t"), F.count(F.lit(1)).alias("n"))
        .orderBy(F.desc("t"))
        .collect()
    )
    newest, per_name = [], {}
    for r in models:  # newest first; the scored model counts as one of its name's versions
        per_name[r["model_name"]] = per_name.get(r["model_name"], int(r["model_name"] == name)) + 1
        if per_name[r["model_name"]] <= keep:
            newest.append(r)
    kept = {model_key(r["model_name"], r["model_version"]): r["n"] for r in newest}
    keep_rows = F.lit(False)
    for r in newest:
        keep_rows = keep_rows | (
            (F.col("model_name") == r["model_name"]) & (F.col("model_version") == r["model_version"])
        )
    # allowMissingColumns: a table written before a column existed (content_hash) gets nulls there
    return new.unionByName(others.where(keep_rows), allowMissingColumns=True), kept


def run_score(
    spark,
    data_dir: str,
    model_uri: str,
    output: str | None,
    *,
    tracking_uri: str | None,
    fmt: str = "parquet",
    keep_model_versions: int = 3,
    scored_at: datetime | None = None,
    site: str | None = None,
    incremental: bool = True,
) -> dict:
    """Embed DIR/catalog into ``output`` (default DIR/embeddings); with ``site``, that site's products only
    (with that site's model; the other sites' rows stay). ``incremental``: products whose normalized title
    and category are unchanged since the last scoring by the same model keep their vector (``carry_over``);
    False embeds every product. Returns a report dict. The model is downloaded into a temporary folder
    that is removed when scoring ends."""
    import tempfile

    t0 = time.perf_counter()
    data_dir = data_dir.rstrip("/")
    output = output or f"{data_dir}/embeddings"
    from prodemb import fs

    with tempfile.TemporaryDirectory(prefix="prodemb-model-") as download, fs.output_lock(output, "score"):
        model = resolve_model(model_uri, tracking_uri, download)  # fails before touching the table
        return _score_with(
            spark,
            model,
            data_dir,
            output,
            fmt=fmt,
            keep_model_versions=keep_model_versions,
            scored_at=scored_at,
            t0=t0,
            site=site,
            incremental=incremental,
        )


def _score_with(
    spark,
    model: ResolvedModel,
    data_dir: str,
    output: str,
    *,
    fmt: str,
    keep_model_versions: int,
    scored_at: datetime | None,
    t0: float,
    site: str | None = None,
    incremental: bool = True,
) -> dict:
    from pyspark import StorageLevel

    from prodemb import fs
    from prodemb.spark import ship_package
    from prodemb.tables import read_table, write_table

    # Executors are other processes, maybe on other machines: they get the model and this package from
    # the driver, never from a path on the driver's disk.
    shipped, executor_package = None, None
    if not spark.sparkContext.master.startswith("local"):
        shipped = ship_model(spark, model)
        ship_package(spark)
        # Where a Python worker imports this package from: the shipped zip, not the driver's folder.
        executor_package = (
            spark.sparkContext.parallelize([0], 1).map(lambda _: __import__("prodemb").__path__[0]).first()
        )
    scored_at = scored_at or datetime.now(timezone.utc)
    catalog = with_content_hash(read_table(spark, f"{data_dir}/catalog"))
    if site is not None:
        catalog = catalog.where(F.col("site") == site)
    # The previous version's files stay on disk until after the swap (tables.keep_versions).
    previous = read_table(spark, output).drop(MODEL_PARTITION) if fs.exists(output) else None
    to_embed, carried = carry_over(catalog, previous, model, scored_at) if incremental else (catalog, None)
    scored = score_catalog(to_embed, model, scored_at, shipped)
    if carried is not None:
        scored = scored.unionByName(carried)
    scored = scored.persist(StorageLevel.MEMORY_AND_DISK)
    quarantine_path = f"{output}_quarantine" + (f"_{site}" if site else "")  # a site's scoring replaces its own
    try:
        # One job counts every outcome (null: servable): rows in = rows out + rows quarantined.
        outcomes = scored.groupBy("reason", "carried").count().collect()
        n_carried = sum(r["count"] for r in outcomes if r["carried"])
        counts: dict = {}
        for r in outcomes:
            counts[r["reason"]] = counts.get(r["reason"], 0) + r["count"]
        n_new = counts.pop(None, 0)
        if site is not None and n_new + sum(counts.values()) == 0:
            raise ValueError(f"site {site!r} has no products in {data_dir}/catalog: nothing scored")
        written_quarantine = None  # this scoring's quarantine replaces the previous one, if any
        if counts or fs.exists(quarantine_path):
            written_quarantine = write_table(quarantined(scored), quarantine_path, fmt)
        table, kept = merge_versions(previous, servable(scored), model.name, model.version, keep_model_versions)
        written = write_table(with_model_partition(table), output, fmt, partition_by=[MODEL_PARTITION])
    finally:
        scored.unpersist()
    versions = {model_key(model.name, model.version): n_new, **kept}
    if written.get("rows") not in (None, sum(versions.values())):
        raise RuntimeError(
            f"accounting mismatch: {sum(versions.values())} rows meant for {output}, {written['rows']} written"
        )
    n_quarantined = sum(counts.values())
    if written_quarantine is not None and written_quarantine.get("rows") not in (None, n_quarantined):
        raise RuntimeError(
            f"accounting mismatch: {n_quarantined} rows meant for {quarantine_path}, "
            f"{written_quarantine['rows']} written"
        )
    return {
        "site": site,
        "model_uri": model.uri,
        "model_name": model.name,
        "model_version": model.version,
        "dim": model.dim,
        "products_scored": n_new,
        "rows_in": n_new + n_quarantined,
        "rows_out": n_new,
        "rows_embedded": n_new + n_quarantined - n_carried,
        "rows_carried": n_carried,
        "incremental": incremental,
        "rows_quarantined": n_quarantined,
        "rows_quarantined_by_reason": counts,
        "quarantine": quarantine_path if counts else None,
        "rows_by_model_version": versions,
        "scored_at": scored_at.isoformat(),
        "output": output,
        "table": written,
        "executor_package": executor_package,
        "seconds": round(time.perf_counter() - t0, 2),
    }
