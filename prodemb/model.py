"""BYOL + category model for product titles (paper §3.2, A.1).

    t_θ : token ids [B, L]  → embeddings [B, L, E]           (vocab × E, id 0 = padding)
    f_θ : Text-CNN, kernels (2,3,4,5) × F filters, ReLU, max over time → y ∈ R^(F·4)   (= 512)
          pooling "max+mean" (an extension, not in the paper) appends the mean of the title's token
          embeddings: y ∈ R^(F·4 + E)
    g_θ : y → z ∈ R^P       projector   Linear → BN → ReLU → Linear
    q_θ : z → p ∈ R^P       predictor   (online only)
    h_θ : y → logits ∈ R^C  category head
    ξ   : target copies of t, f, g, updated by EMA, never by the optimizer.
    v   : the published vector (an extension, not in the paper; ``ProductEncoder.vector``): y, or
          s·[y/‖y‖ ; ȳ/‖ȳ‖] with ȳ = the same n-gram features averaged over the title's windows

For a session pair (p_i, p_j):
    L_BYOL,ij = 2 − 2·cos(q_θ(g_θ(y_i)), sg(z'_j)),   z'_j = g_ξ(f_ξ(t_ξ(p_j)))        (Eq. 1)
    L_CE,ij   = CE(h_θ(y_i), category(p_j))          — the OTHER product's category  (Eq. 2)
    L = α(L_BYOL,ij + L_BYOL,ji) + (1 − α)(L_CE,ij + L_CE,ji)                          (Eq. 4)
Downstream only y = f_θ(t_θ(p)) is kept (``ProductEncoder``), and published as v.
"""

from __future__ import annotations

import copy
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from prodemb.kernels.linear import linear, onednn_available
from prodemb.kernels.textcnn import text_cnn_max_mean_pool, text_cnn_max_pool


