"""Every input adapter, on the real files in ../shared/data and on the hand-made meli2020 fixture.

Expected numbers are computed here independently (pandas + tests/reference.py), not copied from a run.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from prodemb.config import SessionsConfig
from prodemb.sessions import run_sessionize
from prodemb.sources import RAW_COLUMNS, read_source
from prodemb.tables import read_table
from prodemb.text import normalize_title
from tests.conftest import FIXTURES, assert_rows_add_up, online_retail_days, shared_data
from tests.reference import reference_pair_count, reference_sessions


def spark_sessions(spark, out):
    rows = read_table(spark, f"{out}/sessions").collect()
    return {(r.site, r.user_id, r.start_ts, tuple(r.products)) for r in rows}


def test_meli2020_fixture(spark, tmp_path):
    report = run_sessionize(spark, str(FIXTURES / "meli2020"), "meli2020", str(tmp_path), SessionsConfig())
    assert (report["rows_in"], report["rows_filtered"], report["rows_quarantined"], report["rows_valid"]) == (
        16,
        3,
        2,
        11,
    )
    assert report["rows_filtered_by_reason"] == {"event_search": 3}
    assert report["rows_quarantined_by_reason"] == {"missing_title": 1, "unparseable_ts": 1}
    sessions = sorted((tuple(s[3]) for s in spark_sessions(spark, tmp_path)))
    assert sessions == sorted(
        [
            ("1786148", "643652", "1385381"),  # repeated view deduped
            ("2094796", "1385381"),  # after a 1h47m gap
            ("3001", "3002"),  # gap of exactly 30:00 stays
            ("3003",),  # gap of 30:01 cuts
            ("4001", "4003"),  # 4002's timestamp is unparseable
        ]
    )
    assert report["pairs"] == 6
    cat = {r.product_id: r for r in read_table(spark, f"{tmp_path}/catalog").collect()}
    assert cat["2094796"].category == "MLB1380"
    assert cat["2094796"].title_norm == "camara aire rodado 29 valvula presta"
    # -0400 offsets are honoured (stored in UTC).
    assert str(cat["1786148"].first_seen) == "2019-10-19 15:25:42.444000"
    q = read_table(spark, f"{tmp_path}/quarantine").where("reason = 'missing_title'").first()
    assert q.product_id == "999999" and q.ts_raw.startswith("2019-10-20T10:02")


def test_movielens_matches_reference(spark, tmp_path):
    root = shared_data("movielens-latest-small")
    report = run_sessionize(spark, str(root), "movielens", str(tmp_path), SessionsConfig())
    ratings = pd.read_csv(root / "ratings.csv")
    movies = pd.read_csv(root / "movies.csv")
    assert report["rows_in"] == len(ratings)
    assert_rows_add_up(spark, tmp_path, report)
    assert report["rows_filtered"] == 0

    good = ratings.merge(movies, on="movieId")
    empty = good["title"].map(lambda t: normalize_title(t) == "")  # quarantined by the job
    assert report["rows_quarantined"] == int(empty.sum())
    good = good[~empty]
    clicks = pd.DataFrame(
        {
            "site": "default",
            "user_id": good["userId"].astype(str),
            "ts": pd.to_datetime(good["timestamp"], unit="s"),
            "product_id": good["movieId"].astype(str),
        }
    )
    got = spark_sessions(spark, tmp_path)
    assert got == reference_sessions(clicks)
    assert report["sessions"] == len(got)
    assert report["pairs"] == reference_pair_count(got)
    cat = read_table(spark, f"{tmp_path}/catalog")
    toy = cat.where("product_id = '1'").first()
    assert toy.title == "Toy Story (1995)" and toy.category == "Adventure"  # first genre


def test_online_retail_filters_and_quarantines(spark, tmp_path):
    day_dir, files = online_retail_days(tmp_path / "in", 20)
    report = run_sessionize(spark, str(day_dir), "online-retail", str(tmp_path / "out"), SessionsConfig())

    raw = pd.concat([pd.read_csv(f, dtype=str) for f in files])
    cancelled = raw["InvoiceNo"].str.startswith("C")
    nonpos = ~cancelled & (raw["Quantity"].astype(float) <= 0)
    assert report["rows_in"] == len(raw)
    assert report["rows_filtered_by_reason"].get("cancellation", 0) == int(cancelled.sum())
    assert report["rows_filtered_by_reason"].get("non_positive_quantity", 0) == int(nonpos.sum())
    kept = raw[~cancelled & ~nonpos]
    assert report["rows_quarantined_by_reason"]["missing_user_id"] == int(kept["CustomerID"].isna().sum())
    assert_rows_add_up(spark, tmp_path / "out", report)

    good = kept[kept["CustomerID"].notna() & kept["Description"].notna()]
    empty = good["Description"].map(lambda t: normalize_title(t, "es") == "")
    assert report["rows_quarantined_by_reason"].get("empty_title_after_normalization", 0) == int(empty.sum())
    good = good[~empty]
    clicks = pd.DataFrame(
        {
            "site": "default",
            "user_id": good["CustomerID"].str.replace(r"\.0+$", "", regex=True),
            "ts": pd.to_datetime(good["InvoiceDate"]),
            "product_id": good["StockCode"].str.strip(),
        }
    )
    assert set(report["rows_quarantined_by_reason"]) <= {
        "missing_user_id",
        "missing_title",
        "empty_title_after_normalization",
    }
    assert spark_sessions(spark, tmp_path / "out") == reference_sessions(clicks)
    assert report["sessions"] > 500


def test_clicks_adapter_reads_csv_parquet_and_jsonl_alike(spark, tmp_path):
    df = pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u1", "u2"],
            "ts": ["2024-01-01T10:00:00Z", "1704103260", "1704103320000", "2024-01-01 11:00:00"],
            "product_id": ["a", "b", "a", "c"],
            "title": ["Cámara Réflex", "Teléfono Celular", "Cámara Réflex", "Muñeca Niña"],
            "category": ["cam", "tel", "cam", None],
        }
    )
    paths = {"csv": tmp_path / "c.csv", "jsonl": tmp_path / "c.jsonl", "parquet": tmp_path / "c.parquet"}
    df.to_csv(paths["csv"], index=False)
    df.to_json(paths["jsonl"], orient="records", lines=True)
    df.to_parquet(paths["parquet"])
    results = []
    for name, path in paths.items():
        df = read_source(spark, str(path), "clicks")
        assert df.columns == RAW_COLUMNS
        rows = df.orderBy("user_id", "ts").collect()
        results.append([(r.site, r.user_id, str(r.ts), r.product_id, r.category) for r in rows])
    assert results[0] == results[1] == results[2]
    assert results[0][0] == ("default", "u1", "2024-01-01 10:00:00", "a", "cam")
    assert results[0][2][2] == "2024-01-01 10:02:00"  # epoch millis


def test_clicks_adapter_rejects_missing_columns(spark, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("user,when\nu,1\n")
    with pytest.raises(ValueError, match="lacks columns"):
        read_source(spark, str(path), "clicks")


def test_unknown_format_and_missing_input_fail_clearly(spark, tmp_path):
    with pytest.raises(ValueError, match="unknown input format"):
        read_source(spark, str(tmp_path), "nope")
    with pytest.raises(FileNotFoundError):
        read_source(spark, str(tmp_path / "absent"), "clicks")


def test_meli_fixture_is_in_the_documented_layout():
    for line in (FIXTURES / "meli2020" / "train_dataset.jl").read_text().splitlines():
        obj = json.loads(line)
        assert set(obj) == {"user_history", "item_bought"}
        for ev in obj["user_history"]:
            assert set(ev) == {"event_info", "event_type", "event_timestamp"}
            assert ev["event_type"] in {"view", "search"}
    for line in (FIXTURES / "meli2020" / "item_data.jl").read_text().splitlines():
        assert set(json.loads(line)) == {"item_id", "title", "domain_id", "category_id", "price", "condition"}
