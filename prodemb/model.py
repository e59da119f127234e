"""BYOL + category model for product titles (paper §3.2, A.1).

    t_θ : token ids [B, L]  → embeddings [B, L, E]           (vocab × E, id 0 = padding)
    f_θ : Text-CNN, kernels (2,3,4,5) × F filters, ReLU, max over time → y ∈ R^(F·4)   (= 512)
    g_θ : y → z ∈ R^P       projector   Linear → BN → ReLU → Linear
    q_θ : z → p ∈ R^P       predictor   (online only)
    h_θ : y → logits ∈ R^C  category head
    ξ   : target copies of t, f, g, updated by EMA, never by the optimizer.

For a session pair (p_i, p_j):
    L_BYOL,ij = 2 − 2·cos(q_θ(g_θ(y_i)), sg(z'_j)),   z'_j = g_ξ(f_ξ(t_ξ(p_j)))        (Eq. 1)
    L_CE,ij   = CE(h_θ(y_i), category(p_j))          — the OTHER product's category  (Eq. 2)
    L = α(L_BYOL,ij + L_BYOL,ji) + (1 − α)(L_CE,ij + L_CE,ji)                          (Eq. 4)
Downstream only y = f_θ(t_θ(p)) is kept (``ProductEncoder``).
"""
from __future__ import annotations

import copy
from typing import Sequence, TypeVar

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor


class ProductEncoder(nn.Module):
    """t_θ ∘ f_θ: token ids [B, L] → y [B, n_filters · len(kernel_sizes)]."""

    def __init__(self, vocab_size: int, embed_dim: int = 512, n_filters: int = 128,
                 kernel_sizes: Sequence[int] = (2, 3, 4, 5)):
        super().__init__()
        self.embed_dim, self.n_filters, self.kernel_sizes = embed_dim, n_filters, tuple(kernel_sizes)
        self.out_dim = n_filters * len(self.kernel_sizes)
        self.max_kernel = max(self.kernel_sizes)
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=0)  # row 0 stays zero
        # One Conv1d per kernel size with the embedding dim as channels: [B, E, L] → [B, F, L−k+1].
        self.convs = nn.ModuleList(nn.Conv1d(embed_dim, n_filters, k) for k in self.kernel_sizes)

    def forward(self, tokens: Tensor) -> Tensor:
        L = tokens.shape[1]
        if L < self.max_kernel:  # short titles: right-pad with the padding token so every kernel fits
            tokens = F.pad(tokens, (0, self.max_kernel - L), value=0)
        if tokens.device.type != "cpu":  # GPU: cuDNN Conv1d; ReLU then global max-pool over time
            x = self.embed(tokens).transpose(1, 2)                             # [B, E, L']
            return torch.cat([F.relu(conv(x)).amax(dim=2) for conv in self.convs], dim=1)   # [B, F·K]
        # CPU: the same function, computed block by block with a max-pool-sparse backward
        params = [t for conv in self.convs for t in (conv.weight, conv.bias)]
        return _encode_cpu(tokens, self.embed.weight, self.embed.padding_idx, self.kernel_sizes, params)


@torch.compiler.disable  # data-dependent block widths: torch.compile would recompile every step
def _encode_cpu(tokens: Tensor, weight: Tensor, padding_idx: int | None, kernel_sizes: tuple[int, ...],
                params: list[Tensor]) -> Tensor:
    if torch.is_grad_enabled() and (weight.requires_grad or any(p.requires_grad for p in params)):
        return _TextCNNMaxPool.apply(tokens, weight, padding_idx, kernel_sizes, *params)
    return _text_cnn_cpu(tokens, weight, params, kernel_sizes)


