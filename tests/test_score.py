"""prodemb.score's pure parts (the end-to-end scoring tests, with a registered model, are in test_features.py)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest


@pytest.mark.parametrize("broadcast", [True, False])
def test_carry_over_keeps_unchanged_products_of_the_same_model_only(spark, broadcast):
    from prodemb.score import ResolvedModel, carry_over, with_content_hash

    catalog = with_content_hash(
        spark.createDataFrame(
            [
                ("A", "p1", "mesa roble", "Muebles"),
                ("A", "p2", "silla nueva", "Muebles"),
                ("A", "p3", "lampara", "Luz"),
                ("B", "p1", "mesa pino", "Muebles"),
            ],
            "site string, product_id string, title_norm string, category string",
        )
    )
    hashes = {(r.site, r.product_id): r.content_hash for r in catalog.collect()}
    t0 = datetime(2025, 1, 1, tzinfo=timezone.utc)
    previous = spark.createDataFrame(
        [
            ("A", "p1", [1.0, 0.0], "enc", "1", t0, 2, hashes[("A", "p1")]),  # unchanged: carried
            ("A", "p2", [0.0, 1.0], "enc", "1", t0, 2, hashes[("A", "p2")] + 1),  # title changed: embedded
            ("B", "p1", [0.5, 0.5], "enc", "2", t0, 2, hashes[("B", "p1")]),  # another version: embedded
            ("A", "p9", [0.3, 0.3], "enc", "1", t0, 2, 7),
        ],  # gone from the catalog: dropped
        "site string, product_id string, embedding array<float>, model_name string, model_version string, "
        "event_timestamp timestamp, dim int, content_hash long",
    )
    model = ResolvedModel("models:/enc/1", "enc", "1", "/nowhere", 2)
    later = datetime(2025, 1, 2, tzinfo=timezone.utc)
    to_embed, carried = carry_over(catalog, previous, model, later, broadcast=broadcast)
    assert sorted((r.site, r.product_id) for r in to_embed.collect()) == [("A", "p2"), ("A", "p3"), ("B", "p1")]
    rows = carried.collect()
    assert [(r.site, r.product_id, list(r.embedding), r.model_version, r.carried) for r in rows] == [
        ("A", "p1", [1.0, 0.0], "1", True)
    ]
    assert rows[0].event_timestamp.replace(tzinfo=None) == later.replace(tzinfo=None)  # this scoring's time
    # A table without content hashes (written before incremental scoring) carries nothing.
    assert carry_over(catalog, previous.drop("content_hash"), model, later)[1] is None


def test_each_python_worker_gets_one_torch_thread(spark):
    """Scoring runs the encoder in Spark's Python workers, one per task slot: Spark sets their
    OMP_NUM_THREADS to spark.task.cpus (1), so local[2]'s two workers use two cores, not 2 × 2 threads."""

    def threads(_):
        import os

        import torch

        yield os.environ.get("OMP_NUM_THREADS"), torch.get_num_threads()

    assert set(spark.sparkContext.parallelize(range(4), 2).mapPartitions(threads).collect()) == {("1", 1)}


def test_a_partition_with_nothing_to_embed_loads_no_model(tmp_path):
    """Incremental scoring leaves most partitions empty: their workers must not pay for a model load. The
    folder here holds no model, so a load would fail."""
    import pyarrow as pa

    from prodemb.score import CONTENT_HASH, embed_batches

    run = embed_batches(str(tmp_path / "no-model"), 4)
    empty = pa.RecordBatch.from_pydict(
        {
            "site": pa.array([], pa.string()),
            "product_id": pa.array([], pa.string()),
            "title": pa.array([], pa.string()),
            CONTENT_HASH: pa.array([], pa.int64()),
        }
    )
    assert list(run(iter([]))) == [] and list(run(iter([empty]))) == []
    one = pa.RecordBatch.from_pydict({"site": ["A"], "product_id": ["p1"], "title": ["mesa"], CONTENT_HASH: [1]})
    with pytest.raises(Exception, match="no-model"):  # a row to embed: the model is loaded (and missing here)
        list(run(iter([one])))
