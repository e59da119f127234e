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
    "sessionize": "sessionize",
    "train-tokenizer": "train_tokenizer",
    "train": "train",
    "promote": "promote",
    "score": "score",
    "publish": "publish",
    "lookup": "lookup",
    "similar": "similar",
    "serve": "serve",
    "evaluate": "evaluate",
    "sweep-alpha": "sweep_alpha",
    "consolidate": "consolidate",
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


# --- what a job prints: one human line, the report as JSON behind --json or in --report FILE ----------


def add_output_args(ap) -> None:
    ap.add_argument(
        "--json", action="store_true", help="print the whole report as one JSON line instead of the one-line summary"
    )
    ap.add_argument(
        "--report", default=None, metavar="FILE", help="also write the report as JSON to FILE (a path or URI)"
    )


def _n(value) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)


def _seconds(report: dict) -> str:
    return f"{report['seconds']:.1f} s" if isinstance(report.get("seconds"), (int, float)) else ""


def _aliases_of(report: dict) -> str:
    """The aliases that name the reported version (``aliases`` maps every alias to its version)."""
    return ", ".join(a for a, v in (report.get("aliases") or {}).items() if str(v) == str(report["model_version"]))


SUMMARIES = {  # job → the human line of its report
    "sessionize": lambda r: (
        f"{_n(r['rows_in'])} clicks → {_n(r['sessions'])} sessions, {_n(r['pairs'])} pairs, {_n(r['products'])} "
        f"products ({_n(r['rows_quarantined'])} quarantined, {_n(r['rows_filtered'])} filtered) in {_seconds(r)} → "
        f"{r['parameters']['output']} (report: _run.json there)"
    ),
    "consolidate": lambda r: (
        f"{len(r['intervals'])} intervals → "
        + ", ".join(f"{_n(v)} {k}" for k, v in r["rows"].items())
        + f" → {r['output']}"
    ),
    "train_tokenizer": lambda r: (
        f"{_n(r['vocab_size'])} pieces from {_n(r['n_titles_used'])} titles in {_seconds(r)} → {r['path']}"
    ),
    "train": lambda r: (
        f"run key {r['run_key']}: already {r['model_name']} version {r['model_version']}, nothing trained"
        if r.get("reused")
        else f"{r['model_name']} version {r['model_version']} registered "
        f"({_aliases_of(r) or 'no alias'})"
        f"; {_n(r['steps'])} steps on {r['device']}, final loss {r['final_loss']:.4f}, {_seconds(r)}; "
        f"run {r['run_id']}"
    ),
    "score": lambda r: (
        f"{_n(r['rows_out'])} products embedded with "
        + (
            ", ".join(f"{s['model_name']}/{s['model_version']} ({_n(s['rows_out'])})" for s in r["sites"].values())
            if r.get("sites")
            else f"{r['model_name']}/{r['model_version']}"
        )
        + f" ({_n(r['rows_quarantined'])} quarantined"
        + (f", {_n(r['rows_carried'])} unchanged carried over" if r.get("rows_carried") else "")
        + f") in {_seconds(r)} → {r['output']}"
    ),
    "publish": lambda r: (
        f"{_n(r['rows_out'])} products online in product_embeddings"
        + (f"; pinned views: {', '.join(r['pinned_views'])}" if r.get("pinned_views") else "")
        + (f"; retired: {', '.join(r['retired_views'])}" if r.get("retired_views") else "")
        + (
            "; similar-products index recall@10 "
            + ", ".join(f"{m} {a['recall_at_10']:.3f}" for m, a in r["ann"].items())
            if r.get("ann")
            else ""
        )
        + f"; {_seconds(r)}"
    ),
    "evaluate": lambda r: (
        f"{_n(r['rows'])} results ({len(r['methods'])} methods × {len(r['tasks'])} tasks)"
        + (f", mean validation AUC of prodemb {r['mean_val_auc_prodemb']:.4f}" if "mean_val_auc_prodemb" in r else "")
        + (f", {len(r['failures'])} failures" if r.get("failures") else "")
        + f" in {_seconds(r)} → {r['output']}"
    ),
    "sweep_alpha": lambda r: (
        f"best α = {r['best_alpha']} of {r['alphas']} (mean validation AUC "
        f"{r['mean_val_auc_by_alpha'].get(str(r['best_alpha']), float('nan')):.4f}, random "
        f"{r['mean_val_auc_random']:.4f}) in {_seconds(r)} → {r['output']}"
    ),
    "promote": lambda r: (
        f"{r['model_name']} version {r['candidate_version']} "
        f"{'promoted to champion' if r['promoted'] else 'not promoted'}: {r['reason']}"
        + (f"; quality card {r['quality_card']}" if r.get("quality_card") else "")
    ),
}


def emit_report(job: str, report: dict, args) -> None:
    """The end of a job's output: ``--report FILE`` gets the JSON; stdout gets one human line, or the JSON
    with ``--json``."""
    import json

    if getattr(args, "report", None):
        from prodemb import fs

        fs.write_json(args.report, report)
    if getattr(args, "json", False):
        print(json.dumps(report, default=str))
        return
    try:
        line = SUMMARIES[job](report)
    except (KeyError, TypeError, ValueError):  # a report without the usual keys: its scalars, briefly
        line = ", ".join(f"{k}={v}" for k, v in report.items() if isinstance(v, (int, float, str)))[:300]
    print(f"{job}: {line}")


def finish_job(
    name: str,
    call,
    args,
    *,
    bad_input: tuple[type[BaseException], ...] = (FileNotFoundError, ValueError),
) -> int:
    """The common tail of a job: run ``call()``; bad input → ``name: error: …`` on stderr and exit code 2;
    an output another run is writing → the same line and exit code 75 (``BUSY_EXIT``); a write the disk or
    the store refused (OSError) → the same line and exit code 1; otherwise ``emit_report`` and return 0."""
    from prodemb.config import BUSY_EXIT
    from prodemb.fs import OutputBusyError

    try:
        result = call()
    except bad_input as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        return 2
    except OutputBusyError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        return BUSY_EXIT
    except OSError as exc:  # a write the disk or the store refused: what failed, in one line
        print(f"{name}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    emit_report(name, result, args)
    return 0


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
    sys.argv[0] = f"prodemb {command}"  # argparse's usage line names the command
    return importlib.import_module(f"prodemb.jobs.{JOBS[command]}").main(args[1:])
