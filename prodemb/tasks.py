"""Downstream tasks: tables of product ``title`` and binary ``label`` (optionally ``product_id``).

    table = load_task("tasks/condition.parquet")                  # CSV or Parquet → title, label[, product_id]
    loaded = load_task_checked("tasks/condition.csv")             # + the rows that were set aside, with a reason
    tables = {name: build(data_dir) for name, build in BUILTIN_TASKS.items()}    # real facts in ../shared/data
    write_builtin_tasks("runs/tasks", ["retail_premium", "movielens_drama"])    # materialized to Parquet

A task table is indexed 0..n-1 (the row index is what the evaluation protocol and the methods use to
find a row), ``label`` is int64 0/1, ``title`` a non-blank str and ``product_id`` (when present) a str.

Bad rows are never dropped silently: rows with a blank title or a label that is not one of
0, 1, true, false (any case, or the numbers 0.0/1.0) are returned as the quarantine with a ``reason``
(``empty_title``, ``missing_label``, ``invalid_label``) and counted in the evaluation report. A table
without a ``title`` or ``label`` column, or with only one class left, is an error (``TaskError``).

Built-in tasks (``BUILTIN_TASKS``) are derived from real facts of the public data in ``../shared/data``
(see each folder's SOURCE.md), with the product ids the sessionize adapters give the same products
(``prodemb.sources``) so that Prod2Vec-style baselines can match them to session products:

| name | source | label = 1 when | product_id |
|---|---|---|---|
| retail_premium | UCI Online Retail | its median unit price (sale lines) is in the products' top quartile | StockCode |
| retail_returned | UCI Online Retail | it appears in a cancellation invoice (InvoiceNo starts with "C") | StockCode |
| retail_bulk | UCI Online Retail | the product's median quantity per sale line is ≥ 12 | StockCode |
| movielens_<genre> | MovieLens | the movie has that genre (title without its "(year)") | movieId |
| movielens_well_rated | MovieLens | mean rating ≥ 3.5, among movies with ≥ 10 ratings | movieId |
| meli_condition | MercadoLibre API items | condition is "used" (the two files that have both conditions) | item id |
| meli_free_shipping | MercadoLibre API items | shipping.free_shipping is true | item id |
| hepsiburada_<category> | Hepsiburada catalogue | its top-level category is that one (Turkish titles) | productid |
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache, partial
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from prodemb import fs
from prodemb.config import REPO_ROOT

log = logging.getLogger(__name__)

TASK_COLUMNS = ["title", "label", "product_id"]
DEFAULT_SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
_TRUE = {"1", "true", "1.0"}
_FALSE = {"0", "false", "0.0"}


class TaskError(ValueError):
    """A task table that cannot be evaluated (missing column, one class, unreadable file)."""


@dataclass
class LoadedTask:
    """A validated task table plus the rows that were set aside."""

    name: str
    table: pd.DataFrame  # title, label (int64 0/1)[, product_id], index 0..n-1
    quarantine: pd.DataFrame  # the raw rows (as strings) + reason
    source: str = ""

    @property
    def counts(self) -> dict:
        reasons = self.quarantine["reason"].value_counts().to_dict() if len(self.quarantine) else {}
        return {
            "rows_in": len(self.table) + len(self.quarantine),
            "rows_valid": len(self.table),
            "rows_quarantined": len(self.quarantine),
            "positives": int(self.table["label"].sum()),
            **{f"quarantined_{k}": int(v) for k, v in sorted(reasons.items())},
        }


# --- reading and validating ----------------------------------------------------------------------


def read_task_file(path: str | Path) -> pd.DataFrame:
    """The raw table at ``path``: CSV (header, read as strings) or Parquet (file or folder)."""
    p = Path(path)
    if not p.exists():
        raise TaskError(f"task table not found: {p}")
    name = p.name.lower()
    try:
        if p.is_dir() or name.endswith((".parquet", ".pq")):
            return pd.read_parquet(p)
        if name.endswith((".csv", ".csv.gz", ".tsv")):
            return pd.read_csv(
                p, dtype=str, keep_default_na=False, na_values=[""], sep="\t" if name.endswith(".tsv") else ","
            )
    except (OSError, ValueError) as exc:  # pyarrow / pandas parse errors are ValueErrors or OSErrors
        raise TaskError(f"cannot read task table {p}: {exc}") from exc
    raise TaskError(f"cannot tell the format of {p}: expected .csv, .tsv or .parquet")


def _coerce_labels(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """(label as float 0/1 or NaN, reason or None) for every raw label value."""

    def one(v) -> tuple[float, str | None]:
        if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA:
            return np.nan, "missing_label"
        if isinstance(v, (bool, np.bool_)):
            return float(v), None
        if isinstance(v, (int, np.integer, float, np.floating)):
            return (float(v), None) if v in (0, 1) else (np.nan, "invalid_label")
        s = str(v).strip().lower()
        if s == "":
            return np.nan, "missing_label"
        if s in _TRUE:
            return 1.0, None
        if s in _FALSE:
            return 0.0, None
        return np.nan, "invalid_label"

    pairs = [one(v) for v in values.tolist()]
    return (
        pd.Series([p[0] for p in pairs], index=values.index, dtype="float64"),
        pd.Series([p[1] for p in pairs], index=values.index, dtype="object"),
    )


def validate_task(raw: pd.DataFrame, name: str = "task", source: str = "") -> LoadedTask:
    """Raw rows → (valid table, quarantine). Pure; raises TaskError on unusable tables."""
    missing = [c for c in ("title", "label") if c not in raw.columns]
    if missing:
        raise TaskError(
            f"{name}: task table lacks column(s) {missing} (has {list(raw.columns)}); "
            "a task needs 'title' and a binary 'label' (optionally 'product_id')"
        )
    raw = raw.reset_index(drop=True)
    label, reason = _coerce_labels(raw["label"])
    title = raw["title"]
    blank = title.isna() | ~title.map(lambda t: isinstance(t, str) and t.strip() != "")
    reason[blank] = "empty_title"  # a blank title is reported first: there is nothing to embed
    bad = reason.notna()
    cols = [c for c in TASK_COLUMNS if c in raw.columns]
    quarantine = pd.DataFrame({c: raw.loc[bad, c].map(_raw_str) for c in cols})
    quarantine["reason"] = reason[bad]
    table = pd.DataFrame({"title": title[~bad].astype(str), "label": label[~bad].astype("int64")})
    if "product_id" in raw.columns:
        pid = raw.loc[~bad, "product_id"]
        table["product_id"] = pid.map(product_id_str).astype(object)
    table = table.reset_index(drop=True)
    if len(quarantine):
        log.warning(
            "%s: %d of %d rows quarantined (%s)",
            name,
            len(quarantine),
            len(raw),
            quarantine["reason"].value_counts().to_dict(),
        )
    if table.empty:
        raise TaskError(f"{name}: no valid rows ({len(quarantine)} quarantined)")
    classes = sorted(table["label"].unique().tolist())
    if len(classes) < 2:
        raise TaskError(
            f"{name}: only label {classes[0]} remains after validation ({len(table)} rows); AUC needs both classes"
        )
    return LoadedTask(name, table, quarantine.reset_index(drop=True), source)


def _raw_str(v) -> str | None:
    return None if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)) else str(v)


def product_id_str(v) -> str | None:
    """A task's product id as the tables' string id (ints read from CSV as "123", not "123.0")."""
    if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA:
        return None
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))  # a numeric id column read as float: 17.0 → "17"
    return str(v).strip()


def load_task_checked(path: str | Path, name: str | None = None) -> LoadedTask:
    """Read and validate the task table at ``path`` (CSV or Parquet)."""
    name = name or Path(path).stem
    return validate_task(read_task_file(path), name, str(path))


def load_task(path: str | Path) -> pd.DataFrame:
    """The valid rows of the task table at ``path`` (title, label 0/1[, product_id]; index 0..n-1).
    Quarantined rows are logged; use ``load_task_checked`` to get them."""
    return load_task_checked(path).table


def parse_task_arg(spec: str) -> tuple[str, str]:
    """``NAME=PATH`` → (NAME, PATH); a bare PATH is named after its file stem."""
    name, sep, path = spec.partition("=")
    if not sep:
        path, name = spec, Path(spec).stem
    name, path = name.strip(), path.strip()
    if not name or not path:
        raise TaskError(f"--task expects NAME=PATH, got {spec!r}")
    if not re.fullmatch(r"[A-Za-z0-9_.\-]+", name):
        raise TaskError(f"task name {name!r}: use letters, digits, '_', '-', '.'")
    return name, path


# --- built-in tasks from ../shared/data ----------------------------------------------------------


def shared_data_dir(configured: str | Path | None = None) -> Path:
    """``configured``, else ``$PRODEMB_SHARED_DATA``, else ``<repo>/../shared/data``."""
    return Path(configured or os.environ.get("PRODEMB_SHARED_DATA") or DEFAULT_SHARED_DATA)


def _need(path: Path) -> Path:
    if not path.exists():
        raise FileNotFoundError(
            f"real data not available: {path} (built-in tasks read evaluate.shared_data_dir, "
            "else $PRODEMB_SHARED_DATA, else ../shared/data)"
        )
    return path


def _task_frame(product_id, title, label) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "title": pd.Series(title, dtype=object).map(lambda t: t.strip() if isinstance(t, str) else t).to_numpy(),
            "label": pd.Series(label).astype("int64").to_numpy(),
            "product_id": pd.Series(product_id, dtype=object).astype(str).to_numpy(),
        }
    )


# Online Retail ----------------------------------------------------------------------------------


def _online_retail_lines(data_dir: Path) -> pd.DataFrame:
    folder = _need(data_dir / "uci-online-retail" / "by-day")
    files = sorted(folder.glob("*.csv"))
    if not files:
        raise FileNotFoundError(f"no daily CSV files under {folder}")
    df = pd.concat(
        [
            pd.read_csv(
                f,
                dtype=str,
                keep_default_na=False,
                na_values=[""],
                usecols=["InvoiceNo", "StockCode", "Description", "Quantity", "UnitPrice"],
            )
            for f in files
        ],
        ignore_index=True,
    )
    df["product_id"] = df["StockCode"].str.strip()  # as prodemb.sources does
    df["quantity"] = pd.to_numeric(df["Quantity"], errors="coerce")
    df["price"] = pd.to_numeric(df["UnitPrice"], errors="coerce")
    df["cancellation"] = df["InvoiceNo"].fillna("").str.strip().str.upper().str.startswith("C")
    # Products only: postage, fees, manual adjustments, gift vouchers (POST, DOT, M, BANK CHARGES,
    # AMAZONFEE, gift_0001_20, ...) have codes that do not start with a digit.
    return df[df["product_id"].str.match(r"^\d", na=False)]


def _online_retail_products(data_dir: Path) -> pd.DataFrame:
    """One row per product sold at least once: product_id, title, median_price, median_quantity, returned."""
    return _online_retail_products_cached(str(Path(data_dir).resolve())).copy()


@lru_cache(maxsize=2)  # the three retail tasks share one read of the 245 daily files
def _online_retail_products_cached(data_dir: str) -> pd.DataFrame:
    df = _online_retail_lines(Path(data_dir))
    sales = df[~df["cancellation"] & (df["quantity"] > 0) & (df["price"] > 0)]
    # Title: the product's most frequent description on sale lines (a few lines carry notes instead).
    titled = sales.dropna(subset=["Description"])
    title = (
        titled.groupby(["product_id", "Description"])
        .size()
        .rename("n")
        .reset_index()
        .sort_values(["product_id", "n", "Description"], ascending=[True, False, True])
        .drop_duplicates("product_id")
        .set_index("product_id")["Description"]
    )
    g = sales.groupby("product_id")
    out = pd.DataFrame({"median_price": g["price"].median(), "median_quantity": g["quantity"].median()})
    out["title"] = title.reindex(out.index)
    out["returned"] = out.index.isin(set(df.loc[df["cancellation"], "product_id"]))
    return out.dropna(subset=["title"]).reset_index().sort_values("product_id", ignore_index=True)


def build_retail_premium(data_dir: Path) -> pd.DataFrame:
    p = _online_retail_products(data_dir)
    q75 = p["median_price"].quantile(0.75)
    return _task_frame(p["product_id"], p["title"], p["median_price"] > q75)


def build_retail_returned(data_dir: Path) -> pd.DataFrame:
    p = _online_retail_products(data_dir)
    return _task_frame(p["product_id"], p["title"], p["returned"])


def build_retail_bulk(data_dir: Path) -> pd.DataFrame:
    p = _online_retail_products(data_dir)
    return _task_frame(p["product_id"], p["title"], p["median_quantity"] >= 12)


# MovieLens --------------------------------------------------------------------------------------

_YEAR = re.compile(r"\s*\(\d{4}(?:\s*[-–]\s*\d{0,4})?\)\s*$")


def strip_year(title: str) -> str:
    """``"Toy Story (1995)"`` → ``"Toy Story"`` (also ``(2006–2007)``); other titles unchanged."""
    return _YEAR.sub("", title).strip()


def _movies(data_dir: Path) -> pd.DataFrame:
    movies = pd.read_csv(_need(data_dir / "movielens-latest-small" / "movies.csv"), dtype={"movieId": str})
    movies["title"] = movies["title"].astype(str).str.strip()
    return movies


def build_movielens_genre(data_dir: Path, genre: str) -> pd.DataFrame:
    """One genre vs the rest; movies with no genre listed are left out. The year is stripped from the
    title so the label must come from the name itself."""
    movies = _movies(data_dir)
    movies = movies[movies["genres"] != "(no genres listed)"]
    label = movies["genres"].str.split("|").map(lambda gs: genre in gs)
    return _task_frame(movies["movieId"], movies["title"].map(strip_year), label)


def build_movielens_well_rated(data_dir: Path, min_ratings: int = 10, threshold: float = 3.5) -> pd.DataFrame:
    """Mean rating ≥ ``threshold`` among movies with ≥ ``min_ratings`` ratings (the rest are not labeled)."""
    movies = _movies(data_dir)
    ratings = pd.read_csv(
        _need(data_dir / "movielens-latest-small" / "ratings.csv"),
        usecols=["movieId", "rating"],
        dtype={"movieId": str},
    )
    stats = ratings.groupby("movieId")["rating"].agg(["mean", "count"])
    stats = stats[stats["count"] >= min_ratings]
    m = movies.merge(stats, left_on="movieId", right_index=True)
    return _task_frame(m["movieId"], m["title"], m["mean"] >= threshold)


# MercadoLibre API items ---------------------------------------------------------------------------


def _meli_items(data_dir: Path) -> pd.DataFrame:
    """id, title, condition, free_shipping (None where the file has no shipping) from the three dumps;
    an id seen in several files keeps its first appearance (JSON, then the two CSVs)."""
    root = _need(data_dir / "meli-api-items")
    js = json.loads((root / "chromecast_search_MLA_2024-11.json").read_text(encoding="utf-8"))
    a = pd.DataFrame(
        {
            "id": [r["id"] for r in js],
            "title": [r.get("title") for r in js],
            "condition": [r.get("condition") for r in js],
            "free_shipping": [(r.get("shipping") or {}).get("free_shipping") for r in js],
            "file": "chromecast_search",
        }
    )
    b = pd.read_csv(root / "chromecast_results_MLA_2024-01.csv", usecols=["id", "title", "condition"], dtype=str)
    b["free_shipping"], b["file"] = None, "chromecast_results"
    c = pd.read_csv(
        root / "audio_items_MLA_2024-03.csv", usecols=["id", "title", "condition", "shipping.free_shipping"], dtype=str
    )
    c = c.rename(columns={"shipping.free_shipping": "free_shipping"})
    c["free_shipping"] = c["free_shipping"].map({"True": True, "False": False})
    c["file"] = "audio_items"
    return pd.concat([a, b, c], ignore_index=True).drop_duplicates("id", keep="first")


def build_meli_condition(data_dir: Path) -> pd.DataFrame:
    """used (1) vs new (0) on the two chromecast dumps (every audio item is new: left out)."""
    items = _meli_items(data_dir)
    items = items[items["file"].str.startswith("chromecast") & items["condition"].isin(["new", "used"])]
    return _task_frame(items["id"], items["title"], items["condition"] == "used")


def build_meli_free_shipping(data_dir: Path) -> pd.DataFrame:
    items = _meli_items(data_dir)
    items = items[items["free_shipping"].notna()]
    return _task_frame(items["id"], items["title"], items["free_shipping"].astype(bool))


# Hepsiburada ------------------------------------------------------------------------------------


def build_hepsiburada_category(data_dir: Path, category: str) -> pd.DataFrame:
    """One top-level category vs the rest (the record without a category is left out)."""
    meta = json.loads(_need(data_dir / "hepsiburada-products-meta" / "meta.json").read_text(encoding="utf-8"))
    df = pd.DataFrame(meta["meta"])
    df = df[df["category"].notna()]
    return _task_frame(df["productid"], df["name"], df["category"] == category)


MOVIELENS_GENRES = {
    "drama": "Drama",
    "comedy": "Comedy",
    "thriller": "Thriller",
    "horror": "Horror",
    "documentary": "Documentary",
}
HEPSIBURADA_CATEGORIES = {"personal_care": "Kişisel Bakım", "baby": "Bebek", "pet_shop": "Pet Shop"}

BuiltinBuilder = Callable[[Path], pd.DataFrame]
BUILTIN_TASKS: dict[str, BuiltinBuilder] = {
    "retail_premium": build_retail_premium,
    "retail_returned": build_retail_returned,
    "retail_bulk": build_retail_bulk,
    **{f"movielens_{k}": partial(build_movielens_genre, genre=v) for k, v in MOVIELENS_GENRES.items()},
    "movielens_well_rated": build_movielens_well_rated,
    "meli_condition": build_meli_condition,
    "meli_free_shipping": build_meli_free_shipping,
    **{f"hepsiburada_{k}": partial(build_hepsiburada_category, category=v) for k, v in HEPSIBURADA_CATEGORIES.items()},
}


def builtin_names(spec: str | list[str] | None) -> list[str]:
    """``"retail_premium,movielens_drama"`` / a list / ``"all"`` → validated names."""
    if spec is None:
        return []
    items = [s.strip() for part in ([spec] if isinstance(spec, str) else spec) for s in str(part).split(",")]
    items = [s for s in items if s]
    if items == ["all"]:
        return list(BUILTIN_TASKS)
    unknown = [s for s in items if s not in BUILTIN_TASKS]
    if unknown:
        raise TaskError(f"unknown built-in task(s) {unknown} (known: {', '.join(BUILTIN_TASKS)}, or 'all')")
    return items


def build_builtin(name: str, data_dir: str | Path | None = None) -> LoadedTask:
    """Build and validate one built-in task from the real data."""
    if name not in BUILTIN_TASKS:
        raise TaskError(f"unknown built-in task {name!r} (known: {', '.join(BUILTIN_TASKS)})")
    root = shared_data_dir(data_dir)
    return validate_task(BUILTIN_TASKS[name](root), name, f"builtin:{name}@{root}")


def write_builtin_tasks(
    out_dir: str | Path, names: list[str] | None = None, data_dir: str | Path | None = None
) -> dict[str, Path]:
    """Materialize built-in tasks as ``out_dir/<name>.parquet`` (written aside, then renamed)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in builtin_names(names) if names is not None else list(BUILTIN_TASKS):
        task = build_builtin(name, data_dir)
        path = out / f"{name}.parquet"
        with fs.atomic_local_file(path) as tmp:
            task.table.to_parquet(tmp, index=False)
        paths[name] = path
    return paths


