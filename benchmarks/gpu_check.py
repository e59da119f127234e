"""The CUDA paths, checked and timed on a GPU machine (run where one is lent; prints one line per check).

    python benchmarks/gpu_check.py [--steps 60] [--out DIR]

1. The encoder and the whole BYOL + category model on CUDA (cuDNN Conv1d, fp32 with TF32 off) and on the
   CPU path (the block kernel with its max-pool-sparse backward) both agree with a float64 reference:
   outputs, loss and every gradient, CUDA at least as close as the CPU.
2. ``prodemb.train.train`` on CUDA (bf16 autocast) at paper dimensions and batch: finite, decreasing
   loss; pairs/s after warm-up, beside the same loop on this machine's CPU cores (the peer, same run).
3. ``train.compile=true`` on CUDA trains and gives a finite loss.
4. The encoder's forward alone (scoring's work): products/s on CUDA in fp32 and bf16.

Synthetic data: products in clusters of shared tokens, sessions inside a cluster. Exit 1 when a check
fails; ``OUT/gpu_check.json`` holds every figure.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from prodemb.config import load_config  # noqa: E402
from prodemb.model import BYOLCategoryModel  # noqa: E402
from prodemb.train import train  # noqa: E402
from prodemb.train_data import TrainingData  # noqa: E402

VOCAB, N_PRODUCTS, N_CLUSTERS, N_PAIRS = 8000, 50_000, 200, 400_000


def synthetic_data(max_len: int, seed: int = 0) -> TrainingData:
    g = torch.Generator().manual_seed(seed)
    cluster = torch.randint(0, N_CLUSTERS, (N_PRODUCTS,), generator=g)
    words = torch.randint(3, VOCAB, (N_CLUSTERS, 12), generator=g)  # each cluster's vocabulary
    pick = torch.randint(0, 12, (N_PRODUCTS, max_len), generator=g)
    tokens = torch.gather(words[cluster], 1, pick)
    own = torch.randint(3, VOCAB, (N_PRODUCTS, max_len), generator=g)  # a product's own words
    tokens = torch.where(torch.rand(N_PRODUCTS, max_len, generator=g) < 0.3, own, tokens)
    lengths = torch.randint(4, max_len + 1, (N_PRODUCTS,), generator=g)
    tokens[torch.arange(max_len)[None, :] >= lengths[:, None]] = 0  # padding at the end
    a = torch.randint(0, N_PRODUCTS, (N_PAIRS,), generator=g)
    order = torch.argsort(cluster)  # products grouped by cluster
    count = torch.bincount(cluster, minlength=N_CLUSTERS)
    start = torch.cumsum(count, 0) - count
    c = cluster[a]
    b = order[start[c] + torch.randint(0, 1 << 30, (N_PAIRS,), generator=g) % count[c].clamp_min(1)]
    return TrainingData(
        tokens=tokens.long(),
        categories=(cluster % 20).long(),
        pair_a=a.int(),
        pair_b=b.int(),
        holdout_a=a[:1000].int(),
        holdout_b=b[:1000].int(),
        category_names=[f"c{i}" for i in range(20)],
    )


def _gradient_errors(model, reference) -> dict[str, float]:
    """Per parameter ‖g − g_ref‖ / ‖g_ref‖; a gradient that is zero in exact arithmetic (a bias right before
    BatchNorm) is measured against 1e-3 of the largest gradient norm instead."""
    pairs = [
        (name, p.grad.detach().cpu().double(), r.grad)
        for (name, p), r in zip(model.named_parameters(), reference.parameters())
        if p.grad is not None
    ]
    largest = max(g_ref.norm().item() for _, _, g_ref in pairs)
    return {name: ((g - g_ref).norm() / max(g_ref.norm().item(), 1e-3 * largest)).item() for name, g, g_ref in pairs}


def check_equal(cfg, report: dict) -> bool:
    """The fp32 CUDA path and the fp32 CPU path, each against a float64 CPU reference of the same weights:
    CUDA must be as close to it as the CPU is (BatchNorm's backward makes fp32 gradients differ from exact
    ones by ~1e-3 on either device)."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)
    m_cpu = BYOLCategoryModel.from_config(cfg.model, vocab_size=VOCAB, n_categories=20)
    m_ref, m_gpu = copy.deepcopy(m_cpu).double(), copy.deepcopy(m_cpu).cuda()
    # Titles of distinct random tokens, no padding: no two windows tie for a max, so the max-pool
    # subgradient is unique (on ties cuDNN's amax splits it and the CPU kernel picks one position).
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(3, VOCAB, (1024, cfg.model.max_len), generator=g)
    cats = torch.randint(0, 20, (1024,), generator=g)
    args = (tokens[:512], tokens[512:], cats[:512], cats[512:], 0.9)
    losses = {}
    for name, model in (("ref", m_ref), ("cpu", m_cpu), ("cuda", m_gpu)):
        dev = next(model.parameters()).device
        out = model(*(x.to(dev) if torch.is_tensor(x) else x for x in args))
        out["loss"].backward()
        losses[name] = out["loss"].item()
    y_ref = m_ref.encoder(tokens)
    worst = {}
    for name, model in (("cpu", m_cpu), ("cuda", m_gpu)):
        y = model.encoder(tokens.to(next(model.parameters()).device)).cpu().double()
        grads = _gradient_errors(model, m_ref)
        worst[name] = {
            "encoder_output": ((y - y_ref).abs().max() / y_ref.abs().max()).item(),
            "loss": abs(losses[name] - losses["ref"]) / abs(losses["ref"]),
            "gradient": max(grads.values()),
            "gradient_param": max(grads, key=grads.get),
        }
    c, k = worst["cpu"], worst["cuda"]
    ok = k["encoder_output"] < 1e-4 and k["loss"] < 1e-5 and k["gradient"] <= 2 * c["gradient"] + 1e-4
    report["cuda_equals_cpu"] = {**worst, "ok": ok}
    print(
        f"[{'ok' if ok else 'FAIL'}] CUDA and CPU fp32 vs a float64 reference: encoder {k['encoder_output']:.1e} "
        f"(CPU {c['encoder_output']:.1e}), loss {k['loss']:.1e} (CPU {c['loss']:.1e}), worst gradient "
        f"{k['gradient']:.1e} {k['gradient_param']} (CPU {c['gradient']:.1e} {c['gradient_param']})"
    )
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    return ok


