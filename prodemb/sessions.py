"""Sessionization (paper §3.1, A.1): clicks → sessions → deduped, truncated product lists → pairs.

Pure DataFrame → DataFrame functions:

    tag_rows        canonical frame (prodemb.sources) → + quarantine_reason (row-level rules: ids, time)
    title_variants  clicks → one row per (site, product, title, category): where per-title work happens
                    (normalization, the title rules of ``variant_reason``)
    with_variant_reason  rows of a bad variant get its reason (broadcast join on the variant's keys)
    sessionize      valid clicks → one row per session (products deduped in first-seen order, truncated)
    explode_pairs   sessions → every unordered product pair of a session, once (product_a < product_b)
    catalog_from_variants  good title variants → one row per (site, product_id): the latest title, the
                    latest category, counts and first/last seen

Semantics: a session belongs to one (site, user_id); events are ordered by (ts, product_id); a gap
strictly greater than ``gap_minutes`` starts a new session (a gap of exactly T stays inside).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from prodemb.text import normalize_title_col

SESSION_KEYS = ["site", "user_id"]
# U+FFFD is what Spark's UTF-8 decoder substitutes for byte sequences that are not valid UTF-8.
_REPLACEMENT_CHAR = "\ufffd"


def _blank(c: Column) -> Column:
    # Cheap tests first: a non-empty blank string must start with a space; trim only then.
    return c.isNull() | (F.octet_length(c) == 0) | (c.startswith(" ") & (F.trim(c) == ""))


def quarantine_reason(valid_from: datetime, valid_until: datetime) -> Column:
    """The first row-level rule a row breaks, as a short reason string; null for a good row.

    Row-level rules read the ids and the time only. The rules on a title (``variant_reason``) are checked
    once per distinct (site, product, title, category) on the small per-title table, not per event: that
    keeps the title column out of the sessions pass altogether when every title is good.
    """
    id_fields = [F.col(c) for c in ("site", "user_id", "product_id")]
    return (
        F.when(F.col("raw_record").isNotNull(), F.lit("malformed_record"))
        .when(_blank(F.col("user_id")), F.lit("missing_user_id"))
        .when(_blank(F.col("product_id")), F.lit("missing_product_id"))
        .when(F.col("ts_missing"), F.lit("missing_ts"))
        .when(F.col("ts").isNull(), F.lit("unparseable_ts"))
        .when((F.col("ts") < F.lit(valid_from)) | (F.col("ts") > F.lit(valid_until)), F.lit("ts_out_of_range"))
        .when(_has_bad_bytes(id_fields), F.lit("invalid_utf8"))
    )


def _has_bad_bytes(fields: list[Column]) -> Column:
    return F.coalesce(*[F.when(c.contains(_REPLACEMENT_CHAR), True) for c in fields], F.lit(False))


def variant_reason(max_title_chars: int) -> Column:
    """The first title rule a (title, category) variant breaks; null for a good one. Needs ``title_norm``.

    These rules come after the row-level ones in the order of reasons (``invalid_utf8`` is where they
    meet: bad bytes in an id are found per row, bad bytes in a title or category per variant).
    """
    # Character count only when the byte length could exceed the limit (bytes >= characters).
    too_long = (F.octet_length("title") > max_title_chars) & (F.length("title") > max_title_chars)
    return (
        F.when(_has_bad_bytes([F.col("title"), F.col("category")]), F.lit("invalid_utf8"))
        .when(_blank(F.col("title")), F.lit("missing_title"))
        .when(too_long, F.lit("title_too_long"))
        .when(F.col("title_norm") == "", F.lit("empty_title_after_normalization"))
    )


def tag_rows(
    raw: DataFrame, *, valid_from: str = "1995-01-01", future_slack_days: int = 1, now: datetime | None = None
) -> DataFrame:
    """Add ``quarantine_reason`` (row-level rules) to a canonical frame (see prodemb.sources)."""
    now = now or datetime.now(timezone.utc)
    lo = datetime.fromisoformat(valid_from).replace(tzinfo=timezone.utc)
    hi = now + timedelta(days=future_slack_days)
    return raw.withColumn("quarantine_reason", F.when(F.col("filter_reason").isNull(), quarantine_reason(lo, hi)))


def title_variants(clicks: DataFrame, language: str = "es", max_title_chars: int = 1000) -> DataFrame:
    """Clicks that pass the row-level rules → one row per (site, product_id, title, category) with n,
    first_ts, last_ts, ``title_norm`` and the variant's ``reason`` (null when its title is good).

    Titles repeat on every view of a product, so this small table is where per-title work happens:
    the title rules and normalization run once per variant, and the catalog is built from it. The
    grouping uses fixed-width aggregates only, so Spark keeps a hash aggregate.
    """
    variants = clicks.groupBy("site", "product_id", "title", "category").agg(
        F.count(F.lit(1)).alias("n"), F.min("ts").alias("first_ts"), F.max("ts").alias("last_ts")
    )
    return variants.withColumn("title_norm", normalize_title_col(F.col("title"), language)).withColumn(
        "reason", variant_reason(max_title_chars)
    )


_VARIANT_KEYS = ("site", "product_id", "title", "category")


def with_variant_reason(tagged: DataFrame, bad_variants: DataFrame) -> DataFrame:
    """Give rows of a bad variant that reason (``bad_variants`` is small: broadcast). Null-safe on the
    keys: a missing title or category is a variant like any other."""
    bad = F.broadcast(
        bad_variants.select(
            *[F.col(k).alias(f"_bad_{k}") for k in _VARIANT_KEYS], F.col("reason").alias("_variant_reason")
        )
    )
    on = [tagged[k].eqNullSafe(bad[f"_bad_{k}"]) for k in _VARIANT_KEYS]
    joined = tagged.join(bad, on=on, how="left")
    reason = F.coalesce(F.col("quarantine_reason"), F.when(F.col("filter_reason").isNull(), F.col("_variant_reason")))
    return joined.withColumn("quarantine_reason", reason).drop(*bad.columns)


def valid_clicks(tagged: DataFrame) -> DataFrame:
    return tagged.where(F.col("filter_reason").isNull() & F.col("quarantine_reason").isNull()).select(
        "site", "user_id", "ts", "product_id", "title", "category"
    )


def quarantine_rows(tagged: DataFrame) -> DataFrame:
    return tagged.where(F.col("quarantine_reason").isNotNull()).select(
        "site",
        "user_id",
        "ts_raw",
        "product_id",
        "title",
        "category",
        F.col("quarantine_reason").alias("reason"),
        "raw_record",
    )


# --- sessions: one sort, then a vectorized cut over each sorted partition ----------------------

_SESSION_ARROW = pa.schema(
    [
        ("site", pa.string()),
        ("user_id", pa.string()),
        ("start_ts", pa.timestamp("us", tz="UTC")),
        ("end_ts", pa.timestamp("us", tz="UTC")),
        ("n_events", pa.int64()),
        ("products", pa.list_(pa.string())),
    ]
)
_SESSION_DDL = (
    "site string, user_id string, start_ts timestamp, end_ts timestamp, n_events long, products array<string>"
)


def cut_sessions(events: pa.Table, gap_us: int, max_items: int) -> pa.RecordBatch:
    """Sorted events (site, user_id, ts, product_id) → one row per session (numpy, no Python loop).

    ``events`` must be ordered by (site, user_id, ts, product_id) and hold whole sessions.
    """
    n = events.num_rows
    site, user, prod = (events.column(c).combine_chunks() for c in ("site", "user_id", "product_id"))
    ts = events.column("ts").combine_chunks().cast(pa.int64()).to_numpy()
    new = np.ones(n, dtype=bool)  # row i starts a session
    if n > 1:
        same_user = pc.and_(pc.equal(site[1:], site[:-1]), pc.equal(user[1:], user[:-1]))
        new[1:] = ~same_user.to_numpy(zero_copy_only=False) | (np.diff(ts) > gap_us)
    starts = np.flatnonzero(new)
    sess = np.cumsum(new) - 1  # [n] session index of each row
    # First occurrence of each (session, product), in event order: dedupe keeping first-seen order.
    codes = pc.dictionary_encode(prod).indices.to_numpy().astype(np.int64)
    _, first = np.unique(sess * (int(codes.max()) + 1) + codes, return_index=True)
    first.sort()
    # Rank of each kept product inside its session; keep the first max_items.
    kept_sess = sess[first]
    group_start = np.flatnonzero(np.r_[True, kept_sess[1:] != kept_sess[:-1]])
    rank = np.arange(len(first)) - np.repeat(group_start, np.diff(np.r_[group_start, len(first)]))
    keep = first[rank < max_items]
    offsets = np.r_[0, np.cumsum(np.bincount(sess[keep], minlength=len(starts)))].astype(np.int32)
    ends = np.r_[starts[1:], n] - 1
    return pa.RecordBatch.from_arrays(
        [
            pc.take(site, starts),
            pc.take(user, starts),
            pa.array(ts[starts], pa.timestamp("us", tz="UTC")),
            pa.array(ts[ends], pa.timestamp("us", tz="UTC")),
            pa.array(np.diff(np.r_[starts, n]), pa.int64()),
            pa.ListArray.from_arrays(pa.array(offsets), pc.take(prod, keep)),
        ],
        schema=_SESSION_ARROW,
    )


def _last_session_start(events: pa.Table, gap_us: int) -> int:
    """Row index where the table's last (possibly unfinished) session begins."""
    n = events.num_rows
    site, user = events.column("site"), events.column("user_id")
    ts = events.column("ts").combine_chunks().cast(pa.int64()).to_numpy()
    i = n - 1
    last_site, last_user = site[i].as_py(), user[i].as_py()
    # Walk back over the last user's rows only while gaps stay within T (vectorized over that user).
    same = pc.and_(pc.equal(site, last_site), pc.equal(user, last_user)).to_numpy(zero_copy_only=False)
    first_of_user = n - int(np.argmin(same[::-1])) if not same.all() else 0
    gaps = np.diff(ts[first_of_user:]) > gap_us
    breaks = np.flatnonzero(gaps)
    return first_of_user + (int(breaks[-1]) + 1 if len(breaks) else 0)


