"""Building the SparkSession: the only module that knows Spark settings.

Local runs default to ``local[*]`` on loopback; ``spark-submit --master ...`` wins over the config
because an already-set master is never overwritten. Delta Lake jars come from Maven Central, either
resolved by Spark's Ivy (``spark.jars.packages``, cached in ``~/.ivy2.5.2`` after the first run).
The pip package delta-spark==4.4.1 has no matching jar on Maven Central (``delta-spark_4.2_2.13`` stops
at 4.4.0), so the JVM side is pinned separately (``DELTA_JAR_VERSION``); the Python API is the same.
"""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Mapping

DELTA_JAR_VERSION = "4.4.0"

DEFAULTS: dict[str, str] = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.shuffle.partitions": "8",
    "spark.sql.adaptive.enabled": "true",
    "spark.ui.showConsoleProgress": "false",
    "spark.ui.enabled": "false",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    # Bigger Arrow batches for mapInArrow (sessionize): fewer Python round trips.
    "spark.sql.execution.arrow.maxRecordsPerBatch": "100000",
    # Parquet timestamps as plain INT64 micros: readable by DuckDB/pandas/Feast alike.
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
}
DELTA_CONF: dict[str, str] = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
    # Log replay defaults to 50 partitions: right for huge tables, pure overhead for ours locally.
    # Profiles for clusters override it via spark.conf.
    "spark.databricks.delta.snapshotPartitions": "2",
}


# Delta's transitive dependencies that pyspark already ships, in newer versions: excluded, so a driver
# and every executor neither fetch nor load a second copy (hadoop-client, parquet, jackson, log4j,
# compression codecs). Spark's own classes win either way (parent-first class loading).
DELTA_EXCLUDES: tuple[str, ...] = (
    "org.apache.hadoop:hadoop-client-api",
    "org.apache.hadoop:hadoop-client-runtime",
    *(
        f"org.apache.parquet:parquet-{m}"
        for m in ("hadoop", "column", "common", "encoding", "format-structures", "jackson")
    ),
    *(f"com.fasterxml.jackson.core:jackson-{m}" for m in ("core", "databind", "annotations")),
    "org.apache.logging.log4j:log4j-api",
    "org.apache.logging.log4j:log4j-core",
    "org.apache.logging.log4j:log4j-slf4j2-impl",
    "org.slf4j:slf4j-api",
    "org.xerial.snappy:snappy-java",
    "com.github.luben:zstd-jni",
    "io.airlift:aircompressor",
    "commons-pool:commons-pool",
    "org.locationtech.jts:jts-core",
    "com.google.code.findbugs:jsr305",
    "org.roaringbitmap:RoaringBitmap",
)


# s3a:// (Hadoop's S3 connector) for pyspark's Hadoop 3.5.0: hadoop-aws of the same version and the two AWS SDK
# v2 modules it calls, instead of the SDK's whole "bundle" jar that hadoop-aws declares. The SDK's transitive
# netty, Apache HTTP client and commons jars are the ones pyspark already ships.
HADOOP_VERSION = "3.5.0"
AWS_SDK_VERSION = "2.35.4"
S3A_PACKAGES: tuple[str, ...] = (
    f"org.apache.hadoop:hadoop-aws:{HADOOP_VERSION}",
    f"software.amazon.awssdk:s3:{AWS_SDK_VERSION}",
    f"software.amazon.awssdk:s3-transfer-manager:{AWS_SDK_VERSION}",
)
S3A_EXCLUDES: tuple[str, ...] = (
    "software.amazon.awssdk:bundle",
    *(
        f"io.netty:netty-{m}"
        for m in (
            "buffer",
            "codec",
            "codec-http",
            "codec-http2",
            "common",
            "handler",
            "resolver",
            "transport",
            "transport-classes-epoll",
            "transport-native-unix-common",
        )
    ),
    "org.apache.httpcomponents:httpclient",
    "org.apache.httpcomponents:httpcore",
    "commons-codec:commons-codec",
    "commons-logging:commons-logging",
)
S3A_CONF_PREFIX = "spark.hadoop.fs.s3a."


def uses_s3a(conf: Mapping[str, Any] | None) -> bool:
    """True when a profile's Spark settings configure s3a (then its connector jars are loaded too)."""
    return any(str(k).startswith(S3A_CONF_PREFIX) for k in (conf or {}))