def timed_train(cfg, data: TrainingData, device: str, steps: int, compile_: bool = False) -> dict:
    tcfg = cfg.train.model_copy(update={"device": device, "max_steps": steps, "log_every": 5, "compile": compile_})
    t0 = time.perf_counter()
    result = train(data, cfg.model, tcfg, VOCAB, progress=False)
    wall = time.perf_counter() - t0
    late = [h for h in result.history if h["step"] > steps // 3]  # after warm-up (cuDNN autotune, compile)
    losses = [h["loss"] for h in result.history]
    return {
        "device": result.device,
        "steps": result.steps,
        "wall_seconds": round(wall, 2),
        "pairs_per_second": round(sum(h["pairs_per_second"] for h in late) / max(len(late), 1)),
        "first_loss": losses[0],
        "last_loss": losses[-1],
        "finite": all(map(lambda v: v == v and abs(v) != float("inf"), losses)),
    }


def forward_rate(cfg, dtype, batch: int = 8192, reps: int = 20) -> float:
    torch.manual_seed(0)
    enc = BYOLCategoryModel.from_config(cfg.model, vocab_size=VOCAB, n_categories=20).encoder.cuda().eval()
    tokens = torch.randint(1, VOCAB, (batch, cfg.model.max_len), device="cuda")
    with torch.inference_mode(), torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
        for _ in range(3):
            enc(tokens)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(reps):
            enc(tokens)
        torch.cuda.synchronize()
    return batch * reps / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--cpu-steps", type=int, default=9)
    ap.add_argument("--out", default=".")
    ap.add_argument("--only", choices=["equality"], default=None, help="run this check alone")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("gpu_check: error: no CUDA device here", file=sys.stderr)
        return 2
    report: dict = {
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(0),
        "cpu_threads": torch.get_num_threads(),
    }
    print(f"torch {torch.__version__} on {report['gpu']}; CPU peer on {report['cpu_threads']} threads")
    cfg = load_config("local", ["model.profile=paper"])  # y ∈ R^512, batch 4096 (A.1)
    ok = check_equal(cfg, report)
    if args.only == "equality":
        return 0 if ok else 1
    data = synthetic_data(cfg.model.max_len)
    gpu = timed_train(cfg, data, "cuda", args.steps)
    cpu = timed_train(cfg, data, "cpu", args.cpu_steps)
    good = gpu["finite"] and gpu["last_loss"] < gpu["first_loss"]
    ok &= good
    report.update(train_cuda=gpu, train_cpu=cpu)
    print(
        f"[{'ok' if good else 'FAIL'}] train() on CUDA, bf16, batch {cfg.train.batch_size}: loss "
        f"{gpu['first_loss']:.3f} → {gpu['last_loss']:.3f}; {gpu['pairs_per_second']:,} pairs/s vs "
        f"{cpu['pairs_per_second']:,} on the CPU ({gpu['pairs_per_second'] / max(cpu['pairs_per_second'], 1):.0f}×)"
    )
    comp = timed_train(cfg, data, "cuda", args.steps, compile_=True)
    good = comp["finite"]
    ok &= good
    report["train_cuda_compiled"] = comp
    print(
        f"[{'ok' if good else 'FAIL'}] train.compile=true on CUDA: {comp['pairs_per_second']:,} pairs/s "
        f"after warm-up (eager {gpu['pairs_per_second']:,}); wall {comp['wall_seconds']} s for {comp['steps']} steps"
    )
    rates = {"fp32": forward_rate(cfg, torch.float32), "bf16": forward_rate(cfg, torch.bfloat16)}
    report["encoder_forward_products_per_second"] = {k: round(v) for k, v in rates.items()}
    print(f"[ok] encoder forward alone, batch 8192: {rates['fp32']:,.0f} products/s fp32, {rates['bf16']:,.0f} bf16")
    report["ok"] = bool(ok)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "gpu_check.json").write_text(json.dumps(report, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