def _session_partitions(gap_us: int, max_items: int):
    """The mapInArrow function: sessions can span Arrow batches, so the unfinished tail is carried."""

    def cut(batches):
        carry = None
        for batch in batches:
            table = pa.Table.from_batches([batch])
            if carry is not None:
                table = pa.concat_tables([carry, table])
            if table.num_rows == 0:
                continue
            split = _last_session_start(table, gap_us)
            carry = table.slice(split)
            if split > 0:
                yield cut_sessions(table.slice(0, split), gap_us, max_items)
        if carry is not None and carry.num_rows:
            yield cut_sessions(carry, gap_us, max_items)

    return cut


def sessionize(clicks: DataFrame, gap_minutes: float = 30.0, max_items: int = 10) -> DataFrame:
    """One row per session: site, session_id, user_id, start_ts, end_ts, n_events, products.

    ``products`` holds the session's distinct products in first-seen order, truncated to
    ``max_items``. ``session_id`` is a stable hash of (site, user_id, start_ts), so the same session
    gets the same id in a full run and in an incremental one.

    One shuffle by (site, user_id) and a sort by (site, user_id, ts, product_id); the cut itself runs
    vectorized over Arrow batches (``cut_sessions``): 2-3x faster than window functions followed by
    collect_list + array_sort, which this replaced (see benchmarks/RESULTS.md).
    """
    gap_us = int(round(gap_minutes * 60 * 1_000_000))
    ordered = (
        clicks.select(*SESSION_KEYS, "ts", "product_id")
        .repartition(*SESSION_KEYS)
        .sortWithinPartitions(*SESSION_KEYS, "ts", "product_id")
    )
    sessions = ordered.mapInArrow(_session_partitions(gap_us, max_items), _SESSION_DDL)
    return sessions.select(
        "site",
        F.xxhash64("site", "user_id", "start_ts").alias("session_id"),
        "user_id",
        "start_ts",
        "end_ts",
        "n_events",
        "products",
    )


