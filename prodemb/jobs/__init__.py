"""The pipeline's jobs, one module each (argument parsing, config, one library call). Three ways to run one:

    spark-submit jobs/sessionize.py ...        # the files in jobs/ call these modules
    prodemb sessionize ...                     # the console script of the installed package
    python -m prodemb.jobs sessionize ...
"""
from __future__ import annotations

import importlib
import os
import sys

# What a user can do nothing about stays out of a job's output: MLflow's INFO lines (database set-up,
# input-example validation) and its artifact progress bars. Its warnings and errors still show, and an
# MLFLOW_LOGGING_LEVEL the user set wins. (Importing any job module runs this first.)
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

# command → module, in pipeline order
JOBS = {
    "sessionize": "sessionize", "train-tokenizer": "train_tokenizer", "train": "train", "promote": "promote",
    "score": "score", "publish": "publish", "lookup": "lookup", "similar": "similar", "serve": "serve",
    "evaluate": "evaluate", "sweep-alpha": "sweep_alpha", "consolidate": "consolidate",
}


def evaluation_logging() -> None:
    """INFO lines on stderr for the evaluation jobs, without the baselines' libraries' per-epoch chatter."""
    import logging

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("gensim", "sentence_transformers", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def error_printer(job: str):
    """``fail(msg, code=2)`` for a job: ``JOB: error: msg`` on stderr, returns the exit code."""
    def fail(msg: str, code: int = 2) -> int:
        print(f"{job}: error: {msg}", file=sys.stderr)
        return code
    return fail


def _usage() -> str:
    lines = ["usage: prodemb JOB [ARGS ...]   (prodemb JOB --help for a job's flags)", "", "jobs:"]
    for command, module in JOBS.items():
        doc = (importlib.import_module(f"prodemb.jobs.{module}").__doc__ or "").strip().splitlines()
        lines.append(f"  {command:<16} {doc[0] if doc else ''}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return 0 if args else 2
    command = args[0].replace("_", "-")
    if command not in JOBS:
        print(f"prodemb: error: unknown job {args[0]!r} (one of: {', '.join(JOBS)})", file=sys.stderr)
        return 2
    sys.argv[0] = f"prodemb {command}"        # argparse's usage line names the command
    return importlib.import_module(f"prodemb.jobs.{JOBS[command]}").main(args[1:])
