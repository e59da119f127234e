"""Training throughput at `paper` dimensions: pairs/s and the fraction of this machine's matmul peak.

    python benchmarks/train_bench.py [--batch-size 4096 ...] [--plain-batch-size 256] [--steps 10]
        [--warmup 3] [--threads N] [--lengths 8 20] [--compile] [--skip-plain]
    python benchmarks/train_bench.py --parts 256        # each component's alternatives, timed alone

Model: vocab 30,000 × 512 embedding, Text-CNN kernels 2-5 × 128 filters, MLPs 1024 hidden, 128
projection, 50 categories, 32 tokens per title (conf/models/paper.yaml). Data: random token ids in
[2, 30000), title lengths uniform in 8-20 tokens (--lengths), right-padded with 0 to 32; ~10% of
products have no category. Prints, in one run:
  * the matmul peak: fp32 torch.matmul 2048×2048 repeated on all threads (best of 3 rounds), measured at
    the start and at the end (the higher counts; a WARNING if they differ by > 15%: other work was
    running), and for reference oneDNN's fp32 matmul on the same shape (see RESULTS.md: on AMD CPUs MKL,
    behind torch.matmul, runs AVX2 code while oneDNN, behind the convolutions, runs AVX-512);
  * FLOPs per pair from the shapes (prodemb.model.flops_per_pair: dense forward + 2× for backward);
  * for (a) "plain", the naive PyTorch loop (nn.Conv1d per kernel size on the permuted embeddings,
    online and target run separately on each view, torch.optim.SGD, Python-loop EMA) and (b) prodemb's
    own train() (the loop jobs/train.py runs: LARS, schedules, EMA), each timed over --steps steps after
    --warmup steps: pairs/s (and from the median step), achieved GFLOP/s = pairs/s × FLOPs/pair, and that
    as a fraction of the peak.
prodemb's CPU encoder skips the structurally zero terms of the max-pool gradient and the all-padding
token columns, so it executes fewer FLOPs than flops_per_pair counts; the "executed" columns count the
arithmetic actually done. Results go to benchmarks/RESULTS.md by hand.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from prodemb.config import load_config  # noqa: E402
from prodemb.model import flops_per_pair  # noqa: E402

VOCAB, N_CATEGORIES, SEQ_LEN = 30_000, 50, 32


# --- peak --------------------------------------------------------------------------------------


def _best_gflops(fn, flops: float, reps: int = 10, rounds: int = 3) -> float:
    for _ in range(3):
        fn()
    best = 0.0
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(reps):
            fn()
        best = max(best, flops * reps / (time.perf_counter() - t) / 1e9)
    return best


def matmul_peak(n: int = 2048) -> tuple[float, float | None]:
    """(torch.matmul GFLOP/s, oneDNN fp32 matmul GFLOP/s or None) for n×n @ n×n fp32."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
    peak = _best_gflops(lambda: torch.matmul(a, b), 2 * n**3)
    try:
        bt = b.t().contiguous()
        onednn = _best_gflops(lambda: torch.ops.mkldnn._linear_pointwise(a, bt, None, "none", [], ""), 2 * n**3)
    except Exception:  # noqa: BLE001 — a build without oneDNN
        onednn = None
    return peak, onednn


