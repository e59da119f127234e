"""Embeddings over HTTP: latency of `jobs/serve.py` (MLflow's scoring server) for 1 and 100 titles.

    python benchmarks/serve_bench.py [--reps 200] [--products 3000]

A registered encoder at the default profile's dimensions (512-d; random weights: latency does not depend on
them) with a SentencePiece tokenizer of generated titles, in a temp MLflow store. In the same run:
  * the server as users start it (`python jobs/serve.py`, a whole process): seconds until `/ping` answers;
  * `POST /invocations` with 1 and with 100 titles (`{"inputs": [...]}`), p50/p99 over ``--reps`` requests
    after 10 warm-up requests, one client on the same machine;
  * the peer: the same model's `predict` in-process on the same titles (no HTTP, no JSON), p50/p99, and the
    HTTP/in-process ratio;
  * the JSON answer for 100 titles alone: its size and the time to encode and decode it.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentiles(fn, batches, reps: int) -> tuple[float, float]:
    for i in range(10):
        fn(batches[i % len(batches)])
    times = []
    for i in range(reps):
        t0 = time.perf_counter()
        fn(batches[i % len(batches)])
        times.append((time.perf_counter() - t0) * 1000)
    return float(np.percentile(times, 50)), float(np.percentile(times, 99))


def register_encoder(
    work: Path, n_products: int, profile: str = "default", tokenizer_titles: int | None = None
) -> tuple[str, list[str]]:
    """An encoder of a model profile (untrained) registered as prodemb-encoder v1 in work/mlflow.db, its
    tokenizer trained on (the first ``tokenizer_titles`` of) the generated titles; the titles."""
    import mlflow

    from prodemb.config import load_config
    from prodemb.model import ProductEncoder
    from prodemb.registry import log_encoder, set_aliases_after_training, setup_tracking
    from prodemb.synth import SynthSpec, make_catalog
    from prodemb.text import normalize_titles
    from prodemb.tokenizer import train_tokenizer

    cfg = load_config("local", overrides=[f"model.profile={profile}"])
    titles = make_catalog(SynthSpec(n_products=n_products, seed=5)).title.tolist()
    info = train_tokenizer(normalize_titles(titles[:tokenizer_titles], "es"), work / "tok.model", vocab_size=2000)
    encoder = ProductEncoder.from_config(cfg.model, info["vocab_size"]).eval()
    uri = f"sqlite:///{work}/mlflow.db"
    setup_tracking(uri, "serve-bench")
    with mlflow.start_run():
        version = log_encoder(
            encoder,
            work / "tok.model",
            max_len=cfg.model.max_len,
            language="es",
            model_name="prodemb-encoder",
            workdir=work / "model",
            example_titles=titles[:3],
        )
    set_aliases_after_training("prodemb-encoder", version)
    return uri, titles


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--products", type=int, default=3000)
    args = ap.parse_args()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        uri, titles = register_encoder(work, args.products)
        rng = np.random.default_rng(0)
        batches = {n: [rng.choice(titles, n).tolist() for _ in range(50)] for n in (1, 100)}

        port = free_port()
        t0 = time.perf_counter()
        server = subprocess.Popen(
            [sys.executable, str(REPO / "jobs" / "serve.py"), "--mlflow-uri", uri, "--port", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=work,
        )
        url = f"http://127.0.0.1:{port}"
        while True:
            try:
                with urllib.request.urlopen(f"{url}/ping", timeout=2):
                    break
            except OSError:
                if server.poll() is not None:
                    raise SystemExit("serve_bench: the server exited before answering /ping")
                time.sleep(0.1)
        startup = time.perf_counter() - t0

        def http(batch):
            req = urllib.request.Request(
                f"{url}/invocations",
                data=json.dumps({"inputs": batch}).encode(),
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(req, timeout=60) as resp:
                out = json.loads(resp.read())["predictions"]
            assert len(out) == len(batch)

        mlflow.set_tracking_uri(uri)
        model = mlflow.pyfunc.load_model("models:/prodemb-encoder/1")
        local = lambda batch: model.predict(pd.DataFrame({"title": batch}))  # noqa: E731
        try:
            rows = [
                (n, *percentiles(http, batches[n], args.reps), *percentiles(local, batches[n], args.reps))
                for n in (1, 100)
            ]
        finally:
            server.terminate()
            server.wait(timeout=30)

    dim = model.unwrap_python_model().encoder.out_dim
    # Where HTTP's extra time goes at 100 titles: the JSON answer alone, encoded (server) and decoded (client).
    answer = {"predictions": np.asarray(local(batches[100][0])).tolist()}
    text = json.dumps(answer)
    t0 = time.perf_counter()
    json.dumps(answer)
    t1 = time.perf_counter()
    json.loads(text)
    t2 = time.perf_counter()
    print(
        f"JSON answer for 100 titles: {len(text) / 2**20:.2f} MiB, json.dumps {(t1 - t0) * 1000:.1f} ms, "
        f"json.loads {(t2 - t1) * 1000:.1f} ms"
    )
    print(
        f"server start (python jobs/serve.py → /ping answers): {startup:.1f} s; model {dim}-d, "
        f"{os.cpu_count()} cores, {args.reps} requests per size after 10 warm-up"
    )
    print(
        "| titles per request | HTTP p50 / p99 ms | in-process predict p50 / p99 ms (peer) | HTTP / peer (p50) "
        "| titles/s over HTTP (p50) |"
    )
    print("|---|---|---|---|---|")
    for n, hp50, hp99, lp50, lp99 in rows:
        print(
            f"| {n} | {hp50:.2f} / {hp99:.2f} | {lp50:.2f} / {lp99:.2f} | {hp50 / lp50:.2f}x | {n / hp50 * 1000:,.0f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
