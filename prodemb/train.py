"""Training: data once into tensors, the BYOL + category loop, LARS, schedules, embedding health.

Input pipeline (no per-step Python tokenization, no DataLoader copies of titles):
    catalog ──tokenize once──▶ tokens [n_products, max_len] int64, categories [n_products] (−1 = none)
    pairs   ──index once────▶ pair_a, pair_b [n_pairs] int64 indices into the catalog
    step k: idx = perm[k·B:(k+1)·B];  tokens[pair_a[idx]], tokens[pair_b[idx]]  (a gather, on the device)

Optimizer (paper A.1, from the BYOL recipe): lr = base_lr · batch/256, momentum 0.9, weight decay
1e-5, linear warm-up then cosine annealing; LARS by default (biases and BatchNorm parameters are
excluded from the trust-ratio adaptation and from weight decay), plain SGD as the alternative.

Distributed: when WORLD_SIZE > 1 (``torchrun --nproc_per_node N jobs/train.py ...``) each rank
trains on its slice of every epoch's permutation under DistributedDataParallel (gradients
all-reduced, so every rank applies the same EMA update to its target network); rank 0 logs.
"""
from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from prodemb.config import TrainConfig
from prodemb.model import BYOLCategoryModel, ProductEncoder, tau_schedule

log = logging.getLogger(__name__)


# --- data --------------------------------------------------------------------------------------

@dataclass
class TrainingData:
    tokens: torch.Tensor                 # [n_products, max_len] int64, 0 = padding
    categories: torch.Tensor             # [n_products] int64, −1 = unknown
    pair_a: torch.Tensor                 # [n_pairs] int64
    pair_b: torch.Tensor                 # [n_pairs] int64
    holdout_a: torch.Tensor              # held-out pairs (sessions never trained on), for health metrics
    holdout_b: torch.Tensor
    product_keys: list[str]              # "site/product_id", aligned with tokens
    category_names: list[str]
    stats: dict = field(default_factory=dict)

    @property
    def n_categories(self) -> int:
        return len(self.category_names)

    def content_hash(self) -> str:
        """sha256 over the exact tensors trained on (tokens, categories, pairs)."""
        h = hashlib.sha256()
        for t in (self.tokens, self.categories, self.pair_a, self.pair_b):
            h.update(t.numpy().tobytes())
        return h.hexdigest()


