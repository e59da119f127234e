"""Consolidate per-interval sessionize tables into the full tables the downstream stages read.

    spark-submit airflow_dags/apps/consolidate.py --intervals DIR/intervals --output DIR \
        [--format parquet|delta] [--config-profile NAME] [--set key=value ...]

The scheduled pipeline sessionizes one data interval per run into ``--intervals`` (every table has an
``interval=YYYYMMDDTHHMMSS`` partition, replaced atomically by a rerun of that interval). Tokenizer
training, training, evaluation and scoring read ``DIR/{catalog,pairs,sessions}`` as whole tables, and
the same product appears in the catalog of every interval it was clicked in, so this job rebuilds:

* ``catalog``: one row per (site, product_id) over all intervals: the title (and its normalized form)
  of the latest-seen interval row (ties by title, as the full run), the category of the latest interval
  that had one, n_events summed, first_seen min, last_seen max;
* ``pairs`` and ``sessions``: the union of the interval partitions (a session belongs to exactly one
  interval, the one of its first event, so nothing is duplicated).

Every table is replaced atomically (a Parquet symlink swap or a Delta transaction, prodemb.tables);
the catalog is written first: intervals only add products, so a run that fails between tables leaves a
catalog that covers the previous pairs. ``DIR/_consolidated.json`` reports the intervals and row counts.
Exit code 2: no interval tables under ``--intervals``.
"""
from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))  # spark-submit without an install

from prodemb.config import add_config_args, config_from_args  # noqa: E402

CATALOG_COLUMNS = ["site", "product_id", "title", "title_norm", "category", "n_events", "first_seen", "last_seen"]


def merge_catalogs(catalog):
    """Interval catalogs (one row per product and interval) → one row per (site, product_id)."""
    from pyspark.sql import functions as F

    merged = catalog.groupBy("site", "product_id").agg(
        F.max_by(F.struct("title", "title_norm"), F.struct("last_seen", "title")).alias("_title"),
        F.max_by("category", F.when(F.col("category").isNotNull(), F.col("last_seen"))).alias("category"),
        F.sum("n_events").alias("n_events"),
        F.min("first_seen").alias("first_seen"),
        F.max("last_seen").alias("last_seen"),
    )
    return merged.select("site", "product_id", F.col("_title.title").alias("title"),
                         F.col("_title.title_norm").alias("title_norm"), *CATALOG_COLUMNS[4:])


def run_consolidate(spark, intervals_dir: str, output_dir: str, fmt: str = "parquet") -> dict:
    from prodemb.tables import read_table, write_json, write_table

    src, out = intervals_dir.rstrip("/"), output_dir.rstrip("/")
    local = "://" not in src or src.startswith("file://")
    missing = [t for t in ("catalog", "pairs", "sessions")
               if local and not Path(src.removeprefix("file://"), t).exists()]
    if missing:
        raise FileNotFoundError(f"no interval tables {missing} under {src}: run jobs/sessionize.py with "
                                "--start/--end first")
    tables = {name: read_table(spark, f"{src}/{name}") for name in ("catalog", "pairs", "sessions")}
    intervals = sorted(r[0] for r in tables["catalog"].select("interval").distinct().collect())
    frames = {
        "catalog": merge_catalogs(tables["catalog"]),
        "pairs": tables["pairs"].drop("interval"),
        "sessions": tables["sessions"].drop("interval"),
    }
    written = {}
    for name in ("catalog", "pairs", "sessions"):   # catalog first (see the module docstring)
        written[name] = write_table(frames[name], f"{out}/{name}", fmt)
    counts = {name: read_table(spark, f"{out}/{name}").count() for name in frames}
    report = {"intervals": intervals, "source": src, "output": out, "format": fmt,
              "rows": counts, "tables": written, "finished_at": datetime.now(timezone.utc).isoformat()}
    if local or out.startswith("file://"):
        write_json(f"{out.removeprefix('file://')}/_consolidated.json", report)
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--intervals", required=True, help="folder of the interval-partitioned sessionize tables")
    ap.add_argument("--output", default=None, help="folder of the full tables (default paths.data_dir)")
    ap.add_argument("--format", choices=["parquet", "delta"], default=None, help="table format (default parquet)")
    add_config_args(ap)
    args = ap.parse_args(argv)
    cfg = config_from_args(args, **{"sessions.format": args.format})

    from prodemb.spark import get_spark

    spark = get_spark(cfg.spark.master, delta=cfg.sessions.format == "delta", app_name="prodemb-consolidate",
                      extra=cfg.spark.conf)
    try:
        report = run_consolidate(spark, args.intervals, args.output or cfg.paths.data_dir, cfg.sessions.format)
    except (FileNotFoundError, ValueError) as exc:
        print(f"consolidate: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"intervals": len(report["intervals"]), **report["rows"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
