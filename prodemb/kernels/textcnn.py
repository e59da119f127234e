"""CPU fast path of the Text-CNN encoder f_θ ∘ t_θ (prodemb.model.ProductEncoder): ReLU(max over time of
conv_k(t(tokens))) for every kernel size, block by block, with a max-pool-sparse backward.

Same function as the textbook Embedding → Conv1d → ReLU → max over time (tests/test_kernels.py checks the
forward and every gradient against it, over one block and several).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def text_cnn_max_pool(
    tokens: Tensor, weight: Tensor, padding_idx: int | None, kernel_sizes: tuple[int, ...], params: list[Tensor]
) -> Tensor:
    """[N, L] token ids → [N, F·K]; ``params`` = (w_k [F, E, k], b_k [F]) per kernel size."""
    if _eager_under_compile is not None and torch.compiler.is_compiling():
        return _eager_under_compile(tokens, weight, padding_idx, kernel_sizes, params)
    return _text_cnn_max_pool(tokens, weight, padding_idx, kernel_sizes, params)


# Data-dependent block widths: torch.compile would recompile every step, so a compiled model runs this kernel
# eagerly. The wrapper is made only when a compile is asked for (keep_out_of_compiled_graphs): making it
# imports torch._dynamo, about 1 s that every process loading the model would pay otherwise.
_eager_under_compile = None


def keep_out_of_compiled_graphs() -> None:
    """Call before ``torch.compile`` of a model that uses this kernel (prodemb.train does)."""
    global _eager_under_compile
    if _eager_under_compile is None:
        _eager_under_compile = torch.compiler.disable(_text_cnn_max_pool)


def _text_cnn_max_pool(
    tokens: Tensor, weight: Tensor, padding_idx: int | None, kernel_sizes: tuple[int, ...], params: list[Tensor]
) -> Tensor:
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
    blocks = [
        (n0, min(n0 + step, N), min(L, max(lengths[min(n0 + step, N) - 1] + max_kernel, max_kernel)))
        for n0 in range(0, N, step)
    ]
    return order, blocks


def _embed_conv_max(
    tokens: Tensor,
    weight: Tensor,
    params: Sequence[Tensor],
    blocks: list[tuple[int, int, int]],
    with_indices: bool = True,
) -> tuple[Tensor, Tensor | None]:
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
        x = F.embedding(tokens[n0:n1, :width], weight)  # [n, L_b, E]
        x4 = x.view(n1 - n0, 1, width, E).permute(0, 3, 1, 2)  # [n, E, 1, L_b], no copy
        for w, b in zip(ws, params[1::2]):
            o = F.conv2d(x4, w, b).squeeze(2)  # [n, F, L_b−k+1]
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
    cat = lambda ts: torch.cat([torch.cat(ts[b : b + K], 1) for b in range(0, len(ts), K)], 0)  # noqa: E731
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
        dx[n, t]      = Σ_{(k, j, f): t*[n, f] + j = t} g[n, f] · W_k[f, :, j]
        d(table)[v]   = Σ_{tokens[n, t] = v} dx[n, t]
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
    def forward(
        ctx, tokens: Tensor, weight: Tensor, padding_idx: int | None, kernel_sizes: tuple[int, ...], *params: Tensor
    ) -> Tensor:
        order, blocks = _title_blocks(tokens, weight.shape[1], max(kernel_sizes))
        tokens = tokens[order]
        m, idx = _embed_conv_max(tokens, weight, params, blocks)
        assert idx is not None
        y = m.clamp_min(0)  # in block order
        ctx.kernel_sizes, ctx.padding_idx, ctx.blocks = kernel_sizes, padding_idx, blocks
        ctx.save_for_backward(tokens, order, idx.to(torch.int32), y, weight, *params[0::2])
        return _unsort(y, order)

    @staticmethod
    def backward(ctx, dy: Tensor):
        tokens, order, idx, y, weight, *ws = ctx.saved_tensors
        ks, E, Fn = ctx.kernel_sizes, weight.shape[1], ws[0].shape[0]
        g = torch.where(y > 0, dy[order], 0).to(weight.dtype)  # ReLU′, [N, F·K], block order
        cols = [(i, j) for i, k in enumerate(ks) for j in range(k)]  # weight column blocks (k, j)
        need_table = ctx.needs_input_grad[1]
        if need_table:  # row c = (k, j, f) of wt is W_k[f, :, j]
            wt = torch.cat([w.permute(2, 0, 1).reshape(k * Fn, E) for k, w in zip(ks, ws)]).to(weight.dtype)
            d_table = torch.zeros_like(weight)
        dwt = None
        for n0, n1, width in ctx.blocks:
            tok, ib, gb, n = tokens[n0:n1, :width], idx[n0:n1], g[n0:n1], n1 - n0
            base = torch.arange(0, n * width, width, dtype=torch.int32, device=tok.device)[:, None]
            rows = torch.cat([ib[:, i * Fn : (i + 1) * Fn] + (base + j) for i, j in cols], 1)  # [n, C] row of x
            gc = torch.cat([gb[:, i * Fn : (i + 1) * Fn] for i, _ in cols], 1)  # [n, C]
            x = F.embedding(tok, weight).view(n * width, E)
            part = F.embedding_bag(rows.t().contiguous(), x, mode="sum", per_sample_weights=gc.t().contiguous())
            dwt = part if dwt is None else dwt.add_(part)  # [C, E]
            if need_table:
                keys, perm = torch.sort(rows.flatten(), stable=True)
                offsets = torch.searchsorted(keys, torch.arange(n * width, dtype=keys.dtype, device=keys.device))
                dx = F.embedding_bag(
                    perm % rows.shape[1], wt, offsets, mode="sum", per_sample_weights=gc.flatten()[perm]
                )  # [n·L_b, E]
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
            grads.append(dwt[off : off + k * Fn].view(k, Fn, E).permute(1, 2, 0).to(w.dtype))
            grads.append(g[:, i * Fn : (i + 1) * Fn].sum(0).to(w.dtype))
            off += k * Fn
        return tuple(grads)


def text_cnn_max_mean_pool(
    tokens: Tensor, weight: Tensor, kernel_sizes: tuple[int, ...], params: Sequence[Tensor]
) -> tuple[Tensor, Tensor]:
    """(y, ȳ) on the CPU in one pass over the convolutions, no autograd, [N, L] → ([N, F·K], [N, F·K]).

    y = ReLU(max over time of conv_k(t(tokens))) (``ProductEncoder._max_pool``); ȳ = ReLU(conv_k(t(tokens)))
    averaged over the windows that start on a title token (``ProductEncoder._mean_pool``). The two take
    different windows at the right edge: ȳ's titles are right-padded by k_max − 1 so that every window
    starting on a token exists, while y's windows stop at t = L' − k (L' = max(L, k_max), the length the
    max path pads short titles to). So the titles are padded for ȳ, cut into ``_title_blocks``' length-
    sorted blocks (each cropped to its longest title + k_max columns), and y takes the first L' − k + 1
    windows of what a block kept. That is exactly y's window set: a block whose longest title + k_max
    fits in L' keeps the same columns as in the max path; otherwise it keeps at least L' of them. ReLU
    commutes with the max, so both read the same ReLU'd convolution (tests/test_kernels.py checks both
    against their textbook forms)."""
    k_max = max(kernel_sizes)
    max_windows_end = max(tokens.shape[1], k_max)  # y's windows are t ≤ L' − k
    tokens = F.pad(tokens, (0, k_max - 1), value=0)
    n_tokens = (tokens != 0).sum(dim=1)  # [N]
    order, blocks = _title_blocks(tokens, weight.shape[1], k_max)
    tokens, n_tokens = tokens[order], n_tokens[order]
    E = weight.shape[1]
    ws = [w.unsqueeze(2).contiguous(memory_format=torch.channels_last) for w in params[0::2]]
    if not blocks:
        empty = weight.new_zeros(0, len(ws) * ws[0].shape[0])
        return empty, empty.clone()
    maxes, means = [], []
    for n0, n1, width in blocks:
        x = F.embedding(tokens[n0:n1, :width], weight)  # [n, L_b, E]
        x4 = x.view(n1 - n0, 1, width, E).permute(0, 3, 1, 2)  # [n, E, 1, L_b], no copy
        n = n_tokens[n0:n1]
        block_max, block_sum = [], []
        for k, w, b in zip(kernel_sizes, ws, params[1::2]):
            o = F.conv2d(x4, w, b).squeeze(2).clamp_min_(0)  # [n, F, L_b−k+1]
            block_max.append(o[:, :, : max_windows_end - k + 1].amax(dim=2))  # [n, F]
            starts = (torch.arange(o.shape[2])[None, :] < n[:, None]).to(o.dtype)  # [n, L_b−k+1]
            block_sum.append(torch.bmm(o, starts[:, :, None]).squeeze(2))  # [n, F]
        maxes.append(torch.cat(block_max, 1))
        means.append(torch.cat(block_sum, 1) / n.clamp(min=1)[:, None].to(x.dtype))
    return _unsort(torch.cat(maxes, 0), order), _unsort(torch.cat(means, 0), order)
