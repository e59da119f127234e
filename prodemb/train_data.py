"""Training inputs: the catalog tokenized once, the pair index as int32 arrays, the held-out sessions.

    catalog ──tokenize once──▶ tokens [n_products, max_len] int64, categories [n_products] (−1 = none)
    pairs   ──index once────▶ pair_a, pair_b [n_pairs] int32 row indices into the catalog

The pairs table is read in Arrow record batches (Parquet: file by file, straight from the files;
Delta tables through Spark). Per batch, (site, product_a) and (site, product_b) are looked up in the
catalog's key array with ``pyarrow.compute.index_in`` (key = site + "\\x1f" + product_id), the hold-out
rule (``HoldoutRule``: whole sessions) reads ``session_id`` as int64 numpy, and only the int32 indices are kept:
memory is 8 bytes per pair plus one batch; product ids never become Python strings. ``index_in`` hashes its value
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

KEY_SEP = "\x1f"  # ASCII unit separator: never inside a site or a product id
CATALOG_COLUMNS = ["site", "product_id", "title_norm", "category"]
PAIR_COLUMNS = ["site", "session_id", "product_a", "product_b"]
BATCH_ROWS = 1 << 20  # pairs per record batch
_ENCODE_ROWS = 1 << 16  # titles per tokenizer call
_HASH_ROWS = 1 << 22  # elements per int64 chunk hashed by content_hash


@dataclass
class TrainingData:
    tokens: torch.Tensor  # [n_products, max_len] int64, 0 = padding
    categories: torch.Tensor  # [n_products] int64, −1 = unknown
    pair_a: torch.Tensor  # [n_pairs] int32 (int64 accepted) row indices into tokens
    pair_b: torch.Tensor
    holdout_a: torch.Tensor  # held-out pairs (sessions never trained on), for health metrics
    holdout_b: torch.Tensor
    product_keys: Any = None  # "site/product_id" aligned with tokens: a pyarrow array (or a list)
    category_names: list[str] = field(default_factory=list)
    stats: dict = field(default_factory=dict)
    example_titles: list[str] = field(default_factory=list)  # a few title_norm, the model's input example
    shard: tuple[int, int] = (0, 1)  # (rank, world): pair_a/pair_b hold this rank's share only
    holdout: "HoldoutRule | None" = None  # the held-out sessions (whole sessions: holdout_a/holdout_b's pairs)

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
                h.update(np.ascontiguousarray(flat[i : i + _HASH_ROWS].numpy(), dtype=np.int64).tobytes())
        return h.hexdigest()

    def with_categories(self, categories: torch.Tensor, names: list[str]) -> "TrainingData":
        """The same products and pairs with other categories: [n_products] int64 codes into ``names``."""
        if categories.shape != self.categories.shape:
            raise ValueError(f"categories {tuple(categories.shape)} for {tuple(self.categories.shape)} products")
        return replace(self, categories=categories, category_names=list(names))

    def sharded(self, rank: int, world: int) -> "TrainingData":
        """This rank's share of the training pairs: every ``world``-th pair from position ``rank`` (shard
        sizes differ by at most one). Tokens, categories and the held-out pairs stay whole."""
        if self.shard != (0, 1):
            raise ValueError(f"already sharded as {self.shard}")
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} outside world size {world}")
        if world == 1:
            return self
        return replace(
            self, pair_a=self.pair_a[rank::world].clone(), pair_b=self.pair_b[rank::world].clone(), shard=(rank, world)
        )


HOLDOUT_BUCKETS = 10_000
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: an odd multiplier, a bijection on 64 bits


def session_hash(session_ids: np.ndarray) -> np.ndarray:
    """uint64 hash of int64 session ids: wrap-around multiply by an odd constant, so distinct ids get
    distinct hashes (an order on sessions that no table layout changes) and sequential ids mix."""
    session = np.asarray(session_ids, dtype=np.int64).view(np.uint64)
    with np.errstate(over="ignore"):
        return session * _GOLDEN


@dataclass(frozen=True)
class HoldoutRule:
    """Which sessions training never sees: those whose hash falls in the first ``fraction`` of
    ``HOLDOUT_BUCKETS`` buckets, and, when the pair cap stopped the selection, whose hash is at most
    ``cutoff``. Whole sessions only. Recorded with every run (``as_params``), so the held-out set can be
    rebuilt exactly from any pairs table (``jobs/similar.py --recall``)."""

    fraction: float = 0.02
    cutoff: int | None = None  # None: no cap reached, every hash-selected session is held out

    def candidates(self, session_ids: np.ndarray) -> np.ndarray:
        """Sessions the hash selects, before the cap."""
        mixed = session_hash(session_ids) >> np.uint64(32)
        return mixed % np.uint64(HOLDOUT_BUCKETS) < np.uint64(int(self.fraction * HOLDOUT_BUCKETS))

    def select(self, session_ids: np.ndarray) -> np.ndarray:
        """True for the pairs of held-out sessions."""
        chosen = self.candidates(session_ids)
        if self.cutoff is not None:
            chosen &= (session_hash(session_ids) <= np.uint64(self.cutoff)) if self.cutoff >= 0 else False
        return chosen

    def as_params(self) -> dict[str, str]:
        return {
            "holdout.fraction": str(self.fraction),
            "holdout.cutoff": "none" if self.cutoff is None else str(self.cutoff),
        }

    @classmethod
    def from_params(cls, params: dict[str, str]) -> "HoldoutRule | None":
        """The rule a run recorded (``as_params``), or None for a run from before it was recorded."""
        if "holdout.fraction" not in params:
            return None
        cutoff = params.get("holdout.cutoff", "none")
        return cls(float(params["holdout.fraction"]), None if cutoff == "none" else int(cutoff))


def cap_holdout(session_ids: np.ndarray, fraction: float, max_pairs: int) -> HoldoutRule:
    """The rule for candidate pairs with these session ids (one per pair): whole sessions in the order
    of their hash, as many as fit in ``max_pairs`` pairs; the sessions after the first that does not fit
    are trained on."""
    rule = HoldoutRule(fraction)
    if len(session_ids) <= max_pairs:
        return rule
    hashes, pairs = np.unique(session_hash(session_ids), return_counts=True)  # sorted by hash
    fits = np.cumsum(pairs) <= max_pairs
    n = int(np.argmin(fits)) if not fits.all() else len(fits)  # sessions that fit
    return HoldoutRule(fraction, int(hashes[n - 1]) if n else -1)


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
        return pairs.count_rows()  # from the Parquet footers, no data read
    return len(pairs) if hasattr(pairs, "__len__") else 0


class _IntBuffer:
    """A growable int32 array (amortized doubling) whose final contents are a view, not a copy."""

    def __init__(self, capacity: int = 0):
        self.data, self.n = np.empty(max(capacity, 16), dtype=np.int32), 0

    def extend(self, values: np.ndarray) -> None:
        end = self.n + len(values)
        if end > len(self.data):
            grown = np.empty(max(end, 2 * len(self.data)), dtype=np.int32)
            grown[: self.n] = self.data[: self.n]
            self.data = grown
        self.data[self.n : end] = values
        self.n = end

    def array(self) -> np.ndarray:
        return self.data[: self.n]

    def tensor(self) -> torch.Tensor:
        return torch.from_numpy(self.array())


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
        tokens[i : i + len(chunk)] = torch.from_numpy(np.asarray(tokenizer.encode(chunk, max_len)).astype(np.int64))
    return tokens


# --- building the tensors --------------------------------------------------------------------------


def build_training_data(
    catalog,
    pairs,
    tokenizer,
    max_len: int,
    language: str = "es",
    holdout_fraction: float = 0.02,
    max_holdout: int = 20_000,
    batch_rows: int = BATCH_ROWS,
) -> TrainingData:
    """catalog: Table/DataFrame(site, product_id, title_norm, category); pairs: Table/DataFrame, a pyarrow
    dataset or scanner, or record batches of (site, session_id, product_a, product_b), read ``batch_rows``
    at a time. Whole sessions are held out (``HoldoutRule``): a deterministic ~``holdout_fraction`` of
    them by hash, capped at ``max_holdout`` pairs by taking sessions in hash order; the capped-out
    sessions are trained on, after the others. Pairs naming a product missing from the catalog are
    skipped."""
    import pyarrow as pa
    import pyarrow.compute as pc

    catalog = _as_table(catalog, CATALOG_COLUMNS)
    keys = _keys(catalog["site"], catalog["product_id"]).combine_chunks()
    if pc.count_distinct(keys, mode="all").as_py() != len(keys):
        raise ValueError("catalog has duplicate (site, product_id) rows")
    n_products = len(keys)

    hint = _row_hint(pairs)
    train_a, train_b = _IntBuffer(hint), _IntBuffer(hint)
    cand_a, cand_b, cand_session = _IntBuffer(), _IntBuffer(), []  # hash-selected: held out unless capped
    pairs_in = unknown = 0
    selection = HoldoutRule(holdout_fraction)
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
        candidate = selection.candidates(session) & known
        train = known & ~candidate
        train_a.extend(a[train])
        train_b.extend(b[train])
        cand_a.extend(a[candidate])
        cand_b.extend(b[candidate])
        cand_session.append(session[candidate])
        pairs_in, unknown = pairs_in + n, unknown + int((~known).sum())
    if unknown:
        log.warning("%d pairs reference products missing from the catalog; they are skipped", unknown)
    # The cap needs every candidate's session: decided once all pairs are read (2% of them by default).
    cand_session = np.concatenate(cand_session) if cand_session else np.zeros(0, dtype=np.int64)
    holdout = cap_holdout(cand_session, holdout_fraction, max_holdout)
    held = holdout.select(cand_session)
    ca, cb = cand_a.array(), cand_b.array()
    held_a, held_b = torch.from_numpy(ca[held]), torch.from_numpy(cb[held])
    train_a.extend(ca[~held])
    train_b.extend(cb[~held])

    codes, names = _categories(catalog["category"].combine_chunks())
    titles = catalog["title_norm"].combine_chunks()
    examples = titles.drop_null().slice(0, 3).to_pylist() if not pa.types.is_null(titles.type) else []
    return TrainingData(
        tokens=_tokenize(titles, tokenizer, max_len),
        categories=torch.from_numpy(codes),
        pair_a=train_a.tensor(),
        pair_b=train_b.tensor(),
        holdout_a=held_a,
        holdout_b=held_b,
        product_keys=_keys(catalog["site"], catalog["product_id"], "/"),
        category_names=names,
        example_titles=[str(t) for t in examples],
        stats={
            "products": n_products,
            "pairs_in": pairs_in,
            "pairs_train": train_a.n,
            "pairs_holdout": len(held_a),
            "pairs_unknown_product": unknown,
            "products_with_category": int((codes >= 0).sum()),
            "categories": len(names),
            "sessions_holdout": int(len(np.unique(cand_session[held]))),
        },
        holdout=holdout,
    )


def load_training_data(
    catalog_path: str,
    pairs_path: str,
    tokenizer,
    max_len: int,
    language: str = "es",
    batch_rows: int = BATCH_ROWS,
    site: str | None = None,
) -> TrainingData:
    """``build_training_data`` from the sessionize job's tables on any filesystem (``prodemb.fs``); with
    ``site``, that site's products and pairs only (one model per site).

    Pairs are scanned in record batches straight from the files, Parquet or the files of a Delta table's
    current snapshot (``prodemb.tables.arrow_dataset``), and indexed batch by batch.
    """
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    from prodemb.tables import arrow_dataset, read_table_arrow

    catalog = read_table_arrow(catalog_path, CATALOG_COLUMNS)
    pairs: Any = arrow_dataset(pairs_path)
    if site is not None:
        found = sorted(pc.unique(catalog.column("site")).to_pylist())
        catalog = catalog.filter(pc.equal(catalog.column("site"), site))
        if catalog.num_rows == 0:
            raise ValueError(f"site {site!r} has no products in {catalog_path} (sites there: {', '.join(found)})")
        pairs = pairs.scanner(columns=PAIR_COLUMNS, filter=ds.field("site") == site, batch_size=batch_rows)
    return build_training_data(catalog, pairs, tokenizer, max_len, language, batch_rows=batch_rows)
