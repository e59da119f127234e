"""Writing: the clicks folder, products.parquet and the task tables, each swapped into place in one step."""

from __future__ import annotations

import shutil
import time
import uuid
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from prodemb import fs
from prodemb.synth.catalog import make_catalog
from prodemb.synth.clicks import click_batches, log_start_ms
from prodemb.synth.spec import SynthSpec

ROW_GROUP_ROWS = 131_072


def write_task_tables(catalog: pd.DataFrame, out_dir: str | Path) -> dict[str, Path]:
    """Downstream task tables: out_dir/tasks/{condition,free_shipping}.parquet (product_id, title, label 0/1)."""
    tasks = Path(out_dir) / "tasks"
    tasks.mkdir(parents=True, exist_ok=True)
    labels = {
        "condition": (catalog["condition"] == "used").astype("int64"),
        "free_shipping": catalog["free_shipping"].astype(bool).astype("int64"),
    }
    paths = {}
    for name, label in labels.items():
        df = pd.DataFrame(
            {
                "product_id": catalog["product_id"].astype(str),
                "title": catalog["title"].astype(str),
                "label": label.to_numpy(),
            }
        )
        path = tasks / f"{name}.parquet"
        with fs.atomic_local_file(path) as tmp:
            pq.write_table(pa.Table.from_pandas(df, preserve_index=False), tmp)
        paths[name] = path
    return paths


def generate(spec: SynthSpec, out_dir: str | Path) -> dict:
    """Write out_dir/clicks/part-NNNNN.parquet (one file per batch), out_dir/products.parquet and the task
        tables; every file and the clicks folder are written aside and swapped into place in one step
    (``prodemb.fs``), so a reader never finds them half-written or missing. Returns a summary dict."""
    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    catalog = make_catalog(spec)
    products = out / "products.parquet"
    with fs.atomic_local_file(products) as tmp_products:
        pq.write_table(pa.Table.from_pandas(catalog, preserve_index=False), tmp_products)
    tasks = write_task_tables(catalog, out)

    tmp = out / f".clicks.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    stats: dict = {}
    names, rows, nbytes = [], 0, 0
    try:
        for i, batch in enumerate(click_batches(spec, catalog, stats)):
            name = f"part-{i:05d}.parquet"
            # zstd halves the files vs snappy at the same speed; the big dictionary page keeps titles
            # dictionary-encoded (100k distinct titles overflow the 1 MB default and fall back to plain).
            # 128k-row groups let readers (Spark, DuckDB) split a file across cores.
            pq.write_table(
                pa.Table.from_batches([batch]),
                tmp / name,
                compression="zstd",
                dictionary_pagesize_limit=64 << 20,
                row_group_size=ROW_GROUP_ROWS,
            )
            nbytes += (tmp / name).stat().st_size
            names.append(name)
            rows += batch.num_rows
        fs.replace_dir(tmp, out / "clicks")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    seconds = time.perf_counter() - t0
    start = pd.Timestamp(log_start_ms(spec), unit="ms", tz="UTC")
    return {
        "n_clicks": rows,
        "n_products": len(catalog),
        "n_users": stats["n_users"],
        "n_sessions_generated": stats["n_sessions"],
        "n_categories": stats["n_categories"],
        "seed": spec.seed,
        "start": start.isoformat(),
        "end": (start + pd.Timedelta(days=spec.days)).isoformat(),
        "site": spec.site,
        "clicks_dir": str(out / "clicks"),
        "files": [str(out / "clicks" / nm) for nm in names],
        "products": str(products),
        "tasks": {k: str(v) for k, v in tasks.items()},
        "bytes": nbytes,
        "seconds": round(seconds, 3),
        "clicks_per_second": round(rows / seconds) if seconds > 0 else None,
        "spec": asdict(spec),
    }
