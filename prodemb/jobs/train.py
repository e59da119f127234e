"""Train the BYOL + category encoder on sessionized pairs; log to MLflow; register `prodemb-encoder`.

    python jobs/train.py --data DIR --tokenizer PATH       # the recommended model (profile default)
        [--profile default|paper|small] [--alpha A] [--epochs N | --max-steps N] [--max-minutes N]
        [--batch-size 4096] [--mlflow-uri URI] [--optimizer lars|sgd] [--device auto]
    torchrun --nproc_per_node 4 jobs/train.py ...      # DDP: NCCL on GPUs, gloo on the CPU

Under torchrun every rank trains on its shard of the pairs; rank 0 alone talks to MLflow and registers the
one version (its summary is the usual one plus ``rank``, ``world_size``, ``shard_pairs``, ``sync_checks``);
the other ranks print a short summary (``rank``, ``steps``, ``shard_pairs``, ``sync_checks``, ``final_loss``).

``--run-key KEY`` (the scheduler passes its data interval) makes a rerun a no-op: when a registered version
already carries tag ``run_key=KEY`` nothing is trained and that version is reported (``"reused": true``),
aliases untouched.

Exit codes: 0 registered (or reused), 2 bad input, 3 embeddings collapsed (nothing registered).
"""

from __future__ import annotations

import argparse
import logging
import sys

from prodemb.config import add_config_args, config_from_args
from prodemb.jobs import add_output_args, emit_report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="sessionize output folder (catalog/, pairs/)")
    ap.add_argument("--tokenizer", required=True, help="SentencePiece model from jobs/train_tokenizer.py")
    ap.add_argument(
        "--profile",
        choices=["default", "paper", "small"],
        default=None,
        help="model profile in conf/models/: default (recommended), paper (the paper's exact "
        "setting), small (tests, quick demo)",
    )
    ap.add_argument("--alpha", type=float, default=None, help="Eq. 4 weight of the BYOL loss (profile's)")
    ap.add_argument(
        "--epochs", type=int, default=None, help="train N passes over the pairs instead of the profile's step budget"
    )
    ap.add_argument("--max-steps", type=int, default=None, help="optimizer steps (the profile's budget)")
    ap.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        help="cap the training loop at N minutes: fewer steps, the schedules rescaled to them",
    )
    ap.add_argument("--batch-size", type=int, default=None, help="pairs per step (default 4096)")
    ap.add_argument("--mlflow-uri", default=None, help="tracking URI (default sqlite:///mlflow.db)")
    ap.add_argument("--optimizer", choices=["lars", "sgd"], default=None)
    ap.add_argument("--lr", type=float, default=None, help="base learning rate per 256 pairs (default 0.45)")
    ap.add_argument("--device", default=None, help="auto | cpu | cuda | cuda:N")
    ap.add_argument("--compile", action="store_true", default=None, help="torch.compile the network")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument(
        "--site",
        default=None,
        help="train one site's model on its products and pairs, registered as <model_name>-<site>",
    )
    ap.add_argument(
        "--run-key",
        default=None,
        help="idempotency key (e.g. the data interval): reuse the version registered under it",
    )
    add_config_args(ap)
    add_output_args(ap)
    args = ap.parse_args(argv)
    if args.max_minutes is not None and args.max_minutes <= 0:
        ap.error("--max-minutes must be positive")
    cfg = config_from_args(
        args,
        **{
            "model.profile": args.profile,
            "train.alpha": args.alpha,
            "train.epochs": args.epochs,
            "train.max_steps": args.max_steps,
            "train.max_minutes": args.max_minutes,
            "train.batch_size": args.batch_size,
            "mlflow.tracking_uri": args.mlflow_uri,
            "train.optimizer": args.optimizer,
            "train.base_lr": args.lr,
            "train.device": args.device,
            "train.compile": args.compile,
            "train.seed": args.seed,
            "train.site": args.site,
        },
    )
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    from mlflow.exceptions import MlflowException

    from prodemb.train import CollapsedError, run_training

    try:  # bad run key, missing catalog/pairs/tokenizer: ValueError / FileNotFoundError → exit 2
        summary = run_training(args.data, args.tokenizer, cfg, progress=not args.no_progress, run_key=args.run_key)
    except CollapsedError as exc:
        print(f"train: {exc}", file=sys.stderr)
        return 3
    except (ValueError, FileNotFoundError) as exc:
        print(f"train: error: {exc}", file=sys.stderr)
        return 2
    except (OSError, MlflowException) as exc:  # a refused write, an unreachable tracking server: one line
        print(f"train: error: {' '.join(str(exc).split())[:500]}", file=sys.stderr)
        return 1
    if summary.get("reused") and summary.get("rank", 0) == 0:
        print(
            f"train: run key {args.run_key} already registered as {summary['model_name']} version "
            f"{summary['model_version']}: nothing trained, aliases unchanged",
            file=sys.stderr,
        )
    emit_report("train", summary, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
