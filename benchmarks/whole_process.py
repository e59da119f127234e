"""Whole processes, as users run them: the benchmarks' one way to start and time a command.

``venv_env`` is the environment a user of this checkout has after activating the venv: its ``bin`` first
on PATH (pip's ``spark-submit`` finds SPARK_HOME through the ``python3`` there), Spark bound to
127.0.0.1, and no JVM flags inherited from a test run (``JDK_JAVA_OPTIONS``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def venv_env() -> dict[str, str]:
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"}
    env.pop("JDK_JAVA_OPTIONS", None)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def timed(cmd: list[str], env: dict | None = None) -> tuple[float, str]:
    """Wall seconds of a whole process run from the repository root, and its stdout (it must succeed)."""
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(cmd)}\n{done.stderr[-2000:]}")
    return seconds, done.stdout
