"""Every stage at scale, as whole processes: wall seconds and peak RSS per stage, and per-unit figures.

    python benchmarks/scale_bench.py [--clicks 10000000] [--products 1000000] [--loader-pairs 100000000]
                                     [--train-steps 20] [--work DIR] [--keep]

Stages, each one process started the way users start it (``spark-submit`` for the Spark jobs, with the
driver given 8g of the machine: the local-mode default of 1g is too small at this size):
  generate (prodemb.synth) → sessionize → train_tokenizer → train (``small`` profile, --max-steps) →
  score → publish (Feast SQLite online store) → publish_redis (the same rows into a redis-server on a
  free loopback port, through the Feast SDK: rows/s and Redis memory per row), then the training data
  loader alone on a generated pairs table of ``--loader-pairs`` rows (10^8 by default), next to its
  peer: a plain pyarrow scan of the same columns (the I/O floor; the ratio is what mapping ids to
  catalog indices costs on top). Sessionize writes a Spark event log: its input, shuffle and output
  bytes are summed from it (the executor and shuffle sizing of the README).

Peak RSS is the child's own (``os.wait4``: the process and the descendants it waited for, e.g. the
JVM that spark-submit starts). Sizing in the README scales these per-unit figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.whole_process import venv_env  # noqa: E402

PY = sys.executable
BIN = Path(PY).parent


def run(name: str, cmd: list[str], env: dict, log: Path) -> dict:
    """Run one stage to completion; its wall seconds and peak RSS (GiB)."""
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise SystemExit(f"{name} exited {code}; log {log}:\n{tail}")
    out = {"stage": name, "seconds": round(seconds, 1), "peak_rss_gib": round(usage.ru_maxrss / 2**20, 2)}
    print(f"{name:16s} {out['seconds']:8.1f} s   peak RSS {out['peak_rss_gib']:6.2f} GiB", flush=True)
    return out


def last_json(log: Path) -> dict:
    """The last JSON object a stage printed (its report: every stage runs with --json)."""
    lines = log.read_text(errors="replace").splitlines()
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].startswith("{"):
            for text in (lines[i], "\n".join(lines[i:])):
                try:
                    return json.loads(text)
                except json.JSONDecodeError:
                    pass
    return {}


LOADER = r"""
import json, sys, time
from prodemb.tokenizer import Tokenizer
from prodemb.train_data import load_training_data
t0 = time.perf_counter()
data = load_training_data(sys.argv[1], sys.argv[2], Tokenizer.load(sys.argv[3]), 32)
print(json.dumps({"seconds": time.perf_counter() - t0, "pairs": int(len(data.pair_a) + len(data.holdout_a)),
                  "index_bytes": int(data.pair_a.nbytes + data.pair_b.nbytes
                                     + data.holdout_a.nbytes + data.holdout_b.nbytes)}))
"""


def spark_metrics(event_dir: Path) -> dict:
    """Input, shuffle-write and output bytes of one application, summed over its tasks (Spark event log)."""
    totals = {"input_bytes": 0, "shuffle_write_bytes": 0, "output_bytes": 0, "tasks": 0}
    for log in (p for p in event_dir.rglob("*") if p.is_file()):
        for line in log.read_text(errors="replace").splitlines():
            if '"SparkListenerTaskEnd"' not in line:
                continue
            m = json.loads(line).get("Task Metrics") or {}
            totals["tasks"] += 1
            totals["input_bytes"] += (m.get("Input Metrics") or {}).get("Bytes Read", 0)
            totals["shuffle_write_bytes"] += (m.get("Shuffle Write Metrics") or {}).get("Shuffle Bytes Written", 0)
            totals["output_bytes"] += (m.get("Output Metrics") or {}).get("Bytes Written", 0)
    return totals


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_memory(port: int) -> int:
    import redis

    return int(redis.Redis(host="127.0.0.1", port=port).info("memory")["used_memory"])


SCAN = r"""
import json, sys, time
import pyarrow.dataset as ds
t0 = time.perf_counter(); n = 0
for b in ds.dataset(sys.argv[1], format="parquet").to_batches(columns=["site", "session_id", "product_a", "product_b"]):
    n += b.num_rows
