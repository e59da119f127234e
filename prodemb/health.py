"""Embedding health after training: batched eval-mode embedding, spread and alignment/uniformity.

The training job refuses to register an encoder whose embeddings collapsed (``collapsed``): mean
per-dimension std of L2-normalized embeddings < ``min_dim_std_ratio / √d`` (healthy runs ≈ 0.5/√d).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from prodemb.config import TrainConfig
from prodemb.model import ProductEncoder
from prodemb.train_data import TrainingData


@torch.no_grad()
def embed(encoder: ProductEncoder, tokens: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    """The published vector v (``ProductEncoder.vector``; y = f(t(tokens)) unless the model sets
    ``model.vector``) in eval mode, batched; returns float32 [n, vector_dim] on the CPU."""
    was_training = encoder.training
    encoder.eval()
    device = next(encoder.parameters()).device
    out = [
        encoder.vector(tokens[i : i + batch_size].to(device)).float().cpu() for i in range(0, len(tokens), batch_size)
    ]
    encoder.train(was_training)
    return torch.cat(out) if out else torch.empty(0, encoder.vector_dim)


def embedding_health(
    encoder: ProductEncoder,
    data: TrainingData,
    sample: int = 5000,
    seed: int = 0,
    min_dim_std_ratio: float = TrainConfig().min_dim_std_ratio,
) -> dict:
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
    health["collapsed"] = bool(
        health["dim_std_mean"] < min_dim_std_ratio / math.sqrt(d) or not math.isfinite(health["dim_std_mean"])
    )
    return health
