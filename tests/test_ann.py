"""The similar-products index (prodemb.ann): faiss HNSW against the exact search, stored per model version."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from prodemb import ann
from prodemb.similar import top_k


def clustered(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """Unit vectors around 40 centres, the structure product embeddings have."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((40, dim))
    return ann.normalize(centres[rng.integers(0, 40, n)] + 0.4 * rng.standard_normal((n, dim)))


def test_hnsw_finds_the_exact_neighbours_with_their_exact_cosines():
    vectors = clustered(3000, 32)
    index = ann.build_hnsw(vectors, ann.HnswParams(m=16, ef_construction=64, ef_search=64))
    queries = vectors[:200]
    exact, exact_scores = top_k(queries, vectors, 10)
    found, scores = ann.search(index, queries, 10)
    assert ann.recall_at_k(found, exact) >= 0.95
    # The scores are exact inner products of the stored (normalized) vectors, not approximations.
    np.testing.assert_allclose(scores, np.einsum("qd,qkd->qk", queries, vectors[found]), rtol=1e-5, atol=1e-5)
    assert ann.measure_recall(index, vectors, 10, n_queries=200) >= 0.95
    # A tiny ef_search costs recall: the knob is the one searched with.
    low = ann.recall_at_k(ann.search(index, queries, 10, ef_search=10)[0], exact)
    assert low < ann.recall_at_k(found, exact)


def test_recall_at_k_counts_shared_rows():
    exact = np.array([[1, 2, 3], [4, 5, 6]])
    assert ann.recall_at_k(np.array([[3, 2, 1], [4, 9, 8]]), exact) == pytest.approx(4 / 6)


def embeddings_table(folder, models: dict[tuple[str, str], np.ndarray], when: datetime):
    """An embeddings table (the columns of jobs/score.py) holding each model's vectors for products p0..pn."""
    tables = []
    for (name, version), vectors in models.items():
        n = len(vectors)
        tables.append(
            pa.table(
                {
                    "site": ["default"] * n,
                    "product_id": [f"p{i}" for i in range(n)],
                    "embedding": pa.array(list(vectors), pa.list_(pa.float32())),
                    "model_name": [name] * n,
                    "model_version": [version] * n,
                    "event_timestamp": pa.array([when] * n, pa.timestamp("us", tz="UTC")),
                    "dim": [vectors.shape[1]] * n,
                }
            )
        )
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.concat_tables(tables), folder / "part-0.parquet")
    return ds.dataset(str(folder), format="parquet")


def test_an_index_per_model_version_is_stored_reused_and_retired(tmp_path):
    v1, v2 = clustered(800, 16, seed=1), clustered(800, 16, seed=2)
    emb = tmp_path / "embeddings"
    t = datetime(2025, 1, 1, tzinfo=timezone.utc)
    dataset = embeddings_table(emb, {("enc", "1"): v1, ("enc", "2"): v2}, t)
    params = ann.HnswParams(m=16, ef_construction=40, ef_search=40, recall_queries=100)

    built = ann.build_for_model(dataset, str(emb), "enc", "1", "enc-v1", params)
    assert not built["reused"] and built["rows"] == 800 and built["model"] == "enc/1"
    assert built["recall_at_10"] >= 0.9 and built["build_seconds"] >= 0 and built["params"]["m"] == 16
    index, ids, meta = ann.load_index(built["path"])
    assert index.ntotal == 800 and list(ids[:3]) == ["p0", "p1", "p2"] and meta["build"] == built["build"]
    # The index holds this model's vectors (not the other version's), normalized.
    np.testing.assert_allclose(index.reconstruct(5), ann.normalize(v1[[5]])[0], rtol=1e-6)

    # The same scoring again: the stored build is reused; other parameters rebuild it, and the old files go.
    assert ann.build_for_model(dataset, str(emb), "enc", "1", "enc-v1", params)["reused"]
    again = ann.build_for_model(dataset, str(emb), "enc", "1", "enc-v1", ann.HnswParams(m=8, recall_queries=100))
    assert not again["reused"] and again["build"] != built["build"]
    files = sorted(p.name for p in (tmp_path / "embeddings_ann" / "enc-v1").iterdir())
    assert files == sorted(["meta.json", again["files"]["index"], again["files"]["ids"]])

    ann.build_for_model(dataset, str(emb), "enc", "2", "enc-v2", params)
    assert ann.retire(str(emb), {"enc-v2"}) == ["enc-v1"]
    assert sorted(p.name for p in (tmp_path / "embeddings_ann").iterdir()) == ["enc-v2"]
    with pytest.raises(FileNotFoundError, match="publish builds it"):
        ann.load_index(str(tmp_path / "embeddings_ann" / "enc-v1"))
