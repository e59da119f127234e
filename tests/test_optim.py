"""prodemb.optim: LARS, the learning-rate schedule and the BYOL τ schedule."""

from __future__ import annotations

import math

import pytest
import torch

from prodemb.optim import LARS, lr_at, tau_schedule


def test_lars_scales_by_trust_ratio_and_skips_excluded_groups():
    w = torch.nn.Parameter(torch.tensor([3.0, 4.0]))  # ‖w‖ = 5
    b = torch.nn.Parameter(torch.tensor([1.0]))
    opt = LARS(
        [{"params": [w], "weight_decay": 0.0}, {"params": [b], "weight_decay": 0.0, "lars_exclude": True}],
        lr=0.1,
        momentum=0.9,
        eta=0.01,
    )
    w.grad = torch.tensor([0.0, 2.0])  # ‖g‖ = 2 → trust = 0.01·5/2 = 0.025
    b.grad = torch.tensor([2.0])
    opt.step()
    assert torch.allclose(w.detach(), torch.tensor([3.0, 4.0 - 0.1 * 0.025 * 2.0]))
    assert torch.allclose(b.detach(), torch.tensor([1.0 - 0.1 * 2.0]))  # plain SGD
    w.grad, b.grad = torch.tensor([0.0, 2.0]), torch.tensor([2.0])
    before = w.detach().clone()
    opt.step()  # momentum: 0.9·u + u
    trust = 0.01 * torch.linalg.vector_norm(before) / 2.0
    assert torch.allclose(w.detach()[1], before[1] - 0.1 * (0.9 * 0.025 * 2.0 + trust * 2.0))


def test_lars_weight_decay_enters_the_update():
    w = torch.nn.Parameter(torch.tensor([1.0, 0.0]))
    opt = LARS([{"params": [w], "weight_decay": 0.5}], lr=1.0, momentum=0.0, eta=1.0)
    w.grad = torch.tensor([0.0, 1.0])
    opt.step()  # g' = g + 0.5 w = [0.5, 1]; trust = 1/‖g'‖
    g = torch.tensor([0.5, 1.0])
    assert torch.allclose(w.detach(), torch.tensor([1.0, 0.0]) - g / torch.linalg.vector_norm(g))


def test_lr_warmup_then_cosine():
    peak, total, warm = 7.2, 100, 10
    assert lr_at(0, total, peak, warm) == pytest.approx(peak / 10)
    assert lr_at(9, total, peak, warm) == pytest.approx(peak)
    assert lr_at(10, total, peak, warm) == pytest.approx(peak)
    assert lr_at(55, total, peak, warm) == pytest.approx(peak / 2)
    assert lr_at(100, total, peak, warm) == pytest.approx(0.0, abs=1e-12)
    assert all(lr_at(s, total, peak, warm) >= lr_at(s + 1, total, peak, warm) for s in range(10, 99))


def test_tau_schedule():
    assert tau_schedule(0, 100) == pytest.approx(0.996)
    assert tau_schedule(100, 100) == pytest.approx(1.0)
    assert tau_schedule(50, 100) == pytest.approx(1 - 0.004 / 2)
    assert tau_schedule(25, 100, tau_base=0.9) == pytest.approx(1 - 0.1 * (math.cos(math.pi / 4) + 1) / 2)
    assert tau_schedule(10, 100) < tau_schedule(60, 100)
