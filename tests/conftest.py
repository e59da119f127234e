"""Shared fixtures: one real local Spark session (with Delta) per test run, real-data locations."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("PYSPARK_PYTHON", os.sys.executable)
# Every JVM the tests start (Spark drivers in and out of process, the local cluster) is short-lived and runs
# tiny data: the JIT's quick tier alone. A cold sessionize of 10^5 clicks on 2 cores: 38 s instead of 65 s,
# the optimizing compiler's threads no longer competing with the tasks (benchmarks/RESULTS.md).
os.environ.setdefault("JDK_JAVA_OPTIONS", "-XX:TieredStopAtLevel=1")

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("PRODEMB_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def shared_data(*parts: str) -> Path:
    """Path under ../shared/data; skips the calling test with a clear message when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not available: {path} (tests on real data read ../shared/data)")
    return path


@pytest.fixture(autouse=True)
def _mlflow_variables_as_the_test_found_them(monkeypatch):
    """MLflow's set_tracking_uri/set_registry_uri write MLFLOW_TRACKING_URI/MLFLOW_REGISTRY_URI into the
    environment: a test that calls them must not hand its stores to the configs and jobs of the next."""
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.setenv(name, os.environ.get(name, ""))  # recorded: put back as it was after the test
        if not os.environ[name]:
            monkeypatch.delenv(name)


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread_per_test_worker():
    """make test runs one test process per core (pytest-xdist): training in it uses that core, not every core
    (two processes × two threads on two cores spend CPU waiting on each other). Subprocesses keep their own
    settings: OMP_NUM_THREADS is left alone, so Spark's Python workers still get Spark's."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)


@pytest.fixture(scope="session")
def spark():
    from prodemb.spark import get_spark

    session = get_spark("local[2]", delta=True, app_name="prodemb-tests", extra={"spark.sql.shuffle.partitions": "4"})
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
    proc = subprocess.run(
        [
            exe,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--dump-dom",
            "--virtual-time-budget=10000",
            Path(page).resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


# --- a tiny registered encoder (evaluation, sweep and gate tests) ----------------------------------------

TINY = [
    "model.profile=small",
    "model.max_len=12",
    "model.embed_dim=16",
    "model.n_filters=8",
    "model.hidden_dim=32",
    "model.proj_dim=16",
    "train.batch_size=64",
    "train.max_steps=4",
    "train.health_sample=200",
    "train.min_dim_std_ratio=0",
    "train.log_every=2",
]


def tiny_cfg(work, *extra):
    from prodemb.config import load_config

    return load_config(
        "local",
        overrides=[
            f"mlflow.tracking_uri=sqlite:///{work}/mlflow.db",
            *TINY,
            "evaluate.train_sizes=[50, 5000]",
            "evaluate.samples=2",
            *extra,
        ],
    )


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """A 600-product generated catalog with category sessions (written as the sessionize tables), a
    SentencePiece tokenizer, one encoder trained for a few steps and registered as prodemb-encoder v1,
    and the generator's task tables (condition, free_shipping) plus a category task."""
    import numpy as np
    import pandas as pd

    from prodemb.synth import SynthSpec, make_catalog, write_task_tables
    from prodemb.text import normalize_titles
    from prodemb.tokenizer import train_tokenizer
    from prodemb.train import run_training

    work = tmp_path_factory.mktemp("eval")
    cat = make_catalog(SynthSpec(n_products=600, seed=3))
    catalog = pd.DataFrame(
        {
            "site": "default",
            "product_id": cat.product_id,
            "title": cat.title,
            "title_norm": normalize_titles(cat.title, "es"),
            "category": cat.category,
        }
    )
    rng = np.random.default_rng(0)
    groups = [g.to_numpy() for _, g in catalog.groupby("category")["product_id"] if len(g) >= 2]
    pairs = [
        ("default", s, *sorted(rng.choice(groups[rng.integers(len(groups))], 2, replace=False))) for s in range(2000)
    ]
    for name, df in (
        ("catalog", catalog),
        ("pairs", pd.DataFrame(pairs, columns=["site", "session_id", "product_a", "product_b"])),
    ):
        (work / "data" / name).mkdir(parents=True)
        df.to_parquet(work / "data" / name / "part-0.parquet", index=False)
    train_tokenizer(catalog["title_norm"], work / "tok.model", vocab_size=300)
    summary = run_training(str(work / "data"), str(work / "tok.model"), tiny_cfg(work), progress=False)
    assert summary["model_version"] == "1"
    tasks = write_task_tables(cat, work)
    top = cat["category"].value_counts().index[0]
    pd.DataFrame(
        {"title": cat.title, "label": (cat.category == top).astype(int), "product_id": cat.product_id}
    ).to_parquet(work / "tasks" / "category.parquet", index=False)
    return {
        "work": work,
        "uri": f"sqlite:///{work}/mlflow.db",
        "run_id": summary["run_id"],
        "tasks": {**{k: str(v) for k, v in tasks.items()}, "category": str(work / "tasks" / "category.parquet")},
    }
