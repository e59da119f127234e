"""The sessionize job end to end: bad-input quarantine, accounting, reruns, Delta, and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from prodemb.config import SessionsConfig
from prodemb.fs import read_json
from prodemb.sessions import run_sessionize
from prodemb.tables import read_table
from tests.conftest import REPO_ROOT, assert_rows_add_up

HEADER = b"user_id,ts,product_id,title,category\n"
GOOD = [
    b"u1,2024-05-01T10:00:00Z,p1,Camara Reflex Canon,foto\n",
    b"u1,2024-05-01T10:05:00Z,p2,Lente 50mm Para Camara,foto\n",
    b"u1,2024-05-01T10:06:00Z,p1,Camara Reflex Canon,foto\n",
    b"u2,1714557600,p3,Telefono Celular Samsung,tel\n",
]
BAD = {
    "missing_user_id": b",2024-05-01T10:00:00Z,p9,Algo Bueno,x\n",
    "missing_product_id": b"u3,2024-05-01T10:00:00Z,,Algo Bueno,x\n",
    "missing_ts": b"u3,,p9,Algo Bueno,x\n",
    "unparseable_ts": b"u3,el martes a la tarde,p9,Algo Bueno,x\n",
    "ts_out_of_range": b"u3,1970-01-01T00:00:00Z,p9,Algo Bueno,x\n",
    "missing_title": b"u3,2024-05-01T10:00:00Z,p9,,x\n",
    "empty_title_after_normalization": b'u3,2024-05-01T10:00:00Z,p9,"de la, para!!! ...",x\n',
    "invalid_utf8": b"u3,2024-05-01T10:00:00Z,p9,C\xe1mara \xff\xfe rota,x\n",  # Latin-1 bytes, not UTF-8
    "title_too_long": b"u3,2024-05-01T10:00:00Z,p9," + b"palabra " * 200 + b",x\n",
}


def write_log(path, extra=b""):
    path.write_bytes(HEADER + b"".join(GOOD) + b"".join(BAD.values()) + extra)
    return str(path)


def test_every_kind_of_bad_row_is_quarantined_with_its_reason(spark, tmp_path):
    log = write_log(tmp_path / "log.csv", extra=b"u3,2999-01-01T00:00:00Z,p9,Algo Bueno,x\n")
    cfg = SessionsConfig(max_title_chars=1000)
    report = run_sessionize(spark, log, "clicks", str(tmp_path / "out"), cfg)
    expected = {k: 1 for k in BAD}
    expected["ts_out_of_range"] = 2  # 1970 and 2999
    assert report["rows_quarantined_by_reason"] == expected
    assert report["rows_in"] == len(GOOD) + len(BAD) + 1
    assert report["rows_valid"] == len(GOOD)
    assert_rows_add_up(spark, tmp_path / "out", report)
    q = read_table(spark, str(tmp_path / "out" / "quarantine"))
    assert q.columns == ["site", "user_id", "ts_raw", "product_id", "title", "category", "reason", "raw_record"]
    bad_ts = q.where("reason = 'unparseable_ts'").first()
    assert bad_ts.ts_raw == "el martes a la tarde" and bad_ts.user_id == "u3"  # raw fields kept as strings
    # Every valid event is in exactly one session.
    sessions = read_table(spark, str(tmp_path / "out" / "sessions")).collect()
    assert sum(s.n_events for s in sessions) == report["rows_valid"]
    assert report["sessions"] == 2 and report["pairs"] == 1


def test_rerun_replaces_output_and_delta_keeps_history(spark, tmp_path):
    out = str(tmp_path / "out")
    log = write_log(tmp_path / "log.csv")
    cfg = SessionsConfig(format="delta")
    first = run_sessionize(spark, log, "clicks", out, cfg)
    assert first["delta_versions"] == {"quarantine": 0, "catalog": 0, "sessions": 0, "pairs": 0}
    # Second run on a log with one more session: tables are replaced, not appended to.
    log2 = write_log(
        tmp_path / "log2.csv",
        extra=b"u9,2024-06-01T00:00:00Z,p7,Bicicleta Rodado 29,bici\nu9,2024-06-01T00:01:00Z,p8,Casco Bicicleta,bici\n",
    )
    second = run_sessionize(spark, log2, "clicks", out, cfg)
    assert second["delta_versions"]["pairs"] == 1
    assert read_table(spark, f"{out}/sessions").count() == first["sessions"] + 1
    assert read_table(spark, f"{out}/pairs").count() == first["pairs"] + 1
    assert read_table(spark, f"{out}/pairs", version=0).count() == first["pairs"]  # time travel
    assert read_json(f"{out}/_run.json")["delta_versions"]["sessions"] == 1


def test_cli_runs_and_reruns_atomically(tmp_path):
    log = write_log(tmp_path / "log.csv")
    out = tmp_path / "out"
    # A PYSPARK_PYTHON of the user's is kept: here a wrapper that leaves a mark, then runs this interpreter.
    marks = tmp_path / "python-workers"
    wrapper = tmp_path / "python-wrapper"
    wrapper.write_text(f'#!/bin/sh\necho started >> "{marks}"\nexec "{sys.executable}" "$@"\n')
    wrapper.chmod(0o755)
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "PYSPARK_PYTHON": str(wrapper)}
    cmd = [
        sys.executable,
        str(REPO_ROOT / "jobs" / "sessionize.py"),
        "--input",
        log,
        "--input-format",
        "clicks",
        "--output",
        str(out),
        "--gap-minutes",
        "3",
        "--max-items",
        "5",
        "--set",
        "spark.master=local[1]",
        "--json",
    ]
    runs = []
    for _ in range(2):
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        assert os.path.islink(out / "sessions")
        # Spark's start-up notices a user can do nothing about stay off (make venv installs the log4j2 settings).
        assert "default log4j profile" not in proc.stderr and "NativeCodeLoader" not in proc.stderr, proc.stderr[:2000]
    assert runs[0]["rows_in"] == runs[1]["rows_in"] == len(GOOD) + len(BAD)
    report = read_json(out / "_run.json")
    assert report["parameters"]["gap_minutes"] == 3 and report["parameters"]["max_items"] == 5
    # The 5-minute gap is > 3: u1 has two sessions, [p1] and [p2, p1] (one pair); u2 has [p3].
    assert report["sessions"] == 3 and report["pairs"] == 1
    assert marks.read_text().count("started") >= 2  # the session kernel ran in its workers


def test_cli_fails_clearly_on_missing_input(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "jobs" / "sessionize.py"),
            "--input",
            str(tmp_path / "absent"),
            "--input-format",
            "clicks",
            "--output",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"},
    )
    assert proc.returncode != 0
    assert "input not found" in proc.stderr