class ProductEncoder(nn.Module):
    """t_θ ∘ f_θ: token ids [B, L] → y [B, out_dim], out_dim = n_filters · len(kernel_sizes) (+ embed_dim)."""

    POOLINGS = ("max", "max+mean")
    VECTORS = ("y", "max+mean/l2")

    def __init__(
        self,
        vocab_size: int,
        embed_dim: int = 512,
        n_filters: int = 128,
        kernel_sizes: Sequence[int] = (2, 3, 4, 5),
        pooling: str = "max",
        vector: str = "y",
        vector_scale: float = 1.0,
    ):
        super().__init__()
        if pooling not in self.POOLINGS:
            raise ValueError(f"pooling must be one of {self.POOLINGS}, got {pooling!r}")
        if vector not in self.VECTORS:
            raise ValueError(f"vector must be one of {self.VECTORS}, got {vector!r}")
        self.embed_dim, self.n_filters, self.kernel_sizes = embed_dim, n_filters, tuple(kernel_sizes)
        self.pooling, self.vector_kind, self.vector_scale = pooling, vector, float(vector_scale)
        self.out_dim = n_filters * len(self.kernel_sizes) + (embed_dim if pooling == "max+mean" else 0)
        self.vector_dim = self.out_dim + (n_filters * len(self.kernel_sizes) if vector == "max+mean/l2" else 0)
        self.max_kernel = max(self.kernel_sizes)
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=0)  # row 0 stays zero
        # One Conv1d per kernel size with the embedding dim as channels: [B, E, L] → [B, F, L−k+1].
        self.convs = nn.ModuleList(nn.Conv1d(embed_dim, n_filters, k) for k in self.kernel_sizes)

    def dims(self) -> dict:
        """The architecture, as stored in a registered model's meta (``from_dims`` rebuilds it)."""
        return {
            "embed_dim": self.embed_dim,
            "n_filters": self.n_filters,
            "kernel_sizes": list(self.kernel_sizes),
            "pooling": self.pooling,
            "vector": self.vector_kind,
            "vector_scale": self.vector_scale,
        }

    @classmethod
    def from_dims(cls, vocab_size: int, dims: dict) -> "ProductEncoder":
        # versions registered before pooling or the published vector were configurable: max-pooled, v = y
        return cls(
            vocab_size,
            dims["embed_dim"],
            dims["n_filters"],
            dims["kernel_sizes"],
            dims.get("pooling", "max"),
            dims.get("vector", "y"),
            dims.get("vector_scale", 1.0),
        )

    @classmethod
    def from_config(cls, model_cfg, vocab_size: int) -> "ProductEncoder":
        return cls(
            vocab_size,
            model_cfg.embed_dim,
            model_cfg.n_filters,
            tuple(model_cfg.kernel_sizes),
            model_cfg.pooling,
            model_cfg.vector,
            model_cfg.vector_scale,
        )

    def forward(self, tokens: Tensor) -> Tensor:
        return self._with_bag(self._max_pool(tokens), tokens)  # [B, out_dim]

    def _with_bag(self, y: Tensor, tokens: Tensor) -> Tensor:  # y [B, F·K] → [B, out_dim]
        if self.pooling == "max+mean":
            # the mean of the title's token embeddings, padding excluded (all-padding → 0): a dense bag of
            # words beside the n-gram detectors, which session pairs teach to keep what two products share
            bag = F.embedding_bag(tokens, self.embed.weight, mode="mean", padding_idx=0)  # [B, E]
            y = torch.cat([y, bag.to(y.dtype)], dim=1)  # [B, F·K + E]
        return y

    def vector(self, tokens: Tensor) -> Tensor:
        """The published vector v [B, vector_dim]: what scoring writes, Feast serves and evaluation probes.

        "y": v = y, the paper's. "max+mean/l2": v = s·[y/‖y‖ ; ȳ/‖ȳ‖], ȳ the same ReLU'd n-gram features
        averaged over the title's windows instead of maxed. Training shapes only the max; the mean keeps
        how much of a title fires each detector, which the max drops (a title's own attribute words), and
        unit-norm halves keep either from swamping the other. s sets the norm a linear probe with a fixed
        L2 penalty sees (benchmarks/RESULTS.md, "Embedding quality", chose both on validation AUC)."""
        if self.vector_kind == "y":
            y = self(tokens)  # [B, out_dim]
            return y * self.vector_scale if self.vector_scale != 1.0 else y
        if self._cpu_inference(tokens):  # y and ȳ from one pass over the convolutions (prodemb.kernels)
            y_max, y_mean = text_cnn_max_mean_pool(tokens, self.embed.weight, self.kernel_sizes, self._conv_params())
            y = self._with_bag(y_max, tokens)  # [B, out_dim]
        else:
            y = self(tokens)  # [B, out_dim]
            y_mean = self._mean_pool(tokens).to(y.dtype)  # [B, F·K]
        return self.join_halves(y, y_mean)

    def join_halves(self, y: Tensor, y_mean: Tensor) -> Tensor:
        """s·[y/‖y‖ ; ȳ/‖ȳ‖]: [B, out_dim], [B, F·K] → [B, vector_dim] ("max+mean/l2")."""
        return torch.cat([F.normalize(y, dim=1), F.normalize(y_mean, dim=1)], dim=1) * self.vector_scale

    def mean_pool(self, tokens: Tensor) -> Tensor:
        """ȳ: ReLU(conv_k(t(tokens))) averaged over the windows that start on one of the title's tokens
        (n of them for a title of n tokens; padding is on the right), per kernel size [B, F·K]. An empty
        title gives 0."""
        if self._cpu_inference(tokens):  # blocked, same function (prodemb.kernels)
            return text_cnn_max_mean_pool(tokens, self.embed.weight, self.kernel_sizes, self._conv_params())[1]
        return self._mean_pool(tokens)

    @staticmethod
    def _cpu_inference(tokens: Tensor) -> bool:
        return tokens.device.type == "cpu" and not torch.is_grad_enabled()

    def _conv_params(self) -> list[Tensor]:  # (w_k [F, E, k], b_k [F]) per kernel size, the kernels' layout
        return [t for conv in self.convs for t in (conv.weight, conv.bias)]

    def _mean_pool(self, tokens: Tensor) -> Tensor:  # the textbook ȳ (GPU, autograd; the kernel's reference)
        n_tokens = (tokens != 0).sum(dim=1)  # [B]
        x = F.pad(tokens, (0, self.max_kernel - 1), value=0)  # every window that starts on a token fits
        x = self.embed(x).transpose(1, 2)  # [B, E, L + k_max − 1]
        starts = torch.arange(tokens.shape[1], device=tokens.device)[None, :] < n_tokens[:, None]  # [B, L]
        starts = starts.to(x.dtype)[:, None, :]  # [B, 1, L]
        means = [
            (F.relu(conv(x))[:, :, : tokens.shape[1]] * starts).sum(dim=2)  # [B, F]
            for conv in self.convs
        ]
        return torch.cat(means, dim=1) / n_tokens.clamp(min=1)[:, None].to(x.dtype)  # [B, F·K]

    def _max_pool(self, tokens: Tensor) -> Tensor:
        L = tokens.shape[1]
        if L < self.max_kernel:  # short titles: right-pad with the padding token so every kernel fits
            tokens = F.pad(tokens, (0, self.max_kernel - L), value=0)
        if tokens.device.type != "cpu":  # GPU: cuDNN Conv1d; ReLU then global max-pool over time
            x = self.embed(tokens).transpose(1, 2)  # [B, E, L']
            return torch.cat([F.relu(conv(x)).amax(dim=2) for conv in self.convs], dim=1)  # [B, F·K]
        # CPU: the same function, computed block by block with a max-pool-sparse backward (prodemb.kernels)
        return text_cnn_max_pool(
            tokens, self.embed.weight, self.embed.padding_idx, self.kernel_sizes, self._conv_params()
        )


