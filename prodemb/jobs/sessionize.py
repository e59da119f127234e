"""Sessionize click logs into catalog / sessions / pairs / quarantine tables.

    spark-submit jobs/sessionize.py --input PATH --input-format clicks --output DIR \
        [--gap-minutes 30] [--max-items 10] [--format parquet|delta]

Also runs as ``python jobs/sessionize.py ...`` (Spark local[*]).
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone

from prodemb.config import add_config_args, config_from_args
from prodemb.jobs import add_output_args, finish_job
from prodemb.sources import FORMATS


def _utc(text: str) -> datetime:
    t = datetime.fromisoformat(text)
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", required=True, help="file or folder of click logs")
    ap.add_argument("--input-format", required=True, choices=FORMATS)
    ap.add_argument("--output", default=None, help="output folder (default: paths.data_dir)")
    ap.add_argument("--gap-minutes", type=float, default=None, help="inactivity gap T (default 30)")
    ap.add_argument("--max-items", type=int, default=None, help="distinct products kept per session (default 10)")
    ap.add_argument("--format", choices=["parquet", "delta"], default=None, help="table format (default parquet)")
    ap.add_argument(
        "--start",
        type=_utc,
        default=None,
        help="interval start (ISO-8601, UTC): process only sessions that begin in [start, end)",
    )
    ap.add_argument("--end", type=_utc, default=None, help="interval end (exclusive)")
    add_config_args(ap)
    add_output_args(ap)
    args = ap.parse_args(argv)
    cfg = config_from_args(
        args,
        **{
            "sessions.gap_minutes": args.gap_minutes,
            "sessions.max_items": args.max_items,
            "sessions.format": args.format,
        },
    )

    from prodemb.sessions import run_sessionize
    from prodemb.spark import spark_for

    spark = spark_for(cfg, "sessionize")
    return finish_job(
        "sessionize",
        lambda: run_sessionize(
            spark,
            args.input,
            args.input_format,
            args.output or cfg.paths.data_dir,
            cfg.sessions,
            start=args.start,
            end=args.end,
        ),
        args,
    )


if __name__ == "__main__":
    sys.exit(main())
