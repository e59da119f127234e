"""Sessionize throughput: the Spark job vs the same rules in DuckDB SQL, on the same Parquet input.

    python benchmarks/sessionize_bench.py [--clicks 5000000] [--cores 2] [--skip-duckdb]

Generates N clicks with prodemb.synth (not timed), then times, end to end (read → validate →
normalize titles → catalog / sessions / pairs / quarantine written as Parquet):
  * prodemb's Spark job (``run_sessionize``, local[cores]; Spark start-up excluded), twice in one JVM:
    "cold" includes JIT warm-up and Python worker start, "warm" is the steady state
  * DuckDB (threads = cores) running the same session rules in SQL (simpler title normalization and
    quarantine checks; the session and pair counts are checked equal)
and prints clicks/s/core for both and their ratio. Results go to benchmarks/RESULTS.md by hand.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prodemb.config import SessionsConfig  # noqa: E402
from prodemb.synth import SynthSpec, generate  # noqa: E402
from prodemb.text import stopwords  # noqa: E402


def run_spark(clicks_dir: Path, out: Path, cores: int) -> list[tuple[float, dict]]:
    """Two runs in one JVM: the first pays JIT warm-up and Python worker start, the second does not."""
    from prodemb.sessions import run_sessionize
    from prodemb.spark import get_spark

    spark = get_spark(f"local[{cores}]", extra={"spark.driver.memory": "8g",
                                                "spark.sql.shuffle.partitions": str(4 * cores)})
    runs = []
    for _ in range(2):
        t0 = time.perf_counter()
        report = run_sessionize(spark, str(clicks_dir), "clicks", str(out), SessionsConfig())
        runs.append((time.perf_counter() - t0, report))
    return runs


def run_duckdb(clicks_dir: Path, out: Path, cores: int, gap_minutes: float = 30,
               max_items: int = 10) -> tuple[float, dict]:
    """The session rules in DuckDB SQL (basic validation, accent-strip + stopword normalization, outputs)."""
    import duckdb

    out.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute(f"SET threads = {cores}")
    stop = sorted(stopwords("es"))
    t0 = time.perf_counter()
    con.execute(f"""
        CREATE TEMP TABLE tagged AS
        SELECT coalesce(site, 'default') AS site, user_id, ts::TIMESTAMP AS ts, product_id, title, category,
               array_to_string(list_filter(
                   string_split(trim(regexp_replace(strip_accents(lower(title)), '[^a-z0-9]+', ' ', 'g')), ' '),
                   lambda x: x <> '' AND NOT list_contains($stop, x)), ' ') AS title_norm
        FROM read_parquet('{clicks_dir}/*.parquet')
    """, {"stop": stop})
    con.execute("""
        CREATE TEMP TABLE checked AS
        SELECT *, CASE WHEN user_id IS NULL OR trim(user_id) = '' THEN 'missing_user_id'
                       WHEN product_id IS NULL OR trim(product_id) = '' THEN 'missing_product_id'
                       WHEN ts IS NULL THEN 'missing_ts'
                       WHEN ts < TIMESTAMP '1995-01-01' OR ts > now()::TIMESTAMP + INTERVAL 1 DAY THEN 'ts_out_of_range'
                       WHEN title IS NULL OR trim(title) = '' THEN 'missing_title'
                       WHEN length(title) > 1000 THEN 'title_too_long'
                       WHEN title_norm = '' THEN 'empty_title_after_normalization' END AS reason
        FROM tagged
    """)
    con.execute(f"COPY (SELECT * EXCLUDE (title_norm) FROM checked WHERE reason IS NOT NULL) "
                f"TO '{out}/quarantine.parquet' (FORMAT parquet)")
    con.execute(f"""
        COPY (SELECT site, product_id, arg_max(title, ts) AS title, arg_max(title_norm, ts) AS title_norm,
                     arg_max(category, ts) AS category, count(*) AS n_events, min(ts) AS first_seen,
                     max(ts) AS last_seen
              FROM checked WHERE reason IS NULL GROUP BY site, product_id)
        TO '{out}/catalog.parquet' (FORMAT parquet)
    """)
    con.execute(f"""
        CREATE TEMP TABLE sessions AS
        WITH ev AS (
            SELECT site, user_id, ts, product_id,
                   lag(ts) OVER (PARTITION BY site, user_id ORDER BY ts, product_id) AS prev
            FROM checked WHERE reason IS NULL
        ), numbered AS (
            SELECT *, sum(CASE WHEN prev IS NULL OR epoch(ts) - epoch(prev) > {gap_minutes * 60} THEN 1 ELSE 0 END)
                      OVER (PARTITION BY site, user_id ORDER BY ts, product_id ROWS UNBOUNDED PRECEDING) AS s
            FROM ev
        ), grouped AS (
            SELECT site, user_id, min(ts) AS start_ts, max(ts) AS end_ts, count(*) AS n_events,
                   list(product_id ORDER BY ts, product_id) AS l
            FROM numbered GROUP BY site, user_id, s
        )
        SELECT site, hash(site, user_id, start_ts) AS session_id, user_id, start_ts, end_ts, n_events,
               list_filter(l, lambda x, i: list_position(l, x) = i)[1:{max_items}] AS products
        FROM grouped
    """)
    con.execute(f"COPY sessions TO '{out}/sessions.parquet' (FORMAT parquet)")
    con.execute(f"""
        COPY (SELECT site, session_id, least(products[i], products[j]) AS product_a,
                     greatest(products[i], products[j]) AS product_b
              FROM sessions, range(1, len(products) + 1) r1(i), range(1, len(products) + 1) r2(j)
              WHERE i < j)
        TO '{out}/pairs.parquet' (FORMAT parquet)
    """)
    seconds = time.perf_counter() - t0
    counts = {"sessions": con.execute("SELECT count(*) FROM sessions").fetchone()[0],
              "pairs": con.execute(f"SELECT count(*) FROM '{out}/pairs.parquet'").fetchone()[0]}
    return seconds, counts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clicks", type=int, default=5_000_000)
    ap.add_argument("--products", type=int, default=50_000)
    ap.add_argument("--cores", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--skip-duckdb", action="store_true")
    ap.add_argument("--workdir", default=None, help="where to put data (default: a temp folder, removed)")
    args = ap.parse_args()

    work = Path(args.workdir or tempfile.mkdtemp(prefix="prodemb-bench-"))
    try:
        spec = SynthSpec(n_clicks=args.clicks, n_products=args.products, seed=11)
        t = time.perf_counter()
        generate(spec, work / "synth")
        print(f"generated {args.clicks:,} clicks in {time.perf_counter() - t:.1f}s (not timed below)")

        for label, (secs, report) in zip(["cold", "warm"], run_spark(work / "synth" / "clicks", work / "spark",
                                                                      args.cores)):
            spark_rate = args.clicks / secs / args.cores
            print(f"spark {label}: {secs:7.2f}s  {spark_rate:10,.0f} clicks/s/core  sessions={report['sessions']:,} "
                  f"pairs={report['pairs']:,} quarantined={report['rows_quarantined']:,}")
            print("        steps: " + ", ".join(f"{k} {v:.1f}s" for k, v in report["step_seconds"].items()))
        if not args.skip_duckdb:
            dsecs, dcounts = run_duckdb(work / "synth" / "clicks", work / "duckdb", args.cores)
            duck_rate = args.clicks / dsecs / args.cores
            print(f"duckdb    : {dsecs:7.2f}s  {duck_rate:10,.0f} clicks/s/core  "
                  f"sessions={dcounts['sessions']:,} pairs={dcounts['pairs']:,}")
            print(f"ratio spark (warm) / duckdb throughput: {spark_rate / duck_rate:.2f}x")
            if (dcounts["sessions"], dcounts["pairs"]) != (report["sessions"], report["pairs"]):
                print("WARNING: DuckDB and Spark disagree on session/pair counts")
        print(f"target >= 150,000 clicks/s/core (warm): {'met' if spark_rate >= 150_000 else 'NOT met'}")
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
