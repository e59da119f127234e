"""prodemb.cluster without starting services (tests/e2e/test_cluster_local.py runs the real ones)."""
from __future__ import annotations

import subprocess
import sys

from prodemb import cluster
from prodemb.spark import delta_package_conf
from tests.conftest import REPO_ROOT


def test_delta_defaults_are_added_once_and_foreign_packages_are_left_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("SPARK_CONF_DIR", str(tmp_path))
    defaults = tmp_path / "spark-defaults.conf"
    defaults.write_text("spark.driver.memory 2g")
    assert cluster.install_delta_defaults() == defaults
    assert cluster.install_delta_defaults() == defaults                       # idempotent
    lines = defaults.read_text().splitlines()
    assert lines[0] == "spark.driver.memory 2g"                                # the admin's settings stay
    for key, value in delta_package_conf(s3a=True).items():
        assert lines.count(f"{key} {value}") == 1
    # An older cluster-up's block (packages only) is replaced, not duplicated.
    defaults.write_text(f"{cluster.DEFAULTS_MARKER} old\nspark.jars.packages io.delta:delta-spark_4.2_2.13:4.3.0\n")
    cluster.install_delta_defaults()
    assert [ln.split()[0] for ln in defaults.read_text().splitlines()[1:]] == list(delta_package_conf(s3a=True))
    defaults.write_text("spark.jars.packages org.example:other:1.0\n")
    assert cluster.install_delta_defaults() is None
    assert defaults.read_text() == "spark.jars.packages org.example:other:1.0\n"


def test_workers_need_their_master_and_unknown_services_are_refused():
    assert [s.name for s in cluster._selected(["spark-worker-2"])] == ["spark-master", "spark-worker-2"]
    proc = subprocess.run([sys.executable, "-m", "prodemb.cluster", "up", "--service", "kafka"], cwd=REPO_ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "invalid choice: 'kafka'" in proc.stderr


def test_status_of_an_empty_state_dir_names_every_service(tmp_path):
    got = cluster.status(tmp_path)
    assert list(got) == [s.name for s in cluster.SERVICES] and all(s["pid"] is None for s in got.values())


def test_a_recycled_pid_in_a_stale_pid_file_is_neither_ours_nor_signalled(tmp_path):
    (tmp_path / "pids").mkdir()
    stranger = subprocess.Popen(["sleep", "60"], start_new_session=True)   # alive, but not redis-server
    try:
        (tmp_path / "pids" / "redis.pid").write_text(str(stranger.pid))
        assert cluster.status(tmp_path)["redis"]["pid"] is None
        assert cluster.down(tmp_path, ["redis"])["redis"]["stopped"] is False
        assert stranger.poll() is None and not (tmp_path / "pids" / "redis.pid").exists()
    finally:
        stranger.kill()
        stranger.wait()


def test_cli_errors_are_one_line():
    proc = subprocess.run([sys.executable, "-m", "prodemb.cluster", "restart"], cwd=REPO_ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.startswith("cluster: error: ") and proc.stderr.count("\n") == 1


def test_the_feast_spark_offline_store_loads_delta_as_the_jobs_do():
    import yaml

    conf = yaml.safe_load((REPO_ROOT / "feature_repo" / "feature_store.cluster-local.yaml").read_text())
    spark_conf = conf["offline_store"]["spark_conf"]
    assert {k: spark_conf[k] for k in delta_package_conf(s3a=True)} == delta_package_conf(s3a=True)
