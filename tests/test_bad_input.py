"""The bad-input corpus: every kind of bad or odd input, in each of the four input formats, gets a quarantine
row with its reason, a counted filter, a valid click, or (for a file Spark could not read at all) one clear
error naming the file. Nothing is lost silently: rows in = valid + filtered + quarantined in every corpus.

Each kind is one test case. A corpus file per format holds all its kinds (one sessionize run per format);
each bad row carries a marker (its product id, user id or raw text) that finds its fate in the output.
"""

from __future__ import annotations

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from prodemb.config import SessionsConfig
from prodemb.sessions import run_sessionize
from prodemb.tables import read_table
from tests.conftest import assert_rows_add_up

T = "2024-05-01T10:00:00Z"
GOOD_CSV = [f"u-good,2024-05-01T09:0{i}:00Z,p-good{i},Camara Reflex Modelo {i},foto" for i in range(3)]

# kind: (CSV line, marker, expected: a quarantine reason, or "valid")
CLICKS_CSV = {
    "blank_user_id": (f"   ,{T},p-blank-user,Camara Buena,x", "p-blank-user", "missing_user_id"),
    "missing_user_id": (f",{T},p-no-user,Camara Buena,x", "p-no-user", "missing_user_id"),
    "missing_product_id": (f"u-no-product,{T},,Camara Buena,x", "u-no-product", "missing_product_id"),
    "blank_product_id": (f"u-blank-product,{T},  ,Camara Buena,x", "u-blank-product", "missing_product_id"),
    "missing_ts": ("u1,,p-no-ts,Camara Buena,x", "p-no-ts", "missing_ts"),
    "unparseable_ts": ("u1,el martes a la tarde,p-bad-ts,Camara Buena,x", "p-bad-ts", "unparseable_ts"),
    "impossible_date": ("u1,2024-02-30T10:00:00Z,p-feb30,Camara Buena,x", "p-feb30", "unparseable_ts"),
    "negative_epoch": ("u1,-86400,p-neg-epoch,Camara Buena,x", "p-neg-epoch", "ts_out_of_range"),
    "absurd_epoch": ("u1,99999999999999999999,p-absurd,Camara Buena,x", "p-absurd", "unparseable_ts"),
    "before_1995": ("u1,1970-01-01T00:00:00Z,p-1970,Camara Buena,x", "p-1970", "ts_out_of_range"),
    "far_future": ("u1,2999-01-01T00:00:00Z,p-2999,Camara Buena,x", "p-2999", "ts_out_of_range"),
    "invalid_utf8": ("u1,2024-05-01T10:00:00Z,p-latin1,C\udce1mara \udcff\udcfe rota,x", "p-latin1", "invalid_utf8"),
    "missing_title": (f"u1,{T},p-no-title,,x", "p-no-title", "missing_title"),
    "blank_title": (f"u1,{T},p-blank-title,   ,x", "p-blank-title", "missing_title"),
    "stopwords_only_title": (
        f'u1,{T},p-stopwords,"de la, para!!! ...",x',
        "p-stopwords",
        "empty_title_after_normalization",
    ),
    "title_of_200k_characters": (f"u1,{T},p-huge,{'palabra ' * 25_000},x", "p-huge", "title_too_long"),
    "repeated_header_line": ("user_id,ts,product_id,title,category", "product_id", "unparseable_ts"),
    "too_few_fields": (f"u1,{T},p-few", "p-few", "missing_title"),
    "injection_strings": (
        f'u1,{T},p-inject,"\'; DROP TABLE clicks; -- <script>alert(1)</script>",x',
        "p-inject",
        "valid",
    ),
    "emoji_title": (f"u1,{T},p-emoji,Zapatillas 👟🔥 Running,x", "p-emoji", "valid"),
}
CLICKS_JSONL = {
    "broken_json_line": (
        '{"user_id": "u-broken", "ts": "2024-05-01T10:00:00Z", "product_id": "p-br',
        "u-broken",
        "malformed_record",
    ),
    "numeric_ids": (
        '{"user_id": 123, "ts": "2024-05-01T10:00:00Z", "product_id": 456, "title": "Taladro Percutor"}',
        "456",
        "valid",
    ),
    "null_title": (
        '{"user_id": "u1", "ts": "2024-05-01T10:00:00Z", "product_id": "p-null-title", "title": null}',
        "p-null-title",
        "missing_title",
    ),
    "epoch_millis_number": (
        '{"user_id": "u1", "ts": 1714557600000, "product_id": "p-millis", "title": "Taladro Inalambrico"}',
        "p-millis",
        "valid",
    ),
}
RETAIL_HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"
RETAIL = {
    "cancellation": (
        "C536379,R-CANCEL,WHITE METAL LANTERN,-1,2010-12-01 09:41:00,2.55,14527.0,UK",
        "R-CANCEL",
        "filtered:cancellation",
    ),
    "zero_quantity": (
        "536380,R-ZERO,CREAM CUPID HEARTS,0,2010-12-01 09:41:00,2.75,14527.0,UK",
        "R-ZERO",
        "filtered:non_positive_quantity",
    ),
    "missing_customer": (
        "536381,R-NOCUST,KNITTED UNION FLAG,6,2010-12-01 09:45:00,3.39,,UK",
        "R-NOCUST",
        "missing_user_id",
    ),
    "us_date_format": ("536382,R-USDATE,RED WOOLLY HOTTIE,6,12/1/2010 9:50,3.39,17850.0,UK", "R-USDATE", "valid"),
    "blank_description": ("536383,R-NODESC,,6,2010-12-01 09:55:00,3.39,17850.0,UK", "R-NODESC", "missing_title"),
    "unparseable_quantity": (
        "536384,R-QTY,SET 7 BABUSHKA NESTING BOXES,lots,2010-12-01 09:56:00,7.65,17850.0,UK",
        "R-QTY",
        "valid",
    ),
}
MOVIE_RATINGS = {  # userId,movieId,rating,timestamp → movie 999 is not in movies.csv
    "unknown_movie": ("7,999,4.0,964982703", "999", "missing_title"),
    "negative_timestamp": ("7,2,3.0,-964982703", "2", "ts_out_of_range"),
    "no_genres_listed": ("8,3,5.0,964982931", "3", "valid"),
    "missing_user": (",1,4.0,964983815", "1", "missing_user_id"),
}
MELI = {
    "broken_line": (
        '{"user_history": [{"event_info": 5001, "event_type": "view", "event_timestamp": "2019-10-19T1',
        "5001",
        "malformed_record",
    ),
    "not_an_object": ("[5002, 5003]", "5002", "malformed_record"),
    "search_event": (
        '{"user_history": [{"event_info": "zapatillas", "event_type": "search", '
        '"event_timestamp": "2019-10-19T11:25:42.444-0400"}], "item_bought": 1}',
        "zapatillas",
        "filtered:event_search",
    ),
    "unknown_item": (
        '{"user_history": [{"event_info": 5999, "event_type": "view", '
        '"event_timestamp": "2019-10-19T11:25:42.444-0400"}], "item_bought": 1}',
        "5999",
        "missing_title",
    ),
    "unparseable_event_ts": (
        '{"user_history": [{"event_info": 5004, "event_type": "view", "event_timestamp": "ayer"}], "item_bought": 1}',
        "5004",
        "unparseable_ts",
    ),
}
CORPORA = {
    "clicks-csv": CLICKS_CSV,
    "clicks-jsonl": CLICKS_JSONL,
    "online-retail": RETAIL,
    "movielens": MOVIE_RATINGS,
    "meli2020": MELI,
}


