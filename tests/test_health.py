"""prodemb.health: the collapse check and batched eval-mode embedding."""

from __future__ import annotations

import torch

from prodemb.health import embed, embedding_health
from prodemb.train import train
from tests.test_train import small_cfg
from tests.test_train_data import toy_data


def test_health_flags_a_collapsed_encoder_and_passes_a_spread_one():
    data = toy_data()
    model_cfg, cfg = small_cfg(epochs=10, base_lr=20.0)  # LARS at batch 64 needs a large base lr
    good = train(data, model_cfg, cfg, vocab_size=50, progress=False).model.encoder
    h = embedding_health(good, data, sample=200)
    assert not h["collapsed"] and h["dim_std_mean"] > 0
    assert h["alignment_holdout"] < h["alignment_random"]  # session pairs closer than random pairs
    collapsed = train(
        data, model_cfg, cfg.model_copy(update={"max_steps": 1}), vocab_size=50, progress=False
    ).model.encoder
    with torch.no_grad():  # every product maps to the same vector: the failure BYOL can fall into
        for p in collapsed.parameters():
            p.zero_()
        next(p for n, p in collapsed.named_parameters() if n.endswith("bias")).fill_(1.0)
    hc = embedding_health(collapsed, data, sample=200)
    assert hc["collapsed"] and hc["dim_std_mean"] < 1e-6


def test_embed_is_batched_eval_mode():
    data = toy_data()
    model_cfg, cfg = small_cfg(max_steps=2)
    enc = train(data, model_cfg, cfg, vocab_size=50, progress=False).model.encoder
    full = embed(enc, data.tokens, batch_size=1000)
    assert torch.allclose(full, embed(enc, data.tokens, batch_size=7), atol=1e-6)
    assert enc.training  # restored
