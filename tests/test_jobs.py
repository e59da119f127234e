"""prodemb/jobs: the `prodemb` console script runs the same jobs as the files in jobs/."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT

CONSOLE = Path(sys.executable).parent / "prodemb"  # installed by the package's [project.scripts]


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
    for name, cmd in (
        ("console", [CONSOLE, "train-tokenizer"]),
        ("file", [sys.executable, REPO_ROOT / "jobs" / "train_tokenizer.py"]),
    ):
        proc = run(
            [
                *cmd,
                "--data",
                tiny["work"] / "data",
                "--output",
                tmp_path / f"{name}.model",
                "--vocab-size",
                "200",
                "--json",
            ],
            tmp_path,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert json.loads(proc.stdout.strip().splitlines()[-1])["vocab_size"] == 200
        outputs[name] = hashlib.sha256((tmp_path / f"{name}.model").read_bytes()).hexdigest()
    assert outputs["console"] == outputs["file"]


def test_a_job_prints_one_summary_line_and_its_report_goes_behind_json_or_to_a_file(tiny, tmp_path):
    args = ["--data", tiny["work"] / "data", "--output", tmp_path / "tok.model", "--vocab-size", "200"]
    plain = run([CONSOLE, "train-tokenizer", *args, "--report", tmp_path / "report.json"], tmp_path)
    assert plain.returncode == 0, plain.stderr[-2000:]
    line = plain.stdout.strip()
    assert "\n" not in line and line.startswith("train_tokenizer: 200 pieces from ") and str(tmp_path) in line
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["vocab_size"] == 200 and report["path"].endswith("tok.model")
    as_json = run([CONSOLE, "train-tokenizer", *args, "--json"], tmp_path)
    got = json.loads(as_json.stdout)
    assert {k: got[k] for k in ("vocab_size", "n_titles", "n_titles_used", "sha256")} == {
        k: report[k] for k in ("vocab_size", "n_titles", "n_titles_used", "sha256")
    }


def test_every_report_has_a_summary_line():
    """A line from a publish report, and still one line from a report without the usual keys."""
    from prodemb.jobs import SUMMARIES, emit_report

    assert set(SUMMARIES) == {
        "sessionize",
        "consolidate",
        "train_tokenizer",
        "train",
        "score",
        "publish",
        "evaluate",
        "sweep_alpha",
        "promote",
    }

    class Args:
        json = False
        report = None

    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        emit_report(
            "publish",
            {
                "rows_out": 1234,
                "pinned_views": {"product_embeddings_v2": "m/2"},
                "retired_views": [],
                "ann": {"m/2": {"recall_at_10": 0.991}},
                "seconds": 2.5,
            },
            Args,
        )
        emit_report("publish", {"unexpected": 1}, Args)  # a report without the usual keys: still one line
    lines = out.getvalue().splitlines()
    assert lines == [
        "publish: 1,234 products online in product_embeddings; pinned views: product_embeddings_v2; "
        "similar-products index recall@10 m/2 0.991; 2.5 s",
        "publish: unexpected=1",
    ]


def test_the_train_line_names_only_the_aliases_of_the_new_version():
    """A second version gets ``candidate``; ``champion`` stays on the first until the gate moves it."""
    from prodemb.jobs import SUMMARIES

    report = {
        "model_name": "enc",
        "model_version": "2",
        "aliases": {"candidate": "2", "champion": "1"},
        "steps": 10,
        "device": "cpu",
        "final_loss": 1.0,
        "seconds": 1.0,
        "run_id": "r",
    }
    assert "version 2 registered (candidate);" in SUMMARIES["train"](report)
    first = {**report, "model_version": "1", "aliases": {"candidate": "1", "champion": "1"}}
    assert "version 1 registered (candidate, champion);" in SUMMARIES["train"](first)