def explode_pairs(sessions: DataFrame) -> DataFrame:
    """Every unordered pair of a session's products, once: n·(n−1)/2 rows with product_a < product_b.

    Two positional explodes and ``i < j``: plain generators that Spark compiles (no lambdas).
    Products of a session are distinct, so least/greatest give a strict order.
    """
    p = F.col("products")
    return (
        sessions.where(F.size(p) >= 2)
        .select("site", "session_id", "products", F.posexplode(p).alias("i", "a"))
        .select("site", "session_id", "i", "a", F.posexplode(p).alias("j", "b"))
        .where(F.col("i") < F.col("j"))
        .select("site", "session_id", F.least("a", "b").alias("product_a"), F.greatest("a", "b").alias("product_b"))
    )


def catalog_from_variants(variants: DataFrame) -> DataFrame:
    """Good variants (``title_variants``) → one row per (site, product_id): the latest-seen title (ties
    broken by title) with its normalized form, the latest non-null category, event count and
    first/last seen."""
    per_product = variants.groupBy("site", "product_id").agg(
        F.max_by(F.struct("title", "title_norm"), F.struct("last_ts", "title")).alias("_title"),
        F.max_by("category", F.when(F.col("category").isNotNull(), F.col("last_ts"))).alias("category"),
        F.sum("n").alias("n_events"),
        F.min("first_ts").alias("first_seen"),
        F.max("last_ts").alias("last_seen"),
    )
    return per_product.select(
        "site",
        "product_id",
        F.col("_title.title").alias("title"),
        F.col("_title.title_norm").alias("title_norm"),
        "category",
        "n_events",
        "first_seen",
        "last_seen",
    )


