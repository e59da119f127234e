"""Feast: apply the repo, publish embeddings to the online store fast, read them back.

Publishing fast. ``feast materialize`` converts every row to protobuf objects in one Python process
(~3k rows/s for wide float arrays). For the SQLite online store we write the exact bytes Feast
itself would write, in bulk: an entity key is a constant prefix + length + UTF-8 id, and a float
vector is a constant protobuf header + the raw little-endian float32s, so a whole batch is encoded
with numpy and inserted with one ``executemany`` per batch in one transaction. Both prefixes are
derived from Feast's own serializers at run time (and tested byte-for-byte), so values stay
readable through the ordinary SDK (``get_online_features``). Other online stores (Redis, ...) go
through ``FeatureStore.write_to_online_store``.

Every published row carries the scoring time as its event timestamp, and the write is an upsert:
a new model version replaces the old values even on stores that ignore non-newer timestamps.

Pinned versions. ``product_embeddings`` always serves the newest scoring (the champion's). Beside it,
every model version still in the embeddings table (scoring keeps the last ``score.keep_model_versions``)
gets a feature view of its own, ``product_embeddings_v3``, online and offline: its offline source is the
table's partition of that model, its online table holds that model's vectors only. A consumer trained on
v3 reads ``product_embeddings_v3:embedding`` and keeps getting v3 after v4 is promoted. Publishing
retires (registry entry and online table) the pinned views of versions no longer in the table.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import sqlite3
import struct
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from prodemb.ann import HnswParams

log = logging.getLogger(__name__)
REPO_ROOT = Path(__file__).resolve().parent.parent
FEATURE_REPO = REPO_ROOT / "feature_repo"
FEATURE_VIEW = "product_embeddings"
JOIN_KEY = "product_id"
SITE_JOIN_KEYS = ("product_id", "site")  # one model per site: Feast's key is (site, product_id), sorted
FEATURES = ("embedding", "model_version")
DEFAULT_MODEL_NAME = "prodemb-encoder"


# --- the store ---------------------------------------------------------------------------------

_STORES: dict[tuple[str, str], object] = {}


def feature_store(repo_dir: str | Path = FEATURE_REPO, yaml_file: str = "feature_store.yaml"):
    """One FeatureStore per process and repo (``import feast`` and construction are slow)."""
    key = (str(Path(repo_dir).resolve()), yaml_file)
    if key not in _STORES:
        from feast import FeatureStore

        os.environ["PRODEMB_FEATURE_REPO"] = key[0]  # ${PRODEMB_FEATURE_REPO} in the yaml files
        (Path(key[0]) / "data").mkdir(exist_ok=True)  # registry and SQLite files live there
        _STORES[key] = FeatureStore(repo_path=key[0], fs_yaml_file=Path(key[0]) / yaml_file)
    return _STORES[key]


# --- pinned versions -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PinnedView:
    """The feature view of one model version: its name, the model, and its partition of the table."""

    view: str
    model_name: str
    model_version: str
    partition: str


def pinned_view_name(model_name: str, model_version: str, default_model: str = DEFAULT_MODEL_NAME) -> str:
    """``product_embeddings_v3`` for the configured model; another registered name keeps its own views:
    ``prodemb-encoder-other`` version 1 → ``product_embeddings_other_v1``."""
    if model_name == default_model:
        return f"{FEATURE_VIEW}_v{model_version}"
    rest = model_name[len(default_model) + 1 :] if model_name.startswith(default_model + "-") else model_name
    return f"{FEATURE_VIEW}_{re.sub(r'[^A-Za-z0-9_]', '_', rest)}_v{model_version}"


def pinned_views(keys: pa.Table, default_model: str = DEFAULT_MODEL_NAME) -> list[PinnedView]:
    """One pinned view per (model_name, model_version) of the embeddings table's key columns."""
    from prodemb.score import model_partition

    models = (
        pa.TableGroupBy(
            keys.select(["model_name", "model_version"]), ["model_name", "model_version"], use_threads=False
        )
        .aggregate([])
        .to_pylist()
    )
    views = [
        PinnedView(
            pinned_view_name(m["model_name"], m["model_version"], default_model),
            m["model_name"],
            m["model_version"],
            model_partition(m["model_name"], m["model_version"]),
        )
        for m in models
    ]
    for field in ("view", "partition"):
        names = [getattr(v, field) for v in views]
        if len(set(names)) < len(names):
            clash = sorted(n for n in set(names) if names.count(n) > 1)
            raise ValueError(f"two models of the embeddings table share the pinned {field} {clash[0]!r}: rename one")
    return sorted(views, key=lambda v: (v.model_name, int(v.model_version) if v.model_version.isdigit() else 0))


