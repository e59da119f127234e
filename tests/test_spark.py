"""prodemb.spark's settings, without starting a JVM."""

from __future__ import annotations

from pathlib import Path

from prodemb.spark import DELTA_EXCLUDES, local_driver_memory, resolve_conf, spark_conf


def test_the_local_driver_gets_half_the_machine_and_at_least_a_gig():
    assert local_driver_memory(24 * 2**30) == "12g"
    assert local_driver_memory(3 * 2**30) == "1g" == local_driver_memory(2**29)
    assert resolve_conf({"spark.driver.memory": "auto"})["spark.driver.memory"] == local_driver_memory()
    assert resolve_conf({"spark.driver.memory": "6g", "spark.sql.shuffle.partitions": 8}) == {
        "spark.driver.memory": "6g",
        "spark.sql.shuffle.partitions": "8",
    }


def test_delta_sessions_exclude_the_jars_pyspark_already_ships():
    conf = spark_conf("local[2]", delta=True, extra={"spark.driver.memory": "auto"})
    assert conf["spark.jars.packages"].startswith("io.delta:delta-spark_")
    excluded = conf["spark.jars.excludes"].split(",")
    assert excluded == list(DELTA_EXCLUDES) and not any(e.startswith("io.delta:") for e in excluded)
    assert conf["spark.driver.memory"] == local_driver_memory() and conf["spark.master"] == "local[2]"
    assert "spark.jars.packages" not in spark_conf("local[2]")


def test_make_venv_sizes_the_local_driver_in_spark_defaults_and_leaves_the_admins_settings(tmp_path, monkeypatch):
    from prodemb import class_data, cluster
    from prodemb.spark import LOCAL_JAVA_OPTIONS, install_local_defaults, spark_defaults

    monkeypatch.setenv("SPARK_CONF_DIR", str(tmp_path))
    defaults = tmp_path / "spark-defaults.conf"
    defaults.write_text("spark.eventLog.enabled true\n")
    archive = tmp_path / "driver.jsa"
    assert install_local_defaults(archive) == defaults
    assert spark_defaults()["spark.driver.extraClassPath"] == class_data.spark_jars_classpath()
    assert spark_defaults()["spark.driver.defaultJavaOptions"] == class_data.java_options(archive)
    cluster.install_spark_defaults(tmp_path / "jars")  # cluster-up's block sits beside it
    assert install_local_defaults(archive) == defaults  # idempotent: its own block replaced, not added
    settings = [ln.split(None, 1) for ln in defaults.read_text().splitlines() if not ln.startswith("#")]
    assert settings.count(["spark.driver.memory", local_driver_memory()]) == 1
    assert settings.count(["spark.driver.extraJavaOptions", LOCAL_JAVA_OPTIONS]) == 1
    assert settings[0] == ["spark.eventLog.enabled", "true"]
    # One driver class path: cluster-up's, which extends make venv's (Spark's jars, then Delta and s3a).
    assert [k for k, _ in settings].count("spark.driver.extraClassPath") == 1
    assert spark_defaults()["spark.driver.extraClassPath"] == f"{class_data.spark_jars_classpath()}:{tmp_path}/jars/*"
    assert {k: spark_defaults()[k] for k in ("spark.driver.memory", "spark.driver.extraJavaOptions")} == {
        "spark.driver.memory": local_driver_memory(),
        "spark.driver.extraJavaOptions": LOCAL_JAVA_OPTIONS,
    }
    defaults.write_text("spark.driver.memory 3g\n")  # the admins chose: nothing is written
    assert install_local_defaults() is None
    assert defaults.read_text() == "spark.driver.memory 3g\n"
    defaults.write_text("spark.driver.extraClassPath /opt/site/*\n")  # theirs stays; the rest is written
    assert install_local_defaults(archive) == defaults
    assert spark_defaults()["spark.driver.extraClassPath"] == "/opt/site/*"
    assert spark_defaults()["spark.driver.memory"] == local_driver_memory()


