"""Sessionization (paper §3.1, A.1): clicks → sessions → deduped, truncated product lists → pairs.

Pure DataFrame → DataFrame functions:

    tag_rows        canonical frame (prodemb.sources) → + title_norm, quarantine_reason
    sessionize      valid clicks → one row per session (products deduped in first-seen order, truncated)
    explode_pairs   sessions → every unordered product pair of a session, once (product_a < product_b)
    build_catalog   valid clicks → one row per (site, product_id)

Semantics: a session belongs to one (site, user_id); events are ordered by (ts, product_id); a gap
strictly greater than ``gap_minutes`` starts a new session (a gap of exactly T stays inside).
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from prodemb.text import normalize_title_col

SESSION_KEYS = ["site", "user_id"]
QUARANTINE_COLUMNS = ["site", "user_id", "ts_raw", "product_id", "title", "category", "reason"]
# U+FFFD is what Spark's UTF-8 decoder substitutes for byte sequences that are not valid UTF-8.
_REPLACEMENT_CHAR = "\ufffd"


def _blank(c: Column) -> Column:
    return c.isNull() | (F.trim(c) == "")


def quarantine_reason(valid_from: datetime, valid_until: datetime, max_title_chars: int,
                      title_norm: Column) -> Column:
    """The first rule a row breaks, as a short reason string; null for a good row."""
    text_fields = [F.col(c) for c in ("site", "user_id", "product_id", "title", "category")]
    has_bad_bytes = F.greatest(*[F.coalesce(F.instr(c, _REPLACEMENT_CHAR), F.lit(0)) for c in text_fields]) > 0
    return (
        F.when(_blank(F.col("user_id")), F.lit("missing_user_id"))
        .when(_blank(F.col("product_id")), F.lit("missing_product_id"))
        .when(_blank(F.col("ts_raw")), F.lit("missing_ts"))
        .when(F.col("ts").isNull(), F.lit("unparseable_ts"))
        .when((F.col("ts") < F.lit(valid_from)) | (F.col("ts") > F.lit(valid_until)), F.lit("ts_out_of_range"))
        .when(has_bad_bytes, F.lit("invalid_utf8"))
        .when(_blank(F.col("title")), F.lit("missing_title"))
        .when(F.length("title") > max_title_chars, F.lit("title_too_long"))
        .when(title_norm == "", F.lit("empty_title_after_normalization"))
    )


def tag_rows(raw: DataFrame, *, language: str = "es", valid_from: str = "1995-01-01",
             future_slack_days: int = 1, max_title_chars: int = 1000,
             now: datetime | None = None) -> DataFrame:
    """Add ``title_norm`` and ``quarantine_reason`` to a canonical frame (see prodemb.sources)."""
    now = now or datetime.now(timezone.utc)
    lo = datetime.fromisoformat(valid_from).replace(tzinfo=timezone.utc)
    hi = now + timedelta(days=future_slack_days)
    # Normalize only titles of sane length: regexes over megabyte strings are the slow path.
    title_norm = F.when(F.length("title") <= max_title_chars, normalize_title_col(F.col("title"), language))
    tagged = raw.withColumn("title_norm", title_norm)
    return tagged.withColumn(
        "quarantine_reason",
        F.when(F.col("filter_reason").isNull(),
               quarantine_reason(lo, hi, max_title_chars, F.coalesce(F.col("title_norm"), F.lit("")))))


def valid_clicks(tagged: DataFrame) -> DataFrame:
    return (tagged.where(F.col("filter_reason").isNull() & F.col("quarantine_reason").isNull())
            .select("site", "user_id", "ts", "product_id", "title", "title_norm", "category"))


def quarantine_rows(tagged: DataFrame) -> DataFrame:
    return (tagged.where(F.col("quarantine_reason").isNotNull())
            .select("site", "user_id", "ts_raw", "product_id", "title", "category",
                    F.col("quarantine_reason").alias("reason")))


def sessionize(clicks: DataFrame, gap_minutes: float = 30.0, max_items: int = 10) -> DataFrame:
    """One row per session: site, session_id, user_id, start_ts, end_ts, n_events, products.

    ``products`` holds the session's distinct products in first-seen order, truncated to
    ``max_items``. ``session_id`` is a stable hash of (site, user_id, start_ts), so the same session
    gets the same id in a full run and in an incremental one.
    """
    order = Window.partitionBy(*SESSION_KEYS).orderBy("ts", "product_id")
    gap = F.col("ts").cast("double") - F.lag("ts").over(order).cast("double")   # seconds, null at start
    starts = F.when(gap.isNull() | (gap > gap_minutes * 60.0), 1).otherwise(0)
    numbered = (clicks.select(*SESSION_KEYS, "ts", "product_id")
                .withColumn("_new", starts)
                .withColumn("_session", F.sum("_new").over(order)))
    sessions = numbered.groupBy(*SESSION_KEYS, "_session").agg(
        F.min("ts").alias("start_ts"),
        F.max("ts").alias("end_ts"),
        F.count(F.lit(1)).alias("n_events"),
        # collect_list after a shuffle has no guaranteed order: sort the (ts, product_id) structs.
        F.array_sort(F.collect_list(F.struct("ts", "product_id"))).alias("_events"),
    )
    products = F.slice(F.array_distinct(F.col("_events.product_id")), 1, max_items)
    return sessions.select(
        "site",
        F.xxhash64("site", "user_id", "start_ts").alias("session_id"),
        "user_id", "start_ts", "end_ts", "n_events",
        products.alias("products"),
    )


def explode_pairs(sessions: DataFrame) -> DataFrame:
    """Every unordered pair of a session's products, once: n·(n−1)/2 rows with product_a < product_b."""
    p = F.col("products")
    n = F.size(p)
    # For i < j (0-based) emit (min, max) of p[i], p[j]; products are distinct so min < max.
    pair_structs = F.flatten(F.transform(
        F.sequence(F.lit(0), n - 2),
        lambda i: F.transform(
            F.sequence(i + 1, n - 1),
            lambda j: F.struct(F.least(p[i], p[j]).alias("product_a"), F.greatest(p[i], p[j]).alias("product_b")),
        ),
    ))
    return (sessions.where(n >= 2)
            .select("site", "session_id", F.explode(pair_structs).alias("pair"))
            .select("site", "session_id", "pair.product_a", "pair.product_b"))


