"""prodemb.model: shapes, Eq. 1/2/4 by hand, stop-gradient, EMA target, FLOPs (the τ schedule: tests/test_optim.py)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from prodemb.model import MLP, BYOLCategoryModel, ProductEncoder, byol_loss, category_loss, flops_per_pair, total_loss
from prodemb.optim import tau_schedule
from tests.test_kernels import assert_matches_reference, reference_forward

TINY = dict(embed_dim=16, n_filters=8, kernel_sizes=(2, 3, 4, 5), hidden_dim=32, proj_dim=8)


def tiny(n_categories=5, vocab=50, seed=0, **kw):
    torch.manual_seed(seed)
    return BYOLCategoryModel(vocab, n_categories, **{**TINY, **kw})


def batch(B=6, L=7, vocab=50, n_cat=5, seed=1):
    g = torch.Generator().manual_seed(seed)
    ti, tj = (torch.randint(1, vocab, (B, L), generator=g) for _ in range(2))
    ci, cj = (torch.randint(0, n_cat, (B,), generator=g) for _ in range(2))
    return ti, tj, ci, cj


# ---------------------------------------------------------------- shapes
@pytest.mark.parametrize(
    "dims,vocab,n_cat",
    [
        (dict(embed_dim=512, n_filters=128, kernel_sizes=(2, 3, 4, 5), hidden_dim=1024, proj_dim=128), 1000, 30),
        (TINY, 50, 5),
    ],
)
@pytest.mark.parametrize("L", [1, 3, 12])
def test_shapes(dims, vocab, n_cat, L):
    torch.manual_seed(0)
    m = BYOLCategoryModel(vocab, n_cat, **dims)
    tokens = torch.randint(0, vocab, (4, L))
    y = m.encoder(tokens)
    assert m.encoder.out_dim == dims["n_filters"] * len(dims["kernel_sizes"])
    assert y.shape == (4, m.encoder.out_dim)
    z = m.projector(y)
    assert z.shape == (4, dims["proj_dim"])
    assert m.predictor(z).shape == (4, dims["proj_dim"])
    assert m.category_head(y).shape == (4, n_cat)
    out = m(tokens, tokens.flip(0), torch.arange(4) % n_cat, torch.zeros(4, dtype=torch.long), 0.9)
    assert out["loss"].shape == () and torch.isfinite(out["loss"])


def test_max_mean_model_feeds_the_wider_y_to_its_heads():
    m = tiny(pooling="max+mean")
    assert m.encoder.out_dim == TINY["n_filters"] * 4 + TINY["embed_dim"]
    assert m.target_encoder.pooling == "max+mean"
    out = m(*batch(), 0.9)
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and m.encoder.embed.weight.grad.abs().sum() > 0
    cfg = SimpleNamespace(**TINY, bn_momentum=0.1, pooling="max+mean")
    assert flops_per_pair(cfg, 8) > flops_per_pair(SimpleNamespace(**TINY, bn_momentum=0.1, pooling="max"), 8)


def test_short_title_padding_equals_explicit_padding():
    torch.manual_seed(0)
    enc = ProductEncoder(50, 16, 8, (2, 3, 4, 5))
    short = torch.tensor([[7], [3]])
    padded = torch.tensor([[7, 0, 0, 0, 0], [3, 0, 0, 0, 0]])  # 0 = padding id
    torch.testing.assert_close(enc(short), enc(padded))
    assert torch.all(enc.embed.weight[0] == 0)


def test_mlp_bn_momentum():
    mlp = MLP(4, 6, 3, bn_momentum=0.01)
    assert mlp.net[1].momentum == 0.01 and mlp(torch.randn(5, 4)).shape == (5, 3)


# ---------------------------------------------------------------- Eq. 1
def test_byol_loss_hand_values():
    p = torch.tensor([[1.0, 0.0], [2.0, 3.0], [1.0, 1.0], [1.0, 0.0]])
    z = torch.tensor([[0.0, 1.0], [2.0, 3.0], [1.0, 0.0], [-3.0, 0.0]])
    expected = torch.tensor([2.0, 0.0, 2 - math.sqrt(2), 4.0])
    torch.testing.assert_close(byol_loss(p, z), expected)


def test_byol_loss_stops_gradient_into_z():
    p = torch.randn(3, 4, requires_grad=True)
    z = torch.randn(3, 4, requires_grad=True)
    byol_loss(p, z).sum().backward()
    assert p.grad is not None and z.grad is None


def test_no_gradient_into_target_network():
    m = tiny()
    for t in m.target_encoder.parameters():  # even if someone turns requires_grad back on,
        t.requires_grad_(True)  # the forward runs the target under no_grad (sg)
    m(*batch(), alpha=0.5)["loss"].backward()
    assert all(t.grad is None for t in m.target_encoder.parameters())
    assert all(t.grad is None for t in m.target_projector.parameters())
    assert m.encoder.convs[0].weight.grad is not None and m.encoder.convs[0].weight.grad.abs().sum() > 0


def test_byol_pairs_online_i_with_target_j():
    m = tiny()
    ti, tj, ci, cj = batch()
    out = m(ti, tj, ci, cj, alpha=0.5)
    with torch.no_grad():  # same train-mode batches as the forward: online [i; j], target [j; i]
        p = m.predictor(m.projector(m.encoder(torch.cat([ti, tj]))))
        z = m.target_projector(m.target_encoder(torch.cat([tj, ti])))
        per = byol_loss(p, z)
    torch.testing.assert_close(out["byol"], per[:6].mean() + per[6:].mean(), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- Eq. 2
def test_category_loss_hand_values():
    logits = torch.tensor([[1.0, 2.0, 0.0], [0.5, -1.0, 3.0], [0.0, 0.0, 0.0]], requires_grad=True)
    target = torch.tensor([1, 0, -1])

    def ce(row, k):
        return math.log(sum(math.exp(v) for v in row)) - row[k]

    rows = logits.tolist()
    expected = (ce(rows[0], 1) + ce(rows[1], 0)) / 2  # the −1 row is ignored, mean over 2
    loss = category_loss(logits, target)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    assert torch.all(logits.grad[2] == 0) and logits.grad[:2].abs().sum() > 0


def test_category_loss_all_missing_is_zero_and_backprops():
    logits = torch.randn(4, 3, requires_grad=True)
    loss = category_loss(logits, torch.full((4,), -1))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.all(logits.grad == 0)


# ---------------------------------------------------------------- Eq. 4 and symmetry
def test_total_loss_combination():
    t = lambda v: torch.tensor(v)  # noqa: E731
    assert total_loss(t(1.0), t(2.0), t(3.0), t(5.0), 0.9).item() == pytest.approx(0.9 * 3 + 0.1 * 8)
    assert total_loss(t(1.0), t(2.0), t(3.0), t(5.0), 1.0).item() == pytest.approx(3.0)


def test_forward_returns_eq4_of_its_terms():
    m = tiny()
    out = m(*batch(), alpha=0.7)
    assert out["loss"].item() == pytest.approx(0.7 * out["byol"].item() + 0.3 * out["ce"].item(), rel=1e-5)
    assert out["ce"].item() > 0 and 0 < out["byol"].item() < 8


def test_loss_symmetric_under_swapping_i_and_j():
    m = tiny()
    m.train()  # batch statistics: [i; j] and [j; i] are the same multiset of rows
    ti, tj, ci, cj = batch()
    cj[:2] = -1
    a = m(ti, tj, ci, cj, alpha=0.6)
    b = m(tj, ti, cj, ci, alpha=0.6)
    for k in ("loss", "byol", "ce"):
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("direction", ["ij", "ji"])
def test_ce_uses_the_other_products_category(direction):
    m = tiny()
    ti, tj, _, _ = batch()
    known, unknown = torch.full((6,), 3), torch.full((6,), -1)
    ci, cj = (unknown, known) if direction == "ij" else (known, unknown)
    out = m(ti, tj, ci, cj, alpha=0.5)
    logits = m.category_head(m.encoder(torch.cat([ti, tj])))  # same train-mode batch as forward
    if direction == "ij":  # only h(y_i) vs category(p_j) = 3 contributes
        expected = category_loss(logits[:6], known)
    else:  # only h(y_j) vs category(p_i) = 3 contributes
        expected = category_loss(logits[6:], known)
    assert out["ce"].item() > 0
    torch.testing.assert_close(out["ce"], expected, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- target network / EMA
def test_target_initialised_as_copy_and_frozen():
    m = tiny()
    for o, t in zip(
        [*m.encoder.parameters(), *m.projector.parameters()],
        [*m.target_encoder.parameters(), *m.target_projector.parameters()],
        strict=True,
    ):
        assert torch.equal(o, t) and o.data_ptr() != t.data_ptr()
        assert not t.requires_grad and o.requires_grad
    online_ids = {id(p) for p in m.online_parameters()}
    target = [*m.target_encoder.parameters(), *m.target_projector.parameters()]
    assert not online_ids & {id(p) for p in target}
    assert online_ids == {id(p) for p in m.parameters()} - {id(p) for p in target}


def test_update_target_is_ema_and_copies_bn_buffers():
    m = tiny()
    opt = torch.optim.SGD(m.online_parameters(), lr=0.5)
    m(*batch(), alpha=0.5)["loss"].backward()
    opt.step()  # online moves away from the target; forward updated online BN running stats
    online = [*m.encoder.parameters(), *m.projector.parameters()]
    target = [*m.target_encoder.parameters(), *m.target_projector.parameters()]
    old = [t.clone() for t in target]
    m.projector.net[1].running_mean.add_(1.0)  # make online BN stats differ from the target's
    assert any(not torch.equal(o, t) for o, t in zip(online, target))
    tau = 0.9
    m.update_target(tau)
    for o, t, t0 in zip(online, target, old):
        torch.testing.assert_close(t, tau * t0 + (1 - tau) * o)
    bn_o, bn_t = m.projector.net[1], m.target_projector.net[1]
    assert torch.equal(bn_o.running_mean, bn_t.running_mean) and torch.equal(bn_o.running_var, bn_t.running_var)
    assert bn_o.running_mean.abs().sum() > 0


# ---------------------------------------------------------------- no categories
def test_no_categories_requires_alpha_one():
    m = tiny(n_categories=0)
    assert m.category_head is None
    ti, tj, _, _ = batch()
    missing = torch.full((6,), -1)
    with pytest.raises(ValueError):
        m(ti, tj, missing, missing, alpha=0.9)
    out = m(ti, tj, missing, missing, alpha=1.0)
    assert out["ce"].item() == 0.0
    torch.testing.assert_close(out["loss"], out["byol"])
    out["loss"].backward()


# ---------------------------------------------------------------- training
def _train(seed, steps=40):
    m = tiny(n_categories=4, vocab=40, seed=seed)
    g = torch.Generator().manual_seed(seed)
    # synthetic: product category c uses tokens from its own range; pairs share a category
    cats = torch.randint(0, 4, (16,), generator=g)
    base = 1 + cats[:, None] * 9
    ti = base + torch.randint(0, 9, (16, 6), generator=g)
    tj = base + torch.randint(0, 9, (16, 6), generator=g)
    opt = torch.optim.SGD(m.online_parameters(), lr=0.05, momentum=0.9)
    losses = []
    for k in range(steps):
        out = m(ti, tj, cats, cats, alpha=0.5)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        m.update_target(tau_schedule(k, steps, 0.99))
        losses.append(out["loss"].item())
    return losses


def test_sgd_lowers_loss_and_is_deterministic():
    a = _train(seed=3)
    assert sum(a[-5:]) / 5 < 0.7 * sum(a[:5]) / 5
    assert a == _train(seed=3)


# ---------------------------------------------------------------- FLOPs
def test_flops_per_pair_scaling():
    cfg = SimpleNamespace(**TINY)
    f = lambda L, c=cfg: flops_per_pair(c, L)  # noqa: E731
    assert f(8) > 0
    assert f(16) - f(8) == pytest.approx(f(24) - f(16))  # affine in seq_len (conv term)
    per_token = 16 * sum(k * 16 * 8 for k in TINY["kernel_sizes"])  # (12 + 4) · Σ_k k·E·F
    assert f(9) - f(8) == pytest.approx(per_token)
    assert f(1) == f(5)  # short titles are padded up to the largest kernel
    wide = SimpleNamespace(**{**TINY, "embed_dim": 32, "n_filters": 16, "hidden_dim": 64, "proj_dim": 16})
    assert 3.5 < flops_per_pair(wide, 64) / f(64) <= 4.0 + 1e-9  # all widths ×2 → ≈ ×4
    m = tiny(n_categories=5)
    assert flops_per_pair(m, 8) == pytest.approx(flops_per_pair(cfg, 8, n_categories=5))
    assert flops_per_pair(m, 8) > f(8)


@pytest.mark.parametrize("L", [1, 9])
def test_max_mean_pooling_appends_the_mean_token_embedding(L):
    """pooling="max+mean": y = [max-pooled n-grams ; mean of the title's non-padding token embeddings],
    forward and gradients equal to the textbook computation; an empty title's mean part is 0."""
    torch.manual_seed(L)
    enc = ProductEncoder(vocab_size=200, embed_dim=12, n_filters=4, kernel_sizes=(2, 3), pooling="max+mean")
    assert enc.out_dim == 4 * 2 + 12
    tokens = torch.randint(1, 200, (40, L))
    lengths = torch.randint(0, L + 1, (40,))
    lengths[0] = 0
    tokens[torch.arange(L)[None, :] >= lengths[:, None]] = 0

    def textbook(enc, tokens):  # [max-pooled n-grams ; Σ non-padding embeddings / their count]
        x = F.embedding(tokens, enc.embed.weight, padding_idx=0)  # [N, L, E], padding rows 0
        return torch.cat([reference_forward(enc, tokens), x.sum(1) / lengths.clamp(min=1)[:, None]], 1)

    out, *_ = assert_matches_reference(enc, tokens, grad_atol=1e-5, reference=textbook)
    assert torch.all(out[0, 8:] == 0)


def test_architecture_round_trips_through_dims_and_old_metas_are_max_pooled():
    enc = ProductEncoder(50, 8, 4, (2, 3), pooling="max+mean")
    again = ProductEncoder.from_dims(50, enc.dims())
    assert (again.pooling, again.out_dim) == ("max+mean", enc.out_dim)
    old_meta = {"embed_dim": 8, "n_filters": 4, "kernel_sizes": [2, 3]}  # registered before pooling existed
    assert ProductEncoder.from_dims(50, old_meta).pooling == "max"
    with pytest.raises(ValueError, match="pooling"):
        ProductEncoder(50, 8, 4, (2, 3), pooling="mean")


@pytest.mark.parametrize("L", [1, 9])
def test_mean_pool_averages_the_ngram_features_over_the_windows_that_start_on_a_title_token(L):
    """ȳ: for a title of n tokens, ReLU(conv_k) averaged over the n windows that start on one of its tokens
    (a window may run into the right padding); an empty title gives 0. Checked window by window."""
    torch.manual_seed(L)
    enc = ProductEncoder(vocab_size=200, embed_dim=12, n_filters=4, kernel_sizes=(2, 3))
    tokens = torch.randint(1, 200, (30, L))
    lengths = torch.randint(0, L + 1, (30,))
    lengths[0] = 0
    tokens[torch.arange(L)[None, :] >= lengths[:, None]] = 0
    out = enc.mean_pool(tokens)
    assert out.shape == (30, 4 * 2)
    for i in range(30):
        n = int(lengths[i])
        padded = F.pad(tokens[i], (0, 2), value=0)  # room for the widest window from the last token
        x = enc.embed(padded)  # [L + 2, E]
        expected = []
        for conv, k in zip(enc.convs, (2, 3)):
            windows = [F.relu(conv(x[s : s + k].T[None])).squeeze() for s in range(n)]  # each [F]
            expected.append(torch.stack(windows).mean(0) if windows else torch.zeros(4))
        torch.testing.assert_close(out[i], torch.cat(expected), rtol=1e-5, atol=1e-6)


def test_the_published_vector_is_y_or_unit_max_and_mean_halves_times_the_scale():
    torch.manual_seed(0)
    tokens = torch.randint(1, 50, (6, 7))
    tokens[0] = 0  # an empty title (scoring quarantines it by its token count): its mean half is 0
    paper = ProductEncoder(50, 8, 4, (2, 3))
    assert (paper.vector_dim, paper.vector_kind) == (paper.out_dim, "y")
    torch.testing.assert_close(paper.vector(tokens), paper(tokens))
    ext = ProductEncoder(50, 8, 4, (2, 3), vector="max+mean/l2", vector_scale=2.0)
    ext.load_state_dict(paper.state_dict())  # the vector adds no weights
    v = ext.vector(tokens)
    assert v.shape == (6, 2 * 8) and ext.vector_dim == 16 and ext.out_dim == 8
    torch.testing.assert_close(v[:, :8], 2.0 * F.normalize(paper(tokens), dim=1))
    torch.testing.assert_close(v[:, 8:], 2.0 * F.normalize(paper.mean_pool(tokens), dim=1))
    assert torch.all(v[0, 8:] == 0)
    torch.testing.assert_close(v[1:].norm(dim=1), torch.full((5,), 2.0 * 2**0.5))  # two unit halves, × 2
    again = ProductEncoder.from_dims(50, ext.dims())
    assert (again.vector_kind, again.vector_scale, again.vector_dim) == ("max+mean/l2", 2.0, 16)
    old_meta = {"embed_dim": 8, "n_filters": 4, "kernel_sizes": [2, 3], "pooling": "max"}
    assert ProductEncoder.from_dims(50, old_meta).vector_kind == "y"  # registered before the vector was set
    with pytest.raises(ValueError, match="vector"):
        ProductEncoder(50, 8, 4, (2, 3), vector="mean")
