"""prodemb.vectors: the servable-vector rule that scoring quarantines by and publishing refuses by."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from prodemb.vectors import list_column_codes, problem_codes, reason_names


def vector_problems(vectors, dim, n_tokens=None):
    return reason_names(problem_codes(vectors, dim, n_tokens))


def test_each_kind_of_unservable_vector_gets_its_reason():
    v = np.ones((6, 4), dtype=np.float32)
    v[1, 2] = np.nan
    v[2, 0] = np.inf
    v[3] = 0
    v[4, 3] = -np.inf
    assert vector_problems(v, 4) == [
        None,
        "non_finite_vector",
        "non_finite_vector",
        "zero_vector",
        "non_finite_vector",
        None,
    ]
    # No token at all: the title is empty, whatever vector the padding gave.
    assert vector_problems(v, 4, n_tokens=np.array([0, 3, 3, 0, 1, 1]))[:4] == [
        "empty_title",
        "non_finite_vector",
        "non_finite_vector",
        "empty_title",
    ]
    assert vector_problems(v, 5) == ["wrong_dimension"] * 6
    assert vector_problems(np.zeros((0, 4), dtype=np.float32), 4) == []
    # Small is servable; a norm that float32 cannot hold (it underflows to 0) is a zero vector to a consumer.
    assert vector_problems(np.full((2, 4), [[1e-10], [1e-30]], dtype=np.float32), 4) == [None, "zero_vector"]


def test_list_columns_with_nulls_wrong_lengths_and_several_dimensions():
    rows = [[1.0, 2.0, 3.0], None, [1.0, 2.0], [0.0, 0.0, 0.0], [float("nan"), 1.0, 1.0], [1.0, 0.0], [0.0, 0.0]]
    dims = pa.array([3, 3, 3, 3, 3, 2, 2])
    assert reason_names(list_column_codes(pa.array(rows, pa.list_(pa.float32())), dims)) == [
        None,
        "wrong_dimension",
        "wrong_dimension",
        "zero_vector",
        "non_finite_vector",
        None,
        "zero_vector",
    ]
