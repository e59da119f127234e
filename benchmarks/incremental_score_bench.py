"""Incremental scoring against full rescoring, whole processes, in the same run.

    python benchmarks/incremental_score_bench.py [--products 1000000] [--changed 0.01] [--profile default]

A catalog of generated products (site, product_id, title, title_norm, category) and an encoder of a model
profile (``--profile``: default, the recommended 512-d model; or small, 128-d), untrained (speed does not
depend on the weights), registered in a temp MLflow store. Then, each
`spark-submit --master local[2] --driver-memory 6g jobs/score.py` timed from start to exit (JVM included):
  1. the first scoring (every product embedded);
  2. ``--changed`` of the titles edited, the catalog rewritten (not timed);
  3. incremental scoring (the default): embeds the changed products, carries the others over;
  4. full rescoring (``--full``) of the same catalog into the same table: embeds every product.
Prints seconds, products/s and the full/incremental ratio, and each run's embedded/carried counts.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.serve_bench import register_encoder  # noqa: E402
from benchmarks.whole_process import venv_env  # noqa: E402


def write_catalog(folder: Path, ids: list[str], titles: list[str], categories: list[str]) -> None:
    from prodemb.text import normalize_titles

    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.parquet"):
        old.unlink()
    table = pa.table(
        {
            "site": ["MLA"] * len(ids),
            "product_id": ids,
            "title": titles,
            "title_norm": normalize_titles(titles, "es"),
            "category": categories,
        }
    )
    pq.write_table(table, folder / "part-0.parquet")


def score(data: Path, uri: str, log: Path, *extra: str) -> tuple[float, dict]:
    bin_dir = Path(sys.executable).parent
    env = {**venv_env(), "PYSPARK_PYTHON": sys.executable}
    cmd = [
        str(bin_dir / "spark-submit"),
        "--master",
        "local[2]",
        "--driver-memory",
        "6g",
        str(REPO / "jobs" / "score.py"),
        "--data",
        str(data),
        "--mlflow-uri",
        uri,
        "--json",
        *extra,
    ]
    t0 = time.perf_counter()
    with open(log, "w") as err:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, text=True, cwd=data.parent, env=env)
    seconds = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"score exited {proc.returncode}: {log.read_text()[-2000:]}")
    return seconds, json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--products", type=int, default=1_000_000)
    ap.add_argument("--changed", type=float, default=0.01)
    ap.add_argument(
        "--profile", default="default", help="model profile: default (512-d, the recommended model) or small (128-d)"
    )
    args = ap.parse_args()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from prodemb.synth import SynthSpec, make_catalog

    with tempfile.TemporaryDirectory(prefix="incr-bench-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        catalog = make_catalog(SynthSpec(n_products=args.products, seed=5))
        uri, _ = register_encoder(work, min(args.products, 50_000), profile=args.profile)
        ids, titles = catalog.product_id.tolist(), catalog.title.tolist()
        categories = catalog.category.tolist()
        write_catalog(work / "data" / "catalog", ids, titles, categories)
        print(
            f"setup: {args.products:,} products, {args.profile} profile registered, "
            f"{time.perf_counter() - t0:.0f} s (not timed)"
        )

        first_s, first = score(work / "data", uri, work / "first.log")
        print(
            f"first scoring        {first_s:7.1f} s  {first['rows_embedded'] / first_s:9,.0f} products/s "
            f"(embedded {first['rows_embedded']:,})"
        )
        rng = np.random.default_rng(0)
        edit = rng.choice(len(ids), int(args.changed * len(ids)), replace=False)
        for i in edit:
            titles[i] = titles[i] + " usado"
        write_catalog(work / "data" / "catalog", ids, titles, categories)

        incr_s, incr = score(work / "data", uri, work / "incremental.log")
        full_s, full = score(work / "data", uri, work / "full.log", "--full")
        n = args.products
        print(
            f"incremental scoring  {incr_s:7.1f} s  {n / incr_s:9,.0f} products/s "
            f"(embedded {incr['rows_embedded']:,}, carried over {incr['rows_carried']:,})"
        )
        print(
            f"full rescoring       {full_s:7.1f} s  {n / full_s:9,.0f} products/s (embedded {full['rows_embedded']:,})"
        )
        print(
            f"incremental is {full_s / incr_s:.1f}x faster than full rescoring with {args.changed:.0%} of the "
            f"titles changed ({len(edit):,} products)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
