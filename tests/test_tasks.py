"""Task tables: reading CSV/Parquet, label coercion, quarantine with reasons, clear errors; built-in tasks
built from real facts of ../shared/data (skipped when it is absent), with the sessionize product ids."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from prodemb.tasks import (
    BUILTIN_TASKS,
    TaskError,
    build_builtin,
    builtin_names,
    gather_tasks,
    load_task,
    load_task_checked,
    parse_task_arg,
    strip_year,
    task_sources,
    validate_task,
    write_builtin_tasks,
)
from tests.conftest import SHARED_DATA, shared_data

RAW = pd.DataFrame(
    {
        "title": ["Camara Canon", "", "Zapatilla Nike", None, "Notebook Lenovo", "Heladera", "Taladro Bosch", "   "],
        "label": ["1", "0", "TRUE", "false", "maybe", " false ", None, "1"],
        "product_id": ["a", "b", "c", "d", "e", "f", "g", "h"],
    }
)


# --- validation and quarantine ----------------------------------------------------------------------


def test_labels_are_coerced_and_bad_rows_quarantined_with_a_reason():
    t = validate_task(RAW, "demo")
    assert t.table["title"].tolist() == ["Camara Canon", "Zapatilla Nike", "Heladera"]
    assert t.table["label"].tolist() == [1, 1, 0] and t.table["label"].dtype == np.int64
    assert t.table["product_id"].tolist() == ["a", "c", "f"]
    assert t.table.index.equals(pd.RangeIndex(3))
    reasons = dict(zip(t.quarantine["product_id"], t.quarantine["reason"]))
    assert reasons == {
        "b": "empty_title",
        "d": "empty_title",
        "e": "invalid_label",
        "g": "missing_label",
        "h": "empty_title",
    }
    assert t.quarantine.loc[t.quarantine["product_id"] == "e", "label"].item() == "maybe"  # raw value kept
    assert t.counts == {
        "rows_in": 8,
        "rows_valid": 3,
        "rows_quarantined": 5,
        "positives": 2,
        "quarantined_empty_title": 3,
        "quarantined_invalid_label": 1,
        "quarantined_missing_label": 1,
    }


def test_numeric_and_boolean_labels():
    t = validate_task(pd.DataFrame({"title": list("abcde"), "label": [1.0, 0.0, True, False, 2]}))
    assert t.table["label"].tolist() == [1, 0, 1, 0]
    assert t.quarantine["reason"].tolist() == ["invalid_label"]


def test_csv_and_parquet_give_the_same_table(tmp_path):
    raw = pd.DataFrame(
        {"title": ["uno", "dos", "tres", "cuatro"], "label": [1, 0, 1, 0], "product_id": [10, 11, 12, 13]}
    )
    raw.to_csv(tmp_path / "t.csv", index=False)
    raw.to_parquet(tmp_path / "t.parquet", index=False)
    a, b = load_task(tmp_path / "t.csv"), load_task(tmp_path / "t.parquet")
    pd.testing.assert_frame_equal(a, b)
    assert a["product_id"].tolist() == ["10", "11", "12", "13"]  # ids are strings whatever the file type
    assert list(a.columns) == ["title", "label", "product_id"]
    assert "product_id" not in load_task_checked(_write(tmp_path / "nopid.csv", raw.drop(columns="product_id"))).table


def _write(path, df):
    df.to_csv(path, index=False)
    return path


def test_errors_are_clear(tmp_path):
    with pytest.raises(TaskError, match=r"lacks column\(s\) \['label'\]"):
        load_task(_write(tmp_path / "a.csv", pd.DataFrame({"title": ["x"], "y": [1]})))
    with pytest.raises(TaskError, match="only label 1 remains"):
        load_task(_write(tmp_path / "b.csv", pd.DataFrame({"title": ["x", "y", ""], "label": [1, 1, 0]})))
    with pytest.raises(TaskError, match="not found"):
        load_task(tmp_path / "missing.parquet")
    with pytest.raises(TaskError, match="cannot tell the format"):
        load_task(_write(tmp_path / "c.txt", pd.DataFrame({"title": ["x"], "label": [1]})))
    with pytest.raises(TaskError, match="no valid rows"):
        validate_task(pd.DataFrame({"title": ["", None], "label": [1, 0]}))


def test_task_arguments(tmp_path):
    assert parse_task_arg("cond=data/t.parquet") == ("cond", "data/t.parquet")
    assert parse_task_arg("data/free_shipping.parquet") == ("free_shipping", "data/free_shipping.parquet")
    with pytest.raises(TaskError):
        parse_task_arg("bad name=x.csv")
    p = _write(tmp_path / "t.csv", pd.DataFrame({"title": ["a", "b"], "label": [0, 1]}))
    # The jobs' path: --task values, else the config's tasks (None: no --task given).
    assert list(gather_tasks(task_sources([f"x={p}", f"y={p}"], None)[0]).tables) == ["x", "y"]
    assert task_sources([], None) == (None, None)
    with pytest.raises(TaskError, match="twice"):
        gather_tasks(task_sources([f"x={p}", f"x={p}"], None)[0])


def test_strip_year():
    assert strip_year("Toy Story (1995)") == "Toy Story"
    assert strip_year("Death Note: Desu nôto (2006–2007)") == "Death Note: Desu nôto"
    assert strip_year("Babylon 5") == "Babylon 5"
    assert strip_year("1984 (1984)") == "1984"


def test_builtin_names():
    assert builtin_names("retail_premium, movielens_drama") == ["retail_premium", "movielens_drama"]
    assert builtin_names(["all"]) == list(BUILTIN_TASKS)
    with pytest.raises(TaskError, match="unknown built-in"):
        builtin_names("retail_nope")


# --- built-in tasks on the real data ------------------------------------------------------------------


def _sane(name: str, lo: float, hi: float, min_rows: int):
    t = build_builtin(name)
    tab = t.table
    assert len(tab) >= min_rows, (name, len(tab))
    assert lo <= tab["label"].mean() <= hi, (name, tab["label"].mean())
    assert tab["product_id"].is_unique and tab["product_id"].notna().all()
    assert (tab["title"].str.strip() == tab["title"]).all() and (tab["title"] != "").all()
    return tab


def test_online_retail_tasks_follow_the_facts():
    root = shared_data("uci-online-retail", "by-day")
    lines = pd.concat([pd.read_csv(f, dtype=str) for f in sorted(root.glob("*.csv"))[:40]])
    premium = _sane("retail_premium", 0.2, 0.3, 3000)
    returned = _sane("retail_returned", 0.2, 0.7, 3000)
    bulk = _sane("retail_bulk", 0.02, 0.4, 3000)
    assert premium["product_id"].tolist() == returned["product_id"].tolist() == bulk["product_id"].tolist()
    ids = set(premium["product_id"])
    assert "85123A" in ids and "POST" not in ids and "M" not in ids  # StockCode as is; no postage/manual
    # A product cancelled in the first days is labeled returned.
    cancelled = lines[lines["InvoiceNo"].str.startswith("C")]["StockCode"].str.strip()
    some = sorted(set(cancelled) & ids)[:20]
    assert some and returned.set_index("product_id").loc[some, "label"].eq(1).all()
    t = premium.set_index("product_id")
    assert t.loc["85123A", "title"] == "WHITE HANGING HEART T-LIGHT HOLDER"


def test_movielens_tasks_follow_the_facts():
    movies = pd.read_csv(shared_data("movielens-latest-small", "movies.csv"), dtype={"movieId": str})
    drama = _sane("movielens_drama", 0.35, 0.55, 9000).set_index("product_id")
    comedy = build_builtin("movielens_comedy").table.set_index("product_id")
    assert drama.loc["1", "title"] == "Toy Story" and drama.loc["1", "label"] == 0 and comedy.loc["1", "label"] == 1
    assert not drama["title"].str.contains(r"\(\d{4}\)$").any()
    expected = movies.set_index("movieId")["genres"].str.split("|").map(lambda g: "Drama" in g)
    assert (drama["label"].astype(bool) == expected.reindex(drama.index)).all()
    rated = _sane("movielens_well_rated", 0.3, 0.7, 1000)
    ratings = pd.read_csv(shared_data("movielens-latest-small", "ratings.csv"), dtype={"movieId": str})
    stats = ratings.groupby("movieId")["rating"].agg(["mean", "count"])
    assert set(rated["product_id"]) == set(stats.index[stats["count"] >= 10])
    r = rated.set_index("product_id")
    assert ((stats.loc[r.index, "mean"] >= 3.5).astype(int) == r["label"]).all()


def test_mercadolibre_and_hepsiburada_tasks():
    root = shared_data("meli-api-items")
    cond = _sane("meli_condition", 0.1, 0.4, 1000)
    js = {r["id"]: r for r in json.loads((root / "chromecast_search_MLA_2024-11.json").read_text())}
    c = cond.set_index("product_id")
    some = [i for i in js if i in c.index][:50]
    assert all(c.loc[i, "label"] == int(js[i]["condition"] == "used") for i in some)
    assert all(pid.startswith("MLA") for pid in cond["product_id"])
    ship = _sane("meli_free_shipping", 0.4, 0.9, 1000).set_index("product_id")
    assert all(ship.loc[i, "label"] == int(js[i]["shipping"]["free_shipping"]) for i in some)
    shared_data("hepsiburada-products-meta")
    care = _sane("hepsiburada_personal_care", 0.05, 0.2, 10000).set_index("product_id")
    assert care.loc["HBV00000AX6LR", "label"] == 1 and care.loc["HBV00000BSAQG", "label"] == 0


def test_write_builtin_tasks_roundtrip(tmp_path):
    shared_data("meli-api-items")
    paths = write_builtin_tasks(tmp_path, ["meli_condition"])
    assert list(tmp_path.iterdir()) == [paths["meli_condition"]]  # no temporary file left
    pd.testing.assert_frame_equal(load_task(paths["meli_condition"]), build_builtin("meli_condition").table)


def test_builtin_product_ids_are_the_sessionize_ids(spark):
    """Prod2Vec baselines match task rows to session products by id: the ids must be the adapters' ids."""
    from prodemb.sources import read_movielens, read_online_retail

    day = sorted(shared_data("uci-online-retail", "by-day").glob("*.csv"))[0]
    # The rows sessionize keeps (not filtered, with a user and a title): their products are task rows.
    clicks = (
        read_online_retail(spark, str(day))
        .where("filter_reason IS NULL AND user_id IS NOT NULL AND title IS NOT NULL")
        .select("product_id")
        .distinct()
    )
    click_ids = {r[0] for r in clicks.collect() if r[0][:1].isdigit()}
    task_ids = set(build_builtin("retail_premium").table["product_id"])
    assert click_ids and click_ids <= task_ids
    ml = read_movielens(spark, str(SHARED_DATA / "movielens-latest-small")).select("product_id").distinct()
    ml_ids = {r[0] for r in ml.collect()}
    drama_ids = set(build_builtin("movielens_drama").table["product_id"])
    assert len(ml_ids & drama_ids) > 0.95 * len(ml_ids)
