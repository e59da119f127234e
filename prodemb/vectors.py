"""What a servable product vector is: the one rule scoring quarantines by and publishing refuses by.

A vector is servable when it has the model's dimension, every value is finite and its norm is above zero
(a zero vector has no direction: cosine similarity is undefined for it). A title that gives the
encoder no token at all (null, empty, or nothing left after normalization) gets no vector: it would be
the encoder's answer for pure padding, the same for every such product.
"""
from __future__ import annotations

import numpy as np

EMPTY_TITLE = "empty_title"
WRONG_DIMENSION = "wrong_dimension"
NON_FINITE = "non_finite_vector"
ZERO_VECTOR = "zero_vector"
REASONS = (EMPTY_TITLE, WRONG_DIMENSION, NON_FINITE, ZERO_VECTOR)


def vector_problems(vectors: np.ndarray, dim: int, n_tokens: np.ndarray | None = None) -> list[str | None]:
    """One reason per row of ``vectors`` [n, d] (None: servable), checked in the order of ``REASONS``.
    ``n_tokens``: tokens the encoder saw per row (0: an empty title)."""
    n = len(vectors)
    reasons: list[str | None] = [None] * n
    if n == 0:
        return reasons
    if vectors.ndim != 2 or vectors.shape[1] != dim:
        bad = np.ones(n, dtype=bool)
        codes = np.full(n, REASONS.index(WRONG_DIMENSION))
    else:
        finite = np.isfinite(vectors).all(axis=1)
        # The norm of finite rows only (an inf row would overflow the square sum and warn).
        norms = np.linalg.norm(np.where(finite[:, None], vectors, 0), axis=1)
        codes = np.where(~finite, REASONS.index(NON_FINITE), np.where(norms > 0, -1, REASONS.index(ZERO_VECTOR)))
        bad = codes >= 0
    if n_tokens is not None:
        empty = np.asarray(n_tokens) == 0
        codes = np.where(empty, REASONS.index(EMPTY_TITLE), codes)
        bad = bad | empty
    for i in np.flatnonzero(bad):
        reasons[i] = REASONS[codes[i]]
    return reasons


def list_column_problems(embedding, dims) -> list[str | None]:
    """``vector_problems`` for a pyarrow list<float> column (rows of any length, nulls allowed) and the
    table's ``dim`` column: a null or wrong-length row is ``wrong_dimension``."""
    import pyarrow.compute as pc

    lengths = pc.fill_null(pc.list_value_length(embedding), -1).to_numpy(zero_copy_only=False)
    dims = np.asarray(dims.to_numpy(zero_copy_only=False) if hasattr(dims, "to_numpy") else dims)
    reasons: list[str | None] = [WRONG_DIMENSION if lengths[i] != dims[i] else None for i in range(len(lengths))]
    ok = np.flatnonzero(lengths == dims)
    if len(ok) == 0:
        return reasons
    width = int(dims[ok[0]])
    same = ok[dims[ok] == width]
    rows = embedding.take(same)
    values = pc.list_flatten(rows).to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    for i, reason in zip(same, vector_problems(values.reshape(len(same), width), width)):
        reasons[i] = reason
    for i in np.setdiff1d(ok, same):   # a table with several dimensions (models of different sizes)
        v = np.asarray(embedding[int(i)].as_py(), dtype=np.float32)[None, :]
        reasons[i] = vector_problems(v, int(dims[i]))[0]
    return reasons
