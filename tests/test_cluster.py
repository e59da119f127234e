"""prodemb.cluster without starting services (tests/e2e/test_cluster_local.py runs the real ones)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from prodemb import class_data, cluster
from prodemb.class_data import spark_jars_classpath
from tests.conftest import REPO_ROOT


def test_installed_jars_go_on_every_classpath_once_and_foreign_settings_are_left_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("SPARK_CONF_DIR", str(tmp_path))
    jars = tmp_path / "jars"
    defaults = tmp_path / "spark-defaults.conf"
    defaults.write_text("spark.driver.memory 2g")
    assert cluster.install_spark_defaults(jars) == defaults
    assert cluster.install_spark_defaults(jars) == defaults  # idempotent
    lines = defaults.read_text().splitlines()
    assert lines[0] == "spark.driver.memory 2g"  # the admin's settings stay
    # Both start with Spark's own jars (the class-data archive needs the conf folder after them).
    for key in ("spark.driver.extraClassPath", "spark.executor.extraClassPath"):
        assert lines.count(f"{key} {spark_jars_classpath()}:{jars}/*") == 1
    # The executors of this machine's workers start from make venv's class-data archive.
    archive = class_data.archive_path()
    assert f"spark.executor.defaultJavaOptions {class_data.java_options(archive)}" in lines and archive.exists()
    # An older cluster-up's block (Ivy packages per application) is replaced, not added to.
    defaults.write_text(
        f"{cluster.DEFAULTS_MARKER} old\nspark.jars.packages io.delta:delta-spark_4.2_2.13:4.3.0\n"
        "spark.jars.excludes org.slf4j:slf4j-api\n"
    )
    cluster.install_spark_defaults(jars)
    assert [ln.split()[0] for ln in defaults.read_text().splitlines()[1:]][:2] == [
        "spark.driver.extraClassPath",
        "spark.executor.extraClassPath",
    ]
    defaults.write_text("spark.executor.extraClassPath /opt/site/*\n")
    assert cluster.install_spark_defaults(jars) is None
    assert defaults.read_text() == "spark.executor.extraClassPath /opt/site/*\n"


def test_a_resolved_jar_folder_is_reused_and_a_half_written_one_is_not(tmp_path, monkeypatch):
    """The cache key and the completion marker (the real resolution runs in tests/e2e, from Maven Central)."""
    done = cluster.jars_folder(tmp_path)
    import prodemb.spark

    with monkeypatch.context() as m:  # another package list: a folder of its own
        m.setattr(prodemb.spark, "S3A_PACKAGES", (*prodemb.spark.S3A_PACKAGES, "org.example:extra:1.0"))
        assert cluster.jars_folder(tmp_path) != done and cluster.jars_folder(tmp_path).parent == tmp_path
    done.mkdir()
    (done / cluster.RESOLVED).write_text("delta.jar\n")
    assert cluster.resolve_jars(tmp_path) == done
    monkeypatch.setenv("PRODEMB_SPARK_JARS", str(tmp_path / "elsewhere"))
    assert cluster.jars_cache() == tmp_path / "elsewhere"
    # Without the marker the folder is not trusted: a resolution is attempted (here it cannot start).
    (done / cluster.RESOLVED).unlink()
    monkeypatch.setattr(cluster, "spark_home", lambda: tmp_path / "no-spark")
    with pytest.raises(FileNotFoundError):
        cluster.resolve_jars(tmp_path)


def test_workers_need_their_master_and_unknown_services_are_refused():
    assert [s.name for s in cluster._selected(["spark-worker-2"])] == ["spark-master", "spark-worker-2"]
    proc = subprocess.run(
        [sys.executable, "-m", "prodemb.cluster", "up", "--service", "kafka"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "invalid choice: 'kafka'" in proc.stderr


def test_status_of_an_empty_state_dir_names_every_service(tmp_path):
    got = cluster.status(tmp_path)
    assert list(got) == [s.name for s in cluster.SERVICES] and all(s["pid"] is None for s in got.values())


def test_a_recycled_pid_in_a_stale_pid_file_is_neither_ours_nor_signalled(tmp_path):
    (tmp_path / "pids").mkdir()
    stranger = subprocess.Popen(["sleep", "60"], start_new_session=True)  # alive, but not redis-server
    try:
        (tmp_path / "pids" / "redis.pid").write_text(str(stranger.pid))
        assert cluster.status(tmp_path)["redis"]["pid"] is None
        assert cluster.down(tmp_path, ["redis"])["redis"]["stopped"] is False
        assert stranger.poll() is None and not (tmp_path / "pids" / "redis.pid").exists()
    finally:
        stranger.kill()
        stranger.wait()


def test_cli_errors_are_one_line():
    proc = subprocess.run(
        [sys.executable, "-m", "prodemb.cluster", "restart"], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 2 and proc.stderr.startswith("cluster: error: ") and proc.stderr.count("\n") == 1


def test_the_feast_spark_offline_store_loads_delta_as_the_jobs_do():
    """From the install's classpath (cluster-up), with Delta's session settings, and no Ivy packages of its own."""
    import yaml

    from prodemb.spark import DELTA_CONF

    conf = yaml.safe_load((REPO_ROOT / "feature_repo" / "feature_store.cluster-local.yaml").read_text())
    spark_conf = conf["offline_store"]["spark_conf"]
    assert not {"spark.jars.packages", "spark.jars", "spark.jars.excludes"} & set(spark_conf)
    for key in ("spark.sql.extensions", "spark.sql.catalog.spark_catalog"):
        assert spark_conf[key] == DELTA_CONF[key]


def test_the_master_and_workers_get_the_spark_home_that_is_set(tmp_path, monkeypatch):
    monkeypatch.setenv("SPARK_HOME", str(tmp_path))
    assert cluster._spark_env(tmp_path)["SPARK_HOME"] == str(tmp_path)
