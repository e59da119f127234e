"""prodemb.spark's settings, without starting a JVM."""
from __future__ import annotations

from prodemb.spark import DELTA_EXCLUDES, local_driver_memory, resolve_conf, spark_conf


def test_the_local_driver_gets_half_the_machine_and_at_least_a_gig():
    assert local_driver_memory(24 * 2**30) == "12g"
    assert local_driver_memory(3 * 2**30) == "1g" == local_driver_memory(2**29)
    assert resolve_conf({"spark.driver.memory": "auto"})["spark.driver.memory"] == local_driver_memory()
    assert resolve_conf({"spark.driver.memory": "6g", "spark.sql.shuffle.partitions": 8}) == \
        {"spark.driver.memory": "6g", "spark.sql.shuffle.partitions": "8"}


def test_delta_sessions_exclude_the_jars_pyspark_already_ships():
    conf = spark_conf("local[2]", delta=True, extra={"spark.driver.memory": "auto"})
    assert conf["spark.jars.packages"].startswith("io.delta:delta-spark_")
    excluded = conf["spark.jars.excludes"].split(",")
    assert excluded == list(DELTA_EXCLUDES) and not any(e.startswith("io.delta:") for e in excluded)
    assert conf["spark.driver.memory"] == local_driver_memory() and conf["spark.master"] == "local[2]"
    assert "spark.jars.packages" not in spark_conf("local[2]")


def test_make_venv_sizes_the_local_driver_in_spark_defaults_and_leaves_the_admins_settings(tmp_path, monkeypatch):
    from prodemb import cluster
    from prodemb.spark import LOCAL_JAVA_OPTIONS, install_local_defaults, spark_defaults

    monkeypatch.setenv("SPARK_CONF_DIR", str(tmp_path))
    defaults = tmp_path / "spark-defaults.conf"
    defaults.write_text("spark.eventLog.enabled true\n")
    assert install_local_defaults() == defaults
    cluster.install_spark_defaults(tmp_path / "jars")          # cluster-up's block sits beside it
    assert install_local_defaults() == defaults                # idempotent: its own block replaced, not added
    settings = [ln.split(None, 1) for ln in defaults.read_text().splitlines() if not ln.startswith("#")]
    assert settings.count(["spark.driver.memory", local_driver_memory()]) == 1
    assert settings.count(["spark.driver.extraJavaOptions", LOCAL_JAVA_OPTIONS]) == 1
    assert settings[0] == ["spark.eventLog.enabled", "true"]
    assert [k for k, _ in settings].count("spark.driver.extraClassPath") == 1
    assert {k: spark_defaults()[k] for k in ("spark.driver.memory", "spark.driver.extraJavaOptions")} == {
        "spark.driver.memory": local_driver_memory(), "spark.driver.extraJavaOptions": LOCAL_JAVA_OPTIONS}
    defaults.write_text("spark.driver.memory 3g\n")           # the admins chose: nothing is written
    assert install_local_defaults() is None
    assert defaults.read_text() == "spark.driver.memory 3g\n"