# --- the job: I/O at the edge ------------------------------------------------------------------


def observed(observation, recount) -> dict:
    """An Observation's metrics once its action ran; ``recount()`` (a one-row DataFrame of the same metrics)
    where Spark recorded none: it skips them for a plan the optimizer proved empty. Nulls read as 0."""
    try:
        got = observation.get
    except Exception:
        got = None
    return {k: v or 0 for k, v in (got or recount().first().asDict()).items()}


def interval_label(start: datetime) -> str:
    return start.strftime("%Y%m%dT%H%M%S")


def run_sessionize(
    spark,
    input_path: str,
    input_format: str,
    output_dir: str,
    cfg,
    *,
    now: datetime | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> dict:
    """``sessionize_tables`` with the output folder locked: a second run on the same output fails clearly
    (``prodemb.fs.OutputBusyError``) instead of writing beside the first."""
    from prodemb import fs

    with fs.output_lock(output_dir, "sessionize"):
        return sessionize_tables(spark, input_path, input_format, output_dir, cfg, now=now, start=start, end=end)


def sessionize_tables(
    spark,
    input_path: str,
    input_format: str,
    output_dir: str,
    cfg,
    *,
    now: datetime | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> dict:
    """Read → tag → write quarantine, catalog, sessions, pairs and ``_run.json`` under ``output_dir``.

    ``cfg`` is a ``prodemb.config.SessionsConfig``. Returns the run report (also in ``_run.json``).
    Passes over the input: one to count and build the small per-title table, then one per output
    table (Parquet scans are cheap; caching every event was slower than reading twice).

    Interval mode (``start`` and ``end``, UTC): the run accounts for the events with start <= ts < end
    (plus rows without a usable timestamp, which belong to no interval), and emits the sessions whose
    first event lies in the interval, cut exactly as a full run would: it also reads ``gap_minutes``
    before ``start`` (to see whether a session began earlier) and ``max_session_hours`` after ``end``
    (to finish sessions that run past it). Every table gets an ``interval`` partition that a rerun
    replaces; ``_runs/<interval>.json`` is the report.
    """
    import time

    from pyspark import StorageLevel
    from pyspark.sql import Observation

    from prodemb import fs
    from prodemb.sources import read_source
    from prodemb.tables import read_table, write_table

    t0 = time.perf_counter()
    steps: dict[str, float] = {}

    def step(name: str, since: list[float] = [t0]) -> None:
        now_ = time.perf_counter()
        steps[name] = round(now_ - since[0], 3)
        since[0] = now_

    out, fmt = output_dir.rstrip("/"), cfg.format
    raw = read_source(spark, input_path, input_format, default_site=cfg.default_site)
    tagged = tag_rows(raw, valid_from=cfg.valid_from, future_slack_days=cfg.future_slack_days, now=now)
    partition = None
    context = tagged  # what sessions are cut from
    if start is not None or end is not None:
        if start is None or end is None or not start < end:
            raise ValueError("interval runs need both --start and --end, with start < end")
        start, end = (t if t.tzinfo else t.replace(tzinfo=timezone.utc) for t in (start, end))
        partition = ("interval", interval_label(start))
        ts = F.col("ts")
        context = tagged.where(
            (ts >= F.lit(start - timedelta(minutes=cfg.gap_minutes)))
            & (ts < F.lit(end + timedelta(hours=cfg.max_session_hours)))
        )
        tagged = tagged.where(((ts >= F.lit(start)) & (ts < F.lit(end))) | ts.isNull())

    observations: dict[str, Observation] = {}

    def counted_rows(df: DataFrame, name: str, *more: Column) -> DataFrame:
        """``df`` counting its rows (and ``more``) as the write that consumes it runs."""
        observations[name] = Observation(name)
        return df.observe(observations[name], F.count(F.lit(1)).alias("rows"), *more)

    def observed_counts(name: str) -> dict:
        return observed(
            observations[name],
            lambda: this_run(name).agg(
                F.count(F.lit(1)).alias("rows"), *([F.sum("n_events").alias("events")] if name == "sessions" else [])
            ),
        )

    def variants_of(rows: DataFrame) -> DataFrame:
        return title_variants(valid_clicks(rows), cfg.language, cfg.max_title_chars)

    # Pass 1: row counts (observed while scanning) + the per-title table, cached (it is small).
    counters = [
        F.count(F.lit(1)).alias("rows_in"),
        F.count_if(F.col("filter_reason").isNotNull()).alias("rows_filtered"),
        F.count_if(F.col("quarantine_reason").isNotNull()).alias("rows_quarantined_rowlevel"),
    ]
    counted = Observation("rows")
    variants = variants_of(tagged.observe(counted, *counters)).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        # One job fills the cache and counts the rows of bad variants.
        n_bad_variant_rows = variants.agg(F.sum(F.when(F.col("reason").isNotNull(), F.col("n")))).first()[0] or 0
        counts = observed(counted, lambda: tagged.agg(*counters))
        bad = variants.where(F.col("reason").isNotNull()).drop("title_norm")
        # No bad title: the passes below never read the title column (nor join on it).
        final = with_variant_reason(tagged, bad) if n_bad_variant_rows else tagged
        step("scan_and_titles")

        quarantined = quarantine_rows(final)
        if counts["rows_quarantined_rowlevel"] + n_bad_variant_rows == 0:  # exact counts: skip a pass
            quarantined = spark.createDataFrame([], quarantined.schema)
        written = {"quarantine": write_table(quarantined, f"{out}/quarantine", fmt, partition=partition)}
        step("quarantine")
        written["catalog"] = write_table(
            counted_rows(catalog_from_variants(variants.where(F.col("reason").isNull())), "catalog"),
            f"{out}/catalog",
            fmt,
            partition=partition,
        )
        step("catalog")
        if partition is None:
            context_final = final
        else:  # neighbouring rows read for context can carry bad titles of their own
            context_bad = variants_of(context).where(F.col("reason").isNotNull())
            context_final = with_variant_reason(context, context_bad)
        sessions_df = sessionize(valid_clicks(context_final), cfg.gap_minutes, cfg.max_items)
        if partition:  # a session belongs to the interval of its first event
            sessions_df = sessions_df.where((F.col("start_ts") >= F.lit(start)) & (F.col("start_ts") < F.lit(end)))
        written["sessions"] = write_table(
            counted_rows(sessions_df, "sessions", F.sum("n_events").alias("events")),
            f"{out}/sessions",
            fmt,
            partition=partition,
        )
        step("sessions")
    finally:
        variants.unpersist()

    def this_run(name: str):
        """The table (full run) or this interval's partition of it."""
        if partition is None:
            return read_table(spark, f"{out}/{name}")
        if fmt == "delta":
            return read_table(spark, f"{out}/{name}").where(F.col(partition[0]) == partition[1])
        return spark.read.parquet(f"{out}/{name}/{partition[0]}={partition[1]}")

    # Pairs from the written sessions: no second shuffle of the clicks.
    written["pairs"] = write_table(
        counted_rows(explode_pairs(this_run("sessions")), "pairs"), f"{out}/pairs", fmt, partition=partition
    )
    step("pairs")

    rows_quarantined = counts.pop("rows_quarantined_rowlevel") + n_bad_variant_rows
    rows_valid = counts["rows_in"] - counts["rows_filtered"] - rows_quarantined
    # Table sizes as observed while writing (no read-back job).
    sizes = {name: observed_counts(name)["rows"] for name in ("catalog", "sessions", "pairs")}
    if partition is None:
        # Every valid click is in exactly one session (interval runs: possibly one of a neighbour interval).
        events_in_sessions = observed_counts("sessions")["events"]
        if (events_in_sessions or 0) != rows_valid:
            raise RuntimeError(
                f"accounting mismatch: {rows_valid} valid rows but {events_in_sessions} events in sessions"
            )
    quarantine_committed = written["quarantine"].get("rows")  # None: no commit count (Parquet)
    by_reason = (
        {}
        if quarantine_committed == 0
        else {r["reason"]: r["count"] for r in this_run("quarantine").groupBy("reason").count().collect()}
    )
    report = {
        **counts,
        "rows_valid": rows_valid,
        "rows_quarantined": rows_quarantined,
        "rows_filtered_by_reason": {
            r["filter_reason"]: r["count"]
            for r in tagged.where(F.col("filter_reason").isNotNull()).groupBy("filter_reason").count().collect()
        }
        if counts["rows_filtered"]
        else {},
        "rows_quarantined_by_reason": by_reason,
        "sessions": sizes["sessions"],
        "pairs": sizes["pairs"],
        "products": sizes["catalog"],
        "parameters": {
            "input": input_path,
            "input_format": input_format,
            "output": out,
            "start": start,
            "end": end,
            **cfg.model_dump(),
        },
        "tables": written,
        "finished_at": datetime.now(timezone.utc).isoformat(),
        "seconds": round(time.perf_counter() - t0, 3),
    }
    step("report")
    report["step_seconds"] = steps
    if sum(by_reason.values()) != rows_quarantined or quarantine_committed not in (None, rows_quarantined):
        raise RuntimeError("accounting mismatch: quarantine table and counters disagree")
    if fmt == "delta":
        report["delta_versions"] = {name: w["version"] for name, w in written.items()}
    if partition:
        report["interval"] = partition[1]
    fs.write_json(f"{out}/_runs/{partition[1]}.json" if partition else f"{out}/_run.json", report)
    return report


# --- consolidation of interval runs (the scheduled pipeline) ---------------------------------------

CONSOLIDATED_CATALOG_COLUMNS = [
    "site",
    "product_id",
    "title",
    "title_norm",
    "category",
    "n_events",
    "first_seen",
    "last_seen",
]


def merge_catalogs(catalog: DataFrame) -> DataFrame:
    """Interval catalogs (one row per product and interval) → one row per (site, product_id): the title of
    the latest-seen row (ties by title, as a full run), the category of the latest interval that had one,
    n_events summed, first_seen min, last_seen max."""
    merged = catalog.groupBy("site", "product_id").agg(
        F.max_by(F.struct("title", "title_norm"), F.struct("last_seen", "title")).alias("_title"),
        F.max_by("category", F.when(F.col("category").isNotNull(), F.col("last_seen"))).alias("category"),
        F.sum("n_events").alias("n_events"),
        F.min("first_seen").alias("first_seen"),
        F.max("last_seen").alias("last_seen"),
    )
    return merged.select(
        "site",
        "product_id",
        F.col("_title.title").alias("title"),
        F.col("_title.title_norm").alias("title_norm"),
        *CONSOLIDATED_CATALOG_COLUMNS[4:],
    )


def run_consolidate(spark, intervals_dir: str, output_dir: str, fmt: str = "parquet") -> dict:
    """``consolidate_tables`` with the output folder locked (one writer at a time)."""
    from prodemb import fs

    with fs.output_lock(output_dir, "consolidate"):
        return consolidate_tables(spark, intervals_dir, output_dir, fmt)


def consolidate_tables(spark, intervals_dir: str, output_dir: str, fmt: str = "parquet") -> dict:
    """Rebuild ``output_dir/{catalog,pairs,sessions}`` from the interval-partitioned tables of
    ``jobs/sessionize.py --start/--end`` runs. A session belongs to exactly one interval (that of its
    first event), so pairs and sessions are plain unions; the catalog is merged (``merge_catalogs``).
    Each table is replaced atomically, the catalog first: intervals only add products, so a run that
    fails between tables leaves a catalog that covers the previous pairs."""
    from prodemb import fs
    from prodemb.tables import read_table, write_table, written_rows

    src, out = intervals_dir.rstrip("/"), output_dir.rstrip("/")
    missing = [t for t in ("catalog", "pairs", "sessions") if not fs.exists(fs.join(src, t))]
    if missing:
        raise FileNotFoundError(
            f"no interval tables {missing} under {src}: run jobs/sessionize.py with --start/--end first"
        )
    tables = {name: read_table(spark, f"{src}/{name}") for name in ("catalog", "pairs", "sessions")}
    intervals = sorted(r[0] for r in tables["catalog"].select("interval").distinct().collect())
    frames = {
        "catalog": merge_catalogs(tables["catalog"]),
        "pairs": tables["pairs"].drop("interval"),
        "sessions": tables["sessions"].drop("interval"),
    }
    written = {}
    for name in ("catalog", "pairs", "sessions"):  # catalog first (see the module docstring)
        written[name] = write_table(frames[name], f"{out}/{name}", fmt)
    counts = {
        name: written_rows(written[name], lambda name=name: read_table(spark, f"{out}/{name}")) for name in frames
    }
    report = {
        "intervals": intervals,
        "source": src,
        "output": out,
        "format": fmt,
        "rows": counts,
        "tables": written,
        "finished_at": datetime.now(timezone.utc).isoformat(),
    }
    fs.write_json(fs.join(out, "_consolidated.json"), report)
    return report
