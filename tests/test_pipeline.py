"""prodemb.pipeline: the one definition of the stages that the DAG and `make demo` share."""

from __future__ import annotations

import subprocess
import sys

from prodemb.pipeline import BY_NAME, REPO_ROOT, STAGES, Context, downstream, one_off_stages, stage_args
from tests.test_dags import EXPECTED_EDGES


def one_off_context(tmp_path, **more) -> Context:
    return Context(
        source=f"{tmp_path}/clicks",
        source_format="clicks",
        tables=f"{tmp_path}/tables",
        table_format="parquet",
        tokenizer=f"{tmp_path}/tok.model",
        mlflow_uri=f"sqlite:///{tmp_path}/m.db",
        eval_output=lambda site: f"{tmp_path}/eval" + (f"/{site}" if site else ""),
        model_name=lambda site: "enc" + (f"-{site}" if site else ""),
        **more,
    )


def test_the_stages_are_the_dags_graph():
    assert {name: sorted(after) for name, after in downstream().items()} == {
        name: sorted(after) for name, after in EXPECTED_EDGES.items()
    }
    # Every stage a stage waits for is defined before it: STAGES is in an order that runs.
    for i, stage in enumerate(STAGES):
        assert all(BY_NAME[a] in STAGES[:i] for a in stage.after), stage.name
    # A report (blocking=False) is a leaf: the DAG blocks nothing on it only because nothing waits for it.
    assert all(not downstream()[s.name] for s in STAGES if not s.blocking)


def test_a_one_off_run_has_the_dags_order_without_the_scheduling_stages(tmp_path):
    names = [s.name for s in one_off_stages()]
    assert names == ["sessionize", "train_tokenizer", "train", "evaluate", "promote", "score", "publish"]
    ctx = one_off_context(tmp_path, tasks=["--task", "t=t.parquet"], evaluate=["--samples", "3"])
    sessionize = stage_args("sessionize", ctx)
    assert "--start" not in sessionize and sessionize[sessionize.index("--output") + 1] == ctx.tables
    train = stage_args("train", ctx)
    assert "--run-key" not in train and "--no-progress" in train
    assert "--no-progress" not in stage_args("train", one_off_context(tmp_path, progress=True))
    evaluate = stage_args("evaluate", ctx, site="es")
    assert evaluate[:2] == ["--model-uri", "models:/enc-es@candidate"]  # what the gate will judge
    assert ["--task", "t=t.parquet", "--samples", "3"] == evaluate[2:6] and f"{tmp_path}/eval/es" in evaluate
    assert stage_args("promote", ctx)[:2] == ["--task", "t=t.parquet"]


def test_an_interval_run_sessionizes_its_interval_into_partitions_and_keys_its_training(tmp_path):
    ctx = one_off_context(tmp_path, intervals=f"{tmp_path}/intervals", start="S", end="E", run_key="K")
    sessionize = stage_args("sessionize", ctx)
    assert sessionize[sessionize.index("--output") + 1] == ctx.intervals and sessionize[-4:] == [
        "--start",
        "S",
        "--end",
        "E",
    ]
    assert stage_args("consolidate", ctx) == ["--intervals", ctx.intervals, "--output", ctx.tables]
    assert stage_args("train", ctx)[6:8] == ["--run-key", "K"]


def test_a_failing_stage_stops_the_stages_after_it(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "prodemb.pipeline",
            "--input",
            str(tmp_path / "absent"),
            "--output",
            str(tmp_path / "o"),
            "--tokenizer",
            str(tmp_path / "t.model"),
            "--mlflow-uri",
            f"sqlite:///{tmp_path}/m.db",
            "--eval-output",
            str(tmp_path / "eval"),
            "--no-tasks",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "== sessionize" in proc.stdout and "== train" not in proc.stdout
    assert "input not found" in proc.stderr and "pipeline: sessionize failed (exit 2)" in proc.stderr
    assert not (tmp_path / "t.model").exists()


def test_the_readme_lists_every_stage_with_its_job():
    """The README's table of stages is the pipeline's: a stage added, renamed or moved to another job
    shows up here."""
    text = (REPO_ROOT / "README.md").read_text()
    table = text[text.index("| stage | job | reads → writes | contract |") :].split("\n\n")[0].splitlines()[2:]
    rows = [[cell.strip() for cell in row.strip("|").split("|")] for row in table]
    assert [r[0].split()[0].strip("`") for r in rows] == [s.name for s in STAGES]
    for row, stage in zip(rows, STAGES):
        assert (f"`{stage.job}`" in row[1]) if stage.job else "Airflow" in row[1], row
        assert ("(Spark)" in row[1]) == stage.spark, row
        reads, _, writes = row[2].partition("→")
        assert all(r in reads for r in stage.reads) and all(w in writes for w in stage.writes), (row, stage)
