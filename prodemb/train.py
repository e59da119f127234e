"""Training: the BYOL + category loop (one process or torchrun), and the job around it (``run_training``).

The inputs (``prodemb.train_data``), optimizer and schedules (``prodemb.optim``), the health check
(``prodemb.health``), the MLflow run keys and aliases (``prodemb.registry``) and the process group and
collectives of several processes (``prodemb.distributed``) live in their own modules.

    step k: idx = perm[k·b:(k+1)·b];  tokens[pair_a[idx]], tokens[pair_b[idx]]  (a gather, on the device)

Distributed: with WORLD_SIZE > 1 (``torchrun --nproc_per_node N jobs/train.py ...``; gloo on the CPU,
NCCL on GPUs) each rank keeps only its shard of the pair index (every N-th pair), shuffles it with its
own seeded permutation every epoch and takes b = batch_size / N pairs a step; all ranks run the same
number of steps (from the smallest shard). The model runs under DistributedDataParallel with every
BatchNorm synchronized (statistics of the global batch), so gradients, the optimizer step and the EMA
target update are the same on every rank; ``train.check_sync_every`` verifies that the weights are
identical. Rank 0 alone talks to MLflow and registers; the other ranks train and return a summary.
"""

from __future__ import annotations

import inspect
import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch

from prodemb.augment import augment, with_self_pairs
from prodemb.distributed import broadcast, check_in_sync, global_mean, init_distributed
from prodemb.model import BYOLCategoryModel
from prodemb.optim import lr_at, make_optimizer, peak_lr, tau_schedule
from prodemb.sync_batchnorm import convert_sync_batchnorm
from prodemb.title_clusters import title_clusters
from prodemb.train_data import TrainingData

log = logging.getLogger(__name__)


# --- the loop ----------------------------------------------------------------------------------

_clock = time.perf_counter  # the loop's clock (pace, time cap, pairs/s); tests replace it


class TimeCap:
    """``train.max_minutes``: how many steps fit before the deadline at the pace measured so far.

    The first step (allocation, cuDNN autotuning, compilation) is not counted in the pace, and no cut is
    made before a tenth of the budget has been measured: a pace taken over the first few steps ran 8 %
    slow on a 19-minute run (1,567 of 1,600 steps, done in 17.6 minutes), and the total never grows
    back. The total only ever shrinks, and only when the projection overruns it by more than 2 % (no
    jitter). Under torchrun every rank takes the smallest projection, so all run the same number of steps.
    """

    def __init__(self, minutes: float | None, start: float):
        self.deadline = None if minutes is None else start + 60.0 * minutes
        self.settle_s = 0.0 if minutes is None else 6.0 * minutes  # a tenth of the budget
        self.first_done: float | None = None

    def steps(self, step: int, total: int, now: float, world: int, device: torch.device) -> int:
        if self.deadline is None:
            return total
        if self.first_done is None:
            self.first_done = now
            return total
        done = step - 1
        if done < 2:
            return total
        measured = now - self.first_done
        # every rank reaches the all-reduce below on the same steps, measured long enough or not
        fit = total if measured < self.settle_s else step + int((self.deadline - now) / (measured / done))
        if world > 1:
            import torch.distributed as dist

            t = torch.tensor([fit], dtype=torch.int64, device=device)
            dist.all_reduce(t, op=dist.ReduceOp.MIN)
            fit = int(t.item())
        return max(step + 1, fit) if fit < total * 0.98 else total


@dataclass
class TrainResult:
    model: BYOLCategoryModel
    history: list[dict]
    steps: int
    pairs_seen: int
    seconds: float
    alpha: float
    device: str
    rank: int = 0
    world_size: int = 1
    sync_checks: int = 0  # weight-identity checks passed (train.check_sync_every)
    planned_steps: int = 0  # before train.max_minutes cut them (= steps when it did not)


