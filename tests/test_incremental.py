"""Interval runs: daily runs over a real log give exactly the sessions and pairs of one full run."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from prodemb.config import SessionsConfig
from prodemb.sessions import run_sessionize
from prodemb.tables import read_table
from tests.conftest import online_retail_days


def _sessions(spark, path):
    return sorted(
        (r.site, r.user_id, r.start_ts, tuple(r.products), r.n_events, r.session_id)
        for r in read_table(spark, path).collect()
    )


def _pairs(spark, path):
    return sorted((r.site, r.session_id, r.product_a, r.product_b) for r in read_table(spark, path).collect())


def test_daily_runs_equal_one_full_run_on_online_retail(spark, tmp_path):
    log, days = online_retail_days(tmp_path / "in", 8)
    cfg = SessionsConfig(gap_minutes=60)
    full = run_sessionize(spark, str(log), "online-retail", str(tmp_path / "full"), cfg)

    first = datetime.fromisoformat(days[0].stem).replace(tzinfo=timezone.utc)
    last = datetime.fromisoformat(days[-1].stem).replace(tzinfo=timezone.utc)
    daily = tmp_path / "daily"
    reports = []
    for i in range((last - first).days + 1):  # every calendar day, including the ones without files
        start = first + timedelta(days=i)
        reports.append(
            run_sessionize(
                spark, str(log), "online-retail", str(daily), cfg, start=start, end=start + timedelta(days=1)
            )
        )
    assert _sessions(spark, str(daily / "sessions")) == _sessions(spark, str(tmp_path / "full" / "sessions"))
    assert _pairs(spark, str(daily / "pairs")) == _pairs(spark, str(tmp_path / "full" / "pairs"))
    # Row accounting adds up per interval and over the whole range (rows with no usable timestamp
    # would count in every interval; this log has none).
    assert sum(r["rows_in"] for r in reports) == full["rows_in"]
    assert sum(r["rows_quarantined"] for r in reports) == full["rows_quarantined"]
    # Per-reason counts describe this interval's rows only, and add up to the full run's.
    assert all(sum(r["rows_filtered_by_reason"].values()) == r["rows_filtered"] for r in reports)
    assert (
        sum(r["rows_filtered_by_reason"].get("cancellation", 0) for r in reports)
        == full["rows_filtered_by_reason"]["cancellation"]
        > 0
    )


def test_sessions_crossing_the_boundary_and_rerun_idempotence(spark, tmp_path):
    """A session from 23:50 to 00:20 belongs to the first day only; rerunning a day replaces it."""
    log = tmp_path / "log.csv"
    log.write_text(
        "user_id,ts,product_id,title\n"
        "u1,2024-03-01T23:50:00Z,a,Camara Reflex\n"
        "u1,2024-03-02T00:10:00Z,b,Lente Zoom\n"
        "u1,2024-03-02T00:20:00Z,c,Tripode Aluminio\n"
        "u2,2024-03-02T09:00:00Z,d,Bicicleta Rodado\n"
        "u2,2024-03-02T09:05:00Z,a,Camara Reflex\n"
    )
    d1, d2 = datetime(2024, 3, 1, tzinfo=timezone.utc), datetime(2024, 3, 2, tzinfo=timezone.utc)
    out = tmp_path / "out"
    cfg = SessionsConfig()
    r1 = run_sessionize(spark, str(log), "clicks", str(out), cfg, start=d1, end=d2)
    r2 = run_sessionize(spark, str(log), "clicks", str(out), cfg, start=d2, end=d2 + timedelta(days=1))
    assert (r1["sessions"], r1["pairs"], r1["rows_in"]) == (1, 3, 1)
    assert (r2["sessions"], r2["pairs"], r2["rows_in"]) == (1, 1, 4)
    sessions = read_table(spark, str(out / "sessions"))
    day1 = sessions.where("interval = '20240301T000000'").first()
    assert list(day1.products) == ["a", "b", "c"] and day1.n_events == 3
    before = _pairs(spark, str(out / "pairs"))
    run_sessionize(spark, str(log), "clicks", str(out), cfg, start=d2, end=d2 + timedelta(days=1))
    assert _pairs(spark, str(out / "pairs")) == before  # rerun: replaced, not duplicated
    assert read_table(spark, str(out / "sessions")).count() == 2
    # An interval with no events at all still reports (zeros) and writes empty partitions.
    r0 = run_sessionize(
        spark, str(log), "clicks", str(out), cfg, start=d1 - timedelta(days=9), end=d1 - timedelta(days=8)
    )
    assert (r0["rows_in"], r0["sessions"], r0["pairs"]) == (0, 0, 0)
