"""Training inputs: the catalog tokenized once, the pair index as int32 arrays, the held-out sessions.

    catalog ──tokenize once──▶ tokens [n_products, max_len] int64, categories [n_products] (−1 = none)
    pairs   ──index once────▶ pair_a, pair_b [n_pairs] int32 row indices into the catalog

The pairs table is read in Arrow record batches (Parquet: file by file, straight from the files;
Delta tables through Spark). Per batch, (site, product_a) and (site, product_b) are looked up in the
catalog's key array with ``pyarrow.compute.index_in`` (key = site + "\\x1f" + product_id), the hold-out
mask comes from ``session_id`` as int64 numpy, and only the int32 indices are kept: memory is
8 bytes per pair plus one batch; product ids never become Python strings. ``index_in`` hashes its value
set on every call (≈ 0.35 µs a catalog row here), so batches are large (2^20 pairs) and both sides of
a batch are looked up in one call.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field, replace
from typing import Any, Iterator

import numpy as np
import torch

log = logging.getLogger(__name__)

KEY_SEP = "\x1f"                 # ASCII unit separator: never inside a site or a product id
CATALOG_COLUMNS = ["site", "product_id", "title_norm", "category"]
PAIR_COLUMNS = ["site", "session_id", "product_a", "product_b"]
BATCH_ROWS = 1 << 20             # pairs per record batch
_ENCODE_ROWS = 1 << 16           # titles per tokenizer call
_HASH_ROWS = 1 << 22             # elements per int64 chunk hashed by content_hash


@dataclass
class TrainingData:
    tokens: torch.Tensor                 # [n_products, max_len] int64, 0 = padding
    categories: torch.Tensor             # [n_products] int64, −1 = unknown
    pair_a: torch.Tensor                 # [n_pairs] int32 (int64 accepted) row indices into tokens
    pair_b: torch.Tensor
    holdout_a: torch.Tensor              # held-out pairs (sessions never trained on), for health metrics
    holdout_b: torch.Tensor
    product_keys: Any = None             # "site/product_id" aligned with tokens: a pyarrow array (or a list)
    category_names: list[str] = field(default_factory=list)
    stats: dict = field(default_factory=dict)
    example_titles: list[str] = field(default_factory=list)   # a few title_norm, the model's input example
    shard: tuple[int, int] = (0, 1)      # (rank, world): pair_a/pair_b hold this rank's share only

    @property
    def n_categories(self) -> int:
        return len(self.category_names)

    def content_hash(self) -> str:
        """sha256 over the exact tensors trained on (tokens, categories, pairs), each as int64 bytes.

        The same digest as hashing the int64 tensors whole (it is computed in chunks, so the int32 pair
        index is never widened in one piece). Only defined on the full data, not on a rank's shard.
        """
        if self.shard != (0, 1):
            raise ValueError(f"content_hash of shard {self.shard}: hash the full data before sharding")
        h = hashlib.sha256()
        for t in (self.tokens, self.categories, self.pair_a, self.pair_b):
            flat = t.reshape(-1)
            for i in range(0, len(flat), _HASH_ROWS):
                h.update(np.ascontiguousarray(flat[i:i + _HASH_ROWS].numpy(), dtype=np.int64).tobytes())
        return h.hexdigest()

    def sharded(self, rank: int, world: int) -> "TrainingData":
        """This rank's share of the training pairs: every ``world``-th pair from position ``rank`` (shard
        sizes differ by at most one). Tokens, categories and the held-out pairs stay whole."""
        if self.shard != (0, 1):
            raise ValueError(f"already sharded as {self.shard}")
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} outside world size {world}")
        if world == 1:
            return self
        return replace(self, pair_a=self.pair_a[rank::world].clone(), pair_b=self.pair_b[rank::world].clone(),
                       shard=(rank, world))


def holdout_sessions(session_ids: np.ndarray, fraction: float = 0.02) -> np.ndarray:
    """Deterministic ~``fraction`` of sessions kept out of training (by a hash of the session id).

    Shared by training (health metrics) and similar-product recall, so both see the same sessions.
    """
    session = np.asarray(session_ids, dtype=np.int64).view(np.uint64)
    with np.errstate(over="ignore"):   # Fibonacci hashing: wrap-around multiply mixes sequential ids
        mixed = (session * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(32)
    return mixed % np.uint64(10_000) < np.uint64(int(fraction * 10_000))


# --- Arrow helpers ---------------------------------------------------------------------------------

def _as_table(frame, columns: list[str]):
    """A pyarrow Table of ``columns`` from a pyarrow Table or a pandas DataFrame."""
    import pyarrow as pa

    if isinstance(frame, pa.Table):
        return frame.select(columns)
    return pa.Table.from_pandas(frame[columns], preserve_index=False)


def _text(column):
    """A string column as large_string with nulls as "" (ids of other types cast: 5 → "5")."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not pa.types.is_large_string(column.type):
        column = pc.cast(column, pa.large_string())
    return pc.fill_null(column, pa.scalar("", pa.large_string()))


