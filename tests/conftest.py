"""Shared fixtures: one real local Spark session (with Delta) per test run, real-data locations."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("PYSPARK_PYTHON", os.sys.executable)

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("PRODEMB_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def shared_data(*parts: str) -> Path:
    """Path under ../shared/data; skips the calling test with a clear message when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not available: {path} (tests on real data read ../shared/data)")
    return path


@pytest.fixture(scope="session")
def spark():
    from prodemb.spark import get_spark

    session = get_spark("local[2]", delta=True, app_name="prodemb-tests",
                        extra={"spark.sql.shuffle.partitions": "4"})
    yield session
    session.stop()


# Spark hands timestamps to Python in the process's local time zone: make that UTC everywhere.
os.environ["TZ"] = "UTC"
try:
    import time as _time

    _time.tzset()
except AttributeError:  # pragma: no cover - not on Windows
    pass


def online_retail_days(folder: Path, n_days: int) -> tuple[Path, list[Path]]:
    """A folder linking the first ``n_days`` daily Online Retail files (skips when the data is absent)."""
    files = sorted(shared_data("uci-online-retail", "by-day").glob("*.csv"))[:n_days]
    folder.mkdir()
    for f in files:
        (folder / f.name).symlink_to(f)
    return folder, files


def assert_rows_add_up(spark, out: str | Path, report: dict) -> None:
    """rows_in = valid + filtered + quarantined, with valid and quarantined counted from the written tables
    (events in sessions, quarantine rows), not from the report's own arithmetic."""
    from pyspark.sql import functions as F

    from prodemb.tables import read_table

    in_sessions = read_table(spark, f"{out}/sessions").agg(F.sum("n_events")).first()[0] or 0
    quarantined = read_table(spark, f"{out}/quarantine").count()
    assert (in_sessions, quarantined) == (report["rows_valid"], report["rows_quarantined"])
    assert report["rows_in"] == in_sessions + report["rows_filtered"] + quarantined


def browser_dom(page: Path) -> str:
    """The DOM of a local HTML page after headless Chromium (Debian's ``chromium``, which ``make test``
    installs) loaded it, ran its scripts and decoded its images."""
    import shutil
    import subprocess

    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    assert exe, "chromium not found: `make test` installs Debian's chromium (apt-get install chromium)"
    proc = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
                           "--virtual-time-budget=10000", Path(page).resolve().as_uri()],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout
