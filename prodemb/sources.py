"""Input adapters: every supported layout → one canonical, all-string click frame.

Each adapter returns a DataFrame with exactly these columns (see ``RAW_COLUMNS``):

    site, user_id, ts_raw, product_id, title, category   -- strings, as read (the quarantine keeps them)
    ts                                                    -- timestamp, or null when missing/unparseable
    ts_missing                                            -- no timestamp at all (null or blank)
    filter_reason                                         -- null, or why the row is legitimately not a
                                                             click (cancellation, search event, ...)
    raw_record                                            -- null, or the text of a record that could not
                                                             be parsed at all (a broken JSON line): the
                                                             row is quarantined with it, the file is not lost

Files Spark cannot read at all (not Parquet though named so, truncated, a ``.gz`` that is not gzip,
empty) are refused up front with one line naming the file (``check_input_files``), before any job runs.

Validation (what is bad input) is not done here but in ``prodemb.sessions.tag_rows`` so that every
format gets the same rules. Adapters only map columns and parse timestamps.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from prodemb import fs

FORMATS = ("clicks", "online-retail", "movielens", "meli2020")
RAW_COLUMNS = [
    "site",
    "user_id",
    "ts_raw",
    "product_id",
    "title",
    "category",
    "ts",
    "ts_missing",
    "filter_reason",
    "raw_record",
]
CORRUPT_RECORD = "_corrupt_record"  # Spark's column for a JSON line it could not parse (PERMISSIVE mode)

# Epoch values at or above this are milliseconds (1e11 s is the year 5138; 1e11 ms is 1973).
_EPOCH_MS_THRESHOLD = 1e11
_TS_PATTERNS = (
    "yyyy-MM-dd'T'HH:mm:ss.SSSZ",  # 2019-10-19T11:25:42.444-0400 (MercadoLibre)
    "yyyy-MM-dd'T'HH:mm:ssZ",
    "yyyy-MM-dd HH:mm:ss",  # 2010-12-01 08:26:00 (Online Retail)
    "yyyy-MM-dd HH:mm",
    "M/d/yyyy H:mm",  # Online Retail as distributed by UCI (.xlsx export)
)


def parse_ts(col: Column, dtype: T.DataType) -> Column:
    """Parse a timestamp column of any supported type: timestamp, epoch seconds/millis, or text.

    Text may be ISO-8601 (with or without offset), one of ``_TS_PATTERNS``, or digits (epoch).
    Returns null for anything unparseable (never raises: ANSI-safe ``try_`` functions only).
    """
    if isinstance(dtype, (T.TimestampType, T.TimestampNTZType)):
        return col.cast("timestamp")
    if isinstance(dtype, T.DateType):
        return col.cast("timestamp")
    if isinstance(dtype, T.NumericType):
        num = col.cast("double")
        return _epoch_to_ts(num)
    s = F.trim(col.cast("string"))
    numeric = s.rlike(r"^-?[0-9]+(\.[0-9]+)?$")
    parsed = F.coalesce(F.try_to_timestamp(s), *[F.try_to_timestamp(s, F.lit(p)) for p in _TS_PATTERNS])
    return F.when(numeric, _epoch_to_ts(s.try_cast("double"))).otherwise(parsed)


def _epoch_to_ts(num: Column) -> Column:
    seconds = F.when(F.abs(num) >= _EPOCH_MS_THRESHOLD, num / 1000.0).otherwise(num)
    # timestamp_micros keeps millisecond precision and, unlike timestamp_seconds, tolerates huge values
    # only up to the long range: clamp first so absurd epochs become out-of-range, not errors.
    micros = F.when(F.abs(seconds) < 1e13, (seconds * 1_000_000).cast("long"))
    return F.timestamp_micros(micros)


def _as_string(df: DataFrame, name: str | None) -> Column:
    if name is None or name not in df.columns:
        return F.lit(None).cast("string")
    return F.col(name).cast("string")


def _canonical(
    df: DataFrame,
    *,
    site: Column,
    user_id: Column,
    ts_col: str,
    product_id: Column,
    title: Column,
    category: Column,
    filter_reason: Column | None = None,
    raw_record: Column | None = None,
) -> DataFrame:
    dtype = df.schema[ts_col].dataType
    ts = F.col(ts_col)
    # Typed timestamps are only missing when null; never format them as text just to check.
    ts_missing = (ts.isNull() | (F.trim(ts) == "")) if isinstance(dtype, T.StringType) else ts.isNull()
    return df.select(
        site.alias("site"),
        user_id.alias("user_id"),
        F.col(ts_col).cast("string").alias("ts_raw"),
        product_id.alias("product_id"),
        title.alias("title"),
        category.alias("category"),
        parse_ts(ts, dtype).alias("ts"),
        ts_missing.alias("ts_missing"),
        (filter_reason if filter_reason is not None else F.lit(None).cast("string")).alias("filter_reason"),
        (raw_record if raw_record is not None else F.lit(None).cast("string")).alias("raw_record"),
    )


def check_input_files(files: list[str]) -> None:
    """Refuse, with a ValueError naming the file, what Spark could not read at all: a ``.parquet`` file
    whose footer does not parse (random bytes, a truncated copy), a ``.gz`` file without the gzip magic
    bytes, an empty CSV or JSON file. Reads a footer or two bytes per file, never the data."""
    import pyarrow.parquet as pq

    for file in files:  # one request a file: its footer, its first two bytes, or its size
        name = PurePosixPath(str(file)).name.lower()
        filesystem, inner = fs.filesystem(file)
        if name.endswith(".parquet") or name.endswith(".parq"):
            try:
                with filesystem.open_input_file(inner) as fh:
                    pq.read_metadata(fh)
            except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ... for a bad footer
                raise ValueError(f"{file}: not a readable Parquet file ({' '.join(str(exc).split())[:160]})") from None
        elif name.endswith(".gz"):
            with filesystem.open_input_stream(inner, compression=None) as fh:
                if fh.read(2) != b"\x1f\x8b":
                    raise ValueError(f"{file}: named .gz but not gzip-compressed (no gzip header)")
        elif filesystem.get_file_info(inner).size == 0:
            raise ValueError(f"{file}: empty file (no header, no rows)")


def _read_table(spark: SparkSession, path: str, **csv_options) -> DataFrame:
    """CSV, Parquet, JSON lines or Delta by extension/contents; a folder is read as one table.
    Local paths and URIs alike (prodemb.fs). Files are checked first (``check_input_files``)."""
    probe = path
    if fs.is_dir(path):
        if fs.is_dir(fs.join(path, "_delta_log")):
            return spark.read.format("delta").load(path)
        files = fs.list_files(path)
        if not files:
            raise FileNotFoundError(f"no input files under {path}")
        probe = files[0]
    else:
        files = [path]
    check_input_files(files)
    suffix = "".join(PurePosixPath(probe).suffixes[-2:]).lower()
    if ".parquet" in suffix:
        return spark.read.parquet(path)
    if ".json" in suffix or ".jl" in suffix:
        return spark.read.option("mode", "PERMISSIVE").option("columnNameOfCorruptRecord", CORRUPT_RECORD).json(path)
    if ".csv" in suffix or ".tsv" in suffix:
        opts = {
            "header": "true",
            "inferSchema": "false",
            "mode": "PERMISSIVE",
            "encoding": "UTF-8",
            "multiLine": "false",
            **csv_options,
        }
        return spark.read.options(**opts).csv(path)
    raise ValueError(f"cannot tell the format of {probe} (expected .csv, .parquet, .json/.jsonl or Delta)")


def read_clicks(spark: SparkSession, path: str, default_site: str = "default") -> DataFrame:
    """``clicks``: CSV / Parquet / JSON lines with the canonical columns."""
    df = _read_table(spark, path)
    missing = {"user_id", "ts", "product_id", "title"} - set(df.columns)
    if missing:
        raise ValueError(f"{path}: clicks input lacks columns {sorted(missing)} (has {df.columns})")
    site = F.coalesce(_as_string(df, "site"), F.lit(default_site)) if "site" in df.columns else F.lit(default_site)
    return _canonical(
        df,
        site=site,
        user_id=_as_string(df, "user_id"),
        ts_col="ts",
        product_id=_as_string(df, "product_id"),
        title=_as_string(df, "title"),
        category=_as_string(df, "category"),
        raw_record=F.col(CORRUPT_RECORD) if CORRUPT_RECORD in df.columns else None,
    )


def read_online_retail(spark: SparkSession, path: str, default_site: str = "default") -> DataFrame:
    """``online-retail``: UCI Online Retail invoice lines (a CSV file or a folder of daily CSVs)."""
    df = _read_table(spark, path)
    invoice = F.col("InvoiceNo").cast("string")
    quantity = F.col("Quantity").try_cast("double")
    # CustomerID is float-formatted ("17850.0"): the id is the integer part.
    customer = F.regexp_replace(F.trim(F.col("CustomerID").cast("string")), r"\.0+$", "")
    filter_reason = F.when(F.upper(invoice).startswith("C"), F.lit("cancellation")).when(
        quantity.isNotNull() & (quantity <= 0), F.lit("non_positive_quantity")
    )
    return _canonical(
        df,
        site=F.lit(default_site),
        user_id=F.when(customer != "", customer),
        ts_col="InvoiceDate",
        product_id=F.trim(F.col("StockCode").cast("string")),
        title=F.col("Description").cast("string"),
        category=F.lit(None).cast("string"),
        filter_reason=filter_reason,
    )


def read_movielens(spark: SparkSession, path: str, default_site: str = "default") -> DataFrame:
    """``movielens``: a folder with ratings.csv and movies.csv; one rating is one click."""
    ratings = _read_table(spark, fs.join(path, "ratings.csv"))
    movies = _read_table(spark, fs.join(path, "movies.csv")).select(
        F.col("movieId").alias("_movie"),
        F.col("title").alias("_title"),
        # category = first genre; "(no genres listed)" means none
        F.when(F.col("genres") != "(no genres listed)", F.split(F.col("genres"), r"\|")[0]).alias("_genre"),
    )
    df = ratings.join(F.broadcast(movies), ratings["movieId"] == movies["_movie"], "left")
    return _canonical(
        df,
        site=F.lit(default_site),
        user_id=_as_string(df, "userId"),
        ts_col="timestamp",
        product_id=_as_string(df, "movieId"),
        title=F.col("_title"),
        category=F.col("_genre"),
    )


_MELI_HISTORY = T.StructType(
    [
        T.StructField(
            "user_history",
            T.ArrayType(
                T.StructType(
                    [
                        T.StructField("event_info", T.StringType()),
                        T.StructField("event_type", T.StringType()),
                        T.StructField("event_timestamp", T.StringType()),
                    ]
                )
            ),
        ),
        T.StructField("item_bought", T.StringType()),
    ]
)


def read_meli2020(
    spark: SparkSession, path: str, default_site: str = "default", items_path: str | None = None
) -> DataFrame:
    """``meli2020``: MercadoLibre Data Challenge 2020 training lines + item data.

    ``path`` is a folder holding ``train_dataset.jl`` (or any ``*train*.jl[.gz]``) and
    ``item_data.jl``, or the training file itself with ``items_path`` given. One line is one user
    (no user id in the data): the user id is a hash of the line, so it is stable across runs and
    partitionings. Only ``view`` events are clicks; searches are filtered and counted.
    """
    if fs.is_dir(path):
        names = fs.list_dir(path)
        train = [fs.join(path, n) for n in names if "train" in n]
        items = items_path or next((fs.join(path, n) for n in names if "item" in n), None)
    else:
        train, items = [path], items_path
    if not train or not items:
        raise FileNotFoundError(f"{path}: need a *train*.jl file and an item_data.jl file")
    check_input_files(train)
    lines = spark.read.text(train).select(F.col("value"))
    parsed = lines.select(
        F.sha2(F.col("value"), 256).substr(1, 16).alias("_user"),
        F.col("value"),
        F.from_json("value", _MELI_HISTORY).alias("j"),
    )
    # A line that is not a JSON object with a user_history list is one row that keeps its text.
    broken = F.col("j").isNull() | F.col("j.user_history").isNull()
    events = parsed.select(
        "_user", F.when(broken, F.col("value")).alias("_raw"), F.explode_outer("j.user_history").alias("e")
    ).select(
        "_user",
        "_raw",
        F.col("e.event_info").alias("_info"),
        F.col("e.event_type").alias("_type"),
        F.col("e.event_timestamp").alias("_ts"),
    )
    check_input_files([items])
    item_df = spark.read.json(items).select(
        F.col("item_id").cast("string").alias("_item"),
        F.col("title").alias("_title"),
        F.col("category_id").cast("string").alias("_category"),
    )
    is_view = F.col("_type") == "view"
    # Join only views to items: search strings are not item ids.
    df = events.join(F.broadcast(item_df), is_view & (F.col("_info") == F.col("_item")), "left")
    return _canonical(
        df,
        site=F.lit(default_site),
        user_id=F.col("_user"),
        ts_col="_ts",
        product_id=F.when(is_view, F.col("_info")),
        title=F.col("_title"),
        category=F.col("_category"),
        filter_reason=F.when(
            F.col("_raw").isNull() & (~is_view | F.col("_type").isNull()),
            F.concat(F.lit("event_"), F.coalesce(F.col("_type"), F.lit("missing"))),
        ),
        raw_record=F.col("_raw"),
    )


_READERS = {
    "clicks": read_clicks,
    "online-retail": read_online_retail,
    "movielens": read_movielens,
    "meli2020": read_meli2020,
}


def read_source(spark: SparkSession, path: str, input_format: str, default_site: str = "default") -> DataFrame:
    """Dispatch on ``--input-format``; returns the canonical frame described in the module docstring."""
    if input_format not in _READERS:
        raise ValueError(f"unknown input format {input_format!r}; choose one of {', '.join(FORMATS)}")
    if not fs.exists(path):
        raise FileNotFoundError(f"input not found: {path}")
    return _READERS[input_format](spark, path, default_site=default_site)
