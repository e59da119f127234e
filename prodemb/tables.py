"""Atomic write/read of the stage tables (Parquet or Delta), on any filesystem of prodemb.fs.

Parquet on a local filesystem: every write goes to a fresh folder ``DIR/_versions/<table>/<id>``
and the table path ``DIR/<table>`` is a symlink that is swapped with one atomic ``rename``. A reader
sees the old or the new table, never a half-written one; a run killed mid-write leaves the symlink
on the previous version. The newest ``keep_versions`` versions are kept so a reader that resolved
the old link a moment ago can finish.

Delta: the overwrite is a Delta transaction (atomic by design) and the table keeps its history
(time travel with ``versionAsOf``). Object stores have no atomic rename: there Parquet is refused and
Delta is required.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prodemb import faults, fs

if TYPE_CHECKING:  # Spark only for the annotations: reading Parquet with Arrow needs no JVM
    from pyspark.sql import DataFrame, SparkSession


def table_format(path: str) -> str:
    """'delta' if the path holds a Delta table (on any filesystem), else 'parquet'."""
    return "delta" if fs.is_dir(fs.join(path, "_delta_log")) else "parquet"


def write_table(
    df: DataFrame,
    path: str,
    fmt: str = "parquet",
    keep_versions: int = 2,
    partition_by: list[str] | None = None,
    partition: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """Replace the table at ``path`` with ``df`` atomically. Returns what was written.

    With ``partition=(column, value)`` only that partition is replaced (incremental runs): for
    Parquet ``path/column=value`` is its own atomically swapped symlink, for Delta an overwrite with
    ``replaceWhere``. Other partitions are untouched. Parquet needs a local filesystem (the swap is a
    symlink rename); on other URIs it is refused with a clear error.
    """
    if fmt == "delta":
        if partition:
            return _write_delta_partition(df, path, *partition)
        return _write_delta(df, path, partition_by)
    if fmt != "parquet":
        raise ValueError(f"unknown table format {fmt!r} (parquet or delta)")
    link = Path(fs.require_local(path, "an atomic Parquet table replace")).absolute()
    if partition:
        if link.is_symlink():
            raise ValueError(f"{path} holds a full (non-incremental) table; write interval runs to another folder")
        column, value = partition
        link.mkdir(parents=True, exist_ok=True)
        versions = link.parent / fs.VERSIONS_DIR / link.name / f"{column}={value}"
        link = link / f"{column}={value}"
        df = df.drop(column) if column in df.columns else df
    else:
        versions = link.parent / fs.VERSIONS_DIR / link.name
    writer = df.write.mode("errorifexists")
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    with fs.staging(versions) as target:  # no other run's prune deletes it while Spark writes it
        writer.parquet(str(target))
        faults.point("tables.parquet_written")
        # A real folder in the way (an older layout, a Delta table) is exchanged with the link, kept aside.
        fs.swap_link(link, target, aside=versions)
    fs.prune_versions(versions, keep=keep_versions, current=target, done_marker=fs.DONE)
    return {"path": str(link), "format": "parquet", "version": target.name}


def _write_delta_partition(df: DataFrame, path: str, column: str, value: str) -> dict[str, Any]:
    from pyspark.sql import functions as F

    df = df.withColumn(column, F.lit(value))
    # mergeSchema: a column added to a stage table (a new nullable field) joins the existing partitions.
    (
        df.write.format("delta")
        .mode("overwrite")
        .partitionBy(column)
        .option("mergeSchema", "true")
        .option("replaceWhere", f"{column} = '{value}'")
        .save(path)
    )
    return {"path": path, "format": "delta", **_last_commit(path), "partition": f"{column}={value}"}


def _write_delta(df: DataFrame, path: str, partition_by: list[str] | None) -> dict[str, Any]:
    writer = df.write.format("delta").mode("overwrite").option("overwriteSchema", "true")
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    link = Path(fs.local_path(path)).absolute() if fs.is_local(path) else None
    if link is not None and link.is_symlink():
        # Switching a table from Parquet (a symlink to a version folder) to Delta: the Delta table is
        # written aside and exchanged with the link in one step (its log names files relative to it).
        with fs.staging(link.parent / fs.VERSIONS_DIR / link.name) as stage:
            writer.save(str(stage))
            fs.replace_dir(stage, link)
    else:
        writer.save(path)
    return {"path": path, "format": "delta", **_last_commit(path)}


def _last_commit(path: str) -> dict[str, Any]:
    """Version and row count of the commit just made, read from the log in this process (delta-rs): a
    Spark history query or a count costs a job and a log replay on the cluster for one number. ``rows``
    is the commit's ``numOutputRows`` (rows written, the partition's for a ``replaceWhere``), None where
    the writer recorded no metrics (``spark.databricks.delta.history.metricsEnabled=false``)."""
    table = _delta_table(path, files=False)
    commit = table.history(1)[0]  # the snapshot's latest commit: the version reported with it
    rows = (commit.get("operationMetrics") or {}).get("numOutputRows")
    return {"version": table.version(), "rows": None if rows is None else int(rows)}


def written_rows(written: dict[str, Any], read_back) -> int:
    """Rows of what ``write_table`` wrote: the Delta commit's count when it has one, else a count of
    ``read_back()`` (the written table or partition, read back)."""
    rows = written.get("rows")
    return read_back().count() if rows is None else rows


def read_table(spark: SparkSession, path: str, version: int | None = None) -> DataFrame:
    """Read a stage table in whichever format it was written; ``version`` = Delta time travel."""
    if table_format(path) == "delta":
        reader = spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version)
        return reader.load(path)
    if version is not None:
        raise ValueError(f"{path} is Parquet: versions are only kept for Delta tables")
    return spark.read.parquet(path)


def _delta_table(path: str, version: int | None = None, files: bool = True):
    """The Delta table at ``path`` as delta-rs reads it: the log is replayed in this process, so a
    Python-side read (tokenizer, training, publishing) starts no JVM and gets exactly the files of the
    snapshot (removed files are never read). ``files=False`` skips the snapshot's file list, for callers
    that only need the version or the history (a table of 10^8 pairs has thousands of files)."""
    from deltalake import DeltaTable

    uri, options = fs.delta_location(path)
    return DeltaTable(uri, version=version, storage_options=options or None, without_files=not files)


def read_table_arrow(path: str, columns: list[str] | None = None, version: int | None = None):
    """Read a stage table into a pyarrow Table without Spark (Parquet, or Delta through delta-rs)."""
    if table_format(path) == "delta":
        return _delta_table(path, version).to_pyarrow_table(columns=columns)
    if version is not None:
        raise ValueError(f"{path} is Parquet: versions are only kept for Delta tables")
    return parquet_dataset(path).to_table(columns=columns)


def arrow_dataset(path: str):
    """A pyarrow dataset over the current version of a table, Parquet or Delta, on any filesystem, for
    streaming reads (``iter_batches``) without Spark collecting anything. For Delta the files are those
    of the current snapshot (delta-rs reads the log); partition columns come back as columns."""
    if table_format(path) != "delta":
        return parquet_dataset(path)
    return _delta_table(path).to_pyarrow_dataset()


def iter_batches(dataset, columns: list[str], batch_size: int):
    """Record batches of a pyarrow dataset, file by file in the dataset's order. A dataset scanner decodes
    files ahead without bound (measured: all of them); one fragment at a time keeps memory at about a
    row group, whatever the table's size."""
    for fragment in dataset.get_fragments():
        yield from fragment.to_batches(columns=columns, batch_size=batch_size, batch_readahead=1)


def parquet_dataset(path: str):
    """A pyarrow dataset over a Parquet table on any filesystem. A local table's symlink is resolved
    first, so every file comes from one version even if a rerun swaps it meanwhile."""
    import pyarrow.dataset as ds

    if fs.is_local(path):
        return ds.dataset(os.path.realpath(fs.local_path(path)), format="parquet")
    filesystem, inner = fs.filesystem(path)
    return ds.dataset(inner, filesystem=filesystem, format="parquet")


def table_version(path: str) -> str | int | None:
    """The version a table path points at now: Delta version number or Parquet version folder."""
    if table_format(path) == "delta":
        return int(_delta_table(path, files=False).version())
    p = Path(fs.local_path(path)) if fs.is_local(path) else None
    return os.path.basename(os.path.realpath(p)) if p is not None and p.is_symlink() else None
