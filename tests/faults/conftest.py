"""Fault injection with real processes: a job run with ``PRODEMB_FAULTS`` set is SIGKILLed (or its write
fails) at a named point of its write (prodemb/faults.py); the tests then check what it left behind and
that a rerun converges to an undisturbed run."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

from tests.conftest import REPO_ROOT


def run_job(script: str, *args: str, faults: str | None = None, env: dict | None = None,
            timeout: int = 600, cwd=None) -> subprocess.CompletedProcess:
    """``python jobs/<script>.py args`` with the fault points ``faults`` armed."""
    full_env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", **(env or {})}
    full_env.pop("PRODEMB_FAULTS", None)
    if faults:
        full_env["PRODEMB_FAULTS"] = faults
    return subprocess.run([sys.executable, str(REPO_ROOT / "jobs" / f"{script}.py"), *args], capture_output=True,
                          text=True, timeout=timeout, env=full_env, cwd=cwd or REPO_ROOT)


def assert_killed(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stderr[-3000:])


def assert_one_line_error(proc: subprocess.CompletedProcess, job: str, *needles: str) -> None:
    """Failed with a non-zero exit and one clear line on stderr (no traceback)."""
    assert proc.returncode not in (0, -signal.SIGKILL), proc.returncode
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith(f"{job}: error: ")]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    for needle in needles:
        assert needle in lines[0], lines[0]