def repo_objects(
    embeddings_path: str | Path,
    repo_dir: str | Path = FEATURE_REPO,
    pinned: list[PinnedView] = (),
    by_site: bool = False,
) -> list:
    """Entities, feature views and service from ``feature_repo/features.py``, pointed at ``embeddings_path``,
    with one view per ``pinned`` model version; ``by_site``: keyed by (site, product_id)."""
    # absolute(), not resolve(): the table path is a symlink swapped on every write; resolving it would pin
    # the registry to one version folder, which a later scoring prunes.
    from prodemb import fs

    os.environ["PRODEMB_EMBEDDINGS"] = fs.absolute(embeddings_path)
    os.environ["PRODEMB_PINNED_VIEWS"] = json.dumps([vars(p) for p in pinned])
    os.environ["PRODEMB_FEAST_BY_SITE"] = "1" if by_site else "0"
    path = Path(repo_dir) / "features.py"
    spec = importlib.util.spec_from_file_location("prodemb_feature_repo", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return [*module.entities, module.product_embeddings, module.product_embeddings_service, *module.pinned_embeddings]


def apply_repo(
    store,
    embeddings_path: str | Path,
    repo_dir: str | Path = FEATURE_REPO,
    pinned: list[PinnedView] = (),
    by_site: bool = False,
) -> list[str]:
    """``feast apply`` from Python: registry entries and online tables for our objects. Pinned views of
    versions not in ``pinned`` are retired: registry entry and online table. Returns the retired names."""
    # features.py picks the source that this store's offline store reads (FileSource or SparkSource).
    os.environ["PRODEMB_FEAST_OFFLINE"] = "spark" if store.config.offline_store.type == "spark" else "file"
    objects = repo_objects(embeddings_path, repo_dir, pinned, by_site)
    keep = {o.name for o in objects}
    retired = [
        fv for fv in store.list_feature_views() if fv.name.startswith(FEATURE_VIEW + "_") and fv.name not in keep
    ]
    store.apply(objects, objects_to_delete=retired, partial=not retired)
    return sorted(fv.name for fv in retired)


# --- byte encodings (identical to Feast's) -----------------------------------------------------


@lru_cache(maxsize=None)
def _entity_key_prefix(serialization_version: int) -> bytes:
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    empty = serialize_entity_key(
        EntityKey(join_keys=[JOIN_KEY], entity_values=[Value(string_val="")]),
        entity_key_serialization_version=serialization_version,
    )
    return empty[:-4]  # drop the trailing uint32 length (0) of the empty value


@lru_cache(maxsize=None)
def _site_key_layout(serialization_version: int) -> tuple[bytes, bytes]:
    """(header, value type tag) of a (site, product_id) entity key: Feast writes the header of the sorted
    join key names, then per value (product_id, then site) its type tag, its length and its bytes."""
    from feast.infra.key_encoding_utils import serialize_entity_key, serialize_entity_key_prefix
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    header = serialize_entity_key_prefix(list(SITE_JOIN_KEYS), serialization_version)
    empty = serialize_entity_key(
        EntityKey(join_keys=list(SITE_JOIN_KEYS), entity_values=[Value(string_val="")] * 2),
        entity_key_serialization_version=serialization_version,
    )
    tag = empty[len(header) : len(header) + 4]
    if empty != header + (tag + struct.pack("<I", 0)) * 2:
        raise RuntimeError("Feast's entity key layout changed: the bulk publisher needs updating")
    return header, tag


def encode_entity_keys(product_ids, serialization_version: int = 3, sites=None) -> list[bytes]:
    """Entity keys as Feast serializes them: of ``product_id``, or with ``sites`` of (site, product_id)."""
    pack = struct.Struct("<I").pack
    ids = [str(p).encode("utf-8") for p in product_ids]
    if sites is None:
        prefix = _entity_key_prefix(serialization_version)
        return [prefix + pack(len(b)) + b for b in ids]
    header, tag = _site_key_layout(serialization_version)
    return [
        header + tag + pack(len(b)) + b + tag + pack(len(s)) + s
        for b, s in zip(ids, (str(x).encode("utf-8") for x in sites))
    ]


@lru_cache(maxsize=None)
def _float_list_header(dim: int) -> bytes:
    from feast.protos.feast.types.Value_pb2 import FloatList, Value

    full = Value(float_list_val=FloatList(val=[1.0] * dim)).SerializeToString()
    return full[: len(full) - 4 * dim]  # packed floats are the tail; the header depends on dim only


def encode_float_lists(matrix: np.ndarray) -> list[bytes]:
    """[n, dim] → serialized ``Value(float_list_val=...)`` bytes per row, without protobuf objects."""
    m = np.ascontiguousarray(matrix, dtype="<f4")
    header, raw, width = _float_list_header(m.shape[1]), m.tobytes(), 4 * m.shape[1]
    return [header + raw[i * width : (i + 1) * width] for i in range(m.shape[0])]


def encode_string(value: str) -> bytes:
    from feast.protos.feast.types.Value_pb2 import Value

    return Value(string_val=value).SerializeToString()


# --- publishing --------------------------------------------------------------------------------


def _sqlite_target(store, view: str = FEATURE_VIEW) -> tuple[str, str] | None:
    """(db path, table name of ``view``) when the online store is Feast's SQLite store, else None."""
    cfg = store.config
    if getattr(cfg.online_store, "type", "sqlite") != "sqlite":
        return None
    from feast.infra.online_stores.helpers import compute_table_id

    path = Path(cfg.online_store.path)
    if not path.is_absolute():
        path = Path(store.repo_path) / path
    fv = store.get_feature_view(view)
    return str(path), compute_table_id(cfg.project, fv, cfg.registry.enable_online_feature_view_versioning)


def _feast_epochs(timestamps: pd.Series) -> list[int]:
    """Timestamps as Feast's SQLite store writes them: ``int(naive_utc_datetime.timestamp())``."""
    utc = pd.Series(pd.to_datetime(timestamps, utc=True))
    codes, uniques = pd.factorize(utc)  # usually one scoring time for a whole table
    epochs = [int(t.tz_localize(None).to_pydatetime().timestamp()) for t in uniques]
    return [epochs[c] for c in codes]


def latest_rows(embeddings: pd.DataFrame) -> pd.DataFrame:
    """One row per (site, product): the newest scoring (what the online store should serve)."""
    key = ["site", "product_id"] if "site" in embeddings.columns else ["product_id"]  # as latest_row_mask
    newest = embeddings.sort_values("event_timestamp", kind="stable").drop_duplicates(key, keep="last")
    return newest.reset_index(drop=True)


def latest_row_mask(dataset) -> tuple[np.ndarray, pa.Table]:
    """For a pyarrow dataset of the embeddings table: a bool per row, in file order (``use_threads=False``),
    true for the newest scoring of its (site, product) (``latest_rows`` without reading a single vector),
    and the (product_id, event_timestamp, model_version[, model_name, site]) columns it was computed from."""
    columns = ["product_id", "event_timestamp", "model_version"]
    columns += [c for c in ("model_name", "site") if c in dataset.schema.names]
    keys = dataset.to_table(columns=columns, use_threads=False)
    keys = keys.append_column("row", pa.array(np.arange(keys.num_rows, dtype=np.int64)))
    group = ["site", "product_id"] if "site" in columns else ["product_id"]
    newest = pa.TableGroupBy(keys.sort_by("event_timestamp"), group, use_threads=False).aggregate(
        [("row", "last")]
    )  # sort_by is stable: ties go to the later row, as latest_rows
    mask = np.zeros(keys.num_rows, dtype=bool)
    mask[newest.column("row_last").to_numpy()] = True
    return mask, keys


def iter_routed_rows(
    dataset, mask: np.ndarray, pinned: list[PinnedView], batch_rows: int = 20_000, by_site: bool = False
) -> Iterator[tuple[str, pd.DataFrame]]:
    """One pass over the table, streamed: (view, chunk) pairs where the rows ``mask`` selects go to
    ``product_embeddings`` and every row goes to its model's pinned view, if that model is ``pinned``.
    ``by_site``: the chunks carry the ``site`` key column too."""
    from prodemb.tables import iter_batches

    columns = ["product_id", *FEATURES, "event_timestamp"] + (["site"] if by_site else [])
    offset = 0
    for batch in iter_batches(dataset, [*columns, "model_name"] if pinned else columns, batch_rows):
        keep = mask[offset : offset + batch.num_rows]
        offset += batch.num_rows
        if keep.any():
            yield FEATURE_VIEW, batch.filter(pa.array(keep)).select(columns).to_pandas()
        for p in pinned:
            mine = pc.and_(
                pc.equal(batch.column("model_name"), p.model_name),
                pc.equal(batch.column("model_version"), p.model_version),
            )
            if pc.any(mine).as_py():
                yield p.view, batch.filter(mine).select(columns).to_pandas()
    if offset != len(mask):
        raise RuntimeError(f"the embeddings table changed while publishing ({offset} rows read, {len(mask)} expected)")


def _chunks(rows: pd.DataFrame, batch_rows: int) -> Iterator[pd.DataFrame]:
    for start in range(0, len(rows), batch_rows):
        yield rows.iloc[start : start + batch_rows]


def publish_online(
    store,
    rows: pd.DataFrame | Iterable[pd.DataFrame],
    batch_rows: int = 20_000,
    progress: bool = True,
    total: int | None = None,
    view: str = FEATURE_VIEW,
) -> dict:
    """Write rows (product_id, embedding, model_version, event_timestamp) to ``view``'s online table: one
    DataFrame, or an iterable of chunks (``total`` rows in all, for the progress bar)."""
    if isinstance(rows, pd.DataFrame):
        total, rows = len(rows), _chunks(rows, batch_rows)
    return write_online(store, ((view, chunk) for chunk in rows), total=total, progress=progress)


def write_online(
    store, routed: Iterable[tuple[str, pd.DataFrame]], total: int | None = None, progress: bool = True
) -> dict:
    """Write (view, chunk) pairs to the online store, in one transaction on SQLite. Returns rows written in
    all and per view."""
    from tqdm.auto import tqdm

    from prodemb import faults

    t0 = time.perf_counter()
    by_view: dict[str, int] = {}
    bar = tqdm(
        total=total, desc="publish", unit="row", disable=not progress, mininterval=0.1 if sys.stderr.isatty() else 15.0
    )
    target = _sqlite_target(store)
    if target is None:  # any other online store (Redis, ...): the SDK path, chunk by chunk
        try:
            for view, chunk in routed:
                store.write_to_online_store(view, chunk)
                by_view[view] = by_view.get(view, 0) + len(chunk)
                bar.update(len(chunk))
                faults.point("publish.batch")
        finally:
            bar.close()
        return _written(by_view, t0, path="feast-sdk")
    db, table = target
    tables = {FEATURE_VIEW: table}
    version = store.config.entity_key_serialization_version
    conn = sqlite3.connect(db)
    try:
        # Keep the database's journal mode (Feast's default rollback journal): the one transaction
        # below is atomic either way, and bulk inserts run 2x faster than under WAL.
        conn.execute("PRAGMA synchronous=NORMAL")
        sql = (
            'INSERT INTO "{}" (entity_key, feature_name, value, value_text, event_ts, created_ts) '
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(entity_key, feature_name) DO UPDATE SET "
            "value = excluded.value, value_text = excluded.value_text, event_ts = excluded.event_ts, "
            "created_ts = excluded.created_ts"
        )
        created = _feast_epochs(pd.Series([datetime.now(timezone.utc)]))[0]
        with conn:  # one transaction: readers see all of it (every view) or none of it
            for view, chunk in routed:
                if view not in tables:
                    tables[view] = _sqlite_target(store, view)[1]
                insert = sql.format(tables[view])
                keys = encode_entity_keys(
                    chunk["product_id"], version, chunk["site"] if "site" in chunk.columns else None
                )
                vectors = encode_float_lists(np.stack(chunk["embedding"].to_numpy()))
                ts = _feast_epochs(chunk["event_timestamp"])
                versions = [str(v) for v in chunk["model_version"]]
                conn.executemany(
                    insert, zip(keys, ["embedding"] * len(keys), vectors, [None] * len(keys), ts, [created] * len(keys))
                )
                conn.executemany(
                    insert,
                    zip(
                        keys,
                        ["model_version"] * len(keys),
                        map(encode_string, versions),
                        versions,
                        ts,
                        [created] * len(keys),
                    ),
                )
                by_view[view] = by_view.get(view, 0) + len(chunk)
                bar.update(len(chunk))
                faults.point("publish.batch")
    finally:
        conn.close()
        bar.close()
    return _written(by_view, t0, path="sqlite-bulk", db=db, table=table)


def _written(by_view: dict[str, int], t0: float, **extra) -> dict:
    n = sum(by_view.values())
    seconds = time.perf_counter() - t0
    return {"rows": n, "rows_by_view": by_view, "seconds": seconds, "rows_per_second": n / max(seconds, 1e-9), **extra}


# --- reading -----------------------------------------------------------------------------------


class NotPublishedError(ValueError):
    """The feature view is not in the store's registry (nothing published yet, or the registry was lost)."""


def require_published(store, view: str = FEATURE_VIEW) -> None:
    """A clear error when the registry does not know the feature view, before any lookup."""
    from feast.errors import FeatureViewNotFoundException

    try:
        store.get_feature_view(view)
    except FeatureViewNotFoundException:
        if view != FEATURE_VIEW:
            pinned = sorted(fv.name for fv in store.list_feature_views() if fv.name.startswith(FEATURE_VIEW + "_"))
            raise NotPublishedError(
                f"feature view {view!r} is not in the registry of {store.repo_path}: that model "
                f"version is not published or was retired (pinned views now: "
                f"{', '.join(pinned) or 'none'})"
            ) from None
        raise NotPublishedError(
            f"feature view {view!r} is not in the registry of {store.repo_path} "
            "(nothing published yet, or the registry was lost): run jobs/publish.py"
        ) from None


def online_vectors(store, product_ids: list[str], view: str = FEATURE_VIEW, sites: list[str] | None = None) -> dict:
    """{product_id: {"embedding": np.ndarray | None, "model_version": str | None}} from the online store;
    with ``sites`` (a store keyed by site, one model per site) the keys are (site, product_id)."""
    rows = (
        [{JOIN_KEY: p} for p in product_ids]
        if sites is None
        else [{JOIN_KEY: p, "site": s} for p, s in zip(product_ids, sites)]
    )
    resp = store.get_online_features(features=[f"{view}:{f}" for f in FEATURES], entity_rows=rows).to_dict()
    keys = resp[JOIN_KEY] if sites is None else list(zip(resp["site"], resp[JOIN_KEY]))
    return {
        key: {"embedding": None if emb is None else np.asarray(emb, dtype=np.float32), "model_version": ver}
        for key, emb, ver in zip(keys, resp["embedding"], resp["model_version"])
    }


def historical_features(store, entity_df: pd.DataFrame, view: str = FEATURE_VIEW) -> pd.DataFrame:
    """Point-in-time join: for each (product_id, event_timestamp) the vector valid at that time."""
    job = store.get_historical_features(entity_df=entity_df, features=[f"{view}:{f}" for f in FEATURES])
    return job.to_df()


class UnservableVectorsError(ValueError):
    """The embeddings table holds vectors that must not be served (``prodemb.vectors``): nothing is published."""


def check_servable(dataset, batch_rows: int = 20_000) -> int:
    """Every row of an embeddings dataset (all models: the offline store serves them all) has a servable
    vector (``prodemb.vectors``), streamed batch by batch. Returns the rows checked; raises
    UnservableVectorsError naming the count per reason and a first offender."""
    from prodemb.tables import iter_batches
    from prodemb.vectors import OK, REASONS, list_column_codes

    columns = ["product_id", "embedding", "model_name", "model_version", "dim"]
    missing = [c for c in columns if c not in dataset.schema.names]
    if missing:
        raise UnservableVectorsError(f"the embeddings table has no {missing} column: not a table of jobs/score.py")
    counts = np.zeros(len(REASONS), dtype=np.int64)
    first = None
    n = 0
    for batch in iter_batches(dataset, columns, batch_rows):
        codes = list_column_codes(batch.column("embedding"), batch.column("dim"))
        bad = np.flatnonzero(codes != OK)
        n += batch.num_rows
        counts += np.bincount(codes[bad], minlength=len(REASONS))
        if first is None and len(bad):
            i = int(bad[0])
            first = (
                batch.column("product_id")[i].as_py(),
                batch.column("model_name")[i].as_py(),
                batch.column("model_version")[i].as_py(),
                REASONS[codes[i]],
            )
    if counts.any():
        listed = ", ".join(f"{r}: {c}" for r, c in sorted(zip(REASONS, counts.tolist())) if c)
        raise UnservableVectorsError(
            f"{int(counts.sum())} of {n} rows hold vectors that cannot be served ({listed}; first: product "
            f"{first[0]!r} of model {first[1]}/{first[2]}, {first[3]}): nothing published; rescore with "
            "jobs/score.py, which quarantines such rows"
        )
    return n


def run_publish(
    data_dir: str,
    *,
    repo_dir: str | Path = FEATURE_REPO,
    yaml_file: str = "feature_store.yaml",
    embeddings: str | None = None,
    progress: bool = True,
    model_name: str = DEFAULT_MODEL_NAME,
    ann: HnswParams | None = HnswParams(),
    by_site: bool = False,
) -> dict:
    """Apply the feature repo over DIR/embeddings and load the latest vector of every product online, and
    every kept model version's vectors into its pinned view (``model_name`` is the configured registered
    name: its versions get the short view names, product_embeddings_v3). Every kept version gets its
    similar-products index too (prodemb.ann, built once per scoring), unless ``ann`` is None. ``by_site``
    (one model per site): Feast keys the vectors by (site, product_id); otherwise by product_id, and a
    table holding several sites is refused (two sites' products with one id would overwrite each other)."""
    from prodemb import fs
    from prodemb.score import MODEL_PARTITION
    from prodemb.tables import arrow_dataset

    path = embeddings or f"{data_dir.rstrip('/')}/embeddings"
    if not fs.exists(path):
        raise FileNotFoundError(f"no embeddings table at {path}: run jobs/score.py first")
    dataset = arrow_dataset(path)  # streamed: one batch of vectors in memory at a time
    check_servable(dataset)  # before the registry or the online store is touched
    mask, keys = latest_row_mask(dataset)
    sites = sorted(pc.unique(keys.column("site")).to_pylist()) if "site" in keys.column_names else []
    if len(sites) > 1 and not by_site:
        raise ValueError(
            f"the embeddings table holds several sites ({', '.join(map(str, sites))}): with Feast "
            "keyed by product_id alone their vectors would overwrite each other; list them in `sites:` "
            "(one model per site, keyed by (site, product_id))"
        )
    models = pinned_views(keys, model_name)
    # A table scored before pinning existed has no partition per model: its versions get no pinned view
    # until the next scoring rewrites it.
    pinned = [p for p in models if fs.exists(fs.join(path, f"{MODEL_PARTITION}={p.partition}"))]
    # One publisher per feature repo; the lock file sits with the registry and the store, in data/.
    with fs.output_lock(Path(repo_dir) / "data" / "publish", "publish"):
        store = feature_store(repo_dir, yaml_file)
        retired = apply_repo(store, path, repo_dir, pinned, by_site)
        report = write_online(
            store,
            iter_routed_rows(dataset, mask, pinned, by_site=by_site),
            progress=progress,
            total=int(mask.sum()) + _rows_of(keys, pinned),
        )
        if ann is not None:
            from prodemb.ann import build_for_model, retire

            report["ann"] = {
                f"{p.model_name}/{p.model_version}": build_for_model(
                    dataset, path, p.model_name, p.model_version, p.partition, ann, keys
                )
                for p in models
            }
            report["ann_retired"] = retire(path, {p.partition for p in models})
    champion = report["rows_by_view"].get(FEATURE_VIEW, 0)
    versions = pc.unique(keys.column("model_version").filter(pa.array(mask))).to_pylist()
    # rows_in = rows_out (newest per product) + rows_superseded (older model versions, kept offline and in
    # their pinned views).
    report.update(
        rows_in=keys.num_rows,
        rows_out=champion,
        rows_superseded=keys.num_rows - champion,
        rows_quarantined=0,
        model_versions=sorted(versions),
        keyed_by=list(SITE_JOIN_KEYS if by_site else (JOIN_KEY,)),
        pinned_views={p.view: f"{p.model_name}/{p.model_version}" for p in pinned},
        unpinned_models=[f"{p.model_name}/{p.model_version}" for p in models if p not in pinned],
        retired_views=retired,
    )
    return report


def _rows_of(keys: pa.Table, pinned: list[PinnedView]) -> int:
    """Rows of the key columns that belong to one of the ``pinned`` models."""
    if not pinned:
        return 0
    model = pc.binary_join_element_wise(keys.column("model_name"), keys.column("model_version"), "/")
    return int(pc.sum(pc.is_in(model, pa.array([f"{p.model_name}/{p.model_version}" for p in pinned]))).as_py() or 0)


class SqliteVectorReader:
    """Direct point lookups in Feast's SQLite online table, for latency-critical callers.

    Reads the same rows ``get_online_features`` reads (same keys, same bytes), skipping the SDK's
    per-call registry and protobuf work: one indexed SELECT and a numpy view of the float bytes.
    Tested to return exactly what the SDK returns.
    """

    def __init__(self, store):
        target = _sqlite_target(store)
        if target is None:
            raise ValueError("SqliteVectorReader needs Feast's SQLite online store")
        db, table = target
        self._version = store.config.entity_key_serialization_version
        self._conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, check_same_thread=False)
        self._sql = f"SELECT entity_key, value FROM \"{table}\" WHERE feature_name = 'embedding' AND entity_key IN "
        self._keys: dict[str, str] = {}

    def get(self, product_ids: list[str]) -> dict[str, np.ndarray | None]:
        keys = encode_entity_keys(product_ids, self._version)
        sql = self._keys.get(len(keys))
        if sql is None:
            sql = self._keys[len(keys)] = self._sql + "(" + ",".join("?" * len(keys)) + ")"
        found = dict(self._conn.execute(sql, keys).fetchall())
        out: dict[str, np.ndarray | None] = {}
        for pid, key in zip(product_ids, keys):
            raw = found.get(key)
            out[pid] = None if raw is None else _decode_float_list(raw)
        return out

    def close(self) -> None:
        self._conn.close()


def _decode_float_list(raw: bytes) -> np.ndarray:
    """Inverse of encode_float_lists: Value(float_list_val) bytes → float32 vector."""
    # Layout: field tag (2 bytes), varint length, FloatList tag, varint length, packed floats.
    pos = 2
    while raw[pos] & 0x80:
        pos += 1
    pos += 2  # end of outer varint, FloatList field tag
    length = 0
    shift = 0
    while True:
        b = raw[pos]
        length |= (b & 0x7F) << shift
        pos += 1
        if not b & 0x80:
            break
        shift += 7
    return np.frombuffer(raw, dtype="<f4", count=length // 4, offset=pos)