def holdout_sessions(session_ids: np.ndarray, fraction: float = 0.02) -> np.ndarray:
    """Deterministic ~``fraction`` of sessions kept out of training (by a hash of the session id).

    Shared by training (health metrics) and similar-product recall, so both see the same sessions.
    """
    session = np.asarray(session_ids, dtype=np.int64).view(np.uint64)
    with np.errstate(over="ignore"):   # Fibonacci hashing: wrap-around multiply mixes sequential ids
        mixed = (session * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(32)
    return mixed % np.uint64(10_000) < np.uint64(int(fraction * 10_000))


def build_training_data(catalog, pairs, tokenizer, max_len: int, language: str = "es",
                        holdout_fraction: float = 0.02, max_holdout: int = 20_000) -> TrainingData:
    """catalog: DataFrame(site, product_id, title_norm, category); pairs: DataFrame(site, session_id,
    product_a, product_b). Pairs from a deterministic ~``holdout_fraction`` of sessions are held out."""
    import pandas as pd

    keys = catalog["site"].astype(str) + "/" + catalog["product_id"].astype(str)
    index = pd.Index(keys)
    if not index.is_unique:
        raise ValueError("catalog has duplicate (site, product_id) rows")
    a = index.get_indexer(pairs["site"].astype(str) + "/" + pairs["product_a"].astype(str))
    b = index.get_indexer(pairs["site"].astype(str) + "/" + pairs["product_b"].astype(str))
    known = (a >= 0) & (b >= 0)
    if not known.all():
        log.warning("%d pairs reference products missing from the catalog; they are skipped", (~known).sum())
    codes, names = pd.factorize(catalog["category"], sort=True)   # NaN/None → −1
    tokens = tokenizer.encode(catalog["title_norm"].fillna("").tolist(), max_len)
    # Hold out whole sessions (by id hash) so health metrics see pairs the model never trained on.
    held = holdout_sessions(pairs["session_id"].to_numpy(dtype=np.int64), holdout_fraction) & known
    if held.sum() > max_holdout:
        held &= np.cumsum(held) <= max_holdout
    train = known & ~held
    as_t = lambda x: torch.from_numpy(np.ascontiguousarray(x, dtype=np.int64))  # noqa: E731
    return TrainingData(
        tokens=as_t(tokens), categories=as_t(codes),
        pair_a=as_t(a[train]), pair_b=as_t(b[train]), holdout_a=as_t(a[held]), holdout_b=as_t(b[held]),
        product_keys=keys.tolist(), category_names=[str(n) for n in names],
        stats={"products": len(catalog), "pairs_in": len(pairs), "pairs_train": int(train.sum()),
               "pairs_holdout": int(held.sum()), "pairs_unknown_product": int((~known).sum()),
               "products_with_category": int((codes >= 0).sum()), "categories": len(names)},
    )


# --- optimization ------------------------------------------------------------------------------

class LARS(torch.optim.Optimizer):
    """SGD with momentum and layer-wise trust ratio (You et al. 2017), as used by BYOL.

    update = lr · η·‖w‖/‖g + wd·w‖ · (g + wd·w), accumulated with momentum. Parameter groups with
    ``lars_exclude=True`` (biases, BatchNorm) get plain momentum SGD without weight decay.
    """

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0, eta: float = 0.001):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta,
                                      lars_exclude=False))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if not group["lars_exclude"]:
                    g = g.add(p, alpha=group["weight_decay"])
                    w_norm, g_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(g)
                    trust = torch.where((w_norm > 0) & (g_norm > 0), group["eta"] * w_norm / g_norm,
                                        torch.ones_like(w_norm))
                    g = g.mul(trust)
                buf = self.state[p].get("momentum_buffer")
                if buf is None:
                    buf = self.state[p]["momentum_buffer"] = torch.clone(g).detach()
                else:
                    buf.mul_(group["momentum"]).add_(g)
                p.add_(buf, alpha=-group["lr"])


def param_groups(model: BYOLCategoryModel, weight_decay: float) -> list[dict]:
    """Weights (ndim > 1) get decay and LARS; biases and BatchNorm affine parameters do not."""
    decay = [p for p in model.online_parameters() if p.ndim > 1]
    plain = [p for p in model.online_parameters() if p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": plain, "weight_decay": 0.0, "lars_exclude": True}]


def make_optimizer(model: BYOLCategoryModel, cfg) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg.weight_decay)
    lr = peak_lr(cfg)
    if cfg.optimizer == "lars":
        return LARS(groups, lr=lr, momentum=cfg.momentum, eta=cfg.lars_eta)
    for g in groups:
        g.pop("lars_exclude", None)
    return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum)


def peak_lr(cfg) -> float:
    return cfg.base_lr * cfg.batch_size / 256          # A.1: linear scaling rule


def lr_at(step: int, total_steps: int, peak: float, warmup_steps: int) -> float:
    """Linear warm-up to ``peak`` over ``warmup_steps``, then cosine annealing to 0 at ``total_steps``."""
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return peak * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


# --- device / distributed ----------------------------------------------------------------------

