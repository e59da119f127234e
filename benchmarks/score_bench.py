"""Scoring speed at paper dimensions: the whole `spark-submit jobs/score.py`, and the encoder's forward alone
against the FLOP limit measured in the same run.

    python benchmarks/score_bench.py [--products 100000] [--batch 4096 [1024 ...]]

Setup (not timed): ``--products`` generated products and an untrained encoder of the `default` profile
(the paper's dimensions: 512-d token embeddings, 4 × 128 Text-CNN filters, max_len 32) registered in a
temp MLflow store, with a SentencePiece tokenizer of the titles. Then:
  * FLOP limit: float32 matrix products (2048 × 4096 @ 4096 × 2048) at 1 and 2 torch threads, GFLOP/s;
  * forward alone: the registered model's encoder on the titles' tokens (tokenized beforehand), batches of
    ``--batch`` (default: the pyfunc's 4,096 titles per forward, what scoring runs), at 1 thread (what
    each Spark Python worker gets: Spark sets OMP_NUM_THREADS to spark.task.cpus = 1, so 2 workers × 1
    thread fill 2 cores without oversubscribing) and at 2 threads. Three forwards: the published vector
    v = ``encoder.vector`` (what the pyfunc serves: the profile's y beside its mean-pooled twin ȳ, from
    one pass over the convolutions), its peer "v, two passes" (y, then ȳ in a second pass: how v was
    computed before the one-pass kernel), and y alone (the paper's vector, ``encoder(tokens)``).
    Useful FLOPs per title: Σ over kernel sizes k of 2·F·k·E per window, over the title's windows: y's
    (max(1, tokens − k + 1); the CPU path skips padding), and for v the windows that start on a title
    token (max(1, tokens), a superset of y's). Reported as GFLOP/s and as a share of the limit;
  * whole process: `spark-submit --master local[2] jobs/score.py --full` from start to exit (JVM start,
    model download and load in each Python worker, reading the catalog, writing the table), products/s.
Targets (issue): ≥ 1,000 products/s whole process at 10^5 products; the forward within 2× of the limit.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.incremental_score_bench import score, write_catalog  # noqa: E402
from benchmarks.serve_bench import register_encoder  # noqa: E402
from prodemb.encoder_pyfunc import BATCH  # noqa: E402


def matmul_gflops(threads: int, n: int = 2048, k: int = 4096, reps: int = 5) -> float:
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(n, k), torch.randn(k, n)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(reps))
    return 2 * n * k * n / best / 1e9


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def useful_flops(lengths: np.ndarray, dims: dict, mean_windows: bool = False) -> float:
    """Multiply-adds ×2 of the Text-CNN over each title's real windows (the layer that costs): y's, or with
    ``mean_windows`` every window that starts on a title token (ȳ's, which v's one pass computes)."""
    e, f = dims["embed_dim"], dims["n_filters"]
    windows = lambda k: np.maximum(1, lengths if mean_windows else lengths - k + 1)  # noqa: E731
    return float(sum(2 * f * k * e * windows(k).sum() for k in dims["kernel_sizes"]))


def two_pass_vector(encoder):
    """v as computed before the one-pass kernel: y, then ȳ in a second pass over the convolutions."""
    return lambda tokens: encoder.join_halves(encoder(tokens), encoder.mean_pool(tokens))


def forward_rate(forward, tokens: np.ndarray, batch: int, threads: int) -> float:
    import torch

    torch.set_num_threads(threads)
    x = torch.from_numpy(tokens).long()
    with torch.inference_mode():
        forward(x[:batch])  # warm-up
        t0 = time.perf_counter()
        for s in range(0, len(x), batch):
            forward(x[s : s + batch])
        return len(x) / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--products", type=int, default=100_000)
    ap.add_argument(
        "--batch",
        type=int,
        nargs="+",
        default=[BATCH],
        help="titles per forward, one or more sizes (default: the pyfunc's, what scoring runs)",
    )
    ap.add_argument("--forward-titles", type=int, default=20_000, help="titles the forward alone is timed on")
    args = ap.parse_args()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow

    from prodemb.synth import SynthSpec, make_catalog

    with tempfile.TemporaryDirectory(prefix="score-bench-") as tmp:
        work = Path(tmp)
        catalog = make_catalog(SynthSpec(n_products=args.products, seed=5))
        uri, _ = register_encoder(work, min(args.products, 50_000), profile="default")
        write_catalog(
            work / "data" / "catalog", catalog.product_id.tolist(), catalog.title.tolist(), catalog.category.tolist()
        )
        mlflow.set_tracking_uri(uri)
        impl = mlflow.pyfunc.load_model("models:/prodemb-encoder/1").unwrap_python_model()
        titles = catalog.title.tolist()[: args.forward_titles]
        tokens = impl.tokenizer.encode_raw(titles, impl.meta["max_len"], language=impl.meta["language"])
        lengths = (tokens != impl.tokenizer.pad_id).sum(axis=1)
        encoder, dims = impl.encoder, impl.meta["encoder"]
        per_title_y = useful_flops(lengths, dims) / len(titles)
        per_title_v = useful_flops(lengths, dims, mean_windows=encoder.vector_kind != "y") / len(titles)
        print(
            f"setup: {args.products:,} products, default profile {dims}, max_len {impl.meta['max_len']}; "
            f"{lengths.mean():.1f} tokens per title; {per_title_y / 1e6:.1f} MFLOP per title for y, "
            f"{per_title_v / 1e6:.1f} for v ({encoder.vector_kind}, {encoder.vector_dim}-d)"
        )
        forwards = [("v (scoring's)", encoder.vector, per_title_v), ("y alone", encoder, per_title_y)]
        if encoder.vector_kind != "y":
            forwards.insert(1, ("v, two passes", two_pass_vector(encoder), per_title_v))

        for threads in (1, 2):
            limit = matmul_gflops(threads)
            print(f"{threads} thread{'s' if threads > 1 else ''}: matmul limit {limit:.1f} GFLOP/s")
            for batch in args.batch:
                rates = {}
                for name, forward, per_title in forwards:
                    rates[name] = rate = forward_rate(forward, tokens, batch, threads)
                    achieved = rate * per_title / 1e9
                    print(
                        f"   batch {batch:6,d}: {name:>14}: {rate:8,.0f} titles/s = {achieved:6.1f} GFLOP/s = "
                        f"{achieved / limit:5.1%} of the limit ({limit / achieved:.2f}x from it)"
                    )
                ratios = ", ".join(f"{rates[forwards[0][0]] / r:.2f}x {name}" for name, r in list(rates.items())[1:])
                print(f"   batch {batch:6,d}: v's rate = {ratios}")

        seconds, report = score(work / "data", uri, work / "score.log", "--full")
        print(
            f"whole process (spark-submit --master local[2] jobs/score.py): {seconds:.1f} s for "
            f"{report['rows_embedded']:,} products = {report['rows_embedded'] / seconds:,.0f} products/s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