def _write_inputs(root):
    """One input per corpus, the good rows beside the bad ones; returns {corpus: (path, input format)}."""
    out = {}
    csv = "user_id,ts,product_id,title,category\n" + "\n".join(GOOD_CSV + [v[0] for v in CLICKS_CSV.values()])
    bot = "\n".join(
        f"u-bot,2024-05-01T11:{i // 3600 % 60:02d}:{i % 60:02d}Z,p-bot{i % 40},Producto Bot {i % 40},x"
        for i in range(20_000)
    )  # a 20,000-click bot in one session
    (root / "clicks.csv").write_bytes("\ufeff".encode() + (csv + "\n" + bot + "\n").encode("utf-8", "surrogateescape"))
    out["clicks-csv"] = (root / "clicks.csv", "clicks")
    good = [
        json.dumps(
            {"user_id": "u-good", "ts": "2024-05-01T09:00:00Z", "product_id": f"j{i}", "title": f"Lampara De Pie {i}"}
        )
        for i in range(2)
    ]
    (root / "clicks.jsonl").write_text("\n".join(good + [v[0] for v in CLICKS_JSONL.values()]) + "\n")
    out["clicks-jsonl"] = (root / "clicks.jsonl", "clicks")
    (root / "retail").mkdir()
    good = "536365,R-GOOD,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom"
    (root / "retail" / "2010-12-01.csv").write_text(
        "\n".join([RETAIL_HEADER, good, *(v[0] for v in RETAIL.values())]) + "\n"
    )
    out["online-retail"] = (root / "retail", "online-retail")
    (root / "movielens").mkdir()
    (root / "movielens" / "movies.csv").write_text(
        "movieId,title,genres\n1,Toy Story (1995),Adventure|Animation\n2,Jumanji (1995),Adventure|Children\n"
        "3,Grumpier Old Men (1995),(no genres listed)\n"
    )
    (root / "movielens" / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n7,1,4.0,964982224\n" + "\n".join(v[0] for v in MOVIE_RATINGS.values()) + "\n"
    )
    out["movielens"] = (root / "movielens", "movielens")
    (root / "meli").mkdir()
    good = json.dumps(
        {
            "user_history": [
                {"event_info": 5000, "event_type": "view", "event_timestamp": "2019-10-19T11:25:42.444-0400"}
            ],
            "item_bought": 5000,
        }
    )
    (root / "meli" / "train_dataset.jl").write_text("\n".join([good, *(v[0] for v in MELI.values())]) + "\n")
    items = [
        {
            "item_id": i,
            "title": f"Zapatilla Running Modelo {i}",
            "domain_id": "d",
            "category_id": "MLB1",
            "price": 10.0,
            "condition": "new",
        }
        for i in (5000, 5001, 5002, 5003, 5004)
    ]
    (root / "meli" / "item_data.jl").write_text("\n".join(json.dumps(i) for i in items) + "\n")
    out["meli2020"] = (root / "meli", "meli2020")
    return out


