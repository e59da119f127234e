"""prodemb.train_data: the catalog tokenized once, the pair index as int32 arrays read batch by batch."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from prodemb.train_data import HoldoutRule, build_training_data, load_training_data, session_hash


class _ToyTokenizer:
    vocab_size = 50

    def encode(self, titles, max_len):
        out = np.zeros((len(titles), max_len), dtype=np.int32)
        for i, t in enumerate(titles):
            ids = [2 + (sum(map(ord, w)) % 48) for w in t.split()][:max_len]
            out[i, : len(ids)] = ids
        return out


def toy_frames(n_products=60, n_sessions=400, n_cat=3, seed=0, categories=True):
    """Products in n_cat groups with group-specific words; sessions stay within a group."""
    rng = np.random.default_rng(seed)
    words = [[f"w{c}x{k}" for k in range(6)] for c in range(n_cat)]
    cat = np.arange(n_products) % n_cat
    titles = [" ".join(rng.choice(words[c], 4)) for c in cat]
    catalog = pd.DataFrame(
        {
            "site": "s",
            "product_id": [f"p{i}" for i in range(n_products)],
            "title_norm": titles,
            "category": [f"c{c}" for c in cat] if categories else None,
        }
    )
    rows = []
    for s in range(n_sessions):
        c = rng.integers(n_cat)
        a, b = sorted(rng.choice(np.flatnonzero(cat == c), 2, replace=False))
        rows.append(("s", s, f"p{a}", f"p{b}"))
    return catalog, pd.DataFrame(rows, columns=["site", "session_id", "product_a", "product_b"])


def toy_data(n_products=60, n_sessions=400, n_cat=3, seed=0, categories=True):
    catalog, pairs = toy_frames(n_products, n_sessions, n_cat, seed, categories)
    return build_training_data(catalog, pairs, _ToyTokenizer(), max_len=6, holdout_fraction=0.1)


def test_build_training_data_indexes_pairs_and_holds_out_whole_sessions():
    data = toy_data()
    assert data.tokens.shape == (60, 6) and data.tokens.dtype == torch.int64
    assert data.n_categories == 3 and data.categories.min() >= 0
    assert data.stats["pairs_train"] + data.stats["pairs_holdout"] == 400
    assert 10 <= data.stats["pairs_holdout"] <= 80
    assert int(data.pair_a.max()) < 60 and bool((data.pair_a != data.pair_b).all())
    nocat = toy_data(categories=False)
    assert nocat.n_categories == 0 and bool((nocat.categories == -1).all())
    assert len(data.content_hash()) == 64 and data.content_hash() != toy_data(seed=1).content_hash()


# --- the Arrow pipeline equals the pandas one it replaced -------------------------------------------


def reference_build(
    catalog: pd.DataFrame,
    pairs: pd.DataFrame,
    tokenizer,
    max_len: int,
    holdout_fraction: float = 0.02,
    max_holdout: int = 20_000,
) -> dict:
    """The pandas implementation the Arrow one replaced (Python strings for every pair), verbatim."""
    keys = catalog["site"].astype(str) + "/" + catalog["product_id"].astype(str)
    index = pd.Index(keys)
    assert index.is_unique
    a = index.get_indexer(pairs["site"].astype(str) + "/" + pairs["product_a"].astype(str))
    b = index.get_indexer(pairs["site"].astype(str) + "/" + pairs["product_b"].astype(str))
    known = (a >= 0) & (b >= 0)
    codes, names = pd.factorize(catalog["category"], sort=True)
    tokens = tokenizer.encode(catalog["title_norm"].fillna("").tolist(), max_len)
    session = pairs["session_id"].to_numpy(dtype=np.int64)
    candidate = HoldoutRule(holdout_fraction).candidates(session) & known
    # The cap, written out: whole candidate sessions in hash order while their pairs fit.
    per_session = pd.Series(candidate[candidate], index=session_hash(session[candidate])).groupby(level=0).size()
    admitted = (
        set(per_session.index[per_session.cumsum() <= max_holdout])
        if per_session.sum() > max_holdout
        else set(per_session.index)
    )
    held = candidate & np.isin(session_hash(session), list(admitted))
    # Training: the pairs of sessions the hash did not select, then those of capped-out candidates.
    order = np.r_[np.flatnonzero(known & ~candidate), np.flatnonzero(candidate & ~held)]
    as_t = lambda x: torch.from_numpy(np.ascontiguousarray(x, dtype=np.int64))  # noqa: E731
    tensors = dict(
        tokens=as_t(tokens),
        categories=as_t(codes),
        pair_a=as_t(a[order]),
        pair_b=as_t(b[order]),
        holdout_a=as_t(a[held]),
        holdout_b=as_t(b[held]),
    )
    h = hashlib.sha256()
    for name in ("tokens", "categories", "pair_a", "pair_b"):
        h.update(tensors[name].numpy().tobytes())
    return {
        **tensors,
        "category_names": [str(n) for n in names],
        "content_hash": h.hexdigest(),
        "product_keys": keys.tolist(),
        "examples": catalog["title_norm"].dropna().head(3).tolist(),
        "stats": {
            "products": len(catalog),
            "pairs_in": len(pairs),
            "pairs_train": len(order),
            "pairs_holdout": int(held.sum()),
            "pairs_unknown_product": int((~known).sum()),
            "products_with_category": int((codes >= 0).sum()),
            "categories": len(names),
            "sessions_holdout": len(np.unique(session[held])),
        },
    }


def mixed_frames(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Three sites sharing product ids, titles and categories missing, non-ASCII category names (sort
    order), pairs naming unknown products or products of another site, int64 session ids of any sign."""
    rng = np.random.default_rng(seed)
    sites, rows = ["MLA", "MLB", "mco"], []
    cats = ["Zapatos", "apple", "Électronique", "ñandú", "", "Autos", None]
    for site in sites:
        for i in rng.choice(80, 50, replace=False):
            rows.append(
                (
                    site,
                    f"p{i}",
                    None if rng.random() < 0.1 else f"t{i % 7} w{i % 5} {site.lower()}",
                    cats[rng.integers(len(cats))],
                )
            )
    catalog = (
        pd.DataFrame(rows, columns=["site", "product_id", "title_norm", "category"])
        .sample(frac=1.0, random_state=seed)
        .reset_index(drop=True)
    )
    pairs = []
    for _ in range(900):
        site = sites[rng.integers(3)]
        session = int(rng.integers(-(2**62), 2**62))
        for _ in range(rng.integers(1, 4)):
            a, b = sorted(rng.choice(90, 2, replace=False))  # ids ≥ 80 and ids absent from the site: unknown
            pairs.append((site, session, f"p{a}", f"p{b}"))
    return catalog, pd.DataFrame(pairs, columns=["site", "session_id", "product_a", "product_b"])


