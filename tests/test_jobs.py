"""prodemb/jobs: the `prodemb` console script runs the same jobs as the files in jobs/."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT

CONSOLE = Path(sys.executable).parent / "prodemb"   # installed by the package's [project.scripts]


def run(cmd: list, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=300, cwd=cwd)


def test_the_console_script_lists_every_job_and_refuses_an_unknown_one(tmp_path):
    from prodemb.jobs import JOBS

    listed = run([CONSOLE], tmp_path)
    assert listed.returncode == 2
    for command, module in JOBS.items():
        assert f"  {command} " in listed.stdout and (REPO_ROOT / "jobs" / f"{module}.py").is_file()
    unknown = run([CONSOLE, "sesionize"], tmp_path)
    assert unknown.returncode == 2 and unknown.stderr.startswith("prodemb: error: unknown job 'sesionize'")
    assert "usage: prodemb score" in run([CONSOLE, "score", "--help"], tmp_path).stdout


def test_console_script_and_job_file_write_the_same_tokenizer(tiny, tmp_path):
    outputs = {}
    for name, cmd in (("console", [CONSOLE, "train-tokenizer"]),
                      ("file", [sys.executable, REPO_ROOT / "jobs" / "train_tokenizer.py"])):
        proc = run([*cmd, "--data", tiny["work"] / "data", "--output", tmp_path / f"{name}.model",
                    "--vocab-size", "200"], tmp_path)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert json.loads(proc.stdout.strip().splitlines()[-1])["vocab_size"] == 200
        outputs[name] = hashlib.sha256((tmp_path / f"{name}.model").read_bytes()).hexdigest()
    assert outputs["console"] == outputs["file"]