def executed_flops_per_pair(model_cfg, n_categories: int, titles: torch.Tensor, batch: int, samples: int = 8) -> float:
    """What prodemb's CPU step computes per pair, on batches of ``batch`` pairs drawn from ``titles``:
    flops_per_pair with (1) each conv forward over the token columns its length-sorted block keeps
    (prodemb.kernels.textcnn._title_blocks) instead of all 32, and (2) the online conv backward (2× the dense
    forward) in its max-pool-sparse form, dW and dx each Σk·F·E multiply-adds per title."""
    from prodemb.kernels.textcnn import _title_blocks

    m = model_cfg
    E, Fn, ks = m.embed_dim, m.n_filters, tuple(m.kernel_sizes)
    L = titles.shape[1]
    dense = lambda width: sum((width - k + 1) * k for k in ks) * E * Fn  # noqa: E731  conv MACs per title
    g = torch.Generator().manual_seed(3)
    kept = 0.0
    for _ in range(samples):
        pick = titles[torch.randint(0, len(titles), (2 * batch,), generator=g)]
        _, blocks = _title_blocks(pick, E, max(ks))
        kept += sum((n1 - n0) * dense(w) for n0, n1, w in blocks) / (2 * batch) / samples
    sparse_bwd = 2 * sum(ks) * Fn * E
    # flops_per_pair = 2 FLOPs/MAC · 2 titles · (3·M_online + M_target), the conv part being 4·M_conv:
    # replace it by what runs (online and target forward over the kept columns, the sparse backward)
    return flops_per_pair(m, L, n_categories) - 2 * 2 * (4 * dense(L) - 2 * kept - sparse_bwd)


# --- data --------------------------------------------------------------------------------------

LENGTHS = (8, 20)  # title lengths in tokens, uniform; --lengths changes it


def random_titles(n: int, gen: torch.Generator) -> torch.Tensor:
    """[n, 32] token ids in [2, VOCAB), lengths uniform in LENGTHS (8..20), right-padded with 0."""
    tokens = torch.randint(2, VOCAB, (n, SEQ_LEN), generator=gen)
    lengths = torch.randint(LENGTHS[0], LENGTHS[1] + 1, (n,), generator=gen)
    tokens[torch.arange(SEQ_LEN)[None, :] >= lengths[:, None]] = 0
    return tokens


def random_training_data(n_products: int, n_pairs: int, seed: int = 0):
    from prodemb.train_data import TrainingData

    g = torch.Generator().manual_seed(seed)
    cats = torch.randint(0, N_CATEGORIES, (n_products,), generator=g)
    cats[torch.rand(n_products, generator=g) < 0.1] = -1
    a = torch.randint(0, n_products, (n_pairs,), generator=g)
    b = (a + torch.randint(1, n_products, (n_pairs,), generator=g)) % n_products
    empty = torch.empty(0, dtype=torch.long)
    return TrainingData(
        tokens=random_titles(n_products, g),
        categories=cats,
        pair_a=a,
        pair_b=b,
        holdout_a=empty,
        holdout_b=empty,
        product_keys=[f"s/{i}" for i in range(n_products)],
        category_names=[f"c{i}" for i in range(N_CATEGORIES)],
    )


# --- (a) the plain loop ------------------------------------------------------------------------


class PlainTextCNN(nn.Module):
    def __init__(self, m):
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, m.embed_dim, padding_idx=0)
        self.convs = nn.ModuleList(nn.Conv1d(m.embed_dim, m.n_filters, k) for k in m.kernel_sizes)

    def forward(self, tokens):
        x = self.embedding(tokens).permute(0, 2, 1)  # [B, E, L]
        return torch.cat(
            [F.max_pool1d(F.relu(c(x)), x.shape[2] - c.kernel_size[0] + 1).squeeze(2) for c in self.convs], dim=1
        )


def plain_mlp(i, h, o, momentum):
    return nn.Sequential(nn.Linear(i, h), nn.BatchNorm1d(h, momentum=momentum), nn.ReLU(), nn.Linear(h, o))