def known_pairs(catalog: pd.DataFrame, pairs: pd.DataFrame) -> np.ndarray:
    keys = set(zip(catalog["site"], catalog["product_id"]))
    return np.array(
        [(s, a) in keys and (s, b) in keys for s, a, b in zip(pairs["site"], pairs["product_a"], pairs["product_b"])]
    )


def assert_same(data, ref) -> None:
    for name in ("tokens", "categories", "pair_a", "pair_b", "holdout_a", "holdout_b"):
        got = getattr(data, name)
        assert torch.equal(got.long(), ref[name]), name
    assert data.pair_a.dtype == torch.int32 and data.tokens.dtype == torch.int64
    assert data.stats == ref["stats"]
    assert data.category_names == ref["category_names"]
    assert data.content_hash() == ref["content_hash"]
    assert data.product_keys.to_pylist() == ref["product_keys"]
    assert data.example_titles == ref["examples"]


@pytest.mark.parametrize("batch_rows,max_holdout", [(7, 20_000), (1 << 20, 20_000), (5, 40), (64, 3)])
def test_arrow_index_equals_the_pandas_reference(batch_rows, max_holdout):
    catalog, pairs = mixed_frames()
    tok = _ToyTokenizer()
    ref = reference_build(catalog, pairs, tok, 5, holdout_fraction=0.3, max_holdout=max_holdout)
    assert ref["stats"]["pairs_unknown_product"] > 100 and ref["stats"]["pairs_holdout"] > 0
    assert 0 < ref["stats"]["products_with_category"] < len(catalog)
    if max_holdout < 100:  # the cap applies, in whole sessions, across batch boundaries
        assert max_holdout - 3 <= ref["stats"]["pairs_holdout"] <= max_holdout
    data = build_training_data(
        catalog, pairs, tok, 5, holdout_fraction=0.3, max_holdout=max_holdout, batch_rows=batch_rows
    )
    assert_same(data, ref)
    # The recorded rule, a function of the session id alone (whole sessions), finds exactly the held-out pairs.
    session = pairs["session_id"].to_numpy(dtype=np.int64)
    chosen = data.holdout.select(session) & known_pairs(catalog, pairs)
    assert int(chosen.sum()) == data.stats["pairs_holdout"] and int((~chosen).sum()) > data.stats["pairs_train"]
    assert len(np.unique(session[chosen])) == data.stats["sessions_holdout"] > 0
    assert data.holdout == HoldoutRule.from_params(data.holdout.as_params())
    assert (data.holdout.cutoff is None) == (max_holdout == 20_000)
    # The same from Arrow tables instead of DataFrames, and from an iterator of record batches.
    cat_t, pairs_t = pa.Table.from_pandas(catalog), pa.Table.from_pandas(pairs)
    assert_same(
        build_training_data(
            cat_t, iter(pairs_t.to_batches(max_chunksize=11)), tok, 5, holdout_fraction=0.3, max_holdout=max_holdout
        ),
        ref,
    )


