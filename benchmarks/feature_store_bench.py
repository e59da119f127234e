"""Feature store: publish throughput vs `feast materialize`, and online lookup latency.

    python benchmarks/feature_store_bench.py [--rows 50000] [--dim 512] [--reps 300]

One synthetic embeddings table (N products × dim float32, Parquet) and a private copy of
feature_repo/ in a temp folder. In the same run:
  * publish: prodemb's bulk SQLite path (``publish_online``) vs Feast's own ``materialize`` (the
    peer), both writing the same table into the same SQLite online store; rows/s and the ratio;
  * lookups of 1, 10 and 100 keys, p50/p99 over ``--reps`` calls: the Feast SDK
    (``get_online_features``) and prodemb's ``SqliteVectorReader`` (same rows, checked equal).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from prodemb.features import FEATURE_VIEW, SqliteVectorReader, apply_repo, feature_store, latest_rows, publish_online  # noqa: E402


def make_table(path: Path, rows: int, dim: int, when: datetime) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(rows, dim)).astype(np.float32)
    ids = [f"P{i:09d}" for i in range(rows)]
    offsets = pa.array(np.arange(0, (rows + 1) * dim, dim, dtype=np.int32))
    table = pa.table(
        {
            "site": ["s"] * rows,
            "product_id": ids,
            "embedding": pa.ListArray.from_arrays(offsets, pa.array(vectors.reshape(-1))),
            "model_name": ["bench"] * rows,
            "model_version": ["1"] * rows,
            "event_timestamp": pa.array([when] * rows, pa.timestamp("us", tz="UTC")),
            "dim": [dim] * rows,
        }
    )
    path.mkdir(parents=True)
    pq.write_table(table, path / "part-0.parquet")
    return table.to_pandas()


def percentiles(fn, keys_list, reps: int) -> tuple[float, float]:
    times = []
    for i in range(reps):
        keys = keys_list[i % len(keys_list)]
        t0 = time.perf_counter()
        fn(keys)
        times.append((time.perf_counter() - t0) * 1000)
    return float(np.percentile(times, 50)), float(np.percentile(times, 99))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=50_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--reps", type=int, default=300)
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="prodemb-fsbench-"))
    try:
        when = datetime(2025, 1, 1, tzinfo=timezone.utc)
        frame = make_table(work / "embeddings", args.rows, args.dim, when)
        repo = work / "repo"
        shutil.copytree(REPO / "feature_repo", repo, ignore=shutil.ignore_patterns("data"))
        store = feature_store(repo)
        apply_repo(store, work / "embeddings", repo)
        print(f"table: {args.rows:,} products x {args.dim} float32")

        t0 = time.perf_counter()
        store.materialize(when - timedelta(days=1), when + timedelta(days=1), feature_views=[FEATURE_VIEW])
        feast_s = time.perf_counter() - t0
        feast_rate = args.rows / feast_s
        print(f"feast materialize : {feast_s:8.2f}s  {feast_rate:10,.0f} rows/s")

        rep = publish_online(store, latest_rows(frame), progress=False)
        ours_rate = rep["rows_per_second"]
        print(
            f"prodemb publish   : {rep['seconds']:8.2f}s  {ours_rate:10,.0f} rows/s  "
            f"({ours_rate / feast_rate:.1f}x feast materialize; target >= 30,000 rows/s: "
            f"{'met' if ours_rate >= 30_000 else 'NOT met'})"
        )

        rng = np.random.default_rng(1)
        ids = frame["product_id"].to_numpy()
        reader = SqliteVectorReader(store)
        check = list(rng.choice(ids, 5, replace=False))
        sdk = store.get_online_features(
            features=[f"{FEATURE_VIEW}:embedding"], entity_rows=[{"product_id": p} for p in check]
        ).to_dict()["embedding"]
        direct = reader.get(check)
        assert all(np.allclose(np.asarray(a, np.float32), direct[p]) for a, p in zip(sdk, check)), "readers disagree"
        print("lookup latency (ms)      p50      p99")
        for n in (1, 10, 100):
            keys_list = [list(rng.choice(ids, n, replace=False)) for _ in range(50)]
            sdk_fn = lambda keys: store.get_online_features(  # noqa: E731
                features=[f"{FEATURE_VIEW}:embedding"], entity_rows=[{"product_id": k} for k in keys]
            ).to_dict()
            for name, fn in (("feast sdk", sdk_fn), ("prodemb reader", reader.get)):
                fn(keys_list[0])  # warm-up
                p50, p99 = percentiles(fn, keys_list, args.reps)
                print(f"  {n:>3} keys {name:<15} {p50:7.3f}  {p99:7.3f}")
        reader.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
