"""Fault points: named places in the pipeline's writes where tests stop a real process or fail a write.

    PRODEMB_FAULTS=promote.aliases_moved            python jobs/promote.py ...   # killed there (SIGKILL)
    PRODEMB_FAULTS=fs.write:error                   python jobs/score.py ...     # the write fails (ENOSPC)
    PRODEMB_FAULTS=score.before_write:kill@2        ...                          # the 2nd time it is reached

A point does nothing unless ``PRODEMB_FAULTS`` names it (comma-separated ``name[:kill|error][@n]``;
``kill`` is the default). Killing with SIGKILL is what a crash, an OOM kill or a preempted machine does:
no ``finally``, no ``atexit``, files half-written. tests/faults/ runs every stage through its points and
checks that the previous outputs stay readable and that a rerun converges.
"""

from __future__ import annotations

import errno
import os
import signal

ENV = "PRODEMB_FAULTS"
_hits: dict[str, int] = {}


def _armed() -> dict[str, tuple[str, int]]:
    out = {}
    for item in filter(None, (x.strip() for x in os.environ.get(ENV, "").split(","))):
        item, _, nth = item.partition("@")
        name, _, action = item.partition(":")
        out[name] = (action or "kill", int(nth or 1))
    return out


def point(name: str) -> None:
    """A fault point: kill this process, or raise a disk-full OSError, when ``PRODEMB_FAULTS`` says so."""
    if ENV not in os.environ:
        return
    armed = _armed().get(name)
    if armed is None:
        return
    action, nth = armed
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] != nth:
        return
    if action == "error":
        raise OSError(errno.ENOSPC, f"No space left on device (fault point {name})")
    os.kill(os.getpid(), signal.SIGKILL)
