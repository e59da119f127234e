"""Similar products at catalog scale: an approximate nearest-neighbour index per model version.

Exact search (prodemb.similar.top_k) reads every vector for every query: right for 10^4 products, ~5
queries/s at 10^6 × 512 on 2 cores. Publishing builds one faiss HNSW index per kept model version over its
L2-normalized vectors (inner product = cosine), and jobs/similar.py searches it.

Why HNSW (``IndexHNSWFlat``) and not IVF-PQ: it needs no training pass, reaches recall@10 ≥ 0.95 with
one knob (``ef_search``), and keeps the exact vectors, so the scores it returns are exact cosines. Its
cost is memory: the float vectors plus ~2·M links each (2.2 GB for 10^6 × 512 at M = 32). IVF-PQ would
compress the vectors ~30×, but its recall@10 at that compression needs a re-ranking pass over the float
vectors anyway; it becomes the better choice when the flat vectors no longer fit in memory (~10^7 × 512).

Layout, beside the embeddings table (any filesystem of prodemb.fs):
    <embeddings>_ann/<model partition>/index-<build>.faiss   the serialized index
                                      /ids-<build>.parquet   product_id of every index row, in order
                                      /meta.json             written last: names the build's files,
                                                             parameters, rows, build seconds, recall@10
A reader goes through meta.json, so it sees one whole build or the previous one, never a mix.
"""

from __future__ import annotations

import io
import time
import uuid
from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from prodemb import fs


@dataclass(frozen=True)
class HnswParams:
    m: int = 32  # graph links per vector (2·M on the bottom layer)
    ef_construction: int = 80  # candidate list while inserting
    ef_search: int = 96  # candidate list while searching: the recall/speed knob
    recall_queries: int = 500  # products whose exact top-10 measures the built index's recall@10
    seed: int = 0


def normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (cosine = inner product), float32, contiguous (what faiss takes)."""
    v = np.ascontiguousarray(vectors, dtype=np.float32)
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def build_hnsw(vectors: np.ndarray, params: HnswParams = HnswParams()):
    """An HNSW index over L2-normalized ``vectors`` [n, d] (inner-product metric)."""
    import faiss

    index = faiss.IndexHNSWFlat(vectors.shape[1], params.m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = params.ef_construction
    index.hnsw.efSearch = params.ef_search
    index.add(vectors)
    return index


def search(index, queries: np.ndarray, k: int, ef_search: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(indices [q, k], cosines [q, k]) of the nearest index rows of each L2-normalized query. An index
    with fewer than k rows pads with -1."""
    import faiss

    params = faiss.SearchParametersHNSW(efSearch=ef_search) if ef_search else None
    scores, idx = index.search(np.ascontiguousarray(queries, dtype=np.float32), k, params=params)
    return idx, scores


def recall_at_k(found: np.ndarray, exact: np.ndarray) -> float:
    """Share of the exact top-k rows that the approximate search also returned (rows: queries)."""
    k = exact.shape[1]
    hits = sum(len(np.intersect1d(f[:k], e)) for f, e in zip(found, exact))
    return hits / max(exact.size, 1)


def measure_recall(
    index, vectors: np.ndarray, k: int = 10, n_queries: int = 500, seed: int = 0, ef_search: int | None = None
) -> float:
    """recall@k of ``index`` against the exact search (prodemb.similar.top_k) for a seeded sample of its
    own vectors as queries."""
    from prodemb.similar import top_k

    rng = np.random.default_rng(seed)
    pick = rng.choice(len(vectors), min(n_queries, len(vectors)), replace=False)
    k = min(k, len(vectors))
    exact, _ = top_k(vectors[pick], vectors, k)
    found, _ = search(index, vectors[pick], k, ef_search)
    return recall_at_k(found, exact)


# --- stored per model version ------------------------------------------------------------------


def ann_root(embeddings_path: str) -> str:
    return f"{embeddings_path.rstrip('/')}_ann"


def index_dir(embeddings_path: str, partition: str) -> str:
    return fs.join(ann_root(embeddings_path), partition)


def read_meta(folder: str) -> dict | None:
    path = fs.join(folder, "meta.json")
    return fs.read_json(path) if fs.exists(path) else None


def write_index(folder: str, index, product_ids: np.ndarray, meta: dict) -> dict:
    """Store a build (index, ids, then meta.json, which commits it) and drop earlier builds' files."""
    import faiss

    build = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
    files = {"index": f"index-{build}.faiss", "ids": f"ids-{build}.parquet"}
    fs.write_bytes(fs.join(folder, files["index"]), faiss.serialize_index(index).tobytes())
    buf = io.BytesIO()
    pq.write_table(pa.table({"product_id": pa.array(product_ids, pa.string())}), buf)
    fs.write_bytes(fs.join(folder, files["ids"]), buf.getvalue())
    meta = {**meta, "files": files, "build": build}
    fs.write_json(fs.join(folder, "meta.json"), meta)
    for name in fs.list_dir(folder):
        base = name.rstrip("/").rsplit("/", 1)[-1]
        if base.startswith(("index-", "ids-")) and base not in files.values():
            fs.remove(fs.join(folder, base))
    return meta


