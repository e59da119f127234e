"""α sweep (paper §5.1, Fig. 2): train one encoder per α of Eq. 4, evaluate each on the downstream tasks
with the random-initialized encoder as the floor, and report the α with the best mean validation AUC.

    python jobs/sweep_alpha.py --data DIR --tokenizer PATH --task NAME=PATH [--task ...] [--builtin NAME,...] \\
        [--alphas 0,0.1,0.5,0.9,1] [--max-steps N] [--epochs 1] [--batch-size 4096] [--max-minutes N] \\
        [--profile default|paper|small] \\
        [--train-sizes 100,500,1000] [--samples 5] [--mlflow-uri URI] --output OUT

The encoders are registered as ``evaluate.sweep_model_name`` (default ``prodemb-encoder-sweep``), never as
the production ``prodemb-encoder``, so its ``champion``/``candidate`` aliases are untouched. Writes
OUT/results.csv (alpha column filled), OUT/plots/<task>_alpha.png (Fig. 2), OUT/report.md, OUT/summary.json;
logs an MLflow run in ``<mlflow.experiment>-eval``; prints the summary (``best_alpha``) as JSON.

Exit codes: 0 done, 2 bad input, 3 every α collapsed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from prodemb.config import add_config_args, comma_list, config_from_args
from prodemb.jobs import add_output_args, emit_report, error_printer, evaluation_logging


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="sessionize output folder (catalog/, pairs/)")
    ap.add_argument("--tokenizer", required=True, help="SentencePiece model from jobs/train_tokenizer.py")
    ap.add_argument("--task", action="append", default=[], metavar="NAME=PATH", help="task table; repeatable")
    ap.add_argument(
        "--builtin", action="append", default=[], metavar="NAME[,NAME]", help="built-in tasks from ../shared/data"
    )
    ap.add_argument("--alphas", type=comma_list(float), default=None, help="default: evaluate.alphas (0,0.1,0.5,0.9,1)")
    ap.add_argument(
        "--profile",
        choices=["default", "paper", "small"],
        default=None,
        help="model profile in conf/models/ (default: the recommended model)",
    )
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--max-steps", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--max-minutes", type=float, default=None, help="cap each encoder's training loop at N minutes")
    ap.add_argument("--train-sizes", type=comma_list(int), default=None)
    ap.add_argument("--samples", type=int, default=None)
    ap.add_argument("--output", default=None, help="default: <evaluate.output_dir>/sweep_alpha")
    ap.add_argument("--mlflow-uri", default=None)
    ap.add_argument("--no-mlflow", action="store_true", help="do not log the evaluation run (training still logs)")
    ap.add_argument("--no-progress", action="store_true")
    add_config_args(ap)
    add_output_args(ap)
    args = ap.parse_args(argv)
    evaluation_logging()

    fail = error_printer("sweep_alpha")

    try:
        cfg = config_from_args(
            args,
            **{
                "model.profile": args.profile,
                "train.epochs": args.epochs,
                "train.max_steps": args.max_steps,
                "train.batch_size": args.batch_size,
                "train.max_minutes": args.max_minutes,
                "evaluate.train_sizes": args.train_sizes,
                "evaluate.samples": args.samples,
                "mlflow.tracking_uri": args.mlflow_uri,
            },
        )
    except (ValueError, FileNotFoundError) as exc:
        return fail(f"config: {exc}")
    for path, what in (
        (Path(args.data) / "catalog", "catalog"),
        (Path(args.data) / "pairs", "pairs"),
        (Path(args.tokenizer), "tokenizer"),
    ):
        if not path.exists():
            return fail(f"{what} not found at {path}")

    from prodemb.config import BUSY_EXIT
    from prodemb.fs import OutputBusyError
    from prodemb.protocol import EvaluateInputError
    from prodemb.sweep import run_sweep
    from prodemb.tasks import TaskError, task_sources
    from prodemb.train import CollapsedError

    try:
        tasks, builtin = task_sources(args.task, args.builtin)
        summary = run_sweep(
            cfg,
            data_dir=args.data,
            tokenizer_path=args.tokenizer,
            output=args.output,
            tasks=tasks,
            builtin=builtin,
            alphas=args.alphas,
            progress=not args.no_progress,
            log_mlflow=not args.no_mlflow,
        )
    except (TaskError, EvaluateInputError, FileNotFoundError) as exc:
        return fail(str(exc))
    except CollapsedError as exc:
        return fail(str(exc), 3)
    except OutputBusyError as exc:
        return fail(str(exc), BUSY_EXIT)
    except OSError as exc:  # a write the disk or the store refused
        return fail(" ".join(str(exc).split()), 1)
    emit_report("sweep_alpha", summary, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