@pytest.fixture(scope="module")
def outcomes(spark, tmp_path_factory):
    """Each corpus sessionized once: its report and quarantine rows, the catalog's products and titles."""
    root = tmp_path_factory.mktemp("corpus")
    found = {}
    for corpus, (path, fmt) in _write_inputs(root).items():
        out = root / f"out-{corpus}"
        report = run_sessionize(spark, str(path), fmt, str(out), SessionsConfig())
        assert_rows_add_up(spark, out, report)  # nothing lost silently, in every corpus
        quarantine = [r.asDict() for r in read_table(spark, str(out / "quarantine")).collect()]
        catalog = {r.product_id: r.title for r in read_table(spark, str(out / "catalog")).collect()}
        found[corpus] = {"report": report, "quarantine": quarantine, "catalog": catalog, "out": out, "format": fmt}
    return found


KINDS = [(corpus, kind) for corpus, kinds in CORPORA.items() for kind in kinds]


@pytest.mark.parametrize("corpus,kind", KINDS, ids=[f"{c}:{k}" for c, k in KINDS])
def test_each_kind_of_bad_input_has_its_outcome(outcomes, corpus, kind):
    _, marker, expected = CORPORA[corpus][kind]
    got = outcomes[corpus]
    mine = [
        q for q in got["quarantine"] if marker in (q["product_id"], q["user_id"]) or marker in (q["raw_record"] or "")
    ]
    if expected == "valid":
        assert not mine and marker in got["catalog"], (mine, sorted(got["catalog"])[:20])
    elif expected.startswith("filtered:"):
        assert not mine and marker not in got["catalog"]
        reason = expected.split(":", 1)[1]
        assert got["report"]["rows_filtered_by_reason"][reason] == sum(
            1 for _, _, e in CORPORA[corpus].values() if e == expected
        )
    else:
        assert [q["reason"] for q in mine] == [expected], mine
        assert got["report"]["rows_quarantined_by_reason"][expected] >= 1