def rates(batch: int, step_seconds: list[float]) -> tuple[float, float]:
    """(pairs/s over all timed steps, pairs/s of the median step); the median shrugs off a stray busy second."""
    ordered = sorted(step_seconds)
    return batch * len(step_seconds) / sum(step_seconds), batch / ordered[len(ordered) // 2]


def run_plain(
    model_cfg, batch: int, steps: int, warmup: int, alpha: float = 0.9, tau: float = 0.996
) -> tuple[float, float]:
    """Pairs/s of the naive loop: same model and loss, nothing fused or batched across views."""
    torch.manual_seed(0)
    m = model_cfg
    y_dim = m.n_filters * len(m.kernel_sizes)
    enc = PlainTextCNN(m)
    proj = plain_mlp(y_dim, m.hidden_dim, m.proj_dim, m.bn_momentum)
    pred = plain_mlp(m.proj_dim, m.hidden_dim, m.proj_dim, m.bn_momentum)
    head = plain_mlp(y_dim, m.hidden_dim, N_CATEGORIES, m.bn_momentum)
    t_enc, t_proj = copy.deepcopy(enc), copy.deepcopy(proj)
    online = [*enc.parameters(), *proj.parameters(), *pred.parameters(), *head.parameters()]
    opt = torch.optim.SGD(online, lr=0.45 * batch / 256, momentum=0.9, weight_decay=1e-5)
    g = torch.Generator().manual_seed(1)
    batches = [
        (
            random_titles(batch, g),
            random_titles(batch, g),
            torch.randint(0, N_CATEGORIES, (batch,), generator=g),
            torch.randint(0, N_CATEGORIES, (batch,), generator=g),
        )
        for _ in range(4)
    ]

    def cos_loss(p, z):
        return (2 - 2 * F.cosine_similarity(p, z.detach(), dim=-1)).mean()

    def step(ti, tj, ci, cj):
        y_i, y_j = enc(ti), enc(tj)
        p_i, p_j = pred(proj(y_i)), pred(proj(y_j))
        with torch.no_grad():
            z_i, z_j = t_proj(t_enc(ti)), t_proj(t_enc(tj))
        loss = alpha * (cos_loss(p_i, z_j) + cos_loss(p_j, z_i)) + (1 - alpha) * (
            F.cross_entropy(head(y_i), cj) + F.cross_entropy(head(y_j), ci)
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            for pt, po in zip([*t_enc.parameters(), *t_proj.parameters()], [*enc.parameters(), *proj.parameters()]):
                pt.mul_(tau).add_(po, alpha=1 - tau)
        return loss.item()

    for k in range(warmup):
        step(*batches[k % len(batches)])
    seconds = []
    for k in range(steps):
        t = time.perf_counter()
        step(*batches[k % len(batches)])
        seconds.append(time.perf_counter() - t)
    return rates(batch, seconds)


# --- (b) prodemb's train() ---------------------------------------------------------------------


def run_prodemb(batch: int, steps: int, warmup: int, compile_: bool = False) -> tuple[tuple[float, float], float]:
    """((pairs/s, median-step pairs/s), executed FLOPs/pair) of prodemb.train.train(), timed from the end
    of step `warmup` to the end of step `warmup + steps`."""
    from prodemb.train import train

    cfg = load_config(
        "local",
        overrides=[
            "model.profile=paper",
            f"train.batch_size={batch}",
            f"train.max_steps={warmup + steps}",
            "train.log_every=1",
            "train.device=cpu",
            f"train.compile={str(compile_).lower()}",
        ],
    )
    data = random_training_data(n_products=50_000, n_pairs=batch * (warmup + steps + 1))
    stamps: dict[int, float] = {}
    train(
        data,
        cfg.model,
        cfg.train,
        VOCAB,
        progress=False,
        log_fn=lambda step, rec: stamps.__setitem__(step, time.perf_counter()),
    )
    executed = executed_flops_per_pair(cfg.model, N_CATEGORIES, data.tokens, batch)
    return rates(batch, [stamps[k] - stamps[k - 1] for k in range(warmup + 1, warmup + steps + 1)]), executed


# --- --parts: where the time goes, one formulation at a time ------------------------------------


def _ms(fn, reps: int = 5) -> float:
    fn()
    fn()
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t) / reps * 1e3


def run_parts(model_cfg, n_titles: int) -> None:
    """Time the alternatives measured while optimizing, on n_titles random titles (2 per pair)."""
    from prodemb.kernels.textcnn import _embed_conv_max, _text_cnn_cpu
    from prodemb.model import ProductEncoder
    from prodemb.optim import LARS

    torch.manual_seed(0)
    m, N, L = model_cfg, n_titles, SEQ_LEN
    E, Fn, ks = m.embed_dim, m.n_filters, tuple(m.kernel_sizes)
    enc = ProductEncoder(VOCAB, E, Fn, ks)
    tokens = random_titles(N, torch.Generator().manual_seed(2))
    params = [t for c in enc.convs for t in (c.weight, c.bias)]
    conv_flops = N * sum((L - k + 1) * k for k in ks) * E * Fn * 2  # useful forward FLOPs
    print(
        f"\n--parts: {N} titles padded to {L} tokens ({LENGTHS[0]}-{LENGTHS[1]} real); GFLOP/s = the dense "
        f"{L}-token FLOPs (conv forward {conv_flops / 1e9:.1f} G, fwd+bwd 3x) / time, "
        "so rows that skip work beat the peak"
    )

    def line(name, ms, flops=None):
        rate = f"{flops / ms / 1e6:8.1f} GFLOP/s" if flops else ""
        print(f"  {name:<64}{ms:9.1f} ms {rate}")

    print("conv forward, 4 kernel sizes, no grad (embedding gather included):")
    with torch.no_grad():
        w_cl = [c.weight.unsqueeze(2).contiguous(memory_format=torch.channels_last) for c in enc.convs]
        x = enc.embed(tokens)
        line(
            "nn.Conv1d on embed(t).transpose(1, 2)  [before]",
            _ms(lambda: [c(enc.embed(tokens).transpose(1, 2)).amax(2) for c in enc.convs]),
            conv_flops,
        )
        line(
            "nn.Conv1d on a contiguous [N, E, L] copy",
            _ms(lambda: [c(enc.embed(tokens).transpose(1, 2).contiguous()).amax(2) for c in enc.convs]),
            conv_flops,
        )
        line(
            "conv2d on the channels-last view [N, E, 1, L], one block",
            _ms(
                lambda: [
                    F.conv2d(enc.embed(tokens).view(N, 1, L, E).permute(0, 3, 1, 2), w, c.bias).amax(3)
                    for w, c in zip(w_cl, enc.convs)
                ]
            ),
            conv_flops,
        )
        full = [(n0, min(n0 + 128, N), L) for n0 in range(0, N, 128)]
        line(
            "same, 128-title blocks, gather fused",
            _ms(lambda: _embed_conv_max(tokens, enc.embed.weight, params, full, with_indices=False)),
            conv_flops,
        )
        line(
            "same, blocks sorted by length, all-padding columns cut  [now]",
            _ms(lambda: _text_cnn_cpu(tokens, enc.embed.weight, params, ks)),
            conv_flops,
        )
        wcat = torch.cat([c.weight.permute(1, 2, 0).reshape(E, -1) for c in enc.convs], 1)  # [E, Σk·F]

        def shift_gemm():  # one matmul for all kernel sizes and taps, then shifted adds
            P = (enc.embed(tokens).view(N * L, E) @ wcat).view(N, L, -1)
            off, out = 0, []
            for k in ks:
                Lk = L - k + 1
                S = P[:, :Lk, off : off + Fn].clone()
                for j in range(1, k):
                    S += P[:, j : j + Lk, off + j * Fn : off + (j + 1) * Fn]
                out.append(S.amax(1))
                off += k * Fn
            return out

        line("torch.matmul [N·L, E] @ [E, Σk·F] + shifted adds (im2col-free)", _ms(shift_gemm), conv_flops)
        wm = torch.zeros(len(ks) * Fn, E, 1, max(ks))
        for i, c in enumerate(enc.convs):
            wm[i * Fn : (i + 1) * Fn, :, 0, : c.kernel_size[0]] = c.weight
        wm = wm.contiguous(memory_format=torch.channels_last)
        pad = max(ks) - min(ks)
        line(
            "one conv2d, zero-masked 5-tap weights (useful FLOPs only)",
            _ms(
                lambda: F.conv2d(
                    F.pad(enc.embed(tokens), (0, 0, 0, pad)).view(N, 1, L + pad, E).permute(0, 3, 1, 2), wm
                ).amax(3)
            ),
            conv_flops,
        )
        with torch.autocast("cpu", dtype=torch.bfloat16):
            line(
                "conv2d channels-last under bf16 autocast (other numerics)",
                _ms(
                    lambda: [
                        F.conv2d(x.view(N, 1, L, E).permute(0, 3, 1, 2), w, c.bias).amax(3)
                        for w, c in zip(w_cl, enc.convs)
                    ]
                ),
                conv_flops,
            )

    print("encoder forward + backward (embedding table gradient included):")
    dy = torch.randn(N, enc.out_dim)

    def fwd_bwd(fn):
        def run():
            enc.zero_grad(set_to_none=True)
            (fn() * dy).sum().backward()

        return run

    line(
        "nn.Conv1d on embed(t).transpose(1, 2), autograd  [before]",
        _ms(fwd_bwd(lambda: torch.cat([F.relu(c(enc.embed(tokens).transpose(1, 2))).amax(2) for c in enc.convs], 1))),
        3 * conv_flops,
    )
    line(
        "conv2d channels-last, autograd (dense backward)",
        _ms(
            fwd_bwd(
                lambda: torch.cat(
                    [
                        F.relu(
                            F.conv2d(
                                enc.embed(tokens).view(N, 1, L, E).permute(0, 3, 1, 2),
                                c.weight.unsqueeze(2).contiguous(memory_format=torch.channels_last),
                                c.bias,
                            )
                        )
                        .amax(3)
                        .squeeze(2)
                        for c in enc.convs
                    ],
                    1,
                )
            )
        ),
        3 * conv_flops,
    )
    line("prodemb ProductEncoder (max-pool-sparse backward)  [now]", _ms(fwd_bwd(lambda: enc(tokens))), 3 * conv_flops)

    print(f"MLP Linear 512 -> {m.hidden_dim}, forward + backward on {N} rows:")
    from prodemb.kernels.linear import _Linear, onednn_available

    lin = nn.Linear(E, m.hidden_dim)
    xin = torch.randn(N, E, requires_grad=True)
    dl = torch.randn(N, m.hidden_dim)
    lin_flops = 3 * 2 * N * E * m.hidden_dim
    line("F.linear (BLAS: MKL)", _ms(lambda: (F.linear(xin, lin.weight, lin.bias) * dl).sum().backward()), lin_flops)
    if onednn_available():
        line(
            "oneDNN linear  [prodemb now]",
            _ms(lambda: (_Linear.apply(xin, lin.weight, lin.bias) * dl).sum().backward()),
            lin_flops,
        )

    print(f"dense {VOCAB}x{E} embedding-table work per step (the rest of the step does not grow with it):")
    table = nn.Parameter(torch.randn(VOCAB, E))
    twin = table.detach().clone()
    opt = LARS([{"params": [table], "weight_decay": 1e-5}], lr=0.1, momentum=0.9)
    table.grad = torch.randn(VOCAB, E)
    line("a fresh zeroed gradient (what each backward allocates)", _ms(lambda: torch.zeros(VOCAB, E)))
    line("LARS step on the table (decay + momentum on every row)", _ms(opt.step))
    line("EMA of the target table (one lerp)", _ms(lambda: torch._foreach_lerp_([twin], [table.detach()], 0.004)))


def main() -> int:
    global LENGTHS
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--batch-size",
        type=int,
        nargs="+",
        default=None,
        help="prodemb batch size(s) in pairs (default: the paper profile's, 4096)",
    )
    ap.add_argument("--plain-batch-size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=10, help="timed steps per run")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--compile", action="store_true", help="train.compile=true (torch.compile the model)")
    ap.add_argument("--skip-plain", action="store_true")
    ap.add_argument(
        "--lengths",
        type=int,
        nargs=2,
        default=list(LENGTHS),
        metavar=("MIN", "MAX"),
        help="title lengths in tokens, uniform (default 8 20; 32 32 = no padding at all)",
    )
    ap.add_argument(
        "--parts",
        type=int,
        default=0,
        metavar="PAIRS",
        help="only time the alternatives per component on 2×PAIRS titles, then exit",
    )
    args = ap.parse_args()

    LENGTHS = tuple(args.lengths)
    torch.set_num_threads(args.threads)
    cfg = load_config("local", overrides=["model.profile=paper"])
    if args.parts:
        before = matmul_peak()[0]
        print(
            f"torch {torch.__version__}, {args.threads} threads, load average {os.getloadavg()[0]:.2f}; "
            f"matmul peak {before:.1f} GFLOP/s"
        )
        run_parts(cfg.model, 2 * args.parts)
        after = matmul_peak()[0]
        print(f"matmul peak at the end {after:.1f} GFLOP/s")
        if min(before, after) < 0.85 * max(before, after):
            print("WARNING: the peak moved by more than 15% during the run: something else was using the CPU")
        return 0
    batches = args.batch_size or [cfg.train.batch_size]
    fpp = flops_per_pair(cfg.model, SEQ_LEN, N_CATEGORIES)
    load0 = os.getloadavg()[0]
    peaks = [matmul_peak()]

    runs = []  # (name, batch, (pairs/s, median-step pairs/s), FLOPs/pair actually executed)
    if not args.skip_plain:
        runs.append(
            (
                "plain PyTorch loop",
                args.plain_batch_size,
                run_plain(cfg.model, args.plain_batch_size, args.steps, args.warmup),
                fpp,
            )
        )
    for b in batches:
        rate, executed = run_prodemb(b, args.steps, args.warmup, args.compile)
        runs.append(("prodemb train()" + (" compiled" if args.compile else ""), b, rate, executed))
    peaks.append(matmul_peak())  # again at the end: the better of the two is the peak

    peak = max(p for p, _ in peaks)
    onednn = max((o for _, o in peaks if o), default=None)
    print(
        f"torch {torch.__version__}, {args.threads} threads, {os.cpu_count()} CPUs; load average "
        f"{load0:.2f} at the start, {os.getloadavg()[0]:.2f} at the end (other work skews every number)"
    )
    print(
        f"matmul peak (fp32 torch.matmul 2048x2048, best of start/end): {peak:7.1f} GFLOP/s "
        f"(start {peaks[0][0]:.1f}, end {peaks[1][0]:.1f})"
    )
    if min(p for p, _ in peaks) < 0.85 * peak:
        print("WARNING: the peak moved by more than 15% during the run: something else was using the CPU")
    if onednn:
        print(f"  for reference, oneDNN fp32 matmul 2048x2048: {onednn:7.1f} GFLOP/s")
    print(
        f"FLOPs/pair (flops_per_pair, seq_len {SEQ_LEN}, {N_CATEGORIES} categories): {fpp / 1e6:.1f} M;"
        f" titles of {LENGTHS[0]}-{LENGTHS[1]} tokens"
    )
    print(
        "  prodemb executes fewer (max-pool-sparse conv backward, all-padding columns skipped):"
        + ", ".join(f" batch {b}: {e / 1e6:.1f} M" for _, b, _, e in runs if e != fpp)
    )
    print(
        f"{'run':<26}{'batch':>6}{'pairs/s':>9}{'(median)':>9}{'GFLOP/s':>9}{'of peak':>9}"
        f"{'executed GFLOP/s':>18}{'of peak':>9}"
    )
    plain = runs[0][2][0] if not args.skip_plain else None
    for name, batch, (rate, median), executed in runs:
        achieved, done = rate * fpp / 1e9, rate * executed / 1e9
        vs = f"   {rate / plain:.2f}x plain" if plain and not name.startswith("plain") else ""
        print(
            f"{name:<26}{batch:>6}{rate:>9.1f}{median:>9.1f}{achieved:>9.1f}{achieved / peak:>9.1%}"
            f"{done:>18.1f}{done / peak:>9.1%}{vs}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