print(json.dumps({"seconds": time.perf_counter() - t0, "pairs": n}))
"""


def write_pairs(catalog_dir: Path, out: Path, n_pairs: int, seed: int = 0, chunk: int = 10_000_000) -> None:
    """A pairs table of ``n_pairs`` rows over the catalog's products (dictionary-encoded ids), in files of
    ``chunk`` rows: the layout sessionize writes, at a size sessionize would need 10^9 clicks for."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    catalog = ds.dataset(os.path.realpath(catalog_dir), format="parquet").to_table(columns=["site", "product_id"])
    ids = catalog.column("product_id").combine_chunks()
    site = catalog.column("site")[0].as_py()
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True)
    for i, start in enumerate(range(0, n_pairs, chunk)):
        n = min(chunk, n_pairs - start)
        a, b = rng.integers(0, len(ids), n), rng.integers(0, len(ids), n)
        table = pa.table(
            {
                "site": pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, dtype=np.int32)), pa.array([site])),
                "session_id": pa.array(rng.integers(-(2**62), 2**62, n)),
                "product_a": pa.DictionaryArray.from_arrays(pa.array(a.astype(np.int32)), ids),
                "product_b": pa.DictionaryArray.from_arrays(pa.array(b.astype(np.int32)), ids),
            }
        )
        pq.write_table(table, out / f"part-{i:05d}.parquet", compression="zstd")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clicks", type=int, default=10_000_000)
    ap.add_argument("--products", type=int, default=1_000_000)
    ap.add_argument("--loader-pairs", type=int, default=100_000_000)
    ap.add_argument("--train-steps", type=int, default=20)
    ap.add_argument("--work", default=None, help="working folder (default: a temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep the working folder")
    args = ap.parse_args(argv)
    work = Path(args.work or tempfile.mkdtemp(prefix="prodemb-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    logs = work / "logs"
    logs.mkdir(exist_ok=True)
    env = {**venv_env(), "PYSPARK_PYTHON": PY, "PYTHONUNBUFFERED": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    shutil.copytree(
        REPO / "feature_repo", work / "feature_repo", ignore=shutil.ignore_patterns("data"), dirs_exist_ok=True
    )
    mlflow = f"sqlite:///{work}/mlflow.db"
    submit = [str(BIN / "spark-submit"), "--master", "local[2]", "--driver-memory", "8g"]
    events = work / "events"
    events.mkdir(exist_ok=True)
    event_log = [
        "--conf",
        "spark.eventLog.enabled=true",
        "--conf",
        f"spark.eventLog.dir={events.as_uri()}",
        "--conf",
        "spark.eventLog.compress=false",
        "--conf",
        "spark.eventLog.rolling.enabled=false",
    ]
    data = str(work / "data")
    print(
        f"scale bench: {args.clicks:,} clicks, {args.products:,} products, loader {args.loader_pairs:,} pairs; "
        f"work {work}"
    )
    publish = [PY, "jobs/publish.py", "--data", data, "--no-progress", "--json"]
    publish += ["--set", f"feast.repo_dir={work / 'feature_repo'}"]
    stages = [
        (
            "generate",
            [
                PY,
                "-m",
                "prodemb.synth",
                "--out",
                str(work / "synth"),
                "--clicks",
                str(args.clicks),
                "--products",
                str(args.products),
                "--json",
            ],
        ),
        (
            "sessionize",
            [
                *submit,
                *event_log,
                "jobs/sessionize.py",
                "--input",
                str(work / "synth" / "clicks"),
                "--input-format",
                "clicks",
                "--output",
                data,
                "--json",
            ],
        ),
        (
            "train_tokenizer",
            [PY, "jobs/train_tokenizer.py", "--data", data, "--output", str(work / "tok.model"), "--json"],
        ),
        (
            "train",
            [
                PY,
                "jobs/train.py",
                "--data",
                data,
                "--tokenizer",
                str(work / "tok.model"),
                "--profile",
                "small",
                "--max-steps",
                str(args.train_steps),
                "--mlflow-uri",
                mlflow,
                "--no-progress",
                "--json",
            ],
        ),
        ("score", [*submit, "jobs/score.py", "--data", data, "--mlflow-uri", mlflow, "--json"]),
        ("publish", publish),
    ]
    results = []
    for name, cmd in stages:
        results.append(run(name, cmd, env, logs / f"{name}.log"))
        results[-1]["report"] = last_json(logs / f"{name}.log")
        if name == "sessionize":
            results[-1]["spark"] = spark_metrics(events)

    # The same vectors into Redis through the Feast SDK (the cluster profiles' online store).
    port = free_port()
    redis_dir = work / "redis"
    redis_dir.mkdir(exist_ok=True)
    server = subprocess.Popen(
        [
            "redis-server",
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(redis_dir),
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                empty = redis_memory(port)
                break
            except Exception:
                time.sleep(0.1)
        else:
            raise SystemExit(f"redis-server did not answer on 127.0.0.1:{port} within 10 s")
        import yaml

        store_conf = yaml.safe_load((work / "feature_repo" / "feature_store.yaml").read_text())
        store_conf["online_store"] = {
            "type": "redis",
            "redis_type": "redis",
            "connection_string": f"127.0.0.1:{port},db=0",
        }
        (work / "feature_repo" / "feature_store.redis.yaml").write_text(yaml.safe_dump(store_conf))
        results.append(
            run(
                "publish_redis",
                [*publish, "--set", "feast.yaml_file=feature_store.redis.yaml"],
                env,
                logs / "publish_redis.log",
            )
        )
        results[-1]["report"] = last_json(logs / "publish_redis.log")
        results[-1]["redis_used_memory_bytes"] = redis_memory(port) - empty
    finally:
        server.terminate()
        server.wait(30)
    by = {r["stage"]: r for r in results}
    sess = by["sessionize"]["report"]
    products = sess.get("products") or args.products

    write_pairs(work / "data" / "catalog", work / "pairs-big", args.loader_pairs)
    scan = run("pairs_scan_peer", [PY, "-c", SCAN, str(work / "pairs-big")], env, logs / "scan.log")
    loader = run(
        "train_loader",
        [PY, "-c", LOADER, str(work / "data" / "catalog"), str(work / "pairs-big"), str(work / "tok.model")],
        env,
        logs / "loader.log",
    )
    loaded = last_json(logs / "loader.log")
    scanned = last_json(logs / "scan.log")

    print()
    print(
        f"sessionize: {args.clicks / by['sessionize']['seconds'] / 2:,.0f} clicks/s/core whole process, "
        f"{sess.get('sessions', 0):,} sessions, {sess.get('pairs', 0):,} pairs, {products:,} products"
    )
    print(f"train: {by['train']['seconds']:.1f} s for {args.train_steps} steps, data load included")
    print(f"score: {products / by['score']['seconds']:,.0f} products/s whole process")
    print(
        f"publish: {products / by['publish']['seconds']:,.0f} rows/s whole process (SQLite bulk); Redis "
        f"(Feast SDK): {products / by['publish_redis']['seconds']:,.0f} rows/s whole process, "
        f"{by['publish_redis']['redis_used_memory_bytes'] / products:,.0f} bytes/row of Redis memory at "
        f"dim {by['score']['report'].get('dim')}"
    )
    spark = by["sessionize"]["spark"]
    print(
        f"sessionize Spark I/O: input {spark['input_bytes'] / 2**20:,.0f} MiB, shuffle write "
        f"{spark['shuffle_write_bytes'] / 2**20:,.0f} MiB, output {spark['output_bytes'] / 2**20:,.0f} MiB "
        f"({spark['shuffle_write_bytes'] / args.clicks:.1f} shuffle bytes/click), {spark['tasks']} tasks"
    )
    print(
        f"train loader: {loaded['pairs'] / loaded['seconds']:,.0f} pairs/s, "
        f"index {loaded['index_bytes'] / 2**30:.2f} GiB, "
        f"peak RSS {loader['peak_rss_gib']:.2f} GiB; peer pyarrow scan {scanned['pairs'] / scanned['seconds']:,.0f} "
        f"pairs/s (loader/scan time ratio {loaded['seconds'] / scanned['seconds']:.2f}x)"
    )
    (work / "scale_bench.json").write_text(
        json.dumps(
            {"args": vars(args), "stages": results + [scan, loader], "loader": loaded, "scan": scanned},
            indent=2,
            default=str,
        )
    )
    print(f"figures: {work / 'scale_bench.json'}")
    if not args.keep and not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
