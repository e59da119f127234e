"""The pipeline's stages, defined once: what each one runs, reads and writes, what it waits for, and its
job's arguments. The Airflow DAG (airflow_dags/prodemb_dag.py) makes one task per stage from it, and
``make demo`` runs the same stages in the same order (``python -m prodemb.pipeline``).

    sessionize ─▶ consolidate ─▶ retrain_due ─▶ train_tokenizer ─▶ train ─▶ promote ─▶ score ─▶ publish
                      │                                              └──▶ evaluate       ▲
                      └──────────────────────────────────────────────────────────────────┘

A scheduled run processes one data interval: ``sessionize`` writes that interval's partition and
``consolidate`` rebuilds the full tables from every interval; ``retrain_due`` decides whether the training
branch runs today. A one-off run (the demo) sessionizes the whole log straight into the full tables, so it
has neither of the two scheduling stages (``scheduled_only``) and always trains.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Stage:
    name: str
    job: str | None  # the entry point under jobs/ (None: a decision the scheduler takes)
    reads: tuple[str, ...]
    writes: tuple[str, ...]
    after: tuple[str, ...] = ()  # the stages it waits for
    spark: bool = False  # submitted to Spark (spark-submit), else a plain Python process
    per_site: bool = False  # one run per site when sites are configured (one model per site)
    blocking: bool = True  # False: a report; its failure fails the run but stops nothing after it
    scheduled_only: bool = False  # only in interval runs


STAGES: tuple[Stage, ...] = (
    Stage(
        "sessionize", "jobs/sessionize.py", ("click log",), ("quarantine", "catalog", "sessions", "pairs"), spark=True
    ),
    Stage(
        "consolidate",
        "jobs/consolidate.py",
        ("interval partitions",),
        ("catalog", "sessions", "pairs"),
        after=("sessionize",),
        spark=True,
        scheduled_only=True,
    ),
    Stage(
        "retrain_due",
        None,
        ("schedule.retrain_cron", "the run's conf"),
        (),
        after=("consolidate",),
        scheduled_only=True,
    ),
    Stage("train_tokenizer", "jobs/train_tokenizer.py", ("catalog",), ("tokenizer",), after=("retrain_due",)),
    Stage(
        "train",
        "jobs/train.py",
        ("catalog", "pairs", "tokenizer"),
        ("prodemb-encoder", "@candidate"),
        after=("train_tokenizer",),
        per_site=True,
    ),
    Stage(
        "evaluate",
        "jobs/evaluate.py",
        ("@candidate", "task tables"),
        ("report", "plots"),
        after=("train",),
        per_site=True,
        blocking=False,
    ),
    Stage(
        "promote",
        "jobs/promote.py",
        ("@candidate", "@champion", "task tables"),
        ("@champion", "quality card"),
        after=("train",),
        per_site=True,
    ),
    Stage(
        "score",
        "jobs/score.py",
        ("catalog", "@champion"),
        ("embeddings",),
        after=("consolidate", "promote"),
        spark=True,
    ),
    Stage("publish", "jobs/publish.py", ("embeddings",), ("Feast offline and online stores",), after=("score",)),
)
BY_NAME = {s.name: s for s in STAGES}


def downstream() -> dict[str, list[str]]:
    """Each stage → the stages that wait for it, in the order of STAGES (the DAG's edges)."""
    return {s.name: [t.name for t in STAGES if s.name in t.after] for s in STAGES}


def one_off_stages() -> list[Stage]:
    """The stages of a run over the whole log (the demo), in order; each one's waits are met by the ones
    before it (a scheduling stage a stage waits for is met by what that stage waits for)."""
    return [s for s in STAGES if not s.scheduled_only]


@dataclass(frozen=True)
class Context:
    """The values the stages' arguments are made of. A scheduled run gives templates (the run's interval,
    its run key), a one-off run gives the values themselves."""

    source: str  # the click log
    source_format: str
    tables: str  # the full tables (catalog, sessions, pairs, embeddings)
    table_format: str
    tokenizer: str
    mlflow_uri: str
    eval_output: Callable[[str | None], str]  # site → evaluation report folder
    model_name: Callable[[str | None], str]  # site → registered model
    intervals: str | None = None  # interval partitions (scheduled runs)
    start: str | None = None  # the interval: sessionize's --start and --end
    end: str | None = None
    run_key: str | None = None  # train's --run-key (a rerun of an interval reuses its version)
    progress: bool = False  # progress bars (a terminal); logs get none
    tasks: list[str] = field(default_factory=list)  # --task/--builtin of evaluate and promote (default: config's)
    evaluate: list[str] = field(default_factory=list)  # more evaluate flags (--methods, --samples)


def stage_args(name: str, ctx: Context, site: str | None = None) -> list[str]:
    """The arguments of stage ``name``'s job (without the config flags every job gets)."""
    quiet = [] if ctx.progress else ["--no-progress"]
    on_site = ["--site", site] if site else []
    if name == "sessionize":
        interval = ["--start", ctx.start, "--end", ctx.end] if ctx.start is not None else []
        return [
            "--input",
            ctx.source,
            "--input-format",
            ctx.source_format,
            "--output",
            ctx.intervals or ctx.tables,
            "--format",
            ctx.table_format,
            *interval,
        ]
    if name == "consolidate":
        return ["--intervals", ctx.intervals, "--output", ctx.tables]
    if name == "train_tokenizer":
        return ["--data", ctx.tables, "--output", ctx.tokenizer]
    if name == "train":
        run_key = ["--run-key", ctx.run_key] if ctx.run_key else []
        return [
            "--data",
            ctx.tables,
            "--tokenizer",
            ctx.tokenizer,
            "--mlflow-uri",
            ctx.mlflow_uri,
            *run_key,
            *quiet,
            *on_site,
        ]
    if name == "evaluate":
        return [
            "--model-uri",
            f"models:/{ctx.model_name(site)}@candidate",
            *ctx.tasks,
            *ctx.evaluate,
            "--output",
            ctx.eval_output(site),
            "--data",
            ctx.tables,
            "--mlflow-uri",
            ctx.mlflow_uri,
            "--no-progress",
            "--keep-going",
        ]
    if name == "promote":
        return [*ctx.tasks, "--mlflow-uri", ctx.mlflow_uri, "--model-name", ctx.model_name(site)]
    if name == "score":
        return ["--data", ctx.tables, "--mlflow-uri", ctx.mlflow_uri]
    if name == "publish":
        return ["--data", ctx.tables, "--no-progress"]
    raise KeyError(f"stage {name!r} runs no job")


def run_one_off(
    ctx: Context,
    config_args: list[str],
    python: str = sys.executable,
    skip: tuple[str, ...] = (),
    sites: list[str] | None = None,
) -> int:
    """Run the one-off stages in order, each job in its own process as the scheduler runs them (per-site
    stages once per site of ``sites``). A blocking stage's failure stops the run with its exit code; a
    report's failure is told and the run goes on (and exits 1). ``skip``: stages left out, told as such."""
    failed_reports = []
    for stage in one_off_stages():
        if stage.name in skip:
            print(f"== {stage.name}: skipped", flush=True)
            continue
        for site in (sites or [None]) if stage.per_site else [None]:
            print(f"== {stage.name}" + (f" (site {site})" if site else ""), flush=True)
            code = subprocess.call(
                [python, str(REPO_ROOT / stage.job), *stage_args(stage.name, ctx, site), *config_args]
            )
            if code != 0 and stage.blocking:
                print(f"pipeline: {stage.name} failed (exit {code}); the stages after it did not run", file=sys.stderr)
                return code
            if code != 0:
                failed_reports.append(stage.name)
    if failed_reports:
        print(f"pipeline: {', '.join(failed_reports)} failed; every other stage ran", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    from prodemb.config import add_config_args, config_from_args
    from prodemb.registry import site_model_name

    ap = argparse.ArgumentParser(
        description="Run the pipeline's stages once over a whole click log (make demo), in the DAG's order."
    )
    ap.add_argument("--input", required=True, help="click log (file or folder)")
    ap.add_argument("--input-format", default="clicks")
    ap.add_argument("--output", required=True, help="tables folder")
    ap.add_argument("--tokenizer", required=True, help="tokenizer file to write")
    ap.add_argument("--mlflow-uri", required=True)
    ap.add_argument("--eval-output", required=True, help="evaluation report folder")
    ap.add_argument(
        "--task",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="a task table for evaluate and promote (repeatable)",
    )
    ap.add_argument(
        "--builtin",
        action="append",
        default=[],
        metavar="NAME[,NAME]",
        help="built-in tasks from the real data, for evaluate and promote",
    )
    ap.add_argument(
        "--no-tasks", action="store_true", help="no downstream tasks for this data: evaluate and promote are skipped"
    )
    ap.add_argument("--evaluate", default="", help="more evaluate flags, e.g. '--methods prodemb,tfidf --samples 3'")
    add_config_args(ap)
    args = ap.parse_args(argv)
    try:
        cfg = config_from_args(args)
    except ValueError as exc:
        print(f"pipeline: error: {exc}", file=sys.stderr)
        return 2
    ctx = Context(
        source=args.input,
        source_format=args.input_format,
        tables=args.output,
        table_format=cfg.sessions.format,
        tokenizer=args.tokenizer,
        mlflow_uri=args.mlflow_uri,
        progress=sys.stderr.isatty(),
        eval_output=lambda site: args.eval_output + (f"/{site}" if site else ""),
        model_name=lambda site: site_model_name(cfg.mlflow.model_name, site),
        tasks=[*(x for t in args.task for x in ("--task", t)), *(x for b in args.builtin for x in ("--builtin", b))],
        evaluate=shlex.split(args.evaluate),
    )
    config_args = ["--config-profile", cfg.profile, *(x for o in args.overrides for x in ("--set", o))]
    return run_one_off(
        ctx,
        config_args,
        skip=("evaluate", "promote") if args.no_tasks else (),
        sites=list(cfg.sites) if cfg.sites else None,
    )


if __name__ == "__main__":
    sys.exit(main())
