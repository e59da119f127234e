"""Tests for prodemb.synth: determinism, schema, streaming, and the behavioural properties the pipeline needs."""

from __future__ import annotations

import json
import re
from itertools import combinations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from prodemb.synth import (
    CATEGORY_NAMES,
    CLICK_SCHEMA,
    SynthSpec,
    generate,
    iter_click_batches,
    main,
    make_catalog,
    write_task_tables,
)

SPEC = SynthSpec(n_clicks=60_000, n_products=3_000, seed=11, chunk_clicks=25_000)
GAP_S = 30 * 60


def _table(spec: SynthSpec, catalog: pd.DataFrame | None = None) -> pa.Table:
    return pa.Table.from_batches(list(iter_click_batches(spec, catalog)), schema=CLICK_SCHEMA)


@pytest.fixture(scope="module")
def catalog() -> pd.DataFrame:
    return make_catalog(SPEC)


@pytest.fixture(scope="module")
def clicks(catalog) -> pd.DataFrame:
    """The small log, sorted by user and time, with sessions cut at 30 minutes of inactivity."""
    df = _table(SPEC, catalog).to_pandas()
    df = df.sort_values(["user_id", "ts"], kind="stable").reset_index(drop=True)
    gap = df.groupby("user_id")["ts"].diff().dt.total_seconds()
    df["gap_s"] = gap
    df["session"] = (gap.isna() | (gap > GAP_S)).cumsum()
    return df


@pytest.fixture(scope="module")
def big_catalog() -> pd.DataFrame:
    # Label statistics need more products than the click tests; the catalog alone is cheap.
    return make_catalog(SynthSpec(n_products=20_000, seed=3))


# ---------------------------------------------------------------- determinism and shape


def test_same_seed_gives_identical_output(catalog):
    pd.testing.assert_frame_equal(make_catalog(SPEC), catalog)
    assert _table(SPEC).equals(_table(SPEC))


def test_different_seed_gives_different_output(catalog):
    other = SynthSpec(**{**SPEC.__dict__, "seed": SPEC.seed + 1})
    assert not make_catalog(other)["title"].equals(catalog["title"])
    a, b = _table(SPEC), _table(other)
    assert not a.column("ts").equals(b.column("ts"))
    assert not a.column("product_id").equals(b.column("product_id"))


def test_output_does_not_depend_on_chunk_size(catalog):
    small = _table(SynthSpec(**{**SPEC.__dict__, "chunk_clicks": 7_777}), catalog)
    large = _table(SynthSpec(**{**SPEC.__dict__, "chunk_clicks": 10_000_000}), catalog)
    assert small.equals(large)


def test_exact_row_count_schema_and_values(clicks, catalog):
    assert len(clicks) == SPEC.n_clicks
    for column in ("user_id", "ts", "product_id", "title", "category", "site"):
        assert clicks[column].notna().all(), column
    assert (clicks["site"] == "MLA").all()
    start = pd.Timestamp(SPEC.start, tz="UTC")
    assert clicks["ts"].min() >= start
    assert clicks["ts"].max() < start + pd.Timedelta(days=SPEC.days)
    # every click's title and category are those of its product in the catalog
    joined = clicks.merge(catalog, on="product_id", how="left", suffixes=("", "_cat"))
    assert (joined["title"] == joined["title_cat"]).all()
    assert (joined["category"] == joined["category_cat"]).all()
    assert clicks["user_id"].nunique() == SPEC.n_clicks // 40  # default users, each with >= 1 click


def test_batches_are_bounded_by_chunk_clicks():
    spec = SynthSpec(n_clicks=20_000, n_products=1_000, seed=5, chunk_clicks=7_777)
    batches = list(iter_click_batches(spec))
    assert [b.num_rows for b in batches] == [7_777, 7_777, 20_000 - 2 * 7_777]
    assert all(b.schema.equals(CLICK_SCHEMA) for b in batches)


def test_window_follows_start_and_days():
    spec = SynthSpec(n_clicks=5_000, n_products=500, start="2023-06-15", days=3)
    ts = _table(spec).column("ts").to_pandas()
    assert ts.min() >= pd.Timestamp("2023-06-15", tz="UTC")
    assert ts.max() < pd.Timestamp("2023-06-18", tz="UTC")


def test_more_users_than_clicks_is_clamped():
    t = _table(SynthSpec(n_clicks=100, n_products=50, n_users=1_000))
    assert t.num_rows == 100
    assert len(t.column("user_id").unique()) == 100