class MLP(nn.Module):
    """Linear → BatchNorm1d → ReLU → Linear (g_θ, q_θ, h_θ share this shape)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, bn_momentum: float = 0.1):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden_dim),
            nn.BatchNorm1d(hidden_dim, momentum=bn_momentum),  # PyTorch momentum = 1 − decay
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, out_dim),
        )

    def forward(self, x: Tensor) -> Tensor:  # [B, in] → [B, out]
        if x.device.type != "cpu" or x.dtype != torch.float32 or not onednn_available():
            return self.net(x)
        lin1, bn, relu, lin2 = self.net
        assert isinstance(lin1, nn.Linear) and isinstance(lin2, nn.Linear)
        return linear(relu(bn(linear(x, lin1.weight, lin1.bias))), lin2.weight, lin2.bias)


def byol_loss(p: Tensor, z: Tensor) -> Tensor:
    """Eq. 1 per example: 2 − 2·cos(p, sg(z)). p, z: [B, D] → [B]."""
    p, z = F.normalize(p, dim=-1), F.normalize(z.detach(), dim=-1)
    return 2 - 2 * (p * z).sum(dim=-1)


def category_loss(logits: Tensor, target: Tensor) -> Tensor:
    """Eq. 2: cross-entropy mean over examples with a known category (target ≥ 0); 0 if none.

    logits [B, C], target [B] (−1 = unknown). Sync-free: sum of CE / max(#known, 1), so the
    all-unknown case is an exact 0 that still backpropagates (zero gradients).
    """
    known = target >= 0
    ce = F.cross_entropy(logits, target.masked_fill(~known, -100), ignore_index=-100, reduction="sum")
    return ce / known.sum().clamp(min=1)


def total_loss(byol_ij: Tensor, byol_ji: Tensor, ce_ij: Tensor, ce_ji: Tensor, alpha: float) -> Tensor:
    """Eq. 4: α(L_BYOL,ij + L_BYOL,ji) + (1 − α)(L_CE,ij + L_CE,ji)."""
    return alpha * (byol_ij + byol_ji) + (1 - alpha) * (ce_ij + ce_ji)


class BYOLCategoryModel(nn.Module):
    def __init__(
        self,
        vocab_size: int,
        n_categories: int,
        embed_dim: int = 512,
        n_filters: int = 128,
        kernel_sizes: Sequence[int] = (2, 3, 4, 5),
        hidden_dim: int = 1024,
        proj_dim: int = 128,
        bn_momentum: float = 0.1,
        pooling: str = "max",
        vector: str = "y",
        vector_scale: float = 1.0,
    ):
        super().__init__()
        self.embed_dim, self.n_filters, self.kernel_sizes = embed_dim, n_filters, tuple(kernel_sizes)
        self.hidden_dim, self.proj_dim, self.n_categories = hidden_dim, proj_dim, n_categories
        # online network θ (the published vector v does not enter training: only y does)
        self.encoder = ProductEncoder(
            vocab_size, embed_dim, n_filters, kernel_sizes, pooling, vector, vector_scale
        )  # t_θ ∘ f_θ
        y_dim = self.encoder.out_dim
        self.projector = MLP(y_dim, hidden_dim, proj_dim, bn_momentum)  # g_θ
        self.predictor = MLP(proj_dim, hidden_dim, proj_dim, bn_momentum)  # q_θ
        self.category_head = (
            MLP(y_dim, hidden_dim, n_categories, bn_momentum)  # h_θ
            if n_categories > 0
            else None
        )
        # target network ξ: same init as θ, only moved by update_target (EMA)
        self.target_encoder = copy.deepcopy(self.encoder)
        self.target_projector = copy.deepcopy(self.projector)
        for m in self._target_modules():
            m.requires_grad_(False)

    @classmethod
    def from_config(cls, model_cfg, vocab_size: int, n_categories: int) -> "BYOLCategoryModel":
        return cls(
            vocab_size,
            n_categories,
            embed_dim=model_cfg.embed_dim,
            n_filters=model_cfg.n_filters,
            kernel_sizes=tuple(model_cfg.kernel_sizes),
            hidden_dim=model_cfg.hidden_dim,
            proj_dim=model_cfg.proj_dim,
            bn_momentum=model_cfg.bn_momentum,
            pooling=model_cfg.pooling,
            vector=model_cfg.vector,
            vector_scale=model_cfg.vector_scale,
        )

    def _online_modules(self) -> list[nn.Module]:  # the part of θ that has a target twin, same order as ξ
        return [self.encoder, self.projector]

    def _target_modules(self) -> list[nn.Module]:
        return [self.target_encoder, self.target_projector]

    def online_parameters(self) -> list[nn.Parameter]:
        mods = [self.encoder, self.projector, self.predictor]
        mods += [self.category_head] if self.category_head is not None else []
        return [p for m in mods for p in m.parameters()]

    def forward(
        self, tokens_i: Tensor, tokens_j: Tensor, cat_i: Tensor, cat_j: Tensor, alpha: float
    ) -> dict[str, Tensor]:
        """tokens_* [B, L] (same L for i and j), cat_* [B] (−1 = unknown) → {"loss", "byol", "ce"} scalars.

        Online runs on [i; j] and target on [j; i], each in one 2B pass, so row r of the online
        prediction is paired with the target projection of the other product (BN stats span both halves).
        """
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        if self.category_head is None and alpha != 1.0:
            raise ValueError("model has no categories (n_categories=0): alpha must be 1")
        B = tokens_i.shape[0]
        y = self.encoder(torch.cat([tokens_i, tokens_j]))  # [2B, Y]   y_i; y_j
        p = self.predictor(self.projector(y))  # [2B, P]
        with torch.no_grad():  # sg(·)
            z_t = self.target_projector(self.target_encoder(torch.cat([tokens_j, tokens_i])))  # [2B, P]
        l_byol = byol_loss(p, z_t)  # [2B]
        byol_ij, byol_ji = l_byol[:B].mean(), l_byol[B:].mean()
        if self.category_head is not None:
            logits = self.category_head(y)  # [2B, C]
            ce_ij = category_loss(logits[:B], cat_j)  # h(y_i) vs category of p_j
            ce_ji = category_loss(logits[B:], cat_i)  # h(y_j) vs category of p_i
        else:
            ce_ij = ce_ji = l_byol.new_zeros(())
        loss = total_loss(byol_ij, byol_ji, ce_ij, ce_ji, alpha)
        return {"loss": loss, "byol": byol_ij + byol_ji, "ce": ce_ij + ce_ji}

    @torch.no_grad()
    def update_target(self, tau: float) -> None:
        """ξ ← τ·ξ + (1 − τ)·θ for parameters (one fused lerp); BN running stats are COPIED from θ.

        Copying buffers (running_mean/var, num_batches_tracked) is what common BYOL implementations do:
        they are statistics, not learned weights. During training (model.train()) the target normalises
        with batch stats, so its running stats only matter when the target is run in eval mode.
        """
        online, target = self._online_modules(), self._target_modules()
        params = lambda ms: [p for m in ms for p in m.parameters()]  # noqa: E731
        buffers = lambda ms: [b for m in ms for b in m.buffers()]  # noqa: E731
        torch._foreach_lerp_(params(target), params(online), 1.0 - tau)  # ξ + (1−τ)(θ − ξ)
        torch._foreach_copy_(buffers(target), buffers(online))


def flops_per_pair(model_cfg_or_model, seq_len: int, n_categories: int | None = None) -> float:
    """Training FLOPs for one (p_i, p_j) pair, from the shapes (matmul/conv MACs × 2).

    Per title (E embed, F filters, kernels k, L' = max(seq_len, max k), Y = F·len(k) (+ E with pooling
    "max+mean"), H hidden, P proj):
        M_conv  = Σ_k (L' − k + 1)·k·E·F                    (embedding gather counts 0)
        M_mlp(a, c) = a·H + H·c                             (BN, ReLU, pooling, loss ignored)
        M_online = M_conv + M_mlp(Y, P) + M_mlp(P, P) + M_mlp(Y, C)·[C > 0]
        M_target = M_conv + M_mlp(Y, P)
    A pair sends 2 titles through each network; online is forward + backward ≈ 3 × forward,
    target forward only:  FLOPs = 2 · 2 · (3·M_online + M_target) = 12·M_online + 4·M_target.
    C comes from the model, else ``n_categories`` (default 0 when a ModelConfig is given).
    """
    m = model_cfg_or_model
    E, Fn, ks, H, P = m.embed_dim, m.n_filters, tuple(m.kernel_sizes), m.hidden_dim, m.proj_dim
    C = getattr(m, "n_categories", None)
    C = (n_categories or 0) if C is None else C
    Lp, Y = max(seq_len, max(ks)), Fn * len(ks) + (E if getattr(m, "pooling", "max") == "max+mean" else 0)
    m_conv = sum((Lp - k + 1) * k * E * Fn for k in ks)
    mlp = lambda a, c: a * H + H * c  # noqa: E731
    m_online = m_conv + mlp(Y, P) + mlp(P, P) + (mlp(Y, C) if C > 0 else 0)
    m_target = m_conv + mlp(Y, P)
    return float(2 * 2 * (3 * m_online + m_target))
