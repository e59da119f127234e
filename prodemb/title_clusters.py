"""Categories for data that has none: k-means clusters of the titles' tokenizer pieces.

Eq. 4's category term is what constrains the latent space; on data without categories (Online Retail)
α is 1 and that term is gone. Clusters of the titles stand in for the category: y_i is asked to predict the
title cluster of the other product of its pair, which α < 1 weighs against the BYOL term as usual.

    tokens [n, L] ──piece counts──▶ [n, V] sparse ──tf-idf, L2──▶ ──SVD──▶ [n, d] ──L2──▶ ──k-means──▶ [n]

Rows with no piece at all (empty titles) get −1: unknown, which the category loss ignores.
"""

from __future__ import annotations

import numpy as np
import torch

from prodemb.tokenizer import PAD_ID

SVD_DIM = 64  # latent size for k-means: a dense, cheap space where cosine ≈ euclidean after L2


def piece_counts(tokens: torch.Tensor, vocab_size: int):
    """[n, L] int ids (0 = padding) → scipy CSR [n, vocab_size] of piece counts."""
    from scipy.sparse import csr_matrix

    ids = tokens.numpy()
    rows, cols = np.nonzero(ids != PAD_ID)
    data = np.ones(len(rows), dtype=np.float32)
    counts = csr_matrix((data, (rows, ids[rows, cols])), shape=(ids.shape[0], vocab_size))
    counts.sum_duplicates()
    return counts


def title_clusters(tokens: torch.Tensor, vocab_size: int, k: int, seed: int) -> torch.Tensor:
    """[n, L] token ids → [n] int64 cluster of each title in [0, k), −1 for an empty title. The same
    tokens, k and seed give the same clusters."""
    from sklearn.cluster import MiniBatchKMeans
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfTransformer
    from sklearn.preprocessing import normalize

    if k < 2:
        raise ValueError(f"title clusters need k >= 2, got {k}")
    n = tokens.shape[0]
    codes = np.full(n, -1, dtype=np.int64)
    counts = piece_counts(tokens, vocab_size)
    has_words = np.asarray(counts.sum(axis=1)).ravel() > 0  # [n]
    m = int(has_words.sum())
    if m < k:
        raise ValueError(f"{m} non-empty titles cannot make {k} title clusters")
    tfidf = TfidfTransformer(sublinear_tf=True).fit_transform(counts[has_words])  # [m, V], rows L2
    dim = min(SVD_DIM, tfidf.shape[1] - 1, m - 1)
    latent = normalize(TruncatedSVD(dim, random_state=seed).fit_transform(tfidf))  # [m, d]
    km = MiniBatchKMeans(k, random_state=seed, n_init=3, batch_size=4096)
    codes[has_words] = km.fit_predict(latent.astype(np.float64))
    return torch.from_numpy(codes)
