"""The JVM class-data archive of the local Spark driver: a spark-submit's JVM maps the classes Spark loads
at start (about 12,000 of them, parsed and verified once, at ``make venv``) instead of reading them from
the jars.

A trivial ``spark-submit --master local[2]`` takes 4.3 s instead of 7.0 s on 2 cores with it
(benchmarks/RESULTS.md, "Spark start-up"). cluster-up gives it to the executors of this machine's workers
too (prodemb.cluster.install_spark_defaults). The JVM's dynamic archive (``-XX:ArchiveClassesAtExit``, JDK 13+)
records the classes one run loads; later JVMs load them with ``-XX:SharedArchiveFile``.

One rule of the JDK shapes the settings: no directory that holds files may come before a jar that
archived classes came from on the class path. Spark's launcher puts ``spark.driver.extraClassPath`` first,
then the conf folder (which holds spark-defaults.conf), then its jars. So the driver's extra class path
names Spark's own jars (``spark_jars_classpath``): they come first and the conf folder moves behind them.
A JVM whose archive does not match (another JDK, another Spark, another class path) loads its classes
from the jars as before; the archive's warnings are turned off, so such a run looks like any other.

Run ``python -m prodemb.class_data`` for a one-line report; ``make venv`` builds the archive.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from prodemb import fs
from prodemb.spark import spark_home

# The classes the archive records are those one small run of every kind of work the jobs do loads.
WORKLOAD = """
import sys, tempfile
import pyarrow as pa
from pyspark.sql import SparkSession, functions as F

spark = SparkSession.builder.appName("prodemb-class-data").getOrCreate()
with tempfile.TemporaryDirectory() as tmp:
    df = spark.range(2000).select(
        (F.col("id") % 97).cast("string").alias("user_id"), (F.col("id") % 31).cast("string").alias("product_id"),
        F.timestamp_seconds(F.col("id") * 60).alias("ts"), F.concat(F.lit("title "), F.col("id")).alias("title"))
    df.write.mode("overwrite").parquet(f"{tmp}/clicks")
    clicks = spark.read.parquet(f"{tmp}/clicks")
    per_product = clicks.groupBy("product_id").agg(F.max_by("title", "ts").alias("title"), F.count("*").alias("n"),
                                                   F.min("ts").alias("first_seen"))

    def passthrough(batches):
        for batch in batches:
            yield pa.RecordBatch.from_arrays([batch.column(0), batch.column(1)], ["user_id", "product_id"])

    sessions = (clicks.repartition("user_id").sortWithinPartitions("user_id", "ts")
                .mapInArrow(passthrough, "user_id string, product_id string")
                .groupBy("user_id").agg(F.collect_list("product_id").alias("products"))
                .select("user_id", F.xxhash64("user_id").alias("session_id"), "products"))
    pairs = sessions.select("session_id", F.posexplode("products").alias("i", "a"))
    sessions.write.mode("overwrite").parquet(f"{tmp}/sessions")
    per_product.join(pairs, per_product.product_id == pairs.a, "left").write.mode("overwrite").parquet(f"{tmp}/pairs")
    spark.read.parquet(f"{tmp}/sessions").where(F.size("products") > 1).count()
    print(spark.read.parquet(f"{tmp}/pairs").count())
spark.stop()
"""


def spark_jars_classpath(home: Path | None = None) -> str:
    """Spark's own jars as a class path (slf4j's API first, as Spark's launcher orders them)."""
    jars = Path(home or spark_home()) / "jars"
    slf4j = sorted(jars.glob("slf4j-api-*.jar"))
    return ":".join([*(str(j) for j in slf4j), f"{jars}/*"])


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    return str(Path(java_home) / "bin" / "java") if java_home else "java"


def archive_path(home: Path | None = None) -> Path:
    """Where the archive of this Spark and this JDK lives: beside Spark's jars, named by the JDK's build and
    the jars (names, sizes, times), so another JDK or Spark gets (and needs) an archive of its own."""
    home = Path(home or spark_home())
    env = {k: v for k, v in os.environ.items() if k not in ("JDK_JAVA_OPTIONS", "JAVA_TOOL_OPTIONS")}
    version = subprocess.run([_java(), "-version"], capture_output=True, text=True, env=env).stderr
    # The JVM checks each jar's size and time against the archive: a reinstalled Spark needs a new one.
    jars = sorted(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in (home / "jars").glob("*.jar"))
    key = hashlib.sha256("\n".join([version, *jars]).encode()).hexdigest()[:12]
    return home / "class-data" / f"driver-{key}.jsa"


# The archive's own notices (a JVM that cannot use it, classes it cannot hold) stay off.
QUIET = "-Xlog:cds=off -Xlog:cds+dynamic=off"


def java_options(archive: Path) -> str:
    """The driver's JVM flags that use ``archive``; a JVM that cannot use it says nothing and goes on."""
    return f"-XX:SharedArchiveFile={archive} {QUIET}"


def dump_command(home: Path, archive: Path, script: Path) -> list[str]:
    """The spark-submit that runs ``script`` and writes the classes it loaded to ``archive`` at exit."""
    return [
        str(home / "bin" / "spark-submit"),
        "--master",
        "local[2]",
        "--conf",
        f"spark.driver.extraClassPath={spark_jars_classpath(home)}",
        # Not on top of an earlier archive, which spark-defaults names: the JVM dumps on the JDK's alone.
        "--conf",
        "spark.driver.defaultJavaOptions=",
        "--driver-java-options",
        f"-XX:ArchiveClassesAtExit={archive} {QUIET}",
        str(script),
    ]


def build(home: Path | None = None, timeout: float = 300.0) -> Path:
    """Run ``WORKLOAD`` in a local spark-submit that writes the archive at exit; returns its path. An
    archive that exists is kept (its name says which JDK and jars it is for)."""
    home = Path(home or spark_home())
    target = archive_path(home)
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, fs.atomic_local_file(target) as partial:
        script = Path(tmp) / "class_data_workload.py"
        script.write_text(WORKLOAD)
        env = {
            **os.environ,
            "SPARK_LOCAL_IP": os.environ.get("SPARK_LOCAL_IP", "127.0.0.1"),
            "PYSPARK_PYTHON": sys.executable,
            "PYSPARK_DRIVER_PYTHON": sys.executable,
        }
        env.pop("JDK_JAVA_OPTIONS", None)
        cmd = dump_command(home, partial, script)
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0 or not partial.exists():
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise RuntimeError(f"the class-data archive was not written (exit {done.returncode}): {tail[0]}")
    for old in target.parent.glob("driver-*.jsa"):  # archives of an earlier JDK or Spark: of no use now
        if old != target:
            old.unlink(missing_ok=True)
    return target


if __name__ == "__main__":
    path = build()
    print(f"class-data archive: {path} ({path.stat().st_size / 2**20:.0f} MiB)")