def train(
    data: TrainingData,
    model_cfg,
    cfg,
    vocab_size: int,
    *,
    log_fn: Callable[[int, dict], None] | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train BYOL + category head on ``data``; ``cfg`` is a TrainConfig, ``model_cfg`` a ModelConfig,
    ``vocab_size`` the tokenizer's. Under torchrun ``data`` may be the full data or this rank's shard
    (``TrainingData.sharded``); the logged losses are the means over all ranks, i.e. of the global batch."""
    rank, world, device, created = init_distributed(cfg.device)
    try:
        return _train(data, model_cfg, cfg, vocab_size, rank, world, device, log_fn, progress)
    finally:
        if created:
            import torch.distributed as dist

            dist.destroy_process_group()


def _train(
    data: TrainingData,
    model_cfg,
    cfg,
    vocab_size: int,
    rank: int,
    world: int,
    device: torch.device,
    log_fn: Callable[[int, dict], None] | None,
    progress: bool,
) -> TrainResult:
    if cfg.batch_size % world:
        raise ValueError(f"train.batch_size {cfg.batch_size} is not divisible by the {world} processes")
    if world > 1 and data.shard == (0, 1):
        data = data.sharded(rank, world)
    elif data.shard[1] != world or (world > 1 and data.shard[0] != rank):
        raise ValueError(f"data is shard {data.shard}, this is rank {rank} of {world}")
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank
    changed = cfg.changes_for_data(data.n_categories)
    if changed and rank == 0:
        log.warning(
            "the data has no categories at all: training with %s (train.without_categories)",
            ", ".join(f"{k} = {v}" for k, v in changed.items()),
        )
    cfg = cfg.for_data(data.n_categories)
    if data.n_categories == 0 and cfg.without_categories.title_clusters:
        k = cfg.without_categories.title_clusters
        codes = None
        if rank == 0:  # clustered once; every rank trains on rank 0's clusters
            log.warning("no categories: %d title clusters stand in for them (α = %g)", k, cfg.alpha)
            codes = title_clusters(data.tokens, vocab_size, k, cfg.seed)
        data = data.with_categories(broadcast(codes, world), [f"title-{c}" for c in range(k)])
    alpha = cfg.alpha
    model = BYOLCategoryModel.from_config(model_cfg, vocab_size=vocab_size, n_categories=data.n_categories).to(device)
    if world > 1:  # BN statistics of the global batch, in the target network's forward too
        model = convert_sync_batchnorm(model, device)
    optimizer = make_optimizer(model, cfg)
    step_model: Any = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        # Buffers are not re-broadcast from rank 0 before every forward: synchronized BN keeps them equal,
        # and the sync check would otherwise never see a divergence.
        no_buffer_sync: dict[str, Any] = (
            {"forward_sync_buffers": False}
            if "forward_sync_buffers" in inspect.signature(DDP.__init__).parameters
            else {"broadcast_buffers": False}
        )
        step_model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None, **no_buffer_sync)
    if cfg.compile:
        from prodemb.kernels.textcnn import keep_out_of_compiled_graphs

        keep_out_of_compiled_graphs()
        step_model = torch.compile(step_model)

    # Everything the loop gathers from lives on the device once.
    tokens, cats = data.tokens.to(device), data.categories.to(device)
    pair_a, pair_b = data.pair_a.to(device), data.pair_b.to(device)
    n_pairs = len(pair_a)
    per_rank = cfg.batch_size // world
    if world > 1:  # every rank runs as many steps as the smallest shard allows
        import torch.distributed as dist

        smallest = torch.tensor([n_pairs], dtype=torch.int64, device=device)
        dist.all_reduce(smallest, op=dist.ReduceOp.MIN)
        n_min = int(smallest.item())
    else:
        n_min = n_pairs
    if n_min == 0:
        raise ValueError(
            "no training pairs: sessionize produced no sessions with two or more products"
            + (f" (or a rank's shard is empty: {world} processes)" if world > 1 else "")
        )
    steps_per_epoch = max(1, n_min // per_rank)  # drop the ragged last batch (BatchNorm)
    total = steps_per_epoch * cfg.epochs if cfg.max_steps is None else cfg.max_steps
    warmup = max(1, int(cfg.warmup_fraction * total))
    peak = peak_lr(cfg)
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
    )
    gen = torch.Generator().manual_seed(cfg.seed + 1_000_003 * rank)  # rank 0: the one-process stream
    aug = cfg.augment
    augmenting = aug.dropout > 0 or aug.span_mask > 0 or aug.shuffle_window > 0
    aug_gen = torch.Generator().manual_seed(cfg.seed + 7 + 1_000_003 * rank)  # views: their own stream

    bar = _progress(total, enabled=progress and rank == 0)
    history: list[dict] = []
    step, sync_checks, t0, window_t, window_pairs = 0, 0, _clock(), _clock(), 0
    cap, planned = TimeCap(cfg.max_minutes, t0), total
    model.train()
    while step < total:
        perm = torch.randperm(n_pairs, generator=gen).to(device)  # seeded shuffle per epoch
        for k in range(steps_per_epoch):
            if step >= total:
                break
            idx = perm[k * per_rank : (k + 1) * per_rank]
            a = pair_a[idx]
            b = with_self_pairs(a, pair_b[idx], cfg.self_pair_fraction)  # (p, p) beside session pairs
            ta, tb = tokens[a], tokens[b]
            if augmenting:
                ta, tb = augment(ta, aug, aug_gen), augment(tb, aug, aug_gen)
            lr = lr_at(step, total, peak, warmup)
            for g in optimizer.param_groups:
                g["lr"] = lr
            with autocast:
                out = step_model(ta, tb, cats[a], cats[b], alpha)
            optimizer.zero_grad(set_to_none=True)
            out["loss"].backward()
            optimizer.step()
            tau = tau_schedule(step, total, cfg.tau_base)
            model.update_target(tau)
            step += 1
            window_pairs += len(idx) * world
            capped = cap.steps(step, total, _clock(), world, device)
            if capped < total:  # the schedules (warm-up, cosine, τ) follow the new end
                total, warmup = capped, min(warmup, max(1, int(cfg.warmup_fraction * capped)))
                bar.total = total
                bar.refresh()
            if world > 1 and cfg.check_sync_every > 0 and step % cfg.check_sync_every == 0:
                check_in_sync(model, step, device)
                sync_checks += 1
            if step % cfg.log_every == 0 or step == total:
                now = _clock()
                loss, byol, ce = global_mean([out["loss"], out["byol"], out["ce"]], world)
                rec = {
                    "loss": loss,
                    "loss_byol": byol,
                    "loss_ce": ce,
                    "lr": lr,
                    "tau": tau,
                    "pairs_per_second": window_pairs / max(now - window_t, 1e-9),
                }
                if not math.isfinite(rec["loss"]):  # the same value on every rank: all stop together
                    raise FloatingPointError(f"loss is {rec['loss']} at step {step}: lower the learning rate")
                history.append({"step": step, **rec})
                if log_fn and rank == 0:
                    log_fn(step, rec)
                bar.set_postfix(loss=f"{rec['loss']:.4f}", pairs_s=f"{rec['pairs_per_second']:.0f}")
                window_t, window_pairs = now, 0
            bar.update(1)
    bar.close()
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
    seconds = _clock() - t0
    if total < planned and rank == 0:
        log.warning(
            "train.max_minutes=%g: %d of the planned %d steps fit; schedules rescaled to them",
            cfg.max_minutes,
            total,
            planned,
        )
    return TrainResult(
        model=model,
        history=history,
        steps=step,
        pairs_seen=step * cfg.batch_size,
        seconds=seconds,
        alpha=alpha,
        device=str(device),
        rank=rank,
        world_size=world,
        sync_checks=sync_checks,
        planned_steps=planned,
    )


def _progress(total: int, enabled: bool):
    import sys

    from tqdm.auto import tqdm

    # In a log file (no terminal) redraw rarely instead of hundreds of carriage-return updates.
    return tqdm(
        total=total,
        desc="train",
        unit="step",
        disable=not enabled,
        dynamic_ncols=True,
        mininterval=0.1 if sys.stderr.isatty() else 15.0,
    )


def plot_history(history: list[dict], path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [h["step"] for h in history]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    axes[0].plot(steps, [h["loss"] for h in history], label="total (Eq. 4)")
    axes[0].plot(steps, [h["loss_byol"] for h in history], label="BYOL ij+ji (Eq. 1)")
    axes[0].plot(steps, [h["loss_ce"] for h in history], label="CE ij+ji (Eq. 2)")
    axes[0].set_title("loss")
    axes[0].legend(fontsize=8)
    axes[1].plot(steps, [h["lr"] for h in history])
    axes[1].set_title("learning rate")
    axes[2].plot(steps, [h["tau"] for h in history])
    axes[2].set_title("target EMA τ")
    for ax in axes:
        ax.set_xlabel("step")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- the job: I/O at the edge ------------------------------------------------------------------


class CollapsedError(RuntimeError):
    """The trained embeddings have (near) zero spread: nothing is registered."""


def _flatten(d: dict, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = str(v)[:500]
    return out


def run_training(data_dir: str, tokenizer_path: str, cfg, *, progress: bool = True, run_key: str | None = None) -> dict:
    """Load DIR/catalog + DIR/pairs, train, check health, log to MLflow and register the encoder.

    ``cfg`` is the full ``prodemb.config.Config``; ``data_dir`` and ``tokenizer_path`` may be local
    paths or URIs (``prodemb.fs``). Raises ``CollapsedError`` (and registers nothing) when the
    embeddings collapsed.

    ``run_key`` (e.g. the scheduler's data interval) makes the job idempotent: when a registered version
    already carries tag ``run_key=<key>`` nothing is trained, that version is returned with
    ``reused: True`` and the aliases are left as they are.

    ``cfg.train.site`` trains one site's model on that site's products and pairs, registered as
    ``<mlflow.model_name>-<site>`` (prodemb.registry.site_model_name).

    Under torchrun only rank 0 uses MLflow (run-key lookup, run, metrics, artifacts, health, the one
    registered version, aliases); every other rank trains on its shard and returns a short summary.
    """
    if cfg.train.site:  # one site's model: its own registered name, its own versions and aliases
        from prodemb.registry import site_model_name

        cfg = cfg.model_copy(
            update={
                "mlflow": cfg.mlflow.model_copy(
                    update={"model_name": site_model_name(cfg.mlflow.model_name, cfg.train.site)}
                )
            }
        )
    rank, world, _, created = init_distributed(cfg.train.device)
    try:
        return _run_training(data_dir, tokenizer_path, cfg, progress, run_key, rank, world)
    finally:
        if created:
            import torch.distributed as dist

            dist.destroy_process_group()  # a failed rank 0 must not leave the others waiting


def _run_training(
    data_dir: str, tokenizer_path: str, cfg, progress: bool, run_key: str | None, rank: int, world: int
) -> dict:
    from prodemb import fs, registry
    from prodemb.tokenizer import Tokenizer
    from prodemb.train_data import load_training_data

    main = rank == 0
    if cfg.train.batch_size % world:  # before any MLflow run exists
        raise ValueError(f"train.batch_size {cfg.train.batch_size} is not divisible by the {world} processes")
    if run_key is not None:
        registry.check_run_key(run_key)
        existing = None
        if main:
            registry.setup_tracking(
                cfg.mlflow.tracking_uri, cfg.mlflow.experiment, registry_uri=cfg.mlflow.registry_uri
            )
            existing = registry.find_run_key_version(cfg.mlflow.model_name, run_key)
        existing = broadcast(existing, world)
        if existing is not None:
            if not main:
                return {
                    "rank": rank,
                    "world_size": world,
                    "reused": True,
                    "run_key": run_key,
                    "model_name": cfg.mlflow.model_name,
                    "model_version": existing,
                }
            log.info(
                "run key %s already registered as %s version %s: nothing trained",
                run_key,
                cfg.mlflow.model_name,
                existing,
            )
            return registry.reuse_version(cfg.mlflow.model_name, existing, run_key)

    catalog_path, pairs_path = fs.join(data_dir, "catalog"), fs.join(data_dir, "pairs")
    for path, what in ((catalog_path, "catalog"), (pairs_path, "pairs"), (tokenizer_path, "tokenizer")):
        if not fs.exists(path):
            raise FileNotFoundError(f"{what} not found at {path}")
    tok = Tokenizer.load(tokenizer_path)
    data = load_training_data(
        catalog_path, pairs_path, tok, cfg.model.max_len, cfg.sessions.language, site=cfg.train.site
    )
    if not main:
        data = data.sharded(rank, world)
        result = train(data, cfg.model, cfg.train, tok.vocab_size, progress=False)
        return {
            "rank": rank,
            "world_size": world,
            "steps": result.steps,
            "seconds": round(result.seconds, 2),
            "device": result.device,
            "shard_pairs": len(data.pair_a),
            "sync_checks": result.sync_checks,
            "final_loss": result.history[-1]["loss"] if result.history else None,
        }
    return _train_and_register(
        data, tok, tokenizer_path, data_dir, catalog_path, pairs_path, cfg, progress, run_key, world
    )


def _train_and_register(
    data: TrainingData,
    tok,
    tokenizer_path: str,
    data_dir: str,
    catalog_path: str,
    pairs_path: str,
    cfg,
    progress: bool,
    run_key: str | None,
    world: int,
) -> dict:
    """Rank 0 (or the only process): the MLflow run around ``train``, the health gate, registration."""
    import tempfile
    from pathlib import Path

    import mlflow

    from prodemb import faults, fs, registry
    from prodemb.health import embedding_health
    from prodemb.tables import table_format, table_version

    trained_on = {
        "data_dir": fs.absolute(data_dir),
        "tokenizer": fs.absolute(tokenizer_path),
        "table_format": table_format(catalog_path),
        "catalog_version": table_version(catalog_path),
        "pairs_version": table_version(pairs_path),
        "content_sha256": data.content_hash(),
        **{f"rows_{k}": v for k, v in data.stats.items()},
    }
    holdout = data.holdout.as_params() if data.holdout is not None else {}
    data = data.sharded(0, world)  # the hash covers all pairs; rank 0 trains on its shard only
    registry.setup_tracking(cfg.mlflow.tracking_uri, cfg.mlflow.experiment, registry_uri=cfg.mlflow.registry_uri)
    with (
        mlflow.start_run(tags={registry.RUN_KEY_TAG: run_key} if run_key else None) as run,
        tempfile.TemporaryDirectory() as tmp,
    ):
        local_tokenizer = tokenizer_path
        if not fs.is_local(tokenizer_path):  # MLflow logs local files: bring a remote tokenizer here
            local_tokenizer = str(Path(tmp) / Path(tokenizer_path).name)
            Path(local_tokenizer).write_bytes(fs.read_bytes(tokenizer_path))
        mlflow.log_params(
            _flatten({k: v for k, v in cfg.model_dump().items() if k in ("model", "train", "tokenizer", "sessions")})
        )
        mlflow.log_params({f"data.{k}": str(v) for k, v in trained_on.items()})
        mlflow.log_params(holdout)  # the held-out sessions, exactly (jobs/similar.py --recall rebuilds them)
        changed = cfg.train.changes_for_data(data.n_categories)  # what ``train`` changes on this data
        mlflow.log_params(
            {
                "data.vocab_size": tok.vocab_size,
                "data.alpha_effective": changed.get("alpha", cfg.train.alpha),
                **{f"data.{k}_effective": v for k, v in changed.items() if k != "alpha"},
            }
        )
        if world > 1:
            mlflow.log_params({"dist.world_size": world})
        mlflow.log_dict(cfg.model_dump(), "config.json")
        mlflow.log_dict({**trained_on, **holdout}, "trained_on.json")
        mlflow.log_artifact(fs.local_path(local_tokenizer), "tokenizer")
        result = train(
            data,
            cfg.model,
            cfg.train,
            tok.vocab_size,
            log_fn=lambda step, m: mlflow.log_metrics(m, step=step),
            progress=progress,
        )
        health = embedding_health(
            result.model.encoder, data, cfg.train.health_sample, cfg.train.seed, cfg.train.min_dim_std_ratio
        )
        mlflow.log_metrics({f"health_{k}": float(v) for k, v in health.items() if not isinstance(v, bool)})
        mlflow.log_metrics(
            {
                "train_seconds": result.seconds,
                "train_steps": result.steps,
                "train_planned_steps": result.planned_steps,
                "train_pairs_per_second": result.pairs_seen / max(result.seconds, 1e-9),
            }
        )
        plot = Path(tmp) / "training_curves.png"
        plot_history(result.history, plot)
        mlflow.log_artifact(str(plot))
        summary = {
            "run_id": run.info.run_id,
            "steps": result.steps,
            "planned_steps": result.planned_steps,
            "seconds": round(result.seconds, 2),
            "alpha": result.alpha,
            "device": result.device,
            "final_loss": result.history[-1]["loss"] if result.history else None,
            "health": health,
            "trained_on": trained_on,
        }
        if world > 1:
            summary.update(rank=0, world_size=world, shard_pairs=len(data.pair_a), sync_checks=result.sync_checks)
        if health["collapsed"]:
            mlflow.set_tag("health", "collapsed")
            raise CollapsedError(
                f"embeddings collapsed: mean per-dimension std {health['dim_std_mean']:.2e} < "
                f"{cfg.train.min_dim_std_ratio} / sqrt(dim); nothing registered (run {run.info.run_id})"
            )
        mlflow.set_tag("health", "ok")
        version = registry.log_encoder(
            result.model.encoder,
            fs.local_path(local_tokenizer),
            max_len=cfg.model.max_len,
            language=cfg.sessions.language,
            model_name=cfg.mlflow.model_name,
            workdir=Path(tmp) / "model",
            example_titles=data.example_titles or ["producto"],
        )
        faults.point("train.registered")
        if run_key is not None:
            first = registry.find_run_key_version(cfg.mlflow.model_name, run_key)
            if first is not None and first != version:
                # Two runs with this key passed the check before either registered: the first version
                # registered stays, this one goes, and this run reports the first (as a rerun would).
                mlflow.MlflowClient().delete_model_version(cfg.mlflow.model_name, version)
                log.warning("run key %s: version %s was registered first; version %s deleted", run_key, first, version)
                summary.update(registry.reuse_version(cfg.mlflow.model_name, first, run_key), raced=version)
                return summary
        aliases = registry.tag_trained_version(
            cfg.mlflow.model_name,
            version,
            dim_std_mean=health["dim_std_mean"],
            content_sha256=trained_on["content_sha256"],
            run_key=run_key,
        )
        summary.update(
            model_name=cfg.mlflow.model_name, model_version=version, aliases=aliases, reused=False, run_key=run_key
        )
    return summary
