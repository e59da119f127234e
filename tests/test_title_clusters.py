"""Title clusters: categories for data that has none (prodemb/title_clusters.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prodemb.title_clusters import piece_counts, title_clusters


def two_families(n_each=40, seed=0) -> torch.Tensor:
    """[2·n_each + 1, 6] ids: titles drawn from pieces 2..11, then from pieces 12..21, then one empty row."""
    rng = np.random.default_rng(seed)
    rows = [rng.choice(np.arange(2, 12), size=4, replace=False) for _ in range(n_each)]
    rows += [rng.choice(np.arange(12, 22), size=4, replace=False) for _ in range(n_each)]
    tokens = np.zeros((2 * n_each + 1, 6), dtype=np.int64)
    for i, r in enumerate(rows):
        tokens[i, : len(r)] = r
    return torch.from_numpy(tokens)


def test_piece_counts_count_each_id_and_skip_padding():
    counts = piece_counts(torch.tensor([[3, 3, 5, 0], [0, 0, 0, 0]]), vocab_size=8).toarray()
    assert counts.shape == (2, 8)
    assert counts[0].tolist() == [0, 0, 0, 2, 0, 1, 0, 0] and counts[1].sum() == 0


def test_titles_sharing_pieces_fall_in_one_cluster_and_empty_titles_are_unknown():
    tokens = two_families()
    codes = title_clusters(tokens, vocab_size=30, k=2, seed=0).numpy()
    assert codes.shape == (81,) and codes.dtype == np.int64
    assert codes[-1] == -1  # the empty title: unknown, ignored by the category loss
    first, second = codes[:40], codes[40:80]
    assert len(set(first)) == 1 and len(set(second)) == 1 and first[0] != second[0]


def test_the_same_seed_gives_the_same_clusters():
    tokens = two_families(seed=3)
    a = title_clusters(tokens, vocab_size=30, k=5, seed=7)
    assert torch.equal(a, title_clusters(tokens, vocab_size=30, k=5, seed=7))
    assert set(a[:-1].tolist()) <= set(range(5))


def test_too_few_titles_or_clusters_are_refused():
    with pytest.raises(ValueError, match="k >= 2"):
        title_clusters(two_families(), vocab_size=30, k=1, seed=0)
    with pytest.raises(ValueError, match="cannot make"):
        title_clusters(two_families(n_each=2), vocab_size=30, k=10, seed=0)