def delta_package_conf(s3a: bool = False) -> dict[str, str]:
    """The Spark settings that put Delta Lake (and, with ``s3a``, Hadoop's S3 connector) on a session's
    classpath, resolved by Ivy and cached."""
    packages = [*delta_maven_coordinates(), *(S3A_PACKAGES if s3a else ())]
    excludes = [*DELTA_EXCLUDES, *(S3A_EXCLUDES if s3a else ())]
    return {"spark.jars.packages": ",".join(packages), "spark.jars.excludes": ",".join(excludes)}


def delta_maven_coordinates(jar_version: str = DELTA_JAR_VERSION) -> list[str]:
    """Maven coordinates of the Delta jar built for the installed pyspark's minor version."""
    from importlib.metadata import version

    spark_mm = ".".join(version("pyspark").split(".")[:2])
    return [f"io.delta:delta-spark_{spark_mm}_2.13:{jar_version}"]


def _local_cores(master: str | None) -> int | None:
    """Cores of a local master (``local``, ``local[4]``, ``local[*]``); None for a cluster."""
    if not master or not master.startswith("local"):
        return None
    inside = master[master.find("[") + 1 : master.find("]")] if "[" in master else "1"
    inside = inside.split(",")[0]
    return (os.cpu_count() or 1) if inside == "*" else int(inside)


AUTO = "auto"


def local_driver_memory(total_bytes: int | None = None) -> str:
    """Half of this machine's memory (at least 1g): in local mode the driver JVM is also the executor, and
    Spark's 1g default starves it at 10^7 clicks; the rest is left to the Python workers and the OS cache."""
    if total_bytes is None:
        total_bytes = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return f"{max(1, total_bytes // 2**31)}g"


def resolve_conf(conf: Mapping[str, Any]) -> dict[str, str]:
    """Profile settings as strings, ``spark.driver.memory: auto`` replaced by ``local_driver_memory()``."""
    out = {str(k): str(v) for k, v in conf.items()}
    if out.get("spark.driver.memory") == AUTO:
        out["spark.driver.memory"] = local_driver_memory()
    return out


