"""The filesystem layer: one set of calls for local paths and file:// URIs (object stores: tests/e2e)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from prodemb import fs


def test_local_rule_and_paths(tmp_path):
    assert fs.is_local("data/demo") and fs.is_local("file:///tmp/x") and fs.is_local(tmp_path)
    assert not fs.is_local("s3a://lake/t") and not fs.is_local("hdfs://nn:8020/t")
    assert fs.local_path("file:///tmp/x/y") == "/tmp/x/y" and fs.local_path("rel/x") == "rel/x"
    assert fs.local_path("file:/tmp/a%20b") == "/tmp/a b"  # Hadoop's form, as Spark lists files
    assert fs.absolute("rel/x") == os.path.abspath("rel/x")
    assert fs.absolute("s3a://lake/t") == "s3a://lake/t"
    assert fs.join("s3a://lake/", "tables", "/catalog/") == "s3a://lake/tables/catalog"
    with pytest.raises(ValueError, match="not a local path"):
        fs.local_path("s3a://lake/t")


def test_require_local_names_the_remedy():
    assert fs.require_local("file:///tmp/t", "x") == "/tmp/t"
    with pytest.raises(ValueError, match="use Delta"):
        fs.require_local("gs://bucket/t", "an atomic Parquet table replace")


def test_unknown_scheme_is_a_clear_error():
    with pytest.raises(ValueError, match="unsupported filesystem scheme 'ftp'"):
        fs.exists("ftp://host/x")


@pytest.mark.parametrize("as_uri", [False, True])
def test_read_write_list_exists(tmp_path, as_uri):
    base = tmp_path.as_uri() if as_uri else str(tmp_path)
    fs.write_json(fs.join(base, "a", "r.json"), {"a": 1})
    fs.write_text(fs.join(base, "a", "b", "x.csv"), "h\n1\n")
    fs.write_text(fs.join(base, "a", "_SUCCESS"), "")
    fs.write_text(fs.join(base, "a", "_delta_log", "0.json"), "{}")
    fs.write_text(fs.join(base, "a", ".hidden"), "")
    assert fs.read_json(fs.join(base, "a", "r.json")) == {"a": 1}
    assert fs.exists(fs.join(base, "a")) and fs.is_dir(fs.join(base, "a"))
    assert not fs.is_dir(fs.join(base, "a", "r.json")) and not fs.exists(fs.join(base, "nope"))
    # Spark's markers, Delta logs and hidden files are not data files.
    assert fs.list_files(fs.join(base, "a")) == [fs.join(base, "a", "b", "x.csv"), fs.join(base, "a", "r.json")]
    assert fs.list_dir(fs.join(base, "a")) == [".hidden", "_SUCCESS", "_delta_log", "b", "r.json"]
    assert fs.list_dir(fs.join(base, "missing")) == []


def test_files_follow_symlinks(tmp_path):
    (tmp_path / "real.csv").write_text("h\n")
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "link.csv").symlink_to(tmp_path / "real.csv")
    assert fs.list_files(tmp_path / "dir") == [f"{tmp_path}/dir/link.csv"]


def test_atomic_write_replaces_and_leaves_no_temp_files(tmp_path):
    fs.write_json(tmp_path / "r.json", {"a": 1})
    fs.write_json(tmp_path / "r.json", {"a": 2})
    assert fs.read_json(tmp_path / "r.json") == {"a": 2}
    with pytest.raises(RuntimeError), fs.atomic_local_file(tmp_path / "r.json") as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert fs.read_json(tmp_path / "r.json") == {"a": 2}  # the failed write changed nothing
    assert os.listdir(tmp_path) == ["r.json"]


def test_swap_link_and_prune_versions(tmp_path):
    link, versions = tmp_path / "t", tmp_path / "_versions" / "t"
    link.mkdir()
    (link / "old.txt").write_text("manual")  # a real folder in the way
    made = []
    for i in range(4):
        v = fs.new_version_dir(versions)
        v.mkdir()
        (v / "_SUCCESS").touch()
        made.append(v)
        fs.swap_link(link, v, aside=versions)
        fs.prune_versions(versions, keep=2, current=v, done_marker="_SUCCESS")
    killed = fs.new_version_dir(versions)
    killed.mkdir()  # a write killed before its swap
    fs.prune_versions(versions, keep=2, current=made[-1], done_marker="_SUCCESS")
    assert Path(os.path.realpath(link)) == made[-1]
    left = sorted(p.name for p in versions.iterdir())
    assert [n for n in left if not n.startswith("legacy-")] == [made[-2].name, made[-1].name]
    legacy = [versions / n for n in left if n.startswith("legacy-")]
    assert len(legacy) == 1 and (legacy[0] / "old.txt").read_text() == "manual"


def test_folders_are_replaced_without_a_moment_where_none_is_there(tmp_path):
    """A reader polling the folder while it is replaced 300 times, from a folder, a symlink or nothing, never
    finds it missing (the old one is exchanged with the new one in one step)."""
    import threading

    final, aside = tmp_path / "clicks", tmp_path / "aside"
    seen_missing, done = [], threading.Event()

    def reader():
        while not done.is_set():
            if not (final / "part-0").exists():
                seen_missing.append(1)

    def folder(i):
        new = tmp_path / f".new-{i}"
        new.mkdir()
        (new / "part-0").write_text(str(i))
        return new

    fs.replace_dir(folder(-1), final)
    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(300):
            if i % 3 == 2:  # a symlink in the way, as Parquet tables have
                fs.swap_link(final, folder(i), aside=aside)
            else:
                fs.replace_dir(folder(i), final)
    finally:
        done.set()
        thread.join()
    assert (final / "part-0").read_text() == "299" and not seen_missing
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".new-") and not p.is_dir()]
    assert fs.exchange(tmp_path / "aside", final) and (tmp_path / "aside" / "part-0").read_text() == "299"


def test_atomic_dir_publishes_complete_folders_and_keeps_the_previous_one_on_failure(tmp_path):
    target = tmp_path / "eval" / "20240102T000000"
    with fs.atomic_dir(target) as out:
        (out / "results.csv").write_text("v1")
    assert (target / "results.csv").read_text() == "v1" and target.is_symlink()
    with pytest.raises(RuntimeError), fs.atomic_dir(target) as out:
        (out / "results.csv").write_text("half")
        raise RuntimeError("the job failed halfway")
    assert (target / "results.csv").read_text() == "v1"  # the failed run left the good output
    killed = fs.new_version_dir(tmp_path / "eval" / "_versions" / target.name)
    killed.mkdir()  # a run SIGKILLed mid-write
    for text in ("v2", "v3"):
        with fs.atomic_dir(target) as out:
            (out / "results.csv").write_text(text)
    assert (target / "results.csv").read_text() == "v3"
    kept = sorted(p.name for p in (tmp_path / "eval" / "_versions" / target.name).iterdir())
    assert len(kept) == 2 and os.path.basename(os.readlink(target)) == kept[-1]  # newest two, no leftovers
    with pytest.raises(ValueError, match="local"):
        with fs.atomic_dir("s3a://lake/eval/x"):
            pass


def test_delta_rs_gets_the_table_uri_and_the_s3_endpoint_of_the_standard_variables(monkeypatch, tmp_path):
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")
    assert fs.delta_location(tmp_path.as_uri() + "/t") == (str(tmp_path / "t"), {})
    assert fs.delta_location("s3a://lake/tables/catalog") == (
        "s3://lake/tables/catalog",
        {"AWS_ENDPOINT_URL": "http://127.0.0.1:9000", "AWS_ALLOW_HTTP": "true"},
    )
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "https://s3.example.com")
    assert fs.delta_location("s3://lake/t")[1] == {"AWS_ENDPOINT_URL": "https://s3.example.com"}
    assert fs.delta_location("gs://bucket/t") == ("gs://bucket/t", {})