def load_index(folder: str):
    """(index, product ids, meta) of the build meta.json names."""
    import faiss

    meta = read_meta(folder)
    if meta is None:
        raise FileNotFoundError(f"no index at {folder} (publish builds it: jobs/publish.py)")
    raw = np.frombuffer(fs.read_bytes(fs.join(folder, meta["files"]["index"])), dtype=np.uint8)
    index = faiss.deserialize_index(raw.copy())
    ids = pq.read_table(io.BytesIO(fs.read_bytes(fs.join(folder, meta["files"]["ids"])))).column("product_id")
    index.hnsw.efSearch = meta["params"]["ef_search"]
    return index, ids.to_numpy(zero_copy_only=False).astype(str), meta


def _of_model(table, model_name: str, model_version: str):
    return pc.and_(
        pc.equal(table.column("model_name"), model_name), pc.equal(table.column("model_version"), model_version)
    )


def scoring_of(keys: pa.Table, model_name: str, model_version: str) -> dict:
    """What identifies one model's scoring in the table's key columns (model_name, model_version,
    event_timestamp): its row count and newest scoring time. An index built from the same is current."""
    mine = keys.filter(_of_model(keys, model_name, model_version))
    newest = pc.max(mine.column("event_timestamp")).as_py() if mine.num_rows else None
    return {"rows": int(mine.num_rows), "scored_at": "" if newest is None else str(newest)}


def model_vectors(
    dataset, model_name: str, model_version: str, batch_rows: int = 20_000
) -> tuple[np.ndarray, np.ndarray]:
    """(product ids, L2-normalized vectors) of one model's rows of an embeddings dataset, streamed batch by
    batch into one matrix."""
    from prodemb.tables import iter_batches

    ids, blocks = [], []
    for batch in iter_batches(dataset, ["product_id", "embedding", "model_name", "model_version"], batch_rows):
        rows = batch.filter(_of_model(batch, model_name, model_version))
        if not rows.num_rows:
            continue
        emb = rows.column("embedding")
        blocks.append(normalize(emb.flatten().to_numpy(zero_copy_only=False).reshape(rows.num_rows, -1)))
        ids.append(rows.column("product_id").to_numpy(zero_copy_only=False).astype(str))
    if not blocks:
        return np.array([], dtype=str), np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(ids), np.concatenate(blocks)


def build_for_model(
    dataset,
    embeddings_path: str,
    model_name: str,
    model_version: str,
    partition: str,
    params: HnswParams = HnswParams(),
    keys: pa.Table | None = None,
) -> dict:
    """The index of one model version, built unless the stored one covers the same scoring (same rows,
    same newest scoring time, same parameters): then no vector is read. ``keys``: the table's
    (model_name, model_version, event_timestamp) columns when the caller has them. Returns its meta
    (``reused`` says which)."""
    folder = index_dir(embeddings_path, partition)
    if keys is None:
        keys = dataset.to_table(columns=["model_name", "model_version", "event_timestamp"])
    same = {**scoring_of(keys, model_name, model_version), "params": asdict(params)}
    stored = read_meta(folder)
    if stored is not None and all(stored.get(k) == v for k, v in same.items()):
        return {**stored, "path": folder, "reused": True}
    ids, vectors = model_vectors(dataset, model_name, model_version)
    t0 = time.perf_counter()
    index = build_hnsw(vectors, params)
    seconds = time.perf_counter() - t0
    recall = measure_recall(index, vectors, 10, params.recall_queries, params.seed)
    meta = write_index(
        folder,
        index,
        ids,
        {
            **same,
            "model": f"{model_name}/{model_version}",
            "kind": "faiss.IndexHNSWFlat (inner product)",
            "dim": int(vectors.shape[1]),
            "build_seconds": round(seconds, 3),
            "recall_at_10": round(recall, 4),
            "recall_queries": min(params.recall_queries, len(ids)),
        },
    )
    return {**meta, "path": folder, "reused": False}


def retire(embeddings_path: str, keep_partitions: set[str]) -> list[str]:
    """Delete the indexes of model versions no longer kept; returns their partitions."""
    root = ann_root(embeddings_path)
    if not fs.exists(root):
        return []
    gone = []
    for name in fs.list_dir(root):
        part = name.rstrip("/").rsplit("/", 1)[-1]
        if part not in keep_partitions:
            for f in fs.list_files(fs.join(root, part)):
                fs.remove(f)
            if fs.is_local(root):
                import shutil

                shutil.rmtree(fs.join(fs.local_path(root), part), ignore_errors=True)
            gone.append(part)
    return sorted(gone)