def build_catalog(clicks: DataFrame) -> DataFrame:
    """One row per (site, product_id): the latest-seen title (ties broken by title), its normalized
    form, the latest non-null category, event count and first/last seen."""
    latest = F.max_by(F.struct("title", "title_norm"), F.struct("ts", "title"))
    return (clicks.groupBy("site", "product_id").agg(
        latest.alias("_t"),
        F.max_by("category", F.when(F.col("category").isNotNull(), F.col("ts"))).alias("category"),
        F.count(F.lit(1)).alias("n_events"),
        F.min("ts").alias("first_seen"),
        F.max("ts").alias("last_seen"),
    ).select("site", "product_id", "_t.title", "_t.title_norm", "category", "n_events", "first_seen",
             "last_seen"))


# --- the job: I/O at the edge ------------------------------------------------------------------

def run_sessionize(spark, input_path: str, input_format: str, output_dir: str, cfg, *,
                   now: datetime | None = None) -> dict:
    """Read → tag → write quarantine, catalog, sessions, pairs and ``_run.json`` under ``output_dir``.

    ``cfg`` is a ``prodemb.config.SessionsConfig``. Returns the run report (also in ``_run.json``).
    """
    import time

    from pyspark import StorageLevel

    from prodemb.sources import read_source
    from prodemb.tables import read_table, write_json, write_table

    t0 = time.perf_counter()
    raw = read_source(spark, input_path, input_format, default_site=cfg.default_site)
    tagged = tag_rows(raw, language=cfg.language, valid_from=cfg.valid_from,
                      future_slack_days=cfg.future_slack_days, max_title_chars=cfg.max_title_chars,
                      now=now)
    # Parse/validate/normalize once; the three outputs below read the cached rows.
    tagged = tagged.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        counts = tagged.agg(
            F.count(F.lit(1)).alias("rows_in"),
            F.count_if(F.col("filter_reason").isNotNull()).alias("rows_filtered"),
            F.count_if(F.col("quarantine_reason").isNotNull()).alias("rows_quarantined"),
        ).first().asDict()
        counts["rows_valid"] = counts["rows_in"] - counts["rows_filtered"] - counts["rows_quarantined"]
        filtered_by = {r["filter_reason"]: r["count"] for r in
                       tagged.where(F.col("filter_reason").isNotNull()).groupBy("filter_reason").count().collect()}

        out = output_dir.rstrip("/")
        fmt = cfg.format
        written = {
            "quarantine": write_table(quarantine_rows(tagged), f"{out}/quarantine", fmt),
            "catalog": write_table(build_catalog(valid_clicks(tagged)), f"{out}/catalog", fmt),
            "sessions": write_table(sessionize(valid_clicks(tagged), cfg.gap_minutes, cfg.max_items),
                                    f"{out}/sessions", fmt),
        }
    finally:
        tagged.unpersist()
    # Pairs from the written sessions: no second shuffle of the clicks.
    sessions = read_table(spark, f"{out}/sessions", written["sessions"]["version"] if fmt == "delta" else None)
    written["pairs"] = write_table(explode_pairs(sessions), f"{out}/pairs", fmt)

    quarantine = read_table(spark, f"{out}/quarantine")
    report = {
        **counts,
        "rows_filtered_by_reason": filtered_by,
        "rows_quarantined_by_reason": {r["reason"]: r["count"] for r in
                                       quarantine.groupBy("reason").count().collect()},
        "sessions": read_table(spark, f"{out}/sessions").count(),
        "pairs": read_table(spark, f"{out}/pairs").count(),
        "products": read_table(spark, f"{out}/catalog").count(),
        "parameters": {"input": input_path, "input_format": input_format, "output": out,
                       **cfg.model_dump()},
        "tables": written,
        "finished_at": datetime.now(timezone.utc).isoformat(),
        "seconds": round(time.perf_counter() - t0, 3),
    }
    if fmt == "delta":
        report["delta_versions"] = {name: w["version"] for name, w in written.items()}
    assert report["rows_in"] == report["rows_valid"] + report["rows_filtered"] + report["rows_quarantined"]
    write_json(f"{out}/_run.json", report)
    return report
