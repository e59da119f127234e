"""Sessionize as users run it: whole processes, the Spark job against DuckDB peers, on one Parquet file.

    python benchmarks/sessionize_bench.py [--clicks 10000000] [--cores 2] [--input uniform|synth]
                                          [--skip-warm] [--skip-stock] [--study] [--workdir DIR]
    python benchmarks/sessionize_bench.py --workdir DIR --pairs-encodings

Input (not timed): ``uniform`` (default) is the scale workload: 250,000 users and products, titles of 5
random words from 20,000, geometric session lengths (mean 6) in which a click goes back to a product
seen earlier in the session with probability 0.38, one Parquet file. At 10^7 clicks it gives
1,653,660 sessions and 15,774,343 pairs. ``synth`` is the project's own generator (prodemb.synth).

Every contender is timed from process start to exit, as a scheduler runs it:
  * ``spark-submit --master local[cores] jobs/sessionize.py`` with the settings ``make venv`` puts in the
    venv's spark-defaults.conf (prodemb.spark.install_local_defaults: half the memory for the driver,
    the throughput collector, the class-data archive);
  * the same with Spark's stock settings (a 1g driver, G1, no class-data archive), and with ``--study``
    with the sized driver and G1 (what the collector alone moves) and without the class-data archive
    (prodemb.class_data: what it alone moves);
  * DuckDB SQL of the session rules, pairs only (threads = cores);
  * DuckDB SQL of the full contract: quarantine, catalog, sessions and pairs.
The warm figure (extra column) is the second of two runs of ``run_sessionize`` in one JVM: no
start-up, JIT warm. Counts of sessions and pairs are checked equal across contenders.

``--pairs-encodings`` instead times the pairs write alone, in one warm JVM, with the Parquet settings a
Spark expert would try (dictionary pages large enough to keep product ids dictionary-encoded, zstd, no
compression) against Spark's defaults, from the sessions table of a run in ``--workdir``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.whole_process import timed, venv_env  # noqa: E402

TARGET_CLICKS_PER_CORE = 150_000
TARGET_RATIO = 2.0


def uniform_clicks(
    n_clicks: int,
    path: Path,
    n_users: int = 250_000,
    n_products: int = 250_000,
    mean_length: float = 6.0,
    revisit: float = 0.38,
    vocabulary: int = 20_000,
    seed: int = 7,
) -> None:
    """The scale workload (see the module docstring) as one Parquet file, ordered by time."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    lengths = rng.geometric(1 / mean_length, int(n_clicks / mean_length * 1.1) + 10)
    n_sessions = int(np.searchsorted(np.cumsum(lengths), n_clicks)) + 1
    lengths = lengths[:n_sessions]
    lengths[-1] -= int(lengths.sum()) - n_clicks
    first = np.r_[0, np.cumsum(lengths)[:-1]]  # [sessions] index of each first click
    session_of = np.repeat(np.arange(n_sessions), lengths)  # [clicks]
    start = 1_700_000_000_000_000 + rng.integers(0, 30 * 86_400 * 10**6, n_sessions)  # µs, 30 days
    step = rng.integers(0, 10 * 60 * 10**6, n_clicks)  # < 10 min: inside the 30-min gap
    step[first] = 0
    offset = np.cumsum(step)
    offset -= np.repeat(offset[first], lengths)
    ts = start[session_of] + offset
    user = rng.integers(0, n_users, n_sessions)[session_of]
    product = rng.integers(0, n_products, n_clicks)
    position = np.arange(n_clicks) - first[session_of]
    goes_back = (position > 0) & (rng.random(n_clicks) < revisit)
    earlier = first[session_of] + (rng.random(n_clicks) * np.maximum(position, 1)).astype(np.int64)
    for level in range(1, int(position.max()) + 1):  # in order: a revisit of a revisit
        at = np.flatnonzero(goes_back & (position == level))
        product[at] = product[earlier[at]]
    order = np.argsort(ts, kind="stable")
    words = ["".join(chr(97 + c) for c in rng.integers(0, 26, rng.integers(3, 10))) for _ in range(vocabulary)]
    titles = [" ".join(words[w] for w in rng.integers(0, vocabulary, 5)) for _ in range(n_products)]
    categories = [f"c{c}" for c in rng.integers(0, 200, n_products)]

    def by_product(values: list[str]) -> pa.Array:
        return pa.DictionaryArray.from_arrays(pa.array(product[order].astype(np.int32)), pa.array(values)).cast(
            pa.string()
        )

    users = pa.array([f"u{i}" for i in range(n_users)])
    table = pa.table(
        {
            "user_id": pa.DictionaryArray.from_arrays(pa.array(user[order].astype(np.int32)), users).cast(pa.string()),
            "ts": pa.array(ts[order], pa.timestamp("us", tz="UTC")),
            "product_id": by_product([f"p{i}" for i in range(n_products)]),
            "title": by_product(titles),
            "category": by_product(categories),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


def duckdb_peer(
    source: str, out: Path, threads: int, contract: str, gap_minutes: float = 30, max_items: int = 10
) -> dict:
    """The session rules in DuckDB SQL. ``pairs``: the pairs table alone. ``full``: quarantine (basic
    checks), catalog (accent-strip + stopword normalization), sessions and pairs, all as Parquet."""
    import duckdb

    from prodemb.text import stopwords

    out.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute(f"SET threads = {threads}")
    src = f"read_parquet('{source}')"
    sessions_sql = f"""
        WITH ev AS (
            SELECT site, user_id, ts, product_id,
                   lag(ts) OVER (PARTITION BY site, user_id ORDER BY ts, product_id) AS prev
            FROM {{events}}
        ), numbered AS (
            SELECT *, sum(CASE WHEN prev IS NULL OR ts - prev > INTERVAL {int(gap_minutes * 60)} SECOND
                               THEN 1 ELSE 0 END)
                      OVER (PARTITION BY site, user_id ORDER BY ts, product_id ROWS UNBOUNDED PRECEDING) AS s
            FROM ev
        ), grouped AS (
            SELECT site, user_id, min(ts) AS start_ts, max(ts) AS end_ts, count(*) AS n_events,
                   list(product_id ORDER BY ts, product_id) AS l
            FROM numbered GROUP BY site, user_id, s
        )
        SELECT site, hash(site, user_id, start_ts) AS session_id, user_id, start_ts, end_ts, n_events,
               list_filter(l, lambda x, i: list_position(l, x) = i)[1:{max_items}] AS products
        FROM grouped"""
    pairs_sql = """
        SELECT site, session_id, least(products[i], products[j]) AS product_a,
               greatest(products[i], products[j]) AS product_b
        FROM {sessions}, range(1, len(products) + 1) r1(i), range(1, len(products) + 1) r2(j)
        WHERE i < j"""
    if contract == "pairs":
        events = f"(SELECT 'default' AS site, user_id, ts, product_id FROM {src})"
        sessions = f"({sessions_sql.format(events=events)})"
        con.execute(f"COPY ({pairs_sql.format(sessions=sessions)}) TO '{out}/pairs.parquet' (FORMAT parquet)")
        return {"pairs": con.execute(f"SELECT count(*) FROM '{out}/pairs.parquet'").fetchone()[0]}
    con.execute(
        f"""
        CREATE TEMP TABLE checked AS
        SELECT *, CASE WHEN user_id IS NULL OR trim(user_id) = '' THEN 'missing_user_id'
                       WHEN product_id IS NULL OR trim(product_id) = '' THEN 'missing_product_id'
                       WHEN ts IS NULL THEN 'missing_ts'
                       WHEN ts < TIMESTAMP '1995-01-01' OR ts > now() + INTERVAL 1 DAY THEN 'ts_out_of_range'
                       WHEN title IS NULL OR trim(title) = '' THEN 'missing_title'
                       WHEN length(title) > 1000 THEN 'title_too_long'
                       WHEN title_norm = '' THEN 'empty_title_after_normalization' END AS reason
        FROM (SELECT 'default' AS site, user_id, ts, product_id, title, category,
                     array_to_string(list_filter(string_split(trim(regexp_replace(
                         strip_accents(lower(title)), '[^a-z0-9]+', ' ', 'g')), ' '),
                         lambda x: x <> '' AND NOT list_contains($stop, x)), ' ') AS title_norm
              FROM {src})
    """,
        {"stop": sorted(stopwords("es"))},
    )
    con.execute(
        f"COPY (SELECT * EXCLUDE (title_norm) FROM checked WHERE reason IS NOT NULL) "
        f"TO '{out}/quarantine.parquet' (FORMAT parquet)"
    )
    con.execute(f"""
        COPY (SELECT site, product_id, arg_max(title, ts) AS title, arg_max(title_norm, ts) AS title_norm,
                     arg_max(category, ts) AS category, count(*) AS n_events, min(ts) AS first_seen,
                     max(ts) AS last_seen
              FROM checked WHERE reason IS NULL GROUP BY site, product_id)
        TO '{out}/catalog.parquet' (FORMAT parquet)""")
    valid = "(SELECT * FROM checked WHERE reason IS NULL)"
    con.execute(f"CREATE TEMP TABLE sessions AS {sessions_sql.format(events=valid)}")
    con.execute(f"COPY sessions TO '{out}/sessions.parquet' (FORMAT parquet)")
    con.execute(f"COPY ({pairs_sql.format(sessions='sessions')}) TO '{out}/pairs.parquet' (FORMAT parquet)")
    return {
        "sessions": con.execute("SELECT count(*) FROM sessions").fetchone()[0],
        "pairs": con.execute(f"SELECT count(*) FROM '{out}/pairs.parquet'").fetchone()[0],
    }


def spark_warm(source: str, out: Path, cores: int) -> dict:
    """Two runs of the job's library call in one JVM; the second is the warm figure."""
    from prodemb.config import SessionsConfig
    from prodemb.sessions import run_sessionize
    from prodemb.spark import get_spark, local_driver_memory

    spark = get_spark(f"local[{cores}]", extra={"spark.driver.memory": local_driver_memory()})
    seconds = []
    for _ in range(2):
        t0 = time.perf_counter()
        report = run_sessionize(spark, source, "clicks", str(out), SessionsConfig())
        seconds.append(time.perf_counter() - t0)
    return {
        "seconds": seconds[-1],
        "sessions": report["sessions"],
        "pairs": report["pairs"],
        "step_seconds": report["step_seconds"],
    }


PAIRS_ENCODINGS = {  # label: DataFrameWriter options
    "Spark's defaults (snappy; dictionary pages of 1 MiB, so ids fall back to plain)": {},
    "dictionary pages of 8 MiB (ids stay dictionary-encoded)": {"parquet.dictionary.page.size": str(8 << 20)},
    "zstd": {"compression": "zstd"},
    "no compression": {"compression": "none"},
}


def pairs_encodings(sessions_dir: Path, out: Path, cores: int, repeats: int = 2) -> None:
    """The pairs write (explode + Parquet) under each of ``PAIRS_ENCODINGS``, best of ``repeats``."""
    from prodemb.sessions import explode_pairs
    from prodemb.spark import get_spark, local_driver_memory

    spark = get_spark(f"local[{cores}]", extra={"spark.driver.memory": local_driver_memory()})
    sessions = spark.read.parquet(str(sessions_dir))
    explode_pairs(sessions).write.format("noop").mode("overwrite").save()  # JIT warm-up
    print("| pairs written with | best of 2, s | MiB on disk |\n|---|---|---|")
    for label, options in PAIRS_ENCODINGS.items():
        best = float("inf")
        for _ in range(repeats):
            shutil.rmtree(out, ignore_errors=True)
            t0 = time.perf_counter()
            explode_pairs(sessions).write.options(**options).parquet(str(out))
            best = min(best, time.perf_counter() - t0)
        size = sum(f.stat().st_size for f in out.glob("*.parquet")) / 2**20
        print(f"| {label} | {best:.1f} | {size:.0f} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clicks", type=int, default=10_000_000)
    ap.add_argument("--cores", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--input", choices=["uniform", "synth"], default="uniform")
    ap.add_argument("--skip-warm", action="store_true", help="no in-JVM warm figure")
    ap.add_argument("--skip-stock", action="store_true", help="no run with Spark's stock settings (1g, G1)")
    ap.add_argument(
        "--study",
        action="store_true",
        help="also the sized driver with G1, and the venv's settings without the class-data archive",
    )
    ap.add_argument(
        "--pairs-encodings",
        action="store_true",
        help="time the pairs write alone under several Parquet settings (needs --workdir of a run)",
    )
    ap.add_argument("--workdir", default=None, help="where to put data (default: a temp folder, removed)")
    ap.add_argument("--peer", choices=["pairs", "full", "spark-warm"], help=argparse.SUPPRESS)  # one contender
    ap.add_argument("--source", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.peer:  # a contender in its own process: prints its counts as JSON
        if args.peer == "spark-warm":
            result = spark_warm(args.source, Path(args.out), args.cores)
        else:
            result = duckdb_peer(args.source, Path(args.out), args.cores, args.peer)
        print(json.dumps(result))
        return 0

    from prodemb.spark import local_driver_memory, spark_defaults

    if args.pairs_encodings:
        if not args.workdir or not (Path(args.workdir) / "spark" / "sessions").exists():
            raise SystemExit("--pairs-encodings reads <workdir>/spark/sessions: run the benchmark with --workdir first")
        pairs_encodings(Path(args.workdir) / "spark" / "sessions", Path(args.workdir) / "pairs-encodings", args.cores)
        return 0

    work = Path(args.workdir or tempfile.mkdtemp(prefix="prodemb-bench-"))
    try:
        t = time.perf_counter()
        if args.input == "uniform":
            source = work / "uniform" / "clicks.parquet"
            if not source.exists():
                uniform_clicks(args.clicks, source)
        else:
            from prodemb.synth import SynthSpec, generate

            generate(SynthSpec(n_clicks=args.clicks, n_products=max(1000, args.clicks // 100), seed=11), work / "synth")
            source = work / "synth" / "clicks"
        print(f"input: {args.clicks:,} clicks ({args.input}) ready in {time.perf_counter() - t:.1f}s (not timed)")

        env = venv_env()
        job = ["spark-submit", "--master", f"local[{args.cores}]"]
        job_args = ["jobs/sessionize.py", "--input", str(source), "--input-format", "clicks", "--json"]
        peer = [sys.executable, str(Path(__file__).resolve()), "--cores", str(args.cores), "--source", str(source)]
        memory = local_driver_memory()
        rows = []  # (label, seconds, counts, warm seconds)
        secs, out = timed([*job, *job_args, "--output", str(work / "spark")], env)
        report = json.loads(out)
        warm = None
        if not args.skip_warm:
            _, out = timed([*peer, "--peer", "spark-warm", "--out", str(work / "spark-warm")], env)
            warm = json.loads(out)
        defaults = spark_defaults()
        archive = "SharedArchiveFile" in defaults.get("spark.driver.defaultJavaOptions", "")
        rows.append(
            (
                f"spark-submit jobs/sessionize.py (the venv's spark-defaults.conf: "
                f"{defaults.get('spark.driver.memory', '1g')} driver, "
                f"{defaults.get('spark.driver.extraJavaOptions', 'G1')}"
                + (", class-data archive" if archive else "")
                + ")",
                secs,
                report,
                warm["seconds"] if warm else None,
            )
        )
        no_archive = ["--conf", "spark.driver.defaultJavaOptions="]
        others = (
            []
            if args.skip_stock
            else [
                (
                    ["--driver-memory", "1g", "--driver-java-options", "-XX:+UseG1GC", *no_archive],
                    "Spark's stock settings: 1g driver, G1, no archive",
                )
            ]
        )
        if args.study:
            others += [
                (
                    ["--driver-memory", memory, "--driver-java-options", "-XX:+UseG1GC"],
                    f"{memory} driver, G1" + (", class-data archive" if archive else ""),
                )
            ]
            others += [(no_archive, "the venv's settings without the class-data archive")] if archive else []
        for i, (settings, label) in enumerate(others):
            secs, out = timed([*job, *settings, *job_args, "--output", str(work / f"spark-{i}")], env)
            rows.append((f"spark-submit jobs/sessionize.py ({label})", secs, json.loads(out), None))
        for contract, label in (("pairs", "DuckDB SQL, pairs only"), ("full", "DuckDB SQL, all four tables")):
            secs, out = timed([*peer, "--peer", contract, "--out", str(work / f"duckdb-{contract}")], env)
            rows.append((label, secs, json.loads(out), None))

        duck_pairs = next(secs for label, secs, _, _ in rows if label.endswith("pairs only"))
        print(f"\n{args.clicks:,} clicks, {args.cores} cores, whole processes (start to exit):\n")
        print("| run | wall s | clicks/s/core | × DuckDB pairs-only wall | warm s (in one JVM) |")
        print("|---|---|---|---|---|")
        for label, secs, counts, warm_s in rows:
            print(
                f"| {label} | {secs:.1f} | {args.clicks / secs / args.cores:,.0f} | {secs / duck_pairs:.2f} | "
                + (f"{warm_s:.1f} ({args.clicks / warm_s / args.cores:,.0f}/s/core)" if warm_s else "")
                + " |"
            )
        print(
            f"\nsessions {report['sessions']:,}, pairs {report['pairs']:,}; spark steps (s): "
            + ", ".join(f"{k} {v:.1f}" for k, v in report["step_seconds"].items())
        )
        if warm:
            print("warm steps (s): " + ", ".join(f"{k} {v:.1f}" for k, v in warm["step_seconds"].items()))
        mismatched = [
            label
            for label, _, counts, _ in rows
            if counts["pairs"] != report["pairs"] or counts.get("sessions", report["sessions"]) != report["sessions"]
        ]
        if mismatched:
            print(f"WARNING: session/pair counts differ from the Spark job's: {mismatched}")
        spark_secs = rows[0][1]
        rate = args.clicks / spark_secs / args.cores
        print(
            f"target >= {TARGET_CLICKS_PER_CORE:,} clicks/s/core whole process: "
            f"{'met' if rate >= TARGET_CLICKS_PER_CORE else 'NOT met'} ({rate:,.0f})"
        )
        print(
            f"target <= {TARGET_RATIO:.0f}x DuckDB pairs-only wall: "
            f"{'met' if spark_secs <= TARGET_RATIO * duck_pairs else 'NOT met'} ({spark_secs / duck_pairs:.2f}x)"
        )
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
