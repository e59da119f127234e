"""Downstream evaluation: frozen embeddings + logistic regression on binary title tasks (paper §4, A.1).

    python jobs/evaluate.py --model-uri models:/prodemb-encoder@champion --task NAME=PATH [--task ...] \\
        [--builtin retail_premium,movielens_drama] [--methods prodemb,random,tfidf,...] \\
        [--train-sizes 100,500,1000] [--samples 5] [--data DIR] [--mlflow-uri URI] --output OUT

A task table (CSV or Parquet) has ``title`` and a binary ``label`` (0/1/true/false), optionally
``product_id``. Without --task/--builtin the config's ``evaluate.tasks`` / ``evaluate.builtin_tasks``
are used. Writes OUT/results.csv, OUT/report.md, OUT/plots/*.png, OUT/summary.json and logs them to
the MLflow experiment ``<mlflow.experiment>-eval``; prints the summary as JSON.

Exit codes: 0 done, 1 a method failed (with --keep-going: the others finished), 2 bad input,
75 another run is writing the same output folder (nothing written).
"""

from __future__ import annotations

import argparse
import sys

from prodemb.config import add_config_args, comma_list, config_from_args
from prodemb.jobs import add_output_args, emit_report, error_printer, evaluation_logging


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--model-uri", default=None, help="encoder under test (default: evaluate.model_uri, else score.model_uri)"
    )
    ap.add_argument(
        "--task",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="a task table (CSV or Parquet: title, label[, product_id]); repeatable",
    )
    ap.add_argument(
        "--builtin",
        action="append",
        default=[],
        metavar="NAME[,NAME]",
        help="built-in tasks from ../shared/data (see prodemb.tasks.BUILTIN_TASKS; 'all')",
    )
    ap.add_argument("--methods", default=None, help="comma-separated (default: evaluate.methods)")
    ap.add_argument("--train-sizes", type=comma_list(int), default=None, help="e.g. 100,500,1000 (capped per task)")
    ap.add_argument("--samples", type=int, default=None, help="random training subsamples per size (default 5)")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--output", default=None, help="output folder (default: evaluate.output_dir)")
    ap.add_argument("--data", default=None, help="sessionize output (catalog/, sessions/) for the Prod2Vec baselines")
    ap.add_argument(
        "--tokenizer", default=None, help="SentencePiece model for the Text-CNN baseline (default: the model's own)"
    )
    ap.add_argument("--mlflow-uri", default=None, help="tracking URI (default: mlflow.tracking_uri)")
    ap.add_argument("--no-mlflow", action="store_true", help="do not log an MLflow run")
    ap.add_argument(
        "--keep-going",
        action="store_true",
        help="a failing method is reported and the others go on (exit 1 at the end)",
    )
    ap.add_argument("--no-progress", action="store_true")
    add_config_args(ap)
    add_output_args(ap)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    evaluation_logging()
    from prodemb.config import BUSY_EXIT
    from prodemb.evaluate import EvaluateInputError, run_evaluate
    from prodemb.fs import OutputBusyError
    from prodemb.score import ModelNotFoundError
    from prodemb.tasks import TaskError, task_sources

    fail = error_printer("evaluate")

    try:
        cfg = config_from_args(
            args,
            **{
                "evaluate.train_sizes": args.train_sizes,
                "evaluate.samples": args.samples,
                "evaluate.seed": args.seed,
                "mlflow.tracking_uri": args.mlflow_uri,
            },
        )
    except (ValueError, FileNotFoundError) as exc:  # bad --set / profile (pydantic errors are ValueErrors)
        return fail(f"config: {exc}")
    try:
        tasks, builtin = task_sources(args.task, args.builtin)
        methods = [m for m in args.methods.split(",") if m.strip()] if args.methods is not None else None
        summary = run_evaluate(
            cfg,
            output=args.output,
            tasks=tasks,
            builtin=builtin,
            methods=methods,
            model_uri=args.model_uri,
            data_dir=args.data,
            tokenizer_path=args.tokenizer,
            progress=not args.no_progress,
            log_mlflow=not args.no_mlflow,
            keep_going=args.keep_going,
        )
    except (TaskError, EvaluateInputError, ModelNotFoundError, FileNotFoundError) as exc:
        return fail(str(exc))
    except OutputBusyError as exc:
        return fail(str(exc), BUSY_EXIT)
    except OSError as exc:  # a write the disk or the store refused
        return fail(" ".join(str(exc).split()), 1)
    emit_report("evaluate", summary, args)
    return 1 if summary["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
