"""Atomic write/read of the stage tables (Parquet or Delta) and the ``_run.json`` report.

Parquet on a local filesystem: every write goes to a fresh folder ``DIR/_versions/<table>/<id>``
and the table path ``DIR/<table>`` is a symlink that is swapped with one atomic ``rename``. A reader
sees the old or the new table, never a half-written one; a run killed mid-write leaves the symlink
on the previous version. The newest ``keep_versions`` versions are kept so a reader that resolved
the old link a moment ago can finish.

Delta: the overwrite is a Delta transaction (atomic by design) and the table keeps its history
(time travel with ``versionAsOf``). Object stores without atomic rename should use Delta.
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession

VERSIONS_DIR = "_versions"


def _is_local(path: str) -> bool:
    return "://" not in path or path.startswith("file://")


def _local(path: str) -> Path:
    return Path(path.removeprefix("file://"))


def table_format(path: str) -> str:
    """'delta' if the path holds a Delta table, else 'parquet'."""
    return "delta" if _is_local(path) and (_local(path) / "_delta_log").is_dir() else "parquet"


def write_table(df: DataFrame, path: str, fmt: str = "parquet", keep_versions: int = 2,
                partition_by: list[str] | None = None,
                partition: tuple[str, str] | None = None) -> dict[str, Any]:
    """Replace the table at ``path`` with ``df`` atomically. Returns what was written.

    With ``partition=(column, value)`` only that partition is replaced (incremental runs): for
    Parquet ``path/column=value`` is its own atomically swapped symlink, for Delta an overwrite with
    ``replaceWhere``. Other partitions are untouched.
    """
    if fmt == "delta":
        if partition:
            return _write_delta_partition(df, path, *partition)
        return _write_delta(df, path, partition_by)
    if fmt != "parquet":
        raise ValueError(f"unknown table format {fmt!r} (parquet or delta)")
    if not _is_local(path):
        raise ValueError(f"{path}: atomic Parquet replace needs a local filesystem; use --format delta "
                         "on object stores")
    link = _local(path).absolute()
    if partition:
        if link.is_symlink():
            raise ValueError(f"{path} holds a full (non-incremental) table; write interval runs to another folder")
        column, value = partition
        link.mkdir(parents=True, exist_ok=True)
        versions = link.parent / VERSIONS_DIR / link.name / f"{column}={value}"
        link = link / f"{column}={value}"
        df = df.drop(column) if column in df.columns else df
    else:
        versions = link.parent / VERSIONS_DIR / link.name
    version_id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f") + "-" + uuid.uuid4().hex[:8]
    target = versions / version_id
    versions.mkdir(parents=True, exist_ok=True)
    writer = df.write.mode("errorifexists")
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    writer.parquet(str(target))
    _swap_link(link, target)
    _prune(versions, keep=keep_versions, current=target)
    return {"path": str(link), "format": "parquet", "version": version_id}


def _swap_link(link: Path, target: Path) -> None:
    if link.exists() and not link.is_symlink():
        # A real folder from an older layout or another format: move it aside as a version.
        if (link / "_delta_log").is_dir():
            shutil.rmtree(link)
        else:
            link.rename(target.parent / ("legacy-" + uuid.uuid4().hex[:8]))
    tmp = link.parent / f".{link.name}.{uuid.uuid4().hex[:8]}.link"
    os.symlink(os.path.relpath(target, link.parent), tmp)
    os.replace(tmp, link)  # atomic on POSIX


def _prune(versions: Path, keep: int, current: Path) -> None:
    done = sorted((p for p in versions.iterdir() if p.is_dir() and (p / "_SUCCESS").exists()),
                  key=lambda p: p.name)
    stale = [p for p in done if p != current][: max(0, len(done) - keep)]
    # Folders without _SUCCESS are writes that were killed: they were never linked, drop them too.
    broken = [p for p in versions.iterdir() if p.is_dir() and not (p / "_SUCCESS").exists() and p != current]
    for p in stale + broken:
        shutil.rmtree(p, ignore_errors=True)


def _write_delta_partition(df: DataFrame, path: str, column: str, value: str) -> dict[str, Any]:
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    df = df.withColumn(column, F.lit(value))
    (df.write.format("delta").mode("overwrite").partitionBy(column)
     .option("replaceWhere", f"{column} = '{value}'").save(path))
    version = DeltaTable.forPath(df.sparkSession, path).history(1).select("version").first()[0]
    return {"path": path, "format": "delta", "version": int(version), "partition": f"{column}={value}"}


def _write_delta(df: DataFrame, path: str, partition_by: list[str] | None) -> dict[str, Any]:
    from delta.tables import DeltaTable

    if _is_local(path):
        p = _local(path)
        if p.is_symlink():  # switching a table from Parquet to Delta
            p.unlink()
    writer = df.write.format("delta").mode("overwrite").option("overwriteSchema", "true")
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    writer.save(path)
    version = DeltaTable.forPath(df.sparkSession, path).history(1).select("version").first()[0]
    return {"path": path, "format": "delta", "version": int(version)}


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


def write_json(path: str | Path, data: dict[str, Any]) -> None:
    """Write JSON atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_json(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def read_table_arrow(path: str, columns: list[str] | None = None, version: int | None = None):
    """Read a stage table into a pyarrow Table without Spark (Parquet), or through Spark (Delta).

    The training and scoring jobs use this for the catalog and pairs, which fit in memory.
    """
    import pyarrow.dataset as ds

    if table_format(path) == "delta":
        from prodemb.spark import get_spark

        df = read_table(get_spark(delta=True), path, version)
        df = df.select(*columns) if columns else df
        return df.toArrow()
    if version is not None:
        raise ValueError(f"{path} is Parquet: versions are only kept for Delta tables")
    # Resolve the symlink first so every file comes from one version, even if a rerun swaps it now.
    real = os.path.realpath(_local(path))
    return ds.dataset(real, format="parquet").to_table(columns=columns)


def table_version(path: str) -> str | int | None:
    """The version a table path points at now: Delta version number or Parquet version folder."""
    if table_format(path) == "delta":
        from prodemb.spark import get_spark
        from delta.tables import DeltaTable

        return int(DeltaTable.forPath(get_spark(delta=True), path).history(1).select("version").first()[0])
    p = _local(path)
    return os.path.basename(os.path.realpath(p)) if p.is_symlink() else None
