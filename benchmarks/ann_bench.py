"""Similar products at catalog scale: the HNSW index of prodemb.ann against the exact chunked search.

    python benchmarks/ann_bench.py [--n 1000000] [--dims 128 512] [--queries 1000]

For each dimension, in the same run: n generated vectors with cluster structure (see ``clustered``),
then
  * exact: prodemb.similar.top_k (chunked matrix products), single-query QPS and batched QPS;
  * HNSW (prodemb.ann.build_hnsw, the parameters publishing uses): build seconds, index bytes, process
    RSS growth, recall@10 against exact, single-query and batched QPS, at several ef_search;
and the ratio of HNSW's single-query QPS to exact's. Target (issue): recall@10 ≥ 0.95 at ≥ 50× exact.
Queries are vectors of the collection (a product's neighbours), a seeded sample.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prodemb.ann import HnswParams, build_hnsw, normalize, recall_at_k, search  # noqa: E402
from prodemb.similar import top_k  # noqa: E402


def clustered(
    n: int, dim: int, clusters: int = 2000, intrinsic: int = 16, noise: float = 0.05, seed: int = 0
) -> np.ndarray:
    """Unit vectors shaped like product embeddings: ``clusters`` categories (random centres), each spread
    along its own ``intrinsic``-dimensional subspace, plus a little isotropic noise. (Uniform random
    vectors in 512 dimensions have no neighbours worth finding: every pair is nearly orthogonal.)"""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    label = rng.integers(0, clusters, n)
    out = np.empty((n, dim), dtype=np.float32)
    block = 100_000
    bases = rng.standard_normal((clusters, intrinsic, dim), dtype=np.float32) / np.sqrt(dim)
    for s in range(0, n, block):
        lab = label[s : s + block]
        z = rng.standard_normal((len(lab), 1, intrinsic), dtype=np.float32) * 0.6
        spread = np.matmul(z, bases[lab])[:, 0, :]  # [b, dim]
        out[s : s + block] = centres[lab] + spread + noise * rng.standard_normal((len(lab), dim), dtype=np.float32)
    return normalize(out)


def rss_mib() -> float:
    """The process's resident memory now (not the peak: generating the vectors had its own)."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


def qps(fn, queries: np.ndarray, batch: int, max_seconds: float = 20.0) -> float:
    """Queries answered per second, ``batch`` at a time, for at most ``max_seconds``."""
    done, t0 = 0, time.perf_counter()
    for s in range(0, len(queries), batch):
        fn(queries[s : s + batch])
        done += len(queries[s : s + batch])
        if time.perf_counter() - t0 > max_seconds:
            break
    return done / (time.perf_counter() - t0)


def run(n: int, dim: int, n_queries: int, efs: list[int], params: HnswParams) -> dict:
    t0 = time.perf_counter()
    vectors = clustered(n, dim)
    print(f"\n== {n:,} × {dim} (generated in {time.perf_counter() - t0:.1f} s)")
    rng = np.random.default_rng(1)
    queries = vectors[rng.choice(n, n_queries, replace=False)]

    exact_single = qps(lambda q: top_k(q, vectors, 10), queries[:50], 1)
    exact_batch = qps(lambda q: top_k(q, vectors, 10), queries, 256)
    truth, _ = top_k(queries, vectors, 10)
    print(f"exact (chunked matmul): {exact_single:,.1f} q/s single, {exact_batch:,.1f} q/s batched (256)")

    before = rss_mib()
    t0 = time.perf_counter()
    index = build_hnsw(vectors, params)
    build_s = time.perf_counter() - t0
    import faiss

    index_mib = faiss.serialize_index(index).nbytes / 2**20
    print(
        f"HNSW M={params.m} efConstruction={params.ef_construction}: build {build_s:.1f} s, "
        f"index {index_mib:,.0f} MiB (vectors {vectors.nbytes / 2**20:,.0f} MiB), "
        f"RSS +{rss_mib() - before:,.0f} MiB"
    )
    rows = []
    for ef in efs:
        found, _ = search(index, queries, 10, ef)
        recall = recall_at_k(found, truth)
        single = qps(lambda q: search(index, q, 10, ef), queries, 1)
        batched = qps(lambda q: search(index, q, 10, ef), queries, 256)
        rows.append(
            {
                "ef_search": ef,
                "recall_at_10": recall,
                "qps_single": single,
                "qps_batched": batched,
                "speedup_single": single / exact_single,
            }
        )
        mark = "  ← publishing's default" if ef == params.ef_search else ""
        print(
            f"  ef_search={ef:4d}: recall@10 {recall:.3f}  {single:8,.0f} q/s single "
            f"({single / exact_single:6.0f}× exact)  {batched:8,.0f} q/s batched{mark}"
        )
    return {
        "n": n,
        "dim": dim,
        "build_seconds": build_s,
        "index_mib": index_mib,
        "exact_qps_single": exact_single,
        "exact_qps_batched": exact_batch,
        "hnsw": rows,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dims", type=int, nargs="+", default=[128, 512])
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--ef", type=int, nargs="+", default=[32, 64, 96, 128])
    args = ap.parse_args()
    params = HnswParams()
    import faiss

    print(
        f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads; "
        f"target: recall@10 ≥ 0.95 at ≥ 50× exact single-query QPS"
    )
    results = [run(args.n, d, args.queries, sorted(set(args.ef + [params.ef_search])), params) for d in args.dims]
    print("\nsummary (publishing's ef_search):")
    for r in results:
        row = next(h for h in r["hnsw"] if h["ef_search"] == params.ef_search)
        ok = row["recall_at_10"] >= 0.95 and row["speedup_single"] >= 50
        print(
            f"  {r['n']:,} × {r['dim']}: recall@10 {row['recall_at_10']:.3f}, {row['speedup_single']:.0f}× exact "
            f"single-query QPS, build {r['build_seconds']:.0f} s → {'meets' if ok else 'misses'} the target"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
