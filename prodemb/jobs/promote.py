"""Promotion gate: move alias `champion` to the `candidate` version of `prodemb-encoder` only if it is at least
as good on the downstream tasks' validation AUC and passed the health check.

    python jobs/promote.py [--task NAME=PATH ...] [--builtin NAME[,NAME]] [--tolerance 0.0] [--mlflow-uri URI]
        [--train-size 1000] [--samples 3]

With no --task/--builtin the tasks are the config's `evaluate.tasks` and `evaluate.builtin_tasks` (the same
ones `jobs/evaluate.py` uses); `--builtin` names tasks built from ../shared/data. The decision and both
scores are printed as JSON and written as `promotion.*` tags on the candidate version. Exit codes:
0 decided (promoted or refused), 2 bad input (no candidate, no tasks, unreadable task table, bad settings).
"""

from __future__ import annotations

import argparse
import sys

from prodemb.config import add_config_args, config_from_args
from prodemb.jobs import add_output_args, emit_report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--task",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="task table (CSV/Parquet: title, label[, product_id]); repeatable (default evaluate.tasks)",
    )
    ap.add_argument(
        "--builtin",
        action="append",
        default=[],
        metavar="NAME[,NAME]",
        help="built-in tasks from the real data (prodemb.tasks.BUILTIN_TASKS)",
    )
    ap.add_argument("--tolerance", type=float, default=None, help="candidate may trail the champion by this AUC")
    ap.add_argument("--mlflow-uri", default=None, help="tracking URI (default sqlite:///mlflow.db)")
    ap.add_argument("--model-name", default=None, help="registered model (default prodemb-encoder)")
    ap.add_argument("--train-size", type=int, default=None, help="LR training rows per task and sample")
    ap.add_argument("--samples", type=int, default=None, help="random training samples per task")
    add_config_args(ap)
    add_output_args(ap)
    args = ap.parse_args(argv)
    from prodemb.promote import GateError, run_promote
    from prodemb.score import ModelNotFoundError
    from prodemb.tasks import TaskError, configured_tasks, task_sources

    try:  # settings are validated by the config (promote.samples >= 1, train_size >= 2, tolerance >= 0)
        cfg = config_from_args(
            args,
            **{
                "mlflow.tracking_uri": args.mlflow_uri,
                "mlflow.model_name": args.model_name,
                "promote.tolerance": args.tolerance,
                "promote.train_size": args.train_size,
                "promote.samples": args.samples,
            },
        )
        tasks = configured_tasks(cfg.evaluate, *task_sources(args.task, args.builtin)).tables
        decision = run_promote(cfg, tasks)
    except (GateError, TaskError, ModelNotFoundError, OSError, ValueError) as exc:
        print(f"promote: error: {exc}", file=sys.stderr)
        return 2
    emit_report("promote", decision.as_dict(), args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
