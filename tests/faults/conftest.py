"""Fault injection with real processes: a job run with ``PRODEMB_FAULTS`` set is SIGKILLed (or its write
fails) at a named point of its write (prodemb/faults.py); the tests then check what it left behind and
that a rerun converges to an undisturbed run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT


def run_job(
    script: str, *args: str, faults: str | None = None, env: dict | None = None, timeout: int = 600, cwd=None
) -> subprocess.CompletedProcess:
    """``python jobs/<script>.py args`` with the fault points ``faults`` armed."""
    full_env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", **(env or {})}
    full_env.pop("PRODEMB_FAULTS", None)
    if faults:
        full_env["PRODEMB_FAULTS"] = faults
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "jobs" / f"{script}.py"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        cwd=cwd or REPO_ROOT,
    )


def assert_killed(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stderr[-3000:])


def assert_one_line_error(proc: subprocess.CompletedProcess, job: str, *needles: str) -> None:
    """Failed with a non-zero exit and one clear line on stderr (no traceback)."""
    assert proc.returncode not in (0, -signal.SIGKILL), proc.returncode
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith(f"{job}: error: ")]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    for needle in needles:
        assert needle in lines[0], lines[0]


# Short-lived test JVMs compile with C1 only (as conf/cluster-local.yaml's): ~2 s less per Spark job here.
QUICK_JVM = ["--set", "spark.conf.spark.driver.extraJavaOptions=-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"]
SMALL_TRAINING = [
    "--set",
    "model.profile=small",
    "--set",
    "tokenizer.vocab_size=400",
    "--set",
    "train.max_steps=5",
    "--set",
    "train.batch_size=128",
    "--set",
    "train.health_sample=200",
]


@pytest.fixture(scope="session")
def world(spark, tmp_path_factory):
    """Read-only inputs the fault tests start from: two days of generated clicks, their tables (an
    undisturbed full sessionize run), a tokenizer and one registered model version."""
    from prodemb.config import SessionsConfig, load_config
    from prodemb.sessions import run_sessionize
    from prodemb.synth import SynthSpec, generate
    from prodemb.tokenizer import train_from_catalog
    from prodemb.train import run_training

    root = tmp_path_factory.mktemp("faults")
    generate(SynthSpec(n_clicks=4000, n_products=250, seed=21, start="2024-01-01", days=2), root / "synth")
    clicks = str(root / "synth" / "clicks")
    run_sessionize(spark, clicks, "clicks", str(root / "data"), SessionsConfig())
    uri = f"sqlite:///{root}/mlflow.db"
    overrides = [f"mlflow.tracking_uri={uri}", *(x for x in SMALL_TRAINING if x != "--set")]
    cfg = load_config("local", overrides)
    train_from_catalog(str(root / "data"), root / "tok.model", cfg.tokenizer)
    run_training(str(root / "data"), str(root / "tok.model"), cfg, progress=False)
    return {
        "root": root,
        "clicks": clicks,
        "data": root / "data",
        "uri": uri,
        "tokenizer": root / "tok.model",
        "cfg": cfg,
        "model": "models:/prodemb-encoder/1",
    }


def rows(spark, path) -> list[tuple]:
    """Every row of a table, sorted: tables compared row for row."""
    from prodemb.tables import read_table

    df = read_table(spark, str(path))
    return sorted(tuple(r) for r in df.select(*sorted(df.columns)).collect())


def unfinished_versions(folder) -> list[str]:
    """Version folders under ``folder/_versions`` that a killed write left: without ``_SUCCESS``, or with
    the writer's lock file still beside them (killed after Spark's commit, before the swap)."""
    import re
    from pathlib import Path

    version = re.compile(r"^\d{8}T\d{12}-[0-9a-f]{8}$")
    return sorted(
        str(p)
        for p in (Path(folder) / "_versions").rglob("*")
        if p.is_dir()
        and version.match(p.name)
        and (not (p / "_SUCCESS").exists() or (p.parent / f".{p.name}.writing").exists())
    )