def _keys(site, product_id, sep: str = KEY_SEP):
    """site + sep + product_id, element-wise (one Arrow kernel, no Python strings)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    return pc.binary_join_element_wise(_text(site), _text(product_id), pa.scalar(sep, pa.large_string()))


def _pair_batches(pairs, batch_rows: int) -> Iterator:
    """Record batches of the pair columns from a Table, DataFrame, dataset, scanner, reader or iterable."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    if isinstance(pairs, ds.Dataset):
        from prodemb.tables import iter_batches

        yield from iter_batches(pairs, PAIR_COLUMNS, batch_rows)
    elif isinstance(pairs, ds.Scanner):
        yield from pairs.to_batches()
    elif isinstance(pairs, (pa.Table, pa.RecordBatchReader)) or hasattr(pairs, "columns"):
        table = pairs.read_all() if isinstance(pairs, pa.RecordBatchReader) else _as_table(pairs, PAIR_COLUMNS)
        yield from table.to_batches(max_chunksize=batch_rows)
    else:
        yield from pairs


def _row_hint(pairs) -> int:
    import pyarrow.dataset as ds

    if isinstance(pairs, ds.Dataset):
        return pairs.count_rows()        # from the Parquet footers, no data read
    return len(pairs) if hasattr(pairs, "__len__") else 0


class _IntBuffer:
    """A growable int32 array (amortized doubling) whose final contents are a view, not a copy."""

    def __init__(self, capacity: int = 0):
        self.data, self.n = np.empty(max(capacity, 16), dtype=np.int32), 0

    def extend(self, values: np.ndarray) -> None:
        end = self.n + len(values)
        if end > len(self.data):
            grown = np.empty(max(end, 2 * len(self.data)), dtype=np.int32)
            grown[:self.n] = self.data[:self.n]
            self.data = grown
        self.data[self.n:end] = values
        self.n = end

    def tensor(self) -> torch.Tensor:
        return torch.from_numpy(self.data[:self.n])


