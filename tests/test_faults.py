"""prodemb.faults: the fault points' switch, parsed as the fault-injection suite (tests/faults/) uses it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from prodemb import faults


def test_points_do_nothing_unless_named_and_fire_on_the_nth_time(monkeypatch):
    monkeypatch.setattr(faults, "_hits", {})
    monkeypatch.delenv(faults.ENV, raising=False)
    faults.point("fs.write")  # nothing armed
    monkeypatch.setenv(faults.ENV, "other.point, fs.write:error@3")
    faults.point("fs.write")
    faults.point("fs.write")
    with pytest.raises(OSError, match="No space left on device"):
        faults.point("fs.write")
    faults.point("fs.write")  # only the 3rd time


def test_kill_is_a_real_sigkill():
    code = "from prodemb import faults; faults.point('a.b'); print('survived')"
    proc = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, faults.ENV: "a.b@1"}, capture_output=True, text=True
    )
    assert proc.returncode == -signal.SIGKILL and "survived" not in proc.stdout
