"""Atomic replace of stage tables (Parquet symlink swap, Delta transactions and time travel)."""

from __future__ import annotations

import os

import pytest
from pyspark.sql import functions as F

from prodemb.tables import read_table, read_table_arrow, table_format, write_table


def test_parquet_rerun_replaces_atomically_and_keeps_previous_version(spark, tmp_path):
    path = str(tmp_path / "t")
    first = write_table(spark.range(5), path)
    assert os.path.islink(path)
    assert read_table(spark, path).count() == 5
    second = write_table(spark.range(7), path)
    assert first["version"] != second["version"]
    assert read_table(spark, path).count() == 7
    versions = sorted(os.listdir(tmp_path / "_versions" / "t"))
    assert versions == sorted([first["version"], second["version"]])
    write_table(spark.range(9), path)
    assert len(os.listdir(tmp_path / "_versions" / "t")) == 2  # older versions pruned
    assert table_format(path) == "parquet"


def test_failed_write_leaves_previous_table_readable(spark, tmp_path):
    path = str(tmp_path / "t")
    write_table(spark.range(5), path)
    # A job that dies halfway through writing: Spark raises inside the tasks.
    boom = (
        spark.range(100)
        .repartition(4)
        .select(F.when(F.col("id") == 77, F.raise_error(F.lit("killed mid-write"))).otherwise(F.col("id")).alias("id"))
    )
    with pytest.raises(Exception, match="killed mid-write"):
        write_table(boom, path)
    assert sorted(r.id for r in read_table(spark, path).collect()) == list(range(5))
    # The next successful write cleans the abandoned folder up.
    write_table(spark.range(3), path)
    assert len(os.listdir(tmp_path / "_versions" / "t")) == 2


def test_delta_overwrite_and_time_travel(spark, tmp_path):
    path = str(tmp_path / "d")
    v0 = write_table(spark.range(5), path, fmt="delta")
    v1 = write_table(spark.range(10, 17), path, fmt="delta")
    assert (v0["version"], v1["version"]) == (0, 1)
    assert (v0["rows"], v1["rows"]) == (5, 7)  # from the commits' metrics, no count job
    assert table_format(path) == "delta"
    assert read_table(spark, path).count() == 7
    assert sorted(r.id for r in read_table(spark, path, version=0).collect()) == list(range(5))


def test_written_rows_counts_when_the_commit_has_no_metrics(spark, tmp_path):
    from prodemb.tables import written_rows

    path = str(tmp_path / "d")
    spark.conf.set("spark.databricks.delta.history.metricsEnabled", "false")
    try:
        written = write_table(spark.range(6), path, fmt="delta")
    finally:
        spark.conf.unset("spark.databricks.delta.history.metricsEnabled")
    assert written["rows"] is None
    assert written_rows(written, lambda: read_table(spark, path)) == 6
    assert written_rows({"rows": 3}, lambda: 1 / 0) == 3  # a commit's count needs no read


def test_switching_parquet_table_to_delta(spark, tmp_path):
    path = str(tmp_path / "t")
    write_table(spark.range(2), path)
    parquet_version = os.path.realpath(path)
    written = write_table(spark.range(4), path, fmt="delta")
    assert table_format(path) == "delta" and read_table(spark, path).count() == 4 and written["rows"] == 4
    # The Delta table was written aside and exchanged with the link: a real folder now, and the Parquet
    # version a reader may still be reading is left where it was.
    assert not os.path.islink(path) and os.path.isdir(os.path.join(path, "_delta_log"))
    assert spark.read.parquet(parquet_version).count() == 2
    write_table(spark.range(5), path, fmt="delta")  # and it goes on as a Delta table
    assert read_table(spark, path).count() == 5 and read_table(spark, path, version=0).count() == 4


def test_parquet_has_no_versions_to_travel(spark, tmp_path):
    path = str(tmp_path / "t")
    write_table(spark.range(2), path)
    with pytest.raises(ValueError, match="only kept for Delta"):
        read_table(spark, path, version=0)


def test_parquet_on_a_non_local_uri_is_refused_before_anything_runs(spark):
    with pytest.raises(ValueError, match="use Delta"):
        write_table(spark.range(2), "s3a://lake/tables/t")


def test_file_uris_work_like_paths(spark, tmp_path):
    uri = (tmp_path / "d").as_uri()  # file:///…/d
    write_table(spark.range(3), uri, fmt="delta")
    assert table_format(uri) == "delta" and read_table(spark, uri).count() == 3
    write_table(spark.range(4), f"file://{tmp_path}/p")
    assert table_format(f"file://{tmp_path}/p") == "parquet"
    assert read_table_arrow(f"file://{tmp_path}/p").num_rows == 4


@pytest.mark.parametrize("fmt", ["parquet", "delta"])
def test_arrow_dataset_streams_the_current_version(spark, tmp_path, fmt):
    from prodemb.tables import arrow_dataset

    path = (tmp_path / "t").as_uri() if fmt == "delta" else str(tmp_path / "t")
    write_table(spark.range(5).repartition(2), path, fmt=fmt)
    write_table(spark.range(10, 17).repartition(3), path, fmt=fmt)  # the old files stay on disk
    rows = sorted(x for b in arrow_dataset(path).to_batches(batch_size=2) for x in b.column("id").to_pylist())
    assert rows == list(range(10, 17))


def test_arrow_dataset_reads_a_partitioned_delta_table_with_its_partition_column(spark, tmp_path):
    from prodemb.tables import arrow_dataset, table_version

    path = str(tmp_path / "p")
    for value, n in (("a", 4), ("b", 3)):
        assert write_table(spark.range(n), path, fmt="delta", partition=("interval", value))["rows"] == n
    again = write_table(spark.range(100, 102), path, fmt="delta", partition=("interval", "a"))  # replaces a only
    assert again["rows"] == 2  # the partition's rows, not the table's
    got = sorted((r["interval"], r["id"]) for r in arrow_dataset(path).to_table().to_pylist())
    assert got == [("a", 100), ("a", 101), ("b", 0), ("b", 1), ("b", 2)]
    assert table_version(path) == 2
