"""Multi-process training: synchronized BatchNorm, and ``torchrun --nproc_per_node 2 jobs/train.py`` on the
CPU (gloo) against one process with the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from tests.conftest import REPO_ROOT

TORCHRUN = Path(sys.executable).parent / "torchrun"


# --- GlobalBatchNorm1d: two ranks' halves normalize like one BatchNorm over the whole batch ------------


def _bn_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    from prodemb.sync_batchnorm import GlobalBatchNorm1d

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        g = torch.Generator().manual_seed(0)
        x_full = torch.randn(12, 5, generator=g) * 3 + 1
        up_full = torch.randn(12, 5, generator=g)
        ref = torch.nn.BatchNorm1d(5, momentum=0.3)
        with torch.no_grad():
            ref.weight.uniform_(0.5, 1.5, generator=g)
            ref.bias.uniform_(-1, 1, generator=g)
        bn = GlobalBatchNorm1d(5, momentum=0.3)
        bn.load_state_dict(ref.state_dict())
        xr = x_full.clone().requires_grad_(True)
        y_ref = ref(xr)
        (y_ref * up_full).sum().backward()
        rows = slice(rank * 6, (rank + 1) * 6)
        x = x_full[rows].clone().requires_grad_(True)
        y = bn(x)
        (y * up_full[rows]).sum().backward()
        for t in (bn.weight.grad, bn.bias.grad):  # DDP would sum (then average) these over ranks
            dist.all_reduce(t)
        torch.testing.assert_close(y, y_ref[rows].detach(), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(x.grad, xr.grad[rows], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(bn.weight.grad, ref.weight.grad, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(bn.bias.grad, ref.bias.grad, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(bn.running_mean, ref.running_mean, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(bn.running_var, ref.running_var, rtol=1e-5, atol=1e-6)
        Path(out_dir, f"ok-{rank}").write_text("ok")
    finally:
        dist.destroy_process_group()


def test_global_batchnorm_equals_batchnorm_over_the_whole_batch(tmp_path):
    """Forward, input and affine gradients and running statistics of two ranks' halves equal those of
    one BatchNorm1d over the concatenated batch (what SyncBatchNorm does on GPUs)."""
    import torch.multiprocessing as mp

    mp.start_processes(
        _bn_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True, start_method="spawn"
    )
    assert (tmp_path / "ok-0").exists() and (tmp_path / "ok-1").exists()


def test_sync_batchnorm_conversion_covers_online_and_target_networks():
    from prodemb.model import BYOLCategoryModel
    from prodemb.sync_batchnorm import GlobalBatchNorm1d, convert_sync_batchnorm

    torch.manual_seed(0)
    model = BYOLCategoryModel(40, 3, embed_dim=8, n_filters=4, hidden_dim=16, proj_dim=8)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    params = {id(p) for p in model.parameters()}
    model = convert_sync_batchnorm(model, torch.device("cpu"))
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert len(bns) == 4 and all(isinstance(m, GlobalBatchNorm1d) for m in bns)  # g, q, h and g′ (target)
    assert {id(p) for p in model.parameters()} == params  # the same tensors
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


# --- torchrun ----------------------------------------------------------------------------------------

N_PRODUCTS, N_CATEGORIES, N_SESSIONS = 240, 4, 1500
WORDS = [
    [f"{s}{c}" for s in ("rojo", "azul", "verde", "negro", "gris", "claro", "fuerte", "suave")]
    for c in ("casa", "auto", "ropa", "tec")
]


def write_inputs(root: Path) -> None:
    """catalog/ and pairs/ as the sessionize job writes them (Parquet), and a SentencePiece tokenizer."""
    from prodemb.tokenizer import train_tokenizer

    rng = np.random.default_rng(0)
    cat = np.arange(N_PRODUCTS) % N_CATEGORIES
    titles = [" ".join(rng.choice(WORDS[c], 4)) + f" modelo{i % 17}" for i, c in enumerate(cat)]
    catalog = pa.table(
        {
            "site": ["MLA"] * N_PRODUCTS,
            "product_id": [f"P{i}" for i in range(N_PRODUCTS)],
            "title": titles,
            "title_norm": titles,
            "category": [f"cat{c}" for c in cat],
            "n_events": [3] * N_PRODUCTS,
            "first_seen": pa.array([0] * N_PRODUCTS, pa.timestamp("us")),
            "last_seen": pa.array([0] * N_PRODUCTS, pa.timestamp("us")),
        }
    )
    rows = {"site": [], "session_id": [], "product_a": [], "product_b": []}
    for s in range(N_SESSIONS):  # sessions stay within one category
        items = rng.choice(np.flatnonzero(cat == rng.integers(N_CATEGORIES)), 3, replace=False)
        for i in range(3):
            for j in range(i + 1, 3):
                a, b = sorted((f"P{items[i]}", f"P{items[j]}"))
                rows["site"].append("MLA")
                rows["session_id"].append(int(s) * 7919 - 10**6)
                rows["product_a"].append(a)
                rows["product_b"].append(b)
    for name, table in (("catalog", catalog), ("pairs", pa.table(rows))):
        (root / "data" / name).mkdir(parents=True)
        pq.write_table(table, root / "data" / name / "part-00000.parquet")
    train_tokenizer(titles, root / "tok.model", vocab_size=120, num_threads=1)


STEPS, BATCH = 24, 64
OVERRIDES = [
    "model.profile=small",
    "model.embed_dim=16",
    "model.n_filters=8",
    "model.hidden_dim=32",
    "model.proj_dim=16",
    "model.max_len=8",
    "train.log_every=1",
    "train.health_sample=200",
    "train.base_lr=5.0",
    "train.check_sync_every=1",
]


def single_process_losses(root: Path, seed: int = 0, shuffle_pairs: int | None = None) -> list[float]:
    """The loss curve of one process with the same global batch (``shuffle_pairs``: permute the pair index
    first with that seed: the same initial weights, other batches)."""
    import dataclasses

    from prodemb.config import load_config
    from prodemb.tokenizer import Tokenizer
    from prodemb.train import train
    from prodemb.train_data import load_training_data

    cfg = load_config(
        "local",
        overrides=[
            *OVERRIDES,
            f"train.max_steps={STEPS}",
            f"train.batch_size={BATCH}",
            f"train.seed={seed}",
            "train.device=cpu",
        ],
    )
    tok = Tokenizer.load(root / "tok.model")
    data = load_training_data(str(root / "data" / "catalog"), str(root / "data" / "pairs"), tok, cfg.model.max_len)
    if shuffle_pairs is not None:
        p = torch.randperm(len(data.pair_a), generator=torch.Generator().manual_seed(shuffle_pairs))
        data = dataclasses.replace(data, pair_a=data.pair_a[p], pair_b=data.pair_b[p])
    return [h["loss"] for h in train(data, cfg.model, cfg.train, tok.vocab_size, progress=False).history]


# Mean |loss(2 ranks) − loss(1 process)| over the 24 logged steps, same seed (so the same initial weights)
# and the same global batch of 64. The two runs can only differ by which pairs make up each batch (each
# rank shuffles its own half of the pairs), so the bound is set by the sampling noise of one process.
# Measured on this data (CPU, torch 2.13): one process against itself with the pair index permuted
# (same weights, other batches) differs by 0.023-0.041 (mean 0.032, 15 pairs of runs); 2 ranks against
# 1 process by 0.024 (seed 0) and 0.040 (seed 1); one process with another seed, i.e. other initial
# weights, by 0.09-0.18. 0.08 is twice the largest sampling difference seen, under what other weights give.
# The gloo run is deterministic (two ranks: one summation order), so the measured 0.024 is what the test
# sees here. The exactness of the synchronized BatchNorm is tested separately above.
LOSS_TOLERANCE = 0.08
FINAL_LOSS_TOLERANCE = 0.1  # last step: 1.120-1.161 over 6 one-process samplings, 1.150 with 2 ranks


def summaries(stdout: str) -> list[dict]:
    found = []
    for line in stdout.splitlines():
        line = line.split(":", 1)[1] if line.startswith("[") and "]:" in line[:12] else line
        if line.strip().startswith("{"):
            found.append(json.loads(line))
    return found


def test_torchrun_two_processes_register_one_version_and_follow_the_one_process_curve(tmp_path):
    import mlflow

    write_inputs(tmp_path)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")},
        "OMP_NUM_THREADS": "1",
        "MASTER_ADDR": "127.0.0.1",
        "PYTHONUNBUFFERED": "1",
    }
    cmd = [
        str(TORCHRUN),
        "--standalone",
        "--nproc_per_node",
        "2",
        str(REPO_ROOT / "jobs" / "train.py"),
        "--json",
        "--data",
        str(tmp_path / "data"),
        "--tokenizer",
        str(tmp_path / "tok.model"),
        "--device",
        "cpu",
        "--max-steps",
        str(STEPS),
        "--batch-size",
        str(BATCH),
        "--mlflow-uri",
        uri,
        "--no-progress",
        *[a for o in OVERRIDES for a in ("--set", o)],
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]

    by_rank = {s.get("rank"): s for s in summaries(proc.stdout)}
    assert set(by_rank) == {0, 1}, proc.stdout[-3000:]
    for s in by_rank.values():  # every step checked: all ranks held identical weights and buffers
        assert s["world_size"] == 2 and s["steps"] == STEPS and s["sync_checks"] == STEPS, s
    assert by_rank[0]["shard_pairs"] + by_rank[1]["shard_pairs"] == by_rank[0]["trained_on"]["rows_pairs_train"]
    assert "model_version" not in by_rank[1] and by_rank[0]["model_version"] == "1"
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    assert len(client.search_model_versions("name = 'prodemb-encoder'")) == 1
    assert len(client.search_runs([e.experiment_id for e in client.search_experiments()])) == 1
    dist_losses = [
        m.value for m in sorted(client.get_metric_history(by_rank[0]["run_id"], "loss"), key=lambda m: m.step)
    ]
    assert len(dist_losses) == STEPS

    # The same global batch in one process, and one process with other batches (the sampling noise).
    one = np.array(single_process_losses(tmp_path))
    resampled = np.array(single_process_losses(tmp_path, shuffle_pairs=1))
    dist = np.array(dist_losses)
    gap, noise = float(np.mean(np.abs(dist - one))), float(np.mean(np.abs(resampled - one)))
    print(
        f"mean |loss 2 ranks - loss 1 process| = {gap:.4f} (1 process, other batches: {noise:.4f}); "
        f"last {dist[-1]:.4f} vs {one[-1]:.4f}"
    )
    assert gap <= LOSS_TOLERANCE, (gap, noise, dist.tolist(), one.tolist())
    assert abs(dist[-1] - one[-1]) <= FINAL_LOSS_TOLERANCE, (dist[-1], one[-1])
    assert dist[-1] < dist[0] - 1.0 and one[-1] < one[0] - 1.0  # both learn


def test_torchrun_rank_zero_failing_before_training_does_not_leave_rank_one_waiting(tmp_path):
    """Rank 0 alone talks to MLflow: a tracking URI it cannot use fails it while rank 1 already waits in
    DDP's first collective. torchrun then stops rank 1 and fails; nothing hangs (the timeout would raise)."""
    write_inputs(tmp_path)
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")},
        "OMP_NUM_THREADS": "1",
        "MASTER_ADDR": "127.0.0.1",
    }
    cmd = [
        str(TORCHRUN),
        "--standalone",
        "--nproc_per_node",
        "2",
        str(REPO_ROOT / "jobs" / "train.py"),
        "--json",
        "--data",
        str(tmp_path / "data"),
        "--tokenizer",
        str(tmp_path / "tok.model"),
        "--device",
        "cpu",
        "--max-steps",
        "5",
        "--batch-size",
        str(BATCH),
        "--mlflow-uri",
        "bogus-scheme://nowhere",
        "--no-progress",
        *[a for o in OVERRIDES for a in ("--set", o)],
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=tmp_path, env=env)
    assert proc.returncode != 0
    assert "local_rank: 0" in proc.stderr and "bogus-scheme" in proc.stderr, proc.stderr[-3000:]
    assert not any(s.get("rank") == 1 for s in summaries(proc.stdout))  # rank 1 never finished training
