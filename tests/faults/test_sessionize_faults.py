"""sessionize (full and interval runs) and consolidate killed between their table writes, and a second run
on an output that another run is writing."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from prodemb import fs
from prodemb.config import BUSY_EXIT, SessionsConfig
from prodemb.sessions import run_consolidate, run_sessionize
from prodemb.tables import read_table
from tests.faults.conftest import QUICK_JVM, assert_killed, assert_one_line_error, rows, run_job, unfinished_versions

TABLES = ("quarantine", "catalog", "sessions", "pairs")
DAY = [datetime(2024, 1, d, tzinfo=timezone.utc) for d in (1, 2, 3)]


def snapshot(spark, out) -> dict:
    return {t: rows(spark, f"{out}/{t}") for t in TABLES}


def test_a_killed_full_run_leaves_the_previous_tables_and_a_rerun_converges(spark, world, tmp_path):
    out = tmp_path / "out"
    previous = run_sessionize(spark, world["clicks"], "clicks", str(out), SessionsConfig(max_items=4))
    before = snapshot(spark, out)
    # Killed once the second table (catalog) is written but before its swap; quarantine was swapped.
    assert_killed(
        run_job(
            "sessionize",
            "--input",
            world["clicks"],
            "--input-format",
            "clicks",
            "--output",
            str(out),
            *QUICK_JVM,
            faults="tables.parquet_written@2",
        )
    )
    after = snapshot(spark, out)
    assert {t: after[t] == before[t] for t in TABLES[1:]} == {t: True for t in TABLES[1:]}
    assert fs.read_json(out / "_run.json")["seconds"] == previous["seconds"]  # the previous run's report
    assert unfinished_versions(out)  # the killed write's folder
    report = run_sessionize(spark, world["clicks"], "clicks", str(out), SessionsConfig())
    assert snapshot(spark, out) == snapshot(spark, world["data"])  # as an undisturbed run, row for row
    assert report["rows_in"] == report["rows_valid"] + report["rows_filtered"] + report["rows_quarantined"]
    assert unfinished_versions(out) == []  # pruned by the rerun


def test_a_killed_interval_run_leaves_its_previous_partition_and_the_other_intervals(spark, world, tmp_path):
    out = tmp_path / "intervals"
    for d in range(2):  # two undisturbed interval runs
        run_sessionize(spark, world["clicks"], "clicks", str(out), SessionsConfig(), start=DAY[d], end=DAY[d + 1])
    before = snapshot(spark, out)
    # The rerun of day 1 killed after its third partition (sessions) is written, before that swap.
    assert_killed(
        run_job(
            "sessionize",
            "--input",
            world["clicks"],
            "--input-format",
            "clicks",
            "--output",
            str(out),
            "--start",
            DAY[0].isoformat(),
            "--end",
            DAY[1].isoformat(),
            *QUICK_JVM,
            faults="tables.parquet_written@3",
        )
    )
    assert snapshot(spark, out) == before  # every partition readable, none lost or doubled
    assert unfinished_versions(out)
    run_sessionize(spark, world["clicks"], "clicks", str(out), SessionsConfig(), start=DAY[0], end=DAY[1])
    assert snapshot(spark, out) == before and unfinished_versions(out) == []


def test_a_killed_consolidate_leaves_a_catalog_that_covers_the_pairs_and_a_rerun_converges(spark, world, tmp_path):
    intervals, out = tmp_path / "intervals", tmp_path / "data"
    run_sessionize(spark, world["clicks"], "clicks", str(intervals), SessionsConfig(), start=DAY[0], end=DAY[1])
    run_consolidate(spark, str(intervals), str(out))  # day 1 consolidated
    previous = {t: rows(spark, out / t) for t in ("catalog", "pairs", "sessions")}
    run_sessionize(spark, world["clicks"], "clicks", str(intervals), SessionsConfig(), start=DAY[1], end=DAY[2])
    # Killed after the catalog's swap, with the pairs written but not swapped (catalog first, by design).
    assert_killed(
        run_job(
            "consolidate",
            "--intervals",
            str(intervals),
            "--output",
            str(out),
            *QUICK_JVM,
            faults="tables.parquet_written@2",
        )
    )
    assert rows(spark, out / "pairs") == previous["pairs"] and rows(spark, out / "sessions") == previous["sessions"]
    assert len(rows(spark, out / "catalog")) > len(previous["catalog"])  # the catalog went first
    catalog = {(r.site, r.product_id) for r in read_table(spark, str(out / "catalog")).collect()}
    pairs = read_table(spark, str(out / "pairs")).collect()
    assert all((p.site, p.product_a) in catalog and (p.site, p.product_b) in catalog for p in pairs)  # covers them
    run_consolidate(spark, str(intervals), str(out))
    for t in ("catalog", "pairs", "sessions"):  # as one full run, row for row
        assert rows(spark, out / t) == rows(spark, world["data"] / t), t


def test_a_second_run_on_an_output_being_written_fails_clearly_and_touches_nothing(world, tmp_path):
    """Every stage takes its output's lock the same way (prodemb.fs.output_lock); the tokenizer's is the
    quickest to start. The first run is this test holding the lock."""
    import hashlib

    from prodemb.tokenizer import train_from_catalog

    out = tmp_path / "tok.model"
    train_from_catalog(str(world["data"]), out, world["cfg"].tokenizer)
    before = hashlib.sha256(out.read_bytes()).hexdigest()
    with fs.output_lock(out, "train_tokenizer (the first run)"):
        proc = run_job("train_tokenizer", "--data", str(world["data"]), "--output", str(out), "--vocab-size", "300")
    assert proc.returncode == BUSY_EXIT
    assert_one_line_error(proc, "train_tokenizer", "another run is writing", "train_tokenizer (the first run)")
    assert hashlib.sha256(out.read_bytes()).hexdigest() == before


def test_prune_leaves_alone_a_version_another_run_is_still_writing(tmp_path):
    versions = tmp_path / "_versions" / "t"
    with fs.staging(versions) as writing:  # a concurrent run, mid-write (no _SUCCESS yet)
        writing.mkdir()
        (writing / "part-0.parquet").write_text("half")
        done = fs.new_version_dir(versions)
        done.mkdir()
        (done / "_SUCCESS").touch()
        fs.prune_versions(versions, keep=1, current=done, done_marker="_SUCCESS")
        assert writing.exists()
    fs.prune_versions(versions, keep=1, current=done, done_marker="_SUCCESS")  # its writer is gone now
    assert not writing.exists() and done.exists()


@pytest.fixture(scope="module")
def previous_output(spark, world, tmp_path_factory):
    """A previous, different sessionize output (max_items=4) and its rows, copied by the tests that need one."""
    out = tmp_path_factory.mktemp("previous") / "out"
    run_sessionize(spark, world["clicks"], "clicks", str(out), SessionsConfig(max_items=4))
    return out, snapshot(spark, out)


@pytest.mark.parametrize("nth", [1, 2, 3, 4])
def test_a_failure_at_any_of_the_four_table_writes_leaves_every_table_readable(
    spark, world, previous_output, tmp_path, monkeypatch, nth
):
    """The write failing at each table in turn (in process, cheaper than a kill, and the same for readers: the
    failed table's new version is written but never published). Tables before it are the new ones, the
    rest the previous ones, all readable; a rerun converges."""
    import shutil

    from prodemb import faults

    out = tmp_path / "out"
    shutil.copytree(previous_output[0], out, symlinks=True)
    before = previous_output[1]
    monkeypatch.setenv(faults.ENV, f"tables.parquet_written:error@{nth}")
    monkeypatch.setattr(faults, "_hits", {})
    with pytest.raises(OSError, match="tables.parquet_written"):
        run_sessionize(spark, world["clicks"], "clicks", str(out), SessionsConfig())
    monkeypatch.delenv(faults.ENV)
    after, undisturbed = snapshot(spark, out), snapshot(spark, world["data"])
    expected = {t: (undisturbed if i < nth - 1 else before)[t] for i, t in enumerate(TABLES)}
    assert {t: after[t] for t in TABLES} == expected
    run_sessionize(spark, world["clicks"], "clicks", str(out), SessionsConfig())
    assert snapshot(spark, out) == undisturbed