# ---------------------------------------------------------------- catalog and titles


def test_catalog_columns_ids_and_categories(catalog):
    assert list(catalog.columns) == ["product_id", "title", "category", "condition", "free_shipping", "price"]
    assert catalog["product_id"].is_unique
    assert catalog["product_id"].str.fullmatch(r"MLA\d{10}").all()
    assert set(catalog["condition"]) == {"new", "used"}
    assert catalog["free_shipping"].dtype == bool
    assert (catalog["price"] > 0).all()
    assert 12 <= catalog["category"].nunique() == len(CATEGORY_NAMES) <= 20
    few = make_catalog(SynthSpec(n_products=100, n_categories=4))
    assert set(few["category"]) == set(CATEGORY_NAMES[:4])


def test_titles_have_accents_stopwords_and_punctuation(catalog):
    text = " ".join(catalog["title"])
    for word in ("Cámara", "Teléfono", "Niño", "Batería", "Cartón"):
        assert word in text, word
    words = set(text.lower().split())
    assert {"de", "para", "con", "+", "-"} <= words
    assert "/" in text
    assert catalog["title"].str.contains(r"[áéíóúñÁÉÍÓÚÑ]").mean() > 0.2
    assert (catalog["title"] == catalog["title"].str.lower()).any()  # casing noise exists


def test_title_vocabulary_differs_per_category(catalog):
    vocab = {}
    for cat, titles in catalog.groupby("category")["title"]:
        counts = pd.Series([w for t in titles.str.lower() for w in set(re.findall(r"\w+", t))]).value_counts()
        vocab[cat] = set(counts[counts >= 0.03 * len(titles)].index)
    jaccard = [len(a & b) / len(a | b) for a, b in combinations(vocab.values(), 2)]
    assert max(jaccard) < 0.5
    assert np.mean(jaccard) < 0.15


# ---------------------------------------------------------------- behaviour


def test_sessions_stay_mostly_within_one_category(clicks):
    majority = clicks.groupby("session")["category"].agg(lambda s: s.value_counts().iloc[0]).sum()
    purity = majority / len(clicks)
    assert 0.7 < purity < 0.98  # mostly one category, but not trivially pure
    assert (clicks.groupby("session")["category"].nunique() > 1).any()


def test_repeated_views_within_sessions(clicks):
    by_session = clicks.groupby("session")["product_id"]
    sizes = by_session.size()
    has_repeat = by_session.agg(lambda s: s.duplicated().any())
    # Popularity alone already yields ~45% / ~17% / ~6% below; explicit re-views push them well above.
    assert has_repeat[sizes >= 2].mean() > 0.5
    repeated_events = by_session.apply(lambda s: s.duplicated().sum()).sum() / len(clicks)
    assert 0.2 < repeated_events < 0.5
    same = clicks["product_id"].eq(clicks["product_id"].shift()) & clicks["session"].eq(clicks["session"].shift())
    assert same.mean() > 0.1  # back-button / refresh re-views of the product just seen


