"""Consolidate per-interval sessionize tables into the full tables the downstream stages read.

    spark-submit jobs/consolidate.py --intervals DIR/intervals --output DIR \
        [--format parquet|delta] [--config-profile NAME] [--set key=value ...]

The scheduled pipeline sessionizes one data interval per run into ``--intervals`` (every table has an
``interval=YYYYMMDDTHHMMSS`` partition, replaced atomically by a rerun of that interval). Tokenizer
training, training, evaluation and scoring read ``DIR/{catalog,pairs,sessions}`` as whole tables, and
the same product appears in the catalog of every interval it was clicked in, so this job rebuilds them
(``prodemb.sessions.run_consolidate``: catalog merged per product, pairs and sessions unioned; each
table replaced atomically). ``DIR/_consolidated.json`` reports the intervals and row counts.
Exit code 2: no interval tables under ``--intervals``.
"""

from __future__ import annotations

import argparse
import sys

from prodemb.config import add_config_args, config_from_args
from prodemb.jobs import add_output_args, finish_job


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--intervals", required=True, help="folder of the interval-partitioned sessionize tables")
    ap.add_argument("--output", default=None, help="folder of the full tables (default paths.data_dir)")
    ap.add_argument("--format", choices=["parquet", "delta"], default=None, help="table format (default parquet)")
    add_config_args(ap)
    add_output_args(ap)
    args = ap.parse_args(argv)
    cfg = config_from_args(args, **{"sessions.format": args.format})

    from prodemb.sessions import run_consolidate
    from prodemb.spark import spark_for

    spark = spark_for(cfg, "consolidate")
    return finish_job(
        "consolidate",
        lambda: run_consolidate(spark, args.intervals, args.output or cfg.paths.data_dir, cfg.sessions.format),
        args,
    )


if __name__ == "__main__":
    sys.exit(main())