def spark_conf(
    master: str | None = None,
    delta: bool = False,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """The full key/value configuration a session is built with (pure; testable)."""
    conf = dict(DEFAULTS)
    if delta:
        conf.update(DELTA_CONF)
        conf.update(delta_package_conf(s3a=uses_s3a(extra)))
    cores = _local_cores(master)
    if cores:
        # Split input into >= 4 tasks per core: a few big files otherwise leave cores idle.
        conf["spark.sql.files.minPartitionNum"] = str(4 * cores)
    conf.update(resolve_conf(extra or {}))
    if master:
        conf["spark.master"] = master
    return conf


def ivy_jars_dir(conf: Mapping[str, str]) -> Path:
    """Where Spark's Ivy puts the jars of ``spark.jars.packages`` (``spark.jars.ivy``, else Spark 4's default)."""
    return Path(conf.get("spark.jars.ivy") or Path.home() / ".ivy2.5.2").expanduser() / "jars"


def missing_package_jars(conf: Mapping[str, str]) -> list[str]:
    """The coordinates of ``spark.jars.packages`` whose jar Ivy has not retrieved yet (Spark names each
    ``group_artifact-version.jar``)."""
    jars = ivy_jars_dir(conf)
    coords = [c for c in conf.get("spark.jars.packages", "").split(",") if c]
    return [c for c in coords if not (jars / ("{}_{}-{}.jar".format(*c.split(":")))).exists()]


@contextmanager
def package_resolution_lock(conf: Mapping[str, str]):
    """Held while a JVM that must still download ``spark.jars.packages`` starts. Two processes that resolve
    into an empty Ivy cache at once (test workers, or a scheduler's parallel tasks on a fresh machine)
    corrupt each other's downloads ("impossible to put metadata file in cache"), so first resolutions take
    turns; once the jars are there, starts do not wait for each other."""
    if not missing_package_jars(conf):
        yield
        return
    from prodemb.fs import held_lock

    lock = ivy_jars_dir(conf).parent / "prodemb-resolve.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with held_lock(lock):
        yield


def get_spark(
    master: str | None = "local[*]",
    delta: bool = False,
    app_name: str = "prodemb",
    extra: Mapping[str, Any] | None = None,
):
    """Return the process's SparkSession, creating it with the project defaults.

    When launched through ``spark-submit`` the master and deploy settings given there are kept.
    """
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        if delta and "DeltaSparkSessionExtension" not in (active.conf.get("spark.sql.extensions", "") or ""):
            raise RuntimeError(
                "a SparkSession without Delta is already running in this process; build it with delta=True first"
            )
        return active
    submitted = (
        "SPARK_SUBMIT_OPTS" in os.environ or os.environ.get("PYSPARK_SUBMIT_ARGS") or os.environ.get("SPARK_ENV_LOADED")
    )
    if (master or "").startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    # Python workers, local or on executors, run this interpreter (the venv with numpy/pyarrow), not
    # whatever `python3` a worker finds; PYSPARK_PYTHON still wins (clusters with their own Python path).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    conf = spark_conf(None if submitted else master, delta=delta, extra=extra)
    builder = SparkSession.builder.appName(app_name)
    for k, v in conf.items():
        builder = builder.config(k, v)
    with package_resolution_lock(conf):
        spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    sc = spark.sparkContext
    if submitted and sc.master.startswith("local") and not sc.getConf().contains("spark.driver.memory"):
        print(
            f"note: the local driver has Spark's 1g default heap; spark-submit --driver-memory "
            f"{local_driver_memory()} gives it half this machine",
            file=sys.stderr,
        )
    return spark


_SHIPPED: set[int] = set()


def ship_package(spark) -> str:
    """Send this package to the executors (``SparkContext.addPyFile`` of a zip built once per driver), so
    functions of ``prodemb`` that run in Python workers import the driver's code, not whatever a
    worker machine has installed. Returns the zip's path."""
    import tempfile
    import zipfile
    from pathlib import Path

    sc = spark.sparkContext
    package = Path(__file__).resolve().parent
    zip_path = Path(tempfile.gettempdir()) / f"prodemb-{os.getpid()}-{id(sc)}.zip"
    if id(sc) not in _SHIPPED:
        with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as zf:
            for f in sorted(package.rglob("*")):
                if f.is_file() and "__pycache__" not in f.parts and f.suffix != ".pyc":
                    zf.write(f, Path(package.name) / f.relative_to(package))
        sc.addPyFile(str(zip_path))
        _SHIPPED.add(id(sc))
    return str(zip_path)


def spark_for(cfg, stage: str):
    """The session a job of ``stage`` uses, from the typed config (master, Delta when the tables are Delta,
    the profile's ``spark.conf``)."""
    return get_spark(
        cfg.spark.master, delta=cfg.sessions.format == "delta", app_name=f"prodemb-{stage}", extra=cfg.spark.conf
    )


def spark_home() -> Path:
    """``SPARK_HOME`` if set, else the pip pyspark package (which ships ``bin/spark-class`` and the jars)."""
    if os.environ.get("SPARK_HOME"):
        return Path(os.environ["SPARK_HOME"])
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def spark_conf_dir() -> Path:
    """The configuration folder of the Spark that ``spark-submit`` runs: ``$SPARK_CONF_DIR``, else
    ``$SPARK_HOME/conf``, else the pip package's."""
    return Path(os.environ.get("SPARK_CONF_DIR") or spark_home() / "conf")


def spark_defaults_path() -> Path:
    return spark_conf_dir() / "spark-defaults.conf"


def _setting(line: str) -> tuple[str, str]:
    """(key, value) of a spark-defaults.conf line; ("", "") for a blank one."""
    parts = line.split(None, 1)
    return (parts[0], parts[1].strip() if len(parts) > 1 else "") if parts else ("", "")


def spark_defaults() -> dict[str, str]:
    """The settings of ``spark-defaults.conf`` (what every spark-submit of this install starts with)."""
    path = spark_defaults_path()
    lines = path.read_text().splitlines() if path.exists() else []
    return dict(_setting(ln) for ln in lines if ln.strip() and not ln.lstrip().startswith("#"))


def write_defaults_block(
    marker: str,
    comment: str,
    wanted: Mapping[str, str],
    *,
    old_keys: tuple[str, ...] = (),
    advice: str = "",
    optional: tuple[str, ...] = (),
    supersedes: Mapping[str, str] | None = None,
) -> Path | None:
    """Write ``wanted`` as one marked block of ``spark-defaults.conf`` (in ``spark_conf_dir()``), replacing
    the block an earlier call with the same ``marker`` wrote (the marker line and the settings of
    ``wanted`` or ``old_keys`` right after it). Other lines are the admins' and stay; when they already set
    one of these keys the file is left alone (returns None, with a note naming the keys and ``advice``).
    Keys in ``optional`` are left out, not fought over, where another line sets them. Lines equal to a
    ``supersedes`` (key, value), wherever they are, are dropped: another block's setting this one extends."""
    path = spark_defaults_path()
    lines = path.read_text().splitlines() if path.exists() else []
    block_keys = {*wanted, *old_keys}
    kept, in_block = [], False
    for ln in lines:  # drop the block an earlier call wrote (marker + the lines right after it)
        in_block = ln.startswith(marker) or (in_block and _setting(ln)[0] in block_keys)
        if not in_block and _setting(ln) not in (supersedes or {}).items():
            kept.append(ln)
    elsewhere = {_setting(ln)[0] for ln in kept if not ln.lstrip().startswith("#")}
    wanted = {k: v for k, v in wanted.items() if not (k in optional and k in elsewhere)}
    if taken := sorted(elsewhere & set(wanted)):
        print(f"note: {path} already sets {', '.join(taken)}; {advice}".rstrip("; "), file=sys.stderr)
        return None
    ours = [f"{marker} {comment}", *(f"{k} {v}" for k, v in wanted.items())]
    if kept + ours != lines:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(kept + ours) + "\n")
    return path