def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if torch.cuda.is_available() \
            else torch.device("cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        log.warning("CUDA requested but not available: falling back to CPU")
        return torch.device("cpu")
    return dev


def _dist_info() -> tuple[int, int]:
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


# --- the loop ----------------------------------------------------------------------------------

@dataclass
class TrainResult:
    model: BYOLCategoryModel
    history: list[dict]
    steps: int
    pairs_seen: int
    seconds: float
    alpha: float
    device: str


def train(data: TrainingData, model_cfg, cfg, vocab_size: int, *,
          log_fn: Callable[[int, dict], None] | None = None, progress: bool = True) -> TrainResult:
    """Train BYOL + category head on ``data``; ``cfg`` is a TrainConfig, ``model_cfg`` a ModelConfig,
    ``vocab_size`` the tokenizer's."""
    rank, world = _dist_info()
    device = pick_device(cfg.device)
    if world > 1:
        import torch.distributed as dist

        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        if device.type == "cuda":
            torch.cuda.set_device(device)
    torch.manual_seed(cfg.seed)
    alpha = cfg.alpha
    if data.n_categories == 0 and alpha != 1.0:
        log.warning("the data has no categories at all: training with alpha = 1 (BYOL term only)")
        alpha = 1.0
    model = BYOLCategoryModel.from_config(model_cfg, vocab_size=vocab_size,
                                          n_categories=data.n_categories).to(device)
    optimizer = make_optimizer(model, cfg)
    step_model = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        step_model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile:
        step_model = torch.compile(step_model)

    # Everything the loop gathers from lives on the device once.
    tokens, cats = data.tokens.to(device), data.categories.to(device)
    pair_a, pair_b = data.pair_a.to(device), data.pair_b.to(device)
    n_pairs = len(pair_a)
    if n_pairs == 0:
        raise ValueError("no training pairs: sessionize produced no sessions with two or more products")
    per_rank = cfg.batch_size // world
    steps_per_epoch = max(1, n_pairs // cfg.batch_size)   # drop the ragged last batch (BatchNorm)
    total = steps_per_epoch * cfg.epochs if cfg.max_steps is None else cfg.max_steps
    warmup = max(1, int(cfg.warmup_fraction * total))
    peak = peak_lr(cfg)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" \
        else torch.autocast("cpu", enabled=False)
    gen = torch.Generator().manual_seed(cfg.seed)

    bar = _progress(total, enabled=progress and rank == 0)
    history: list[dict] = []
    step, t0, window_t, window_pairs = 0, time.perf_counter(), time.perf_counter(), 0
    model.train()
    while step < total:
        perm = torch.randperm(n_pairs, generator=gen).to(device)   # seeded shuffle per epoch
        for k in range(steps_per_epoch):
            if step >= total:
                break
            idx = perm[k * cfg.batch_size:(k + 1) * cfg.batch_size][rank * per_rank:(rank + 1) * per_rank]
            a, b = pair_a[idx], pair_b[idx]
            lr = lr_at(step, total, peak, warmup)
            for g in optimizer.param_groups:
                g["lr"] = lr
            with autocast:
                out = step_model(tokens[a], tokens[b], cats[a], cats[b], alpha)
            optimizer.zero_grad(set_to_none=True)
            out["loss"].backward()
            optimizer.step()
            tau = tau_schedule(step, total, cfg.tau_base)
            model.update_target(tau)
            step += 1
            window_pairs += len(idx) * world
            if step % cfg.log_every == 0 or step == total:
                now = time.perf_counter()
                rec = {"loss": out["loss"].item(), "loss_byol": out["byol"].item(), "loss_ce": out["ce"].item(),
                       "lr": lr, "tau": tau, "pairs_per_second": window_pairs / max(now - window_t, 1e-9)}
                if not math.isfinite(rec["loss"]):
                    raise FloatingPointError(f"loss is {rec['loss']} at step {step}: lower the learning rate")
                history.append({"step": step, **rec})
                if log_fn and rank == 0:
                    log_fn(step, rec)
                bar.set_postfix(loss=f"{rec['loss']:.4f}", pairs_s=f"{rec['pairs_per_second']:.0f}")
                window_t, window_pairs = now, 0
            bar.update(1)
    bar.close()
    seconds = time.perf_counter() - t0
    return TrainResult(model=model, history=history, steps=step, pairs_seen=step * cfg.batch_size,
                       seconds=seconds, alpha=alpha, device=str(device))


def _progress(total: int, enabled: bool):
    import sys

    from tqdm.auto import tqdm

    # In a log file (no terminal) redraw rarely instead of hundreds of carriage-return updates.
    return tqdm(total=total, desc="train", unit="step", disable=not enabled, dynamic_ncols=True,
                mininterval=0.1 if sys.stderr.isatty() else 15.0)


# --- embeddings and their health ---------------------------------------------------------------

@torch.no_grad()
def embed(encoder: ProductEncoder, tokens: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    """y = f(t(tokens)) in eval mode, batched; returns float32 [n, dim] on the CPU."""
    was_training = encoder.training
    encoder.eval()
    device = next(encoder.parameters()).device
    out = [encoder(tokens[i:i + batch_size].to(device)).float().cpu() for i in range(0, len(tokens), batch_size)]
    encoder.train(was_training)
    return torch.cat(out) if out else torch.empty(0, encoder.out_dim)


def embedding_health(encoder: ProductEncoder, data: TrainingData, sample: int = 5000, seed: int = 0,
                     min_dim_std_ratio: float = TrainConfig().min_dim_std_ratio) -> dict:
    """Spread and alignment/uniformity (Wang & Isola, 2020) of L2-normalized embeddings.

    * ``dim_std_mean``: mean over dimensions of the per-dimension std across a product sample. Uniformly
      spread unit vectors in d dimensions have ≈ 1/√d; a collapsed encoder (every product the same
      vector) has ≈ 0. ``collapsed`` when it falls below ``min_dim_std_ratio / √d``.
    * ``alignment_holdout`` = E‖u − v‖² over held-out session pairs, ``alignment_random`` the same over
      random product pairs (lower than random ⇒ sessions are captured), ``uniformity`` =
      log E exp(−2‖u − v‖²) over random pairs (more negative ⇒ more uniform).
    """
    g = torch.Generator().manual_seed(seed)
    n = len(data.tokens)
    idx = torch.randperm(n, generator=g)[:sample]
    u = F.normalize(embed(encoder, data.tokens[idx]), dim=1)
    d = u.shape[1]
    dim_std = u.std(dim=0)
    rnd_a, rnd_b = torch.randint(0, n, (sample,), generator=g), torch.randint(0, n, (sample,), generator=g)
    ra, rb = (F.normalize(embed(encoder, data.tokens[x]), dim=1) for x in (rnd_a, rnd_b))
    random_sq = (ra - rb).pow(2).sum(1)
    health = {
        "dim_std_mean": dim_std.mean().item(),
        "dim_std_min": dim_std.min().item(),
        "dim_std_uniform_reference": 1 / math.sqrt(d),
        "alignment_random": random_sq.mean().item(),
        "uniformity": torch.log(torch.exp(-2 * random_sq).mean()).item(),
        "holdout_pairs": len(data.holdout_a),
    }
    if len(data.holdout_a):
        k = torch.randperm(len(data.holdout_a), generator=g)[:sample]
        ha, hb = (F.normalize(embed(encoder, data.tokens[x[k]]), dim=1) for x in (data.holdout_a, data.holdout_b))
        health["alignment_holdout"] = (ha - hb).pow(2).sum(1).mean().item()
    health["collapsed"] = bool(health["dim_std_mean"] < min_dim_std_ratio / math.sqrt(d)
                               or not math.isfinite(health["dim_std_mean"]))
    return health


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


def plot_history(history: list[dict], path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [h["step"] for h in history]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    axes[0].plot(steps, [h["loss"] for h in history], label="total (Eq. 4)")
    axes[0].plot(steps, [h["loss_byol"] for h in history], label="BYOL ij+ji (Eq. 1)")
    axes[0].plot(steps, [h["loss_ce"] for h in history], label="CE ij+ji (Eq. 2)")
    axes[0].set_title("loss"); axes[0].legend(fontsize=8)
    axes[1].plot(steps, [h["lr"] for h in history]); axes[1].set_title("learning rate")
    axes[2].plot(steps, [h["tau"] for h in history]); axes[2].set_title("target EMA τ")
    for ax in axes:
        ax.set_xlabel("step")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


RUN_KEY_TAG = "run_key"
ALIASES_SET_TAG = "aliases_set"
_RUN_KEY_CHARS = re.compile(r"^[A-Za-z0-9_.:/+=@-]{1,250}$")


def check_run_key(run_key: str) -> str:
    if not _RUN_KEY_CHARS.match(run_key):
        raise ValueError(f"run key {run_key!r}: use 1-250 letters, digits and _ . : / + = @ -")
    return run_key


def find_run_key_version(model_name: str, run_key: str) -> str | None:
    """The registered version trained under ``run_key``, if any (the tracking URI must be set).

    Looks at the version tag first, then at the MLflow run tag, which is set before training starts:
    a job killed between registering and tagging its version is still found.
    """
    import mlflow

    client = mlflow.MlflowClient()
    check_run_key(run_key)
    try:
        found = client.search_model_versions(f"name = '{model_name}' and tags.{RUN_KEY_TAG} = '{run_key}'")
        if not found:
            runs = mlflow.search_runs(search_all_experiments=True, output_format="list",
                                      filter_string=f"tags.{RUN_KEY_TAG} = '{run_key}'")
            found = [v for r in runs for v in
                     client.search_model_versions(f"name = '{model_name}' and run_id = '{r.info.run_id}'")]
    except mlflow.exceptions.MlflowException:   # no such registered model yet
        return None
    return str(min(int(v.version) for v in found)) if found else None


def _run_version_tags(client, run_id: str) -> dict[str, str]:
    """The version tags ``run_training`` sets, as recorded on the training run (``health`` tag,
    ``health_dim_std_mean`` metric, ``data.content_sha256`` param); those the run lacks are left out."""
    data = client.get_run(run_id).data
    found = {"health": data.tags.get("health"), "dim_std_mean": data.metrics.get("health_dim_std_mean"),
             "content_sha256": data.params.get("data.content_sha256")}
    return {k: str(v) for k, v in found.items() if v is not None}


def _reuse_version(model_name: str, version: str, run_key: str) -> dict:
    """Summary for a run key that already has a version. Aliases stay as they are, unless the job that
    registered the version died before setting them (no ``aliases_set`` tag): then they are set now.
    Version tags the job did not get to set (``health``, ``dim_std_mean``, ``content_sha256``) are
    copied from the training run, which recorded them before registering (a version exists only if
    its run passed the health check); without ``health=ok`` the promotion gate would refuse it."""
    import mlflow

    from prodemb import registry

    client = mlflow.MlflowClient()
    mv = client.get_model_version(model_name, version)
    if mv.run_id:
        for key, value in _run_version_tags(client, mv.run_id).items():
            if key not in mv.tags:
                log.info("run key %s: restoring tag %s=%s on version %s", run_key, key, value, version)
                client.set_model_version_tag(model_name, version, key, value)
    if mv.tags.get(ALIASES_SET_TAG) != "true":
        registry.set_aliases_after_training(model_name, version)
        client.set_model_version_tag(model_name, version, RUN_KEY_TAG, run_key)
        client.set_model_version_tag(model_name, version, ALIASES_SET_TAG, "true")
    aliases = {a: str(client.get_model_version_by_alias(model_name, a).version)
               for a in ("candidate", "champion") if _has_alias(client, model_name, a)}
    return {"reused": True, "run_key": run_key, "run_id": mv.run_id, "model_name": model_name,
            "model_version": version, "aliases": aliases}


def _has_alias(client, model_name: str, alias: str) -> bool:
    import mlflow

    try:
        client.get_model_version_by_alias(model_name, alias)
        return True
    except mlflow.exceptions.MlflowException:
        return False


def run_training(data_dir: str, tokenizer_path: str, cfg, *, progress: bool = True,
                 run_key: str | None = None) -> dict:
    """Load DIR/catalog + DIR/pairs, train, check health, log to MLflow and register the encoder.

    ``cfg`` is the full ``prodemb.config.Config``. Raises ``CollapsedError`` (and registers nothing)
    when the embeddings collapsed.

    ``run_key`` (e.g. the scheduler's data interval) makes the job idempotent: when a registered version
    already carries tag ``run_key=<key>`` nothing is trained, that version is returned with
    ``reused: True`` and the aliases are left as they are.
    """
    import tempfile
    from pathlib import Path

    import mlflow

    from prodemb import registry
    from prodemb.tables import read_table_arrow, table_format, table_version
    from prodemb.tokenizer import Tokenizer

    if run_key is not None:
        check_run_key(run_key)
        registry.setup_tracking(cfg.mlflow.tracking_uri, cfg.mlflow.experiment)
        existing = find_run_key_version(cfg.mlflow.model_name, run_key)
        if existing is not None:
            log.info("run key %s already registered as %s version %s: nothing trained", run_key,
                     cfg.mlflow.model_name, existing)
            return _reuse_version(cfg.mlflow.model_name, existing, run_key)

    catalog_path, pairs_path = f"{data_dir.rstrip('/')}/catalog", f"{data_dir.rstrip('/')}/pairs"
    for path, what in ((catalog_path, "catalog"), (pairs_path, "pairs"), (tokenizer_path, "tokenizer")):
        if not Path(path).exists():
            raise FileNotFoundError(f"{what} not found at {path}")
    tok = Tokenizer.load(tokenizer_path)
    catalog = read_table_arrow(catalog_path, ["site", "product_id", "title_norm", "category"]).to_pandas()
    pairs = read_table_arrow(pairs_path, ["site", "session_id", "product_a", "product_b"]).to_pandas()
    data = build_training_data(catalog, pairs, tok, cfg.model.max_len, cfg.sessions.language)
    trained_on = {
        "data_dir": str(Path(data_dir).resolve()), "tokenizer": str(Path(tokenizer_path).resolve()),
        "table_format": table_format(catalog_path),
        "catalog_version": table_version(catalog_path), "pairs_version": table_version(pairs_path),
        "content_sha256": data.content_hash(), **{f"rows_{k}": v for k, v in data.stats.items()},
    }
    registry.setup_tracking(cfg.mlflow.tracking_uri, cfg.mlflow.experiment)
    with mlflow.start_run(tags={RUN_KEY_TAG: run_key} if run_key else None) as run, \
            tempfile.TemporaryDirectory() as tmp:
        mlflow.log_params(_flatten({k: v for k, v in cfg.model_dump().items() if k in
                                    ("model", "train", "tokenizer", "sessions")}))
        mlflow.log_params({f"data.{k}": str(v) for k, v in trained_on.items()})
        mlflow.log_params({"data.vocab_size": tok.vocab_size, "data.alpha_effective":
                           1.0 if data.n_categories == 0 else cfg.train.alpha})
        mlflow.log_dict(cfg.model_dump(), "config.json")
        mlflow.log_dict(trained_on, "trained_on.json")
        mlflow.log_artifact(tokenizer_path, "tokenizer")
        result = train(data, cfg.model, cfg.train, tok.vocab_size,
                       log_fn=lambda step, m: mlflow.log_metrics(m, step=step), progress=progress)
        health = embedding_health(result.model.encoder, data, cfg.train.health_sample, cfg.train.seed,
                                  cfg.train.min_dim_std_ratio)
        mlflow.log_metrics({f"health_{k}": float(v) for k, v in health.items() if not isinstance(v, bool)})
        mlflow.log_metrics({"train_seconds": result.seconds, "train_steps": result.steps,
                            "train_pairs_per_second": result.pairs_seen / max(result.seconds, 1e-9)})
        plot = Path(tmp) / "training_curves.png"
        plot_history(result.history, plot)
        mlflow.log_artifact(str(plot))
        summary = {"run_id": run.info.run_id, "steps": result.steps, "seconds": round(result.seconds, 2),
                   "alpha": result.alpha, "device": result.device, "final_loss": result.history[-1]["loss"]
                   if result.history else None, "health": health, "trained_on": trained_on}
        if health["collapsed"]:
            mlflow.set_tag("health", "collapsed")
            raise CollapsedError(
                f"embeddings collapsed: mean per-dimension std {health['dim_std_mean']:.2e} < "
                f"{cfg.train.min_dim_std_ratio} / sqrt(dim); nothing registered (run {run.info.run_id})")
        mlflow.set_tag("health", "ok")
        titles = catalog["title_norm"].dropna().head(3).tolist() or ["producto"]
        version = registry.log_encoder(result.model.encoder, tokenizer_path, max_len=cfg.model.max_len,
                                       language=cfg.sessions.language, model_name=cfg.mlflow.model_name,
                                       workdir=Path(tmp) / "model", example_titles=titles)
        client = mlflow.MlflowClient()
        tags = {"health": "ok", "dim_std_mean": health["dim_std_mean"],
                "content_sha256": trained_on["content_sha256"]}
        if run_key:
            tags[RUN_KEY_TAG] = run_key
        for key, value in tags.items():
            client.set_model_version_tag(cfg.mlflow.model_name, version, key, str(value))
        aliases = registry.set_aliases_after_training(cfg.mlflow.model_name, version)
        client.set_model_version_tag(cfg.mlflow.model_name, version, ALIASES_SET_TAG, "true")
        summary.update(model_name=cfg.mlflow.model_name, model_version=version, aliases=aliases,
                       reused=False, run_key=run_key)
    return summary