def test_load_training_data_scans_parquet_files_in_table_order(tmp_path):
    """Several Parquet files with small row groups, scanned in batches smaller than a row group: the
    pairs come in the order the whole table reads in, so tensors, stats and hash match the reference."""
    catalog, pairs = mixed_frames(seed=1)
    (tmp_path / "catalog").mkdir()
    (tmp_path / "pairs").mkdir()
    pq.write_table(pa.Table.from_pandas(catalog, preserve_index=False), tmp_path / "catalog" / "part-0.parquet")
    chunks = np.array_split(np.arange(len(pairs)), 3)
    for k, rows in enumerate(chunks):
        pq.write_table(
            pa.Table.from_pandas(pairs.iloc[rows], preserve_index=False),
            tmp_path / "pairs" / f"part-{k}.parquet",
            row_group_size=50,
        )
    tok = _ToyTokenizer()
    data = load_training_data(str(tmp_path / "catalog"), f"file://{tmp_path}/pairs", tok, 5, batch_rows=17)
    ref = reference_build(catalog, pairs, tok, 5)
    assert_same(data, ref)


def test_shards_split_the_pairs_and_content_hash_needs_the_whole():
    data = toy_data()
    shards = [data.sharded(r, 3) for r in range(3)]
    assert sorted(len(s.pair_a) for s in shards)[-1] - sorted(len(s.pair_a) for s in shards)[0] <= 1
    joined = torch.stack([data.pair_a, data.pair_b], 1)
    together = torch.cat([torch.stack([s.pair_a, s.pair_b], 1) for s in shards])
    assert sorted(map(tuple, together.tolist())) == sorted(map(tuple, joined.tolist()))
    assert all(s.shard == (r, 3) and torch.equal(s.holdout_a, data.holdout_a) for r, s in enumerate(shards))
    assert data.sharded(0, 1) is data
    with pytest.raises(ValueError, match="content_hash"):
        shards[0].content_hash()
    with pytest.raises(ValueError, match="already sharded"):
        shards[0].sharded(0, 3)


def test_duplicate_catalog_rows_are_refused():
    catalog, pairs = toy_frames()
    with pytest.raises(ValueError, match="duplicate"):
        build_training_data(pd.concat([catalog, catalog.head(1)]), pairs, _ToyTokenizer(), max_len=6)
