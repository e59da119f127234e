"""Sessionization semantics on real Spark: boundaries, ties, dedupe, truncation, pairs, sites."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from prodemb.sessions import catalog_from_variants, explode_pairs, sessionize, title_variants

T0 = datetime(2024, 3, 1, 12, 0, 0)
SCHEMA = (
    "site string, user_id string, ts timestamp, product_id string, title string, title_norm string, category string"
)


def clicks(spark, rows):
    """rows: (site, user, seconds after T0, product[, category])"""
    data = [
        (s, u, T0 + timedelta(seconds=sec), p, f"title {p}", f"title {p}", (rest or [None])[0])
        for s, u, sec, p, *rest in rows
    ]
    return spark.createDataFrame(data, SCHEMA)


def products_by_session(sessions_df):
    rows = sessions_df.orderBy("site", "user_id", "start_ts").collect()
    return [(r.site, r.user_id, list(r.products)) for r in rows]


def test_gap_of_exactly_t_stays_and_t_plus_one_second_cuts(spark):
    df = clicks(
        spark,
        [
            ("s", "u", 0, "a"),
            ("s", "u", 1800, "b"),  # exactly 30 min: same session
            ("s", "u", 3601, "c"),
            ("s", "u", 3601 + 1800, "d"),
        ],
    )  # 30 min + 1 s: new session
    got = products_by_session(sessionize(df, gap_minutes=30))
    assert got == [("s", "u", ["a", "b"]), ("s", "u", ["c", "d"])]


def test_fractional_gap_minutes(spark):
    df = clicks(spark, [("s", "u", 0, "a"), ("s", "u", 90, "b"), ("s", "u", 181, "c")])
    assert products_by_session(sessionize(df, gap_minutes=1.5)) == [("s", "u", ["a", "b"]), ("s", "u", ["c"])]


def test_ties_are_ordered_by_product_id_and_input_order_does_not_matter(spark):
    rows = [("s", "u", 10, "z"), ("s", "u", 10, "m"), ("s", "u", 0, "q"), ("s", "u", 10, "a")]
    got = products_by_session(sessionize(clicks(spark, rows)))
    assert got == [("s", "u", ["q", "a", "m", "z"])]
    got_reversed = products_by_session(sessionize(clicks(spark, list(reversed(rows)))))
    assert got_reversed == got


def test_dedupe_keeps_first_seen_order_and_counts_all_events(spark):
    df = clicks(
        spark, [("s", "u", 0, "b"), ("s", "u", 5, "a"), ("s", "u", 9, "b"), ("s", "u", 12, "c"), ("s", "u", 20, "a")]
    )
    (row,) = sessionize(df).collect()
    assert list(row.products) == ["b", "a", "c"]
    assert row.n_events == 5
    assert row.start_ts == T0 and row.end_ts == T0 + timedelta(seconds=20)


def test_truncation_to_max_items_after_dedupe(spark):
    # 12 distinct products, each viewed twice in a row: dedupe first, then keep the first 10.
    rows = [("s", "u", 2 * i + k, f"p{i:02d}") for i in range(12) for k in (0, 1)]
    sessions = sessionize(clicks(spark, rows), max_items=10)
    (row,) = sessions.collect()
    assert list(row.products) == [f"p{i:02d}" for i in range(10)]
    assert row.n_events == 24
    assert explode_pairs(sessions).count() == 45
    (row3,) = sessionize(clicks(spark, rows), max_items=3).collect()
    assert list(row3.products) == ["p00", "p01", "p02"]


@pytest.mark.parametrize("n", [1, 2, 3, 7, 10])
def test_pairs_are_every_unordered_pair_once(spark, n):
    rows = [("s", "u", i, f"x{(7 * i) % 11}") for i in range(n)]  # scrambled ids, so order != sort order
    pairs = explode_pairs(sessionize(clicks(spark, rows))).collect()
    assert len(pairs) == n * (n - 1) // 2
    got = {(r.product_a, r.product_b) for r in pairs}
    assert len(got) == len(pairs)
    assert all(a < b for a, b in got)
    ids = sorted(f"x{(7 * i) % 11}" for i in range(n))
    assert got == {(a, b) for i, a in enumerate(ids) for b in ids[i + 1 :]}


def test_sessions_are_per_site_and_user(spark):
    df = clicks(
        spark, [("s1", "u", 0, "a"), ("s2", "u", 1, "b"), ("s1", "u", 2, "c"), ("s1", "v", 3, "d"), ("s2", "u", 4, "e")]
    )
    got = products_by_session(sessionize(df))
    assert got == [("s1", "u", ["a", "c"]), ("s1", "v", ["d"]), ("s2", "u", ["b", "e"])]
    pairs = explode_pairs(sessionize(df)).select("site", "product_a", "product_b").collect()
    assert sorted(map(tuple, pairs)) == [("s1", "a", "c"), ("s2", "b", "e")]


def test_session_ids_are_unique_and_stable(spark):
    rows = [("s", u, 4000 * k + i, f"p{i}") for u in ("u1", "u2") for k in range(3) for i in range(3)]
    a = sessionize(clicks(spark, rows))
    b = sessionize(clicks(spark, list(reversed(rows))).repartition(3))
    ids_a = {r.session_id for r in a.collect()}
    assert len(ids_a) == 6
    assert ids_a == {r.session_id for r in b.collect()}


def test_catalog_takes_latest_title_and_counts(spark):
    data = [
        ("s", "u", T0, "p", "Old Title", "old title", None),
        ("s", "v", T0 + timedelta(hours=2), "p", "New Title", "new title", "Cat"),
        ("s", "u", T0 + timedelta(hours=1), "q", "Other", "other", "C2"),
        ("t", "u", T0, "p", "Site T", "site t", None),
    ]
    cat = {
        (r.site, r.product_id): r
        for r in catalog_from_variants(
            title_variants(spark.createDataFrame(data, SCHEMA)).where("reason is null")
        ).collect()
    }
    assert len(cat) == 3
    p = cat[("s", "p")]
    assert (p.title, p.title_norm, p.category, p.n_events) == ("New Title", "new title", "Cat", 2)
    assert p.first_seen == T0 and p.last_seen == T0 + timedelta(hours=2)
    assert cat[("t", "p")].category is None


def test_matches_a_plain_python_reference_on_random_logs(spark):
    """Property check: Spark output equals a straightforward Python implementation of the rules."""
    import random

    rng = random.Random(3)
    rows = [
        ("s" + str(rng.randint(0, 1)), f"u{rng.randint(0, 9)}", rng.randint(0, 20000), f"p{rng.randint(0, 30)}")
        for _ in range(600)
    ]
    got = {(s, u, tuple(p)) for s, u, p in products_by_session(sessionize(clicks(spark, rows), 10, 4))}

    expected = set()
    by_user: dict = {}
    for s, u, sec, p in rows:
        by_user.setdefault((s, u), []).append((sec, p))
    for (s, u), evs in by_user.items():
        evs.sort()
        current, last = [], None
        for sec, p in evs:
            if last is not None and sec - last > 600:
                expected.add((s, u, tuple(dict.fromkeys(current))[:4]))
                current = []
            current.append(p)
            last = sec
        expected.add((s, u, tuple(dict.fromkeys(current))[:4]))
    assert got == expected


def test_sessions_spanning_arrow_batches_are_not_split(spark):
    """The vectorized cut carries an unfinished session from one Arrow batch to the next."""
    rows = [("s", f"u{u}", 60 * k + u, f"p{(k * 7 + u) % 13}") for u in range(5) for k in range(9)]
    rows += [("s", "u9", 4000 * k, f"q{k}") for k in range(7)]  # seven one-event sessions
    expected = products_by_session(sessionize(clicks(spark, rows)))
    old = spark.conf.get("spark.sql.execution.arrow.maxRecordsPerBatch")
    try:
        for batch in ("1", "2", "3", "7"):
            spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", batch)
            assert products_by_session(sessionize(clicks(spark, rows))) == expected
    finally:
        spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", old)
    assert len(expected) == 5 + 7


def test_cut_sessions_on_an_arrow_table():
    """The pure kernel: sorted events in, one row per session out."""
    import pyarrow as pa

    from prodemb.sessions import cut_sessions

    us = 1_000_000
    events = pa.table(
        {
            "site": ["s", "s", "s", "s", "s", "t"],
            "user_id": ["u", "u", "u", "u", "v", "v"],
            "ts": pa.array([0, 10 * us, 20 * us, 100 * us, 5 * us, 5 * us], pa.timestamp("us", tz="UTC")),
            "product_id": ["a", "b", "a", "c", "a", "a"],
        }
    )
    out = cut_sessions(events, gap_us=60 * us, max_items=10).to_pydict()
    assert out["products"] == [["a", "b"], ["c"], ["a"], ["a"]]
    assert out["n_events"] == [3, 1, 1, 1]
    assert out["user_id"] == ["u", "u", "v", "v"] and out["site"] == ["s", "s", "s", "t"]
    assert cut_sessions(events, gap_us=60 * us, max_items=1).to_pydict()["products"][0] == ["a"]
