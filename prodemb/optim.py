"""Optimization (paper A.1, from the BYOL recipe): LARS, its parameter groups, the schedules.

lr = base_lr · batch/256 (linear scaling rule), momentum 0.9, weight decay 1e-5, linear warm-up then
cosine annealing; LARS by default (biases and BatchNorm parameters are excluded from the trust-ratio
adaptation and from weight decay), plain momentum SGD as the alternative. The BYOL target network's
EMA decay τ follows its own cosine schedule (``tau_schedule``).
"""

from __future__ import annotations

import math

import torch

from prodemb.model import BYOLCategoryModel


class LARS(torch.optim.Optimizer):
    """SGD with momentum and layer-wise trust ratio (You et al. 2017), as used by BYOL.

    update = lr · η·‖w‖/‖g + wd·w‖ · (g + wd·w), accumulated with momentum. Parameter groups with
    ``lars_exclude=True`` (biases, BatchNorm) get plain momentum SGD without weight decay.
    """

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0, eta: float = 0.001):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta, lars_exclude=False))

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
                    trust = torch.where(
                        (w_norm > 0) & (g_norm > 0), group["eta"] * w_norm / g_norm, torch.ones_like(w_norm)
                    )
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
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": plain, "weight_decay": 0.0, "lars_exclude": True},
    ]


def make_optimizer(model: BYOLCategoryModel, cfg) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg.weight_decay)
    lr = peak_lr(cfg)
    if cfg.optimizer == "lars":
        return LARS(groups, lr=lr, momentum=cfg.momentum, eta=cfg.lars_eta)
    for g in groups:
        g.pop("lars_exclude", None)
    return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum)


def peak_lr(cfg) -> float:
    return cfg.base_lr * cfg.batch_size / 256  # A.1: linear scaling rule


def lr_at(step: int, total_steps: int, peak: float, warmup_steps: int) -> float:
    """Linear warm-up to ``peak`` over ``warmup_steps``, then cosine annealing to 0 at ``total_steps``."""
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return peak * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def tau_schedule(step: int, total_steps: int, tau_base: float = 0.996) -> float:
    """BYOL target decay τ_k = 1 − (1 − τ_base)·(cos(πk/K) + 1)/2: τ_base at k=0, 1 at k=K."""
    if total_steps <= 0:
        return tau_base
    k = min(max(step, 0), total_steps)
    return 1 - (1 - tau_base) * (math.cos(math.pi * k / total_steps) + 1) / 2
