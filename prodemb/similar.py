"""Nearest products by cosine over the current embeddings (exact, chunked matrix products).

Feast 0.67's SQLite vector search needs the sqlite-vec extension and stores vectors a second time;
an exact scan of L2-normalized float32 vectors is a single matrix product per chunk, with memory
bounded by the chunk (corpus) and query-block sizes.
"""

from __future__ import annotations

import numpy as np


def normalize_rows(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float32)
    return m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)


def top_k(
    queries: np.ndarray, corpus: np.ndarray, k: int, exclude: np.ndarray | None = None, chunk: int = 65_536
) -> tuple[np.ndarray, np.ndarray]:
    """Indices and cosine scores of the k nearest corpus rows for each query (both L2-normalized).

    ``exclude[i]`` is a corpus index never returned for query i (the query product itself).
    Memory stays O(queries × chunk) whatever the corpus size.
    """
    q = len(queries)
    k = min(k, len(corpus) - (exclude is not None))
    best_s = np.full((q, 0), -np.inf, dtype=np.float32)
    best_i = np.zeros((q, 0), dtype=np.int64)
    for start in range(0, len(corpus), chunk):
        scores = queries @ corpus[start : start + chunk].T  # [q, c]
        if exclude is not None:
            local = exclude - start
            inside = (local >= 0) & (local < scores.shape[1])
            scores[np.flatnonzero(inside), local[inside]] = -np.inf
        take = min(k, scores.shape[1])
        part = np.argpartition(-scores, take - 1, axis=1)[:, :take]
        cand_s = np.concatenate([best_s, np.take_along_axis(scores, part, 1)], axis=1)
        cand_i = np.concatenate([best_i, part + start], axis=1)
        order = np.argsort(-cand_s, axis=1, kind="stable")[:, :k]
        best_s, best_i = np.take_along_axis(cand_s, order, 1), np.take_along_axis(cand_i, order, 1)
    return best_i, best_s


def recall_at_k(
    vectors: np.ndarray,
    pair_a: np.ndarray,
    pair_b: np.ndarray,
    k: int = 10,
    max_pairs: int = 20_000,
    seed: int = 0,
    query_block: int = 1024,
) -> float:
    """Share of held-out session pairs (a, b) whose b is among a's k nearest products (both directions)."""
    rng = np.random.default_rng(seed)
    if len(pair_a) > max_pairs:
        pick = rng.choice(len(pair_a), max_pairs, replace=False)
        pair_a, pair_b = pair_a[pick], pair_b[pick]
    a = np.concatenate([pair_a, pair_b])
    b = np.concatenate([pair_b, pair_a])
    if not len(a):
        return float("nan")
    # Each distinct query product once, in blocks (a block's score matrix is block × catalog floats).
    queries, inverse = np.unique(a, return_inverse=True)
    idx = np.concatenate(
        [
            top_k(vectors[queries[i : i + query_block]], vectors, k, exclude=queries[i : i + query_block])[0]
            for i in range(0, len(queries), query_block)
        ]
    )
    return float((idx[inverse] == b[:, None]).any(axis=1).mean())


def current_vectors(embeddings):
    """embeddings DataFrame (several model versions) → (product ids, L2-normalized matrix,
    rows) of the newest scoring per product."""
    from prodemb.features import latest_rows

    rows = latest_rows(embeddings)
    return rows["product_id"].astype(str).to_numpy(), normalize_rows(np.stack(rows["embedding"].to_numpy())), rows