def test_the_class_data_archive_starts_the_driver_from_spark_jars_first(tmp_path):
    """The JDK refuses an archive when a non-empty folder precedes the jars: Spark's jars lead the class path."""
    from prodemb import class_data

    first, rest = class_data.spark_jars_classpath().split(":", 1)
    assert first.endswith(".jar") and "slf4j-api" in first and rest.endswith("/jars/*")
    options = class_data.java_options(tmp_path / "driver.jsa").split()
    assert options[0] == f"-XX:SharedArchiveFile={tmp_path / 'driver.jsa'}" and "-Xlog:cds=off" in options
    # A rebuild (another JDK or Spark) dumps on the JDK's archive alone, not on the one spark-defaults names:
    # the JVM refuses to dump on top of a dynamic archive.
    cmd = class_data.dump_command(tmp_path, tmp_path / "new.jsa", tmp_path / "job.py")
    conf = {cmd[i + 1].split("=", 1)[0]: cmd[i + 1].split("=", 1)[1] for i, a in enumerate(cmd) if a == "--conf"}
    assert conf == {
        "spark.driver.extraClassPath": class_data.spark_jars_classpath(tmp_path),
        "spark.driver.defaultJavaOptions": "",
    }
    assert f"-XX:ArchiveClassesAtExit={tmp_path / 'new.jsa'}" in cmd[cmd.index("--driver-java-options") + 1]


def test_a_plain_spark_submit_loads_sparks_classes_from_the_archive_make_venv_built(tmp_path):
    """What make venv installed, used as a user runs it: the driver's Spark classes come from the archive."""
    import os
    import subprocess
    import sys

    from prodemb import class_data
    from prodemb.spark import spark_defaults

    venv_bin = Path(sys.executable).parent
    archive = class_data.archive_path()
    assert archive.exists(), "make venv builds the class-data archive"
    assert spark_defaults()["spark.driver.defaultJavaOptions"] == class_data.java_options(archive)
    job = tmp_path / "job.py"
    job.write_text("from pyspark.sql import SparkSession\nprint(SparkSession.builder.getOrCreate().range(5).count())\n")
    log = tmp_path / "classes.log"
    done = subprocess.run(
        [
            str(venv_bin / "spark-submit"),
            "--master",
            "local[1]",
            "--driver-java-options",
            f"-Xlog:class+load=info:file={log}",
            str(job),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PATH": f"{venv_bin}:{os.environ['PATH']}"},
    )
    assert done.returncode == 0 and done.stdout.strip().endswith("5"), done.stderr[-2000:]
    loads = [ln for ln in log.read_text().splitlines() if " org.apache.spark." in ln]
    shared = [ln for ln in loads if "source: shared objects file (top)" in ln]
    from_jars = [ln for ln in loads if "source: jar:" in ln or "source: file:" in ln]  # (lambdas: neither)
    assert len(shared) > 1000 and len(from_jars) < 0.1 * len(shared), (len(shared), len(from_jars))
    assert "cds" not in done.stderr  # the archive's notices stay off


def test_spark_home_is_kept_when_set(tmp_path, monkeypatch):
    from prodemb.spark import spark_home

    monkeypatch.setenv("SPARK_HOME", str(tmp_path))
    assert spark_home() == tmp_path
    monkeypatch.delenv("SPARK_HOME")
    assert (spark_home() / "bin" / "spark-class").exists()  # else the pip package's


def test_missing_package_jars_names_what_ivy_has_not_retrieved(tmp_path):
    from prodemb.spark import missing_package_jars

    conf = {"spark.jars.ivy": str(tmp_path), "spark.jars.packages": "io.delta:delta-spark_4.2_2.13:4.4.0,a.b:c:1"}
    assert missing_package_jars(conf) == ["io.delta:delta-spark_4.2_2.13:4.4.0", "a.b:c:1"]
    (tmp_path / "jars").mkdir()
    (tmp_path / "jars" / "a.b_c-1.jar").write_bytes(b"")
    assert missing_package_jars(conf) == ["io.delta:delta-spark_4.2_2.13:4.4.0"]


def test_two_first_delta_sessions_at_once_share_an_empty_ivy_cache(tmp_path):
    """Two processes that start a Delta session into the same empty Ivy cache at the same moment (test
    workers, a scheduler's parallel tasks on a fresh machine) both get Delta: the first download is not
    corrupted by the second (prodemb.spark.package_resolution_lock)."""
    import os
    import subprocess
    import sys

    from prodemb.config import REPO_ROOT

    code = (
        "import sys; from prodemb.spark import get_spark; "
        "s = get_spark(delta=True, extra={'spark.jars.ivy': sys.argv[1]}); "
        "s.range(5).write.format('delta').save(sys.argv[2]); "
        "print(s.read.format('delta').load(sys.argv[2]).count())"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "SPARK_LOCAL_IP": "127.0.0.1"}
    ivy = tmp_path / "ivy"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(ivy), str(tmp_path / f"t{i}")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in range(2)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
        assert out.strip().splitlines()[-1] == "5"
    assert (ivy / "jars" / "io.delta_delta-spark_4.2_2.13-4.4.0.jar").exists()