# Batch jobs on a few cores: the throughput collector beats G1 (the default), whose concurrent threads compete
# with the tasks for the cores. 10^7 clicks, whole spark-submit on 2 cores, same heap: 43.8 s vs 47.0 s with G1
# (benchmarks/RESULTS.md, sessionize_bench.py --study; 91 vs 134 s in an earlier run on a slower machine state).
LOCAL_JAVA_OPTIONS = "-XX:+UseParallelGC"
LOCAL_DEFAULTS_MARKER = "# prodemb make venv:"


def install_local_defaults(archive: Path | None = None) -> Path | None:
    """``spark-submit`` of a local job starts its JVM before the job's code runs, so a profile's
    ``spark.driver.memory: auto`` cannot reach it: put this machine's local-mode settings into the Spark
    install's ``spark-defaults.conf`` (the driver gets half the memory and the throughput collector), as
    Spark's own convention has it. With ``archive`` (``prodemb.class_data.build``), the driver's JVM also
    starts from that class-data archive: its flags go to ``spark.driver.defaultJavaOptions``, which a job's
    own ``extraJavaOptions`` add to rather than replace, and Spark's jars go first on the driver's class path
    (a class path another setting already names is left as it is). Run by ``make venv``; settings the file
    already has are left alone."""
    wanted = {"spark.driver.memory": local_driver_memory(), "spark.driver.extraJavaOptions": LOCAL_JAVA_OPTIONS}
    if archive is not None:
        from prodemb import class_data

        wanted |= {
            "spark.driver.defaultJavaOptions": class_data.java_options(archive),
            "spark.driver.extraClassPath": class_data.spark_jars_classpath(),
        }
    return write_defaults_block(
        LOCAL_DEFAULTS_MARKER,
        "local-mode settings sized to this machine (prodemb.spark.install_local_defaults)",
        wanted,
        old_keys=("spark.driver.defaultJavaOptions", "spark.driver.extraClassPath"),
        optional=("spark.driver.defaultJavaOptions", "spark.driver.extraClassPath"),
        advice="pass --driver-memory to spark-submit yourself",
    )


def install_local_spark() -> None:
    """``make venv``'s Spark set-up of this machine: quiet logging, the driver's class-data archive
    (built once per JDK and Spark), and the local-mode defaults that use it. One line on stdout."""
    from prodemb import class_data

    install_log4j2()
    try:
        archive = class_data.build()
    except (OSError, RuntimeError, subprocess.TimeoutExpired) as exc:
        archive = None
        print(f"warning: Spark will start without a class-data archive (slower start-up): {exc}", file=sys.stderr)
    install_local_defaults(archive)
    print(f"spark: {spark_defaults_path()}" + (f", class-data archive {archive.name}" if archive else ""))


LOG4J2_CONFIG = Path(__file__).resolve().parent.parent / "conf" / "spark" / "log4j2.properties"


def install_log4j2(source: Path = LOG4J2_CONFIG) -> Path | None:
    """Put prodemb's Spark logging settings (``conf/spark/log4j2.properties``: WARN, no start-up notices)
    into this Spark install's conf folder (``$SPARK_CONF_DIR``, else ``$SPARK_HOME/conf``, else the pip
    package's), where every driver and executor of that install finds them. A log4j2.properties already
    there is the admins' and is left alone (returns None)."""
    import shutil

    target = spark_conf_dir() / "log4j2.properties"
    if target.exists() and target.read_bytes() != source.read_bytes():
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return target