def _title_blocks(tokens: Tensor, E: int, max_kernel: int) -> tuple[Tensor, list[tuple[int, int, int]]]:
    """Plan the CPU encoder's work: (order, [(start, end, width), ...]) over ``tokens[order]``.

    Titles are sorted by length (last non-padding position + 1) and cut into blocks of ≈ 8 MiB of fp32
    embeddings (128 titles at L=32, E=512), which stay in cache between the gather and the convolution
    and are reused by the allocator instead of being page-faulted. A block keeps only its first
    ``width = min(L, longest title in the block + max_kernel)`` token columns. That is exact: every window
    that touches a title token is kept, and so is at least one all-padding window whenever the full width
    had one; all-padding windows read the same rows (the padding token's) so they all have the same
    value, and dropping some of them changes neither the max over time nor its gradient.
    """
    N, L = tokens.shape
    present = tokens != 0
    length = torch.where(present.any(1), L - present.flip(1).to(torch.int8).argmax(1), 0)
    order = torch.argsort(length, stable=True)
    lengths = length[order].tolist()
    step = max(1, (1 << 21) // max(1, L * E))
    blocks = [(n0, min(n0 + step, N), min(L, max(lengths[min(n0 + step, N) - 1] + max_kernel, max_kernel)))
              for n0 in range(0, N, step)]
    return order, blocks


def _embed_conv_max(tokens: Tensor, weight: Tensor, params: Sequence[Tensor], blocks: list[tuple[int, int, int]],
                    with_indices: bool = True) -> tuple[Tensor, Tensor | None]:
    """max over time of (conv_k(t(tokens)) + b_k) for every kernel size, before the ReLU (they commute).

    tokens [N, L] (already in block order); weight [V, E]; params = (w_k [F, E, k], b_k [F]) per kernel
    size; blocks from ``_title_blocks`` → ([N, F·K], arg-max window | None). Per block the embeddings
    x [n, L_b, E] are viewed as the channels-last [n, E, 1, L_b] image they already are in memory and
    the weights as channels-last [F, E, 1, k], so oneDNN runs its NHWC kernel with no reorder (Conv1d on
    x.transpose(1, 2) copied x once per kernel size and ran slower NCW kernels).
    """
    E = weight.shape[1]
    ws = [w.unsqueeze(2).contiguous(memory_format=torch.channels_last) for w in params[0::2]]
    ms, idxs = [], []
    for n0, n1, width in blocks:
        x = F.embedding(tokens[n0:n1, :width], weight)                        # [n, L_b, E]
        x4 = x.view(n1 - n0, 1, width, E).permute(0, 3, 1, 2)                 # [n, E, 1, L_b], no copy
        for w, b in zip(ws, params[1::2]):
            o = F.conv2d(x4, w, b).squeeze(2)                                  # [n, F, L_b−k+1]
            if with_indices:
                m, i = o.max(dim=2)
                idxs.append(i)
            else:
                m = o.amax(dim=2)
            ms.append(m)
    if not blocks:  # no titles
        empty = weight.new_empty(0, len(ws) * ws[0].shape[0])
        return empty, (empty.long() if with_indices else None)
    K = len(ws)
    cat = lambda ts: torch.cat([torch.cat(ts[b:b + K], 1) for b in range(0, len(ts), K)], 0)  # noqa: E731
    return cat(ms), (cat(idxs) if with_indices else None)


def _unsort(values: Tensor, order: Tensor) -> Tensor:
    """Rows of ``values`` are in ``order``; put them back in the original order."""
    return torch.empty_like(values).index_copy_(0, order, values)


def _text_cnn_cpu(tokens: Tensor, weight: Tensor, params: Sequence[Tensor], kernel_sizes: tuple[int, ...]) -> Tensor:
    """ReLU(max over time of conv_k(t(tokens))), no autograd (eval / target network)."""
    order, blocks = _title_blocks(tokens, weight.shape[1], max(kernel_sizes))
    return _unsort(_embed_conv_max(tokens[order], weight, params, blocks, with_indices=False)[0], order).clamp_min(0)


class _TextCNNMaxPool(torch.autograd.Function):
    """y = ReLU(max over time of conv_k(t(tokens))) for all kernel sizes; the backward uses max-pool sparsity.

    Forward: the dense convolutions (``_embed_conv_max``, block by block in ``_title_blocks`` order).
    Backward: only the arg-max window of each (title, filter) receives a gradient, so with
    g = dL/dy·[y > 0] and t* the arg-max window of filter f of kernel k, writing x[n, t] = t(tokens[n, t]):
        dW_k[f, :, j] = Σ_n g[n, f] · x[n, t*[n, f] + j]             db_k[f] = Σ_n g[n, f]
        dx[n, t]      = Σ_{(k, j, f): t*[n, f] + j = t} g[n, f] · W_k[f, :, j]      d(table)[v] = Σ_{tokens[n, t] = v} dx[n, t]
    which are the dense conv gradients with their structurally zero terms left out: N·Σk·F·E
    multiply-adds each instead of N·Σ_k (L−k+1)·k·E·F (≈ L times fewer). Both are weighted row sums done
    by F.embedding_bag per block of titles (dW: one bag of rows of x per weight column; dx: one bag of
    weight rows per token position, found by sorting the positions), then dx is index-added into the
    table gradient; the padding row gets none, as with nn.Embedding(padding_idx). Exact ties in the max
    (identical windows, e.g. all-padding ones) send the whole gradient to one of them instead of
    splitting it: the tied windows have the same inputs, so dW, db and the table gradient are the same.
    x is not kept for the backward: each block is gathered again from the table.
    """

    @staticmethod
    def forward(ctx, tokens: Tensor, weight: Tensor, padding_idx: int | None, kernel_sizes: tuple[int, ...],
                *params: Tensor) -> Tensor:
        order, blocks = _title_blocks(tokens, weight.shape[1], max(kernel_sizes))
        tokens = tokens[order]
        m, idx = _embed_conv_max(tokens, weight, params, blocks)
        assert idx is not None
        y = m.clamp_min(0)                                                     # in block order
        ctx.kernel_sizes, ctx.padding_idx, ctx.blocks = kernel_sizes, padding_idx, blocks
        ctx.save_for_backward(tokens, order, idx.to(torch.int32), y, weight, *params[0::2])
        return _unsort(y, order)

    @staticmethod
    def backward(ctx, dy: Tensor):
        tokens, order, idx, y, weight, *ws = ctx.saved_tensors
        ks, E, Fn = ctx.kernel_sizes, weight.shape[1], ws[0].shape[0]
        g = torch.where(y > 0, dy[order], 0).to(weight.dtype)                  # ReLU′, [N, F·K], block order
        cols = [(i, j) for i, k in enumerate(ks) for j in range(k)]            # weight column blocks (k, j)
        need_table = ctx.needs_input_grad[1]
        if need_table:   # row c = (k, j, f) of wt is W_k[f, :, j]
            wt = torch.cat([w.permute(2, 0, 1).reshape(k * Fn, E) for k, w in zip(ks, ws)]).to(weight.dtype)
            d_table = torch.zeros_like(weight)
        dwt = None
        for n0, n1, width in ctx.blocks:
            tok, ib, gb, n = tokens[n0:n1, :width], idx[n0:n1], g[n0:n1], n1 - n0
            base = torch.arange(0, n * width, width, dtype=torch.int32, device=tok.device)[:, None]
            rows = torch.cat([ib[:, i * Fn:(i + 1) * Fn] + (base + j) for i, j in cols], 1)  # [n, C] row of x
            gc = torch.cat([gb[:, i * Fn:(i + 1) * Fn] for i, _ in cols], 1)  # [n, C]
            x = F.embedding(tok, weight).view(n * width, E)
            part = F.embedding_bag(rows.t().contiguous(), x, mode="sum", per_sample_weights=gc.t().contiguous())
            dwt = part if dwt is None else dwt.add_(part)                      # [C, E]
            if need_table:
                keys, perm = torch.sort(rows.flatten(), stable=True)
                offsets = torch.searchsorted(keys, torch.arange(n * width, dtype=keys.dtype, device=keys.device))
                dx = F.embedding_bag(perm % rows.shape[1], wt, offsets, mode="sum",
                                     per_sample_weights=gc.flatten()[perm])    # [n·L_b, E]
                d_table.index_add_(0, tok.flatten(), dx)
        if dwt is None:  # no titles
            dwt = weight.new_zeros(sum(ks) * Fn, E)
        grads: list[Tensor | None] = [None, None, None, None]
        if need_table:
            if ctx.padding_idx is not None:
                d_table[ctx.padding_idx] = 0
            grads[1] = d_table
        off = 0
        for i, (k, w) in enumerate(zip(ks, ws)):
            grads.append(dwt[off:off + k * Fn].view(k, Fn, E).permute(1, 2, 0).to(w.dtype))
            grads.append(g[:, i * Fn:(i + 1) * Fn].sum(0).to(w.dtype))
            off += k * Fn
        return tuple(grads)


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
        if x.device.type != "cpu" or x.dtype != torch.float32 or not _onednn_linear_available():
            return self.net(x)
        lin1, bn, relu, lin2 = self.net
        assert isinstance(lin1, nn.Linear) and isinstance(lin2, nn.Linear)
        return _linear(relu(bn(_linear(x, lin1.weight, lin1.bias))), lin2.weight, lin2.bias)


def _onednn_linear(x: Tensor, w: Tensor, b: Tensor | None = None) -> Tensor:
    """x [M, K] @ w[N, K]ᵀ (+ b) in fp32 by oneDNN (the op behind Inductor's CPU linear fusion)."""
    return torch.ops.mkldnn._linear_pointwise(x.contiguous(), w.contiguous(), b, "none", [], "")


_ONEDNN_LINEAR: bool | None = None


def _onednn_linear_available() -> bool:
    """True when oneDNN's fp32 linear exists here and matches F.linear (checked once)."""
    global _ONEDNN_LINEAR
    if _ONEDNN_LINEAR is None:
        try:
            g = torch.Generator().manual_seed(0)
            x, w, b = (torch.randn(*s, generator=g) for s in ((8, 16), (4, 16), (4,)))
            _ONEDNN_LINEAR = bool(torch.backends.mkldnn.is_available()) and torch.allclose(
                _onednn_linear(x, w, b), F.linear(x, w, b), rtol=1e-4, atol=1e-5)
        except Exception:  # noqa: BLE001 — any build without the op falls back to F.linear
            _ONEDNN_LINEAR = False
    return _ONEDNN_LINEAR


class _Linear(torch.autograd.Function):
    """F.linear with all three matmuls (forward, dx, dW) done by oneDNN instead of BLAS.

    On CPUs where MKL's sgemm runs its AVX2 code (it does on this AMD EPYC: ~205 GFLOP/s on 2 cores),
    oneDNN's AVX-512 kernels are ~2.3× faster for the MLP shapes. Same math, fp32 accumulation.
    """

    @staticmethod
    def forward(ctx, x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
        ctx.save_for_backward(x, w)
        ctx.has_bias = b is not None
        return _onednn_linear(x, w, b)

    @staticmethod
    def backward(ctx, dy: Tensor):
        x, w = ctx.saved_tensors
        dy = dy.contiguous()
        dx = _onednn_linear(dy, w.t()) if ctx.needs_input_grad[0] else None              # dy @ w
        dw = _onednn_linear(dy.t(), x.t()) if ctx.needs_input_grad[1] else None          # dyᵀ @ x
        db = dy.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return dx, dw, db


def _linear(x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
    if torch.is_grad_enabled() and (x.requires_grad or w.requires_grad or (b is not None and b.requires_grad)):
        return _Linear.apply(x, w, b)
    return _onednn_linear(x, w, b)


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


class GlobalBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d whose training statistics are those of the global batch of a process group, on any
    backend (``torch.nn.SyncBatchNorm`` only runs on GPUs; this is what CPU/gloo training uses).

    In training mode with an initialized group of more than one process: mean = Σx / n and then
    var = Σ(x − mean)² / n over all ranks' rows (two all-reduces, two-pass for accuracy), through the
    differentiable all-reduce (``_AllReduceSum``), so the backward all-reduces the statistics'
    gradients exactly as SyncBatchNorm does. Running statistics are updated from the global
    values, hence identical on every rank. Otherwise (eval, one process) it is plain BatchNorm1d.
    """

    def __init__(self, *args, process_group=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.process_group = process_group

    def forward(self, x: Tensor) -> Tensor:
        import torch.distributed as dist

        if not (self.training and dist.is_available() and dist.is_initialized()
                and dist.get_world_size(self.process_group) > 1):
            return super().forward(x)
        C, group = x.shape[1], self.process_group or dist.group.WORLD
        count = x.new_full((1,), float(x.shape[0]))
        total = _AllReduceSum.apply(torch.cat([x.sum(0), count]), group)
        n = total[C]
        mean = total[:C] / n
        var = _AllReduceSum.apply((x - mean).pow(2).sum(0), group) / n
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            assert self.num_batches_tracked is not None
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.lerp_(mean.detach(), m)
                self.running_var.lerp_(var.detach() * n / (n - 1).clamp(min=1), m)   # unbiased, like BN
        y = (x - mean) * torch.rsqrt(var + self.eps)
        return y * self.weight + self.bias if self.affine else y


class _AllReduceSum(torch.autograd.Function):
    """Σ over the ranks of the group, differentiable: the gradient of a sum is the sum of the gradients."""

    @staticmethod
    def forward(ctx, x: Tensor, group) -> Tensor:
        import torch.distributed as dist

        ctx.group = group
        out = x.clone()
        dist.all_reduce(out, group=group)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        import torch.distributed as dist

        grad = grad.clone()
        dist.all_reduce(grad, group=ctx.group)
        return grad, None


_M = TypeVar("_M", bound=nn.Module)


def convert_sync_batchnorm(module: _M, device: torch.device, process_group=None) -> _M:
    """Every BatchNorm1d of ``module`` (online and target networks alike) normalizing with the statistics
    of the global batch across the process group: ``torch.nn.SyncBatchNorm`` on CUDA (NCCL),
    ``GlobalBatchNorm1d`` elsewhere (gloo). Parameters and buffers are kept (the same tensors)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module, process_group)  # type: ignore[return-value]
    if isinstance(module, nn.BatchNorm1d) and not isinstance(module, GlobalBatchNorm1d):
        out = GlobalBatchNorm1d(module.num_features, module.eps, module.momentum, module.affine,
                                module.track_running_stats, process_group=process_group)
        if module.affine:
            out.weight, out.bias = module.weight, module.bias
        out.running_mean, out.running_var = module.running_mean, module.running_var
        out.num_batches_tracked = module.num_batches_tracked
        out.train(module.training)
        return out  # type: ignore[return-value]
    for name, child in module.named_children():
        module.add_module(name, convert_sync_batchnorm(child, device, process_group))
    return module


class BYOLCategoryModel(nn.Module):
    def __init__(self, vocab_size: int, n_categories: int, embed_dim: int = 512, n_filters: int = 128,
                 kernel_sizes: Sequence[int] = (2, 3, 4, 5), hidden_dim: int = 1024, proj_dim: int = 128,
                 bn_momentum: float = 0.1):
        super().__init__()
        self.embed_dim, self.n_filters, self.kernel_sizes = embed_dim, n_filters, tuple(kernel_sizes)
        self.hidden_dim, self.proj_dim, self.n_categories = hidden_dim, proj_dim, n_categories
        # online network θ
        self.encoder = ProductEncoder(vocab_size, embed_dim, n_filters, kernel_sizes)        # t_θ ∘ f_θ
        y_dim = self.encoder.out_dim
        self.projector = MLP(y_dim, hidden_dim, proj_dim, bn_momentum)                     # g_θ
        self.predictor = MLP(proj_dim, hidden_dim, proj_dim, bn_momentum)                  # q_θ
        self.category_head = (MLP(y_dim, hidden_dim, n_categories, bn_momentum)            # h_θ
                              if n_categories > 0 else None)
        # target network ξ: same init as θ, only moved by update_target (EMA)
        self.target_encoder = copy.deepcopy(self.encoder)
        self.target_projector = copy.deepcopy(self.projector)
        for m in self._target_modules():
            m.requires_grad_(False)

    @classmethod
    def from_config(cls, model_cfg, vocab_size: int, n_categories: int) -> "BYOLCategoryModel":
        return cls(vocab_size, n_categories, embed_dim=model_cfg.embed_dim, n_filters=model_cfg.n_filters,
                   kernel_sizes=tuple(model_cfg.kernel_sizes), hidden_dim=model_cfg.hidden_dim,
                   proj_dim=model_cfg.proj_dim, bn_momentum=model_cfg.bn_momentum)

    def _online_modules(self) -> list[nn.Module]:  # the part of θ that has a target twin, same order as ξ
        return [self.encoder, self.projector]

    def _target_modules(self) -> list[nn.Module]:
        return [self.target_encoder, self.target_projector]

    def online_parameters(self) -> list[nn.Parameter]:
        mods = [self.encoder, self.projector, self.predictor]
        mods += [self.category_head] if self.category_head is not None else []
        return [p for m in mods for p in m.parameters()]

    def forward(self, tokens_i: Tensor, tokens_j: Tensor, cat_i: Tensor, cat_j: Tensor,
                alpha: float) -> dict[str, Tensor]:
        """tokens_* [B, L] (same L for i and j), cat_* [B] (−1 = unknown) → {"loss", "byol", "ce"} scalars.

        Online runs on [i; j] and target on [j; i], each in one 2B pass, so row r of the online
        prediction is paired with the target projection of the other product (BN stats span both halves).
        """
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        if self.category_head is None and alpha != 1.0:
            raise ValueError("model has no categories (n_categories=0): alpha must be 1")
        B = tokens_i.shape[0]
        y = self.encoder(torch.cat([tokens_i, tokens_j]))                       # [2B, Y]   y_i; y_j
        p = self.predictor(self.projector(y))                                   # [2B, P]
        with torch.no_grad():                                                   # sg(·)
            z_t = self.target_projector(self.target_encoder(torch.cat([tokens_j, tokens_i])))  # [2B, P]
        l_byol = byol_loss(p, z_t)                                              # [2B]
        byol_ij, byol_ji = l_byol[:B].mean(), l_byol[B:].mean()
        if self.category_head is not None:
            logits = self.category_head(y)                                      # [2B, C]
            ce_ij = category_loss(logits[:B], cat_j)                            # h(y_i) vs category of p_j
            ce_ji = category_loss(logits[B:], cat_i)                            # h(y_j) vs category of p_i
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
        torch._foreach_lerp_(params(target), params(online), 1.0 - tau)   # ξ + (1−τ)(θ − ξ)
        torch._foreach_copy_(buffers(target), buffers(online))


def flops_per_pair(model_cfg_or_model, seq_len: int, n_categories: int | None = None) -> float:
    """Training FLOPs for one (p_i, p_j) pair, from the shapes (matmul/conv MACs × 2).

    Per title (E embed, F filters, kernels k, L' = max(seq_len, max k), Y = F·len(k), H hidden, P proj):
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
    Lp, Y = max(seq_len, max(ks)), Fn * len(ks)
    m_conv = sum((Lp - k + 1) * k * E * Fn for k in ks)
    mlp = lambda a, c: a * H + H * c  # noqa: E731
    m_online = m_conv + mlp(Y, P) + mlp(P, P) + (mlp(Y, C) if C > 0 else 0)
    m_target = m_conv + mlp(Y, P)
    return float(2 * 2 * (3 * m_online + m_target))