def test_the_corpora_cover_every_input_format_with_thirty_kinds_or_more(outcomes):
    """The corpora were read through every format prodemb.sources knows (a new format needs its own)."""
    from prodemb.sources import FORMATS

    assert {o["format"] for o in outcomes.values()} == set(FORMATS)
    assert len(KINDS) + len(UNREADABLE) >= 30


def test_odd_but_valid_rows_keep_their_text_and_the_bot_is_truncated(outcomes):
    csv = outcomes["clicks-csv"]
    assert csv["catalog"]["p-inject"] == "'; DROP TABLE clicks; -- <script>alert(1)</script>"
    assert csv["catalog"]["p-emoji"] == "Zapatillas 👟🔥 Running"
    assert "p-good0" in csv["catalog"]  # the BOM did not cost the header its first column
    from prodemb.tables import read_table_arrow

    sessions = read_table_arrow(str(csv["out"] / "sessions")).to_pylist()
    bot = [s for s in sessions if s["user_id"] == "u-bot"]
    assert sum(s["n_events"] for s in bot) == 20_000 and all(len(s["products"]) <= 10 for s in bot)


def _random_parquet(path):
    path.write_bytes(bytes(range(256)) * 40)


def _truncated_parquet(path):
    pq.write_table(
        pa.table({"user_id": ["u"] * 50, "ts": [T] * 50, "product_id": ["p"] * 50, "title": ["t"] * 50}), path
    )
    path.write_bytes(path.read_bytes()[:-40])


def _not_gzip(path):
    path.write_text("user_id,ts,product_id,title\nu1,2024-05-01T10:00:00Z,p1,Camara\n")


def _gzip_ok_neighbour(path):
    with gzip.open(path, "wt") as fh:
        fh.write("user_id,ts,product_id,title\nu1,2024-05-01T10:00:00Z,p1,Camara\n")


UNREADABLE = {  # kind: (file name, writer, words of the one-line error)
    "random_bytes_named_parquet": ("part-0.parquet", _random_parquet, "not a readable Parquet file"),
    "truncated_parquet": ("part-0.parquet", _truncated_parquet, "not a readable Parquet file"),
    "gz_that_is_not_gzip": ("part-1.csv.gz", _not_gzip, "not gzip-compressed"),
    "empty_file": ("part-1.csv", lambda p: p.write_bytes(b""), "empty file"),
}


@pytest.mark.parametrize("kind", list(UNREADABLE))
def test_a_file_spark_cannot_read_is_refused_naming_it_before_any_job(spark, tmp_path, kind):
    name, write, words = UNREADABLE[kind]
    folder = tmp_path / "in"
    folder.mkdir()
    if name.endswith(".csv.gz") or name.endswith(".csv"):
        _gzip_ok_neighbour(folder / "part-0.csv.gz")  # a good file beside the bad one
    write(folder / name)
    with pytest.raises(ValueError, match=words) as err:
        run_sessionize(spark, str(folder), "clicks", str(tmp_path / "out"), SessionsConfig())
    assert name in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