def test_popularity_is_skewed(clicks, catalog):
    counts = clicks["product_id"].value_counts()
    top = max(1, len(catalog) // 100)
    assert counts.iloc[:top].sum() / len(clicks) > 0.10


def test_gaps_make_the_30_minute_cut_meaningful(clicks):
    gaps = clicks["gap_s"].dropna()
    long = (gaps > GAP_S).mean()
    assert 0.05 < long < 0.4  # a meaningful share of session breaks ...
    assert (gaps < GAP_S).mean() > 0.6  # ... but most consecutive events are within a session
    assert gaps.median() < 300
    assert ((gaps > 25 * 60) & (gaps < 35 * 60)).sum() > 0  # some gaps straddle the cut
    assert (gaps > 86_400).sum() > 0  # and users come back days later


# ---------------------------------------------------------------- labels


def test_condition_correlates_with_title_words_but_is_noisy(big_catalog):
    title = big_catalog["title"].str.lower()
    used = big_catalog["condition"].eq("used")
    base = used.mean()
    says_usado = title.str.contains(r"\busad[oa]\b")
    used_words = title.str.contains(r"\busad[oa]\b|reacondicionado|impecable|como nuevo|poco uso|seminuevo")
    assert says_usado.sum() > 50
    assert used[says_usado].mean() > max(3 * base, 0.8)
    assert used[used_words].mean() < 1.0  # some new items say "impecable" ...
    assert used[~used_words].sum() > 0  # ... and many used items say nothing
    # identical titles with different labels: not a function of the title
    mixed = big_catalog.assign(t=title).groupby("t")["condition"].nunique()
    assert (mixed > 1).sum() > 0


def test_free_shipping_and_price_follow_title_signals(big_catalog):
    fs = big_catalog["free_shipping"]
    quartile = pd.qcut(big_catalog["price"], 4, labels=False)
    rate = fs.groupby(quartile).mean()
    assert rate.iloc[3] > rate.iloc[0] + 0.3
    title = big_catalog["title"].str.lower()
    # premium vs budget brands within the same product type
    phones = title.str.startswith("celular ")
    premium = fs[phones & title.str.contains(r"\b(?:samsung|apple)\b")].mean()
    budget = fs[phones & title.str.contains(r"\b(?:alcatel|tcl)\b")].mean()
    assert premium > budget + 0.1
    # price is readable from words: a type-level median differs strongly between categories
    median = big_catalog.groupby("category")["price"].median()
    assert median["Computación"] > 10 * median["Alimentos y Bebidas"]
    mixed = big_catalog.assign(t=title).groupby("t")["free_shipping"].nunique()
    assert (mixed > 1).sum() > 0
    assert 0.2 < fs.mean() < 0.8


def test_write_task_tables(tmp_path, catalog):
    paths = write_task_tables(catalog, tmp_path)
    assert set(paths) == {"condition", "free_shipping"}
    cond = pd.read_parquet(paths["condition"])
    assert list(cond.columns) == ["product_id", "title", "label"]
    assert set(cond["label"]) == {0, 1}
    assert (cond["label"] == catalog["condition"].eq("used").astype(int)).all()
    ship = pd.read_parquet(paths["free_shipping"])
    assert (ship["label"] == catalog["free_shipping"].astype(int)).all()


# ---------------------------------------------------------------- files, CLI, external catalogs


def test_generate_writes_byte_identical_files_and_overwrites(tmp_path):
    spec = SynthSpec(n_clicks=30_000, n_products=1_000, seed=2, chunk_clicks=12_000)
    a, b = tmp_path / "a", tmp_path / "b"
    summary = generate(spec, a)
    generate(spec, b)
    assert summary["n_clicks"] == 30_000 and summary["n_products"] == 1_000
    assert summary["n_users"] == 750 and len(summary["files"]) == 3
    names = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert names == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    clicks = pq.read_table(a / "clicks")
    assert clicks.num_rows == 30_000 and clicks.schema.equals(CLICK_SCHEMA)
    products = pd.read_parquet(a / "products.parquet")
    assert len(products) == 1_000 and "condition" in products
    assert (a / "tasks" / "condition.parquet").exists()

    # rerun with a smaller spec replaces the clicks directory entirely, leaving no temp dirs behind
    generate(SynthSpec(n_clicks=5_000, n_products=300, seed=2, chunk_clicks=12_000), a)
    assert sorted(p.name for p in (a / "clicks").iterdir()) == ["part-00000.parquet"]
    assert pq.read_table(a / "clicks").num_rows == 5_000
    assert not [p for p in a.iterdir() if p.name.startswith(".")]


def test_cli_prints_one_line_or_the_summary_as_json(tmp_path, capsys):
    args = ["--out", str(tmp_path), "--clicks", "4000", "--products", "300", "--seed", "9"]
    assert main(args) == 0
    line = capsys.readouterr().out
    assert line.count("\n") == 1 and line.startswith("synth: 4,000 clicks of ") and str(tmp_path) in line
    assert main([*args, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n_clicks"] == 4000 and summary["seed"] == 9
    assert pq.read_table(tmp_path / "clicks").num_rows == 4000


def test_external_catalog_without_labels():
    catalog = pd.DataFrame(
        {
            "product_id": [f"X{i}" for i in range(40)],
            "title": [f"{'Silla' if i % 2 else 'Mesa'} Modelo {i}" for i in range(40)],
            "category": ["Muebles" if i < 30 else "Otros" for i in range(40)],
        }
    )
    t = _table(SynthSpec(n_clicks=3_000, seed=1), catalog)
    assert t.num_rows == 3_000
    assert set(t.column("product_id").to_pylist()) <= set(catalog["product_id"])
    assert set(t.column("category").to_pylist()) == {"Muebles", "Otros"}
