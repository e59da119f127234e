"""Nearest-neighbour search: exact against brute force, chunking invariant, recall@k."""

from __future__ import annotations

import numpy as np

from prodemb.similar import normalize_rows, recall_at_k, top_k


def test_top_k_matches_brute_force_for_any_chunk_size():
    rng = np.random.default_rng(0)
    corpus = normalize_rows(rng.normal(size=(500, 16)))
    queries = corpus[[3, 10, 499]]
    brute = np.argsort(-(queries @ corpus.T), axis=1)[:, :7]
    for chunk in (1, 7, 64, 10_000):
        idx, scores = top_k(queries, corpus, 7, chunk=chunk)
        np.testing.assert_array_equal(idx, brute)
        assert np.all(np.diff(scores, axis=1) <= 1e-7)
    for chunk in (1, 7, 64, 10_000):  # the excluded row falls at chunk starts, ends and middles
        idx, _ = top_k(queries, corpus, 5, exclude=np.array([3, 10, 499]), chunk=chunk)
        assert 3 not in idx[0] and 10 not in idx[1] and 499 not in idx[2]
        np.testing.assert_array_equal(idx, brute[:, 1:6])


def test_recall_at_k_counts_pairs_found_in_both_directions():
    # Two tight clusters: pairs inside a cluster are found, pairs across are not.
    rng = np.random.default_rng(1)
    a = normalize_rows(np.r_[rng.normal(size=(5, 8)) * 0.01 + 1, rng.normal(size=(5, 8)) * 0.01 - 1])
    within = recall_at_k(a, np.array([0, 5]), np.array([1, 6]), k=4)
    across = recall_at_k(a, np.array([0, 1]), np.array([5, 6]), k=4)
    assert within == 1.0 and across == 0.0


def test_recall_at_k_is_the_same_for_any_query_block_and_repeated_queries():
    rng = np.random.default_rng(2)
    vectors = normalize_rows(rng.normal(size=(300, 8)))
    pa, pb = rng.integers(0, 40, 500), rng.integers(0, 300, 500)  # products repeat as queries
    hits = [(np.argsort(-(vectors[x] @ vectors.T))[1:11] == y).any() for x, y in zip(np.r_[pa, pb], np.r_[pb, pa])]
    expected = float(np.mean(hits))
    assert 0 < expected < 1
    for block in (1, 7, 1024):
        assert recall_at_k(vectors, pa, pb, k=10, query_block=block) == expected