def task_sources(
    task_specs: list[str] | None, builtin_specs: list[str] | None
) -> tuple[dict[str, str] | None, list[str] | None]:
    """Command-line ``--task NAME=PATH`` and ``--builtin A,B`` values → (paths, builtin names); both None
    when neither was given (meaning: the config's ``evaluate.tasks`` / ``evaluate.builtin_tasks``)."""
    task_specs = [s for s in task_specs or [] if s.strip()]
    builtin = [b for b in builtin_specs or [] if b.strip()]
    if not task_specs and not builtin:
        return None, None
    paths = dict(parse_task_arg(s) for s in task_specs)
    if len(paths) != len(task_specs):
        raise TaskError("a task name is given twice")
    return paths, builtin


def configured_tasks(ecfg, paths: dict[str, str] | None = None, builtin: list[str] | None = None) -> "TaskSet":
    """The tasks a job runs on: the given ones, or (with neither) the ``evaluate`` config's."""
    if paths is None and builtin is None:
        paths, builtin = ecfg.tasks, ecfg.builtin_tasks
    return gather_tasks(paths, builtin or None, ecfg.shared_data_dir)


@dataclass
class TaskSet:
    """Tasks gathered from several places, ready for the protocol."""

    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    loaded: dict[str, LoadedTask] = field(default_factory=dict)

    def add(self, task: LoadedTask) -> None:
        if task.name in self.tables:
            raise TaskError(f"task name {task.name!r} given twice")
        self.tables[task.name] = task.table
        self.loaded[task.name] = task


def gather_tasks(
    paths: dict[str, str | Path | pd.DataFrame] | None = None,
    builtin: list[str] | None = None,
    shared_dir: str | Path | None = None,
) -> TaskSet:
    """NAME → PATH (or an in-memory raw DataFrame) plus built-in names → validated tasks."""
    tasks = TaskSet()
    for name, src in (paths or {}).items():
        tasks.add(
            validate_task(src, name, "<DataFrame>") if isinstance(src, pd.DataFrame) else load_task_checked(src, name)
        )
    for name in builtin_names(builtin):
        tasks.add(build_builtin(name, shared_dir))
    return tasks