def _categories(column) -> tuple[np.ndarray, list[str]]:
    """Codes into the sorted distinct non-null categories (−1 = none) and their names, like
    ``pandas.factorize(sort=True)``: UTF-8 byte order is code-point order."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_null(column.type):
        return np.full(len(column), -1, dtype=np.int64), []
    if not pa.types.is_string(column.type) and not pa.types.is_large_string(column.type):
        column = pc.cast(column, pa.large_string())
    names = pc.unique(pc.drop_null(column))
    names = names.take(pc.sort_indices(names))
    codes = pc.fill_null(pc.index_in(column, value_set=names), -1)
    return codes.to_numpy().astype(np.int64), [str(n) for n in names.to_pylist()]


def _tokenize(titles, tokenizer, max_len: int) -> torch.Tensor:
    """[n, max_len] int64: ``tokenizer.encode`` of the titles (null = ""), ``_ENCODE_ROWS`` at a time."""
    import pyarrow as pa

    tokens = torch.zeros((len(titles), max_len), dtype=torch.int64)
    if pa.types.is_null(titles.type):
        return tokens
    titles = _text(titles)
    for i in range(0, len(titles), _ENCODE_ROWS):
        chunk = titles.slice(i, _ENCODE_ROWS).to_pylist()
        tokens[i:i + len(chunk)] = torch.from_numpy(np.asarray(tokenizer.encode(chunk, max_len)).astype(np.int64))
    return tokens


# --- building the tensors --------------------------------------------------------------------------

def build_training_data(catalog, pairs, tokenizer, max_len: int, language: str = "es",
                        holdout_fraction: float = 0.02, max_holdout: int = 20_000,
                        batch_rows: int = BATCH_ROWS) -> TrainingData:
    """catalog: Table/DataFrame(site, product_id, title_norm, category); pairs: Table/DataFrame, a pyarrow
    dataset or scanner, or record batches of (site, session_id, product_a, product_b), read ``batch_rows``
    at a time. Pairs from a deterministic ~``holdout_fraction`` of sessions are held out (at most
    ``max_holdout``, the first ones in table order); pairs naming a product missing from the catalog are
    skipped."""
    import pyarrow as pa
    import pyarrow.compute as pc

    catalog = _as_table(catalog, CATALOG_COLUMNS)
    keys = _keys(catalog["site"], catalog["product_id"]).combine_chunks()
    if pc.count_distinct(keys, mode="all").as_py() != len(keys):
        raise ValueError("catalog has duplicate (site, product_id) rows")
    n_products = len(keys)

    hint = _row_hint(pairs)
    train_a, train_b, held_a, held_b = _IntBuffer(hint), _IntBuffer(hint), _IntBuffer(), _IntBuffer()
    pairs_in = unknown = n_held = 0
    for batch in _pair_batches(pairs, batch_rows):
        n = batch.num_rows
        if n == 0:
            continue
        site = batch.column("site")
        # One lookup for both sides: the catalog's hash table is built once per batch, not twice.
        both = pa.concat_arrays([_keys(site, batch.column("product_a")), _keys(site, batch.column("product_b"))])
        idx = pc.fill_null(pc.index_in(both, value_set=keys), -1).to_numpy(zero_copy_only=False).astype(np.int32)
        a, b = idx[:n], idx[n:]
        known = (a >= 0) & (b >= 0)
        session = pc.cast(batch.column("session_id"), pa.int64()).to_numpy(zero_copy_only=False)
        held = holdout_sessions(session, holdout_fraction) & known
        if n_held + int(held.sum()) > max_holdout:   # the first max_holdout held-out pairs in table order
            held &= n_held + np.cumsum(held) <= max_holdout
        train = known & ~held
        train_a.extend(a[train]); train_b.extend(b[train])
        held_a.extend(a[held]); held_b.extend(b[held])
        pairs_in, unknown, n_held = pairs_in + n, unknown + int((~known).sum()), n_held + int(held.sum())
    if unknown:
        log.warning("%d pairs reference products missing from the catalog; they are skipped", unknown)

    codes, names = _categories(catalog["category"].combine_chunks())
    titles = catalog["title_norm"].combine_chunks()
    examples = titles.drop_null().slice(0, 3).to_pylist() if not pa.types.is_null(titles.type) else []
    return TrainingData(
        tokens=_tokenize(titles, tokenizer, max_len), categories=torch.from_numpy(codes),
        pair_a=train_a.tensor(), pair_b=train_b.tensor(), holdout_a=held_a.tensor(), holdout_b=held_b.tensor(),
        product_keys=_keys(catalog["site"], catalog["product_id"], "/"), category_names=names,
        example_titles=[str(t) for t in examples],
        stats={"products": n_products, "pairs_in": pairs_in, "pairs_train": train_a.n,
               "pairs_holdout": held_a.n, "pairs_unknown_product": unknown,
               "products_with_category": int((codes >= 0).sum()), "categories": len(names)},
    )


def load_training_data(catalog_path: str, pairs_path: str, tokenizer, max_len: int, language: str = "es",
                       batch_rows: int = BATCH_ROWS) -> TrainingData:
    """``build_training_data`` from the sessionize job's tables on any filesystem (``prodemb.fs``).

    Pairs are scanned in record batches straight from the files, Parquet or the files of a Delta table's
    current snapshot (``prodemb.tables.arrow_dataset``), and indexed batch by batch.
    """
    from prodemb.tables import arrow_dataset, read_table_arrow

    catalog = read_table_arrow(catalog_path, CATALOG_COLUMNS)
    pairs: Any = arrow_dataset(pairs_path)
    return build_training_data(catalog, pairs, tokenizer, max_len, language, batch_rows=batch_rows)

