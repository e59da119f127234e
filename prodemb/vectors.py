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


OK = -1  # a problem code: an index into REASONS, or OK


def problem_codes(vectors: np.ndarray, dim: int, n_tokens: np.ndarray | None = None) -> np.ndarray:
    """One code per row of ``vectors`` [n, d]: ``OK``, or the index in ``REASONS`` of the first rule the row
    breaks. ``n_tokens``: tokens the encoder saw per row (0: an empty title)."""
    n = len(vectors)
    if vectors.ndim != 2 or vectors.shape[1] != dim:
        codes = np.full(n, REASONS.index(WRONG_DIMENSION), dtype=np.int8)
    else:
        finite = np.isfinite(vectors).all(axis=1)
        # The norm of finite rows only (an inf row would overflow the square sum and warn).
        norms = np.linalg.norm(np.where(finite[:, None], vectors, 0), axis=1)
        codes = np.where(
            ~finite, REASONS.index(NON_FINITE), np.where(norms > 0, OK, REASONS.index(ZERO_VECTOR))
        ).astype(np.int8)
    if n_tokens is not None:
        codes[np.asarray(n_tokens) == 0] = REASONS.index(EMPTY_TITLE)
    return codes


def reason_names(codes: np.ndarray) -> list[str | None]:
    """Codes as reasons (None: servable)."""
    return [None if c == OK else REASONS[c] for c in codes.tolist()]


def list_column_codes(embedding, dims) -> np.ndarray:
    """``problem_codes`` for a pyarrow list<float> column (rows of any length, nulls allowed) and the
    table's ``dim`` column: a null or wrong-length row is ``wrong_dimension``. Vectorized, one group per
    dimension the column holds (models of different sizes)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    lengths = pc.fill_null(pc.list_value_length(embedding), -1).to_numpy(zero_copy_only=False)
    dims = np.asarray(dims.to_numpy(zero_copy_only=False))
    right = lengths == dims
    codes = np.where(right, OK, REASONS.index(WRONG_DIMENSION)).astype(np.int8)
    for width in np.unique(dims[right]):
        rows = np.flatnonzero(right & (dims == width))
        values = pc.list_flatten(embedding.take(pa.array(rows))).to_numpy(zero_copy_only=False)
        codes[rows] = problem_codes(values.astype(np.float32, copy=False).reshape(len(rows), int(width)), int(width))
    return codes
