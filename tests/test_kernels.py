"""prodemb.kernels equal the plain PyTorch they replace: the CPU Text-CNN path (blocked forward, max-pool-sparse
backward) equals the textbook Conv1d encoder, and the oneDNN linear equals F.linear, forward and backward."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from prodemb.kernels.linear import linear, onednn_available
from prodemb.kernels.textcnn import _title_blocks, text_cnn_max_mean_pool
from prodemb.model import ProductEncoder


def reference_forward(enc: ProductEncoder, tokens: torch.Tensor) -> torch.Tensor:
    """Embedding → Conv1d per kernel size → ReLU → max over time → concat (paper §3.2)."""
    L = tokens.shape[1]
    if L < enc.max_kernel:
        tokens = F.pad(tokens, (0, enc.max_kernel - L), value=0)
    x = F.embedding(tokens, enc.embed.weight, padding_idx=0).transpose(1, 2)
    return torch.cat([F.relu(F.conv1d(x, c.weight, c.bias)).amax(2) for c in enc.convs], 1)


def assert_matches_reference(
    enc: ProductEncoder, tokens: torch.Tensor, grad_atol: float, reference=reference_forward
) -> tuple[torch.Tensor, ...]:
    """The encoder's output and its gradients (table, then each conv's weight and bias) for a random upstream
    gradient equal those of ``reference(enc, tokens)``; returns the encoder's output and gradients."""
    upstream = torch.randn(tokens.shape[0], enc.out_dim)
    params = [enc.embed.weight] + [p for c in enc.convs for p in (c.weight, c.bias)]
    out = enc(tokens)
    got = torch.autograd.grad((out * upstream).sum(), params)
    ref = reference(enc, tokens)
    want = torch.autograd.grad((ref * upstream).sum(), params)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=grad_atol)
    return out.detach(), *got


@pytest.mark.parametrize("L", [1, 4, 12, 32])
def test_cpu_path_forward_and_gradients_match_reference(L):
    torch.manual_seed(L)
    enc = ProductEncoder(vocab_size=300, embed_dim=24, n_filters=8, kernel_sizes=(2, 3, 4, 5))
    tokens = torch.randint(2, 300, (70, L))
    lengths = torch.randint(0, L + 1, (70,))
    tokens[torch.arange(L)[None, :] >= lengths[:, None]] = 0  # right padding, some empty titles
    tokens[0, :] = 7 if L > 1 else tokens[0, :]  # repeated token: tied windows
    _, table_grad, *_ = assert_matches_reference(enc, tokens, grad_atol=1e-5)
    assert table_grad[0].abs().sum() == 0  # padding row gets no gradient


def test_cpu_path_in_eval_and_no_grad_equals_reference():
    torch.manual_seed(0)
    enc = ProductEncoder(vocab_size=100, embed_dim=16, n_filters=4).eval()
    tokens = torch.randint(0, 100, (33, 9))
    with torch.no_grad():
        torch.testing.assert_close(enc(tokens), reference_forward(enc, tokens), rtol=1e-5, atol=1e-5)


def test_cpu_path_over_several_blocks_matches_reference():
    """Titles of mixed lengths cut into several blocks of different widths: forward and gradients still exact."""
    torch.manual_seed(3)
    enc = ProductEncoder(vocab_size=400, embed_dim=512, n_filters=4, kernel_sizes=(2, 5))
    tokens = torch.randint(1, 400, (300, 32))
    lengths = torch.randint(0, 33, (300,))
    tokens[torch.arange(32)[None, :] >= lengths[:, None]] = 0
    order, blocks = _title_blocks(tokens, 512, 5)
    assert len(blocks) >= 3 and len({w for _, _, w in blocks}) >= 2  # several blocks, narrowed widths
    assert_matches_reference(enc, tokens, grad_atol=1e-4)


@pytest.mark.skipif(not onednn_available(), reason="this torch build has no oneDNN fp32 linear")
@pytest.mark.parametrize("bias", [True, False])
def test_onednn_linear_forward_and_backward_match_f_linear(bias):
    torch.manual_seed(0)
    x = torch.randn(37, 24, requires_grad=True)
    w = torch.randn(11, 24, requires_grad=True)
    b = torch.randn(11, requires_grad=True) if bias else None
    inputs = [t for t in (x, w, b) if t is not None]
    upstream = torch.randn(37, 11)
    out = linear(x, w, b)
    got = torch.autograd.grad((out * upstream).sum(), inputs)
    ref = F.linear(x, w, b)
    want = torch.autograd.grad((ref * upstream).sum(), inputs)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    for g, r in zip(got, want):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-4)
    with torch.no_grad():
        torch.testing.assert_close(linear(x, w, b), ref.detach(), rtol=1e-4, atol=1e-4)


def titles_of_every_length(n: int, L: int, vocab_size: int = 500) -> torch.Tensor:
    """[n, L] right-padded token ids; the first title is empty, the second fills all L positions."""
    tokens = torch.randint(1, vocab_size, (n, L))
    lengths = torch.randint(0, L + 1, (n,))
    lengths[:2] = torch.tensor([0, L])
    tokens[torch.arange(L)[None, :] >= lengths[:, None]] = 0
    return tokens


# titles shorter than the widest kernel; one block; several blocks of different widths (at E = 512)
BLOCK_CASES = [(7, 3, 64), (40, 12, 64), (300, 32, 512)]


@pytest.mark.parametrize("n, L, E", BLOCK_CASES)
def test_blocked_mean_pool_matches_the_textbook_mean_pool(n, L, E):
    """ȳ from the blocked CPU kernel equals ProductEncoder's textbook computation, titles of every length
    from empty to full (windows that run into the padding included)."""
    torch.manual_seed(n)
    enc = ProductEncoder(vocab_size=500, embed_dim=E, n_filters=8, kernel_sizes=(2, 3, 4, 5))
    tokens = titles_of_every_length(n, L)
    with torch.no_grad():
        fast = enc.mean_pool(tokens)  # the CPU kernel (no autograd)
    textbook = enc._mean_pool(tokens)
    torch.testing.assert_close(fast, textbook, rtol=1e-5, atol=1e-5)
    assert torch.all(fast[0] == 0) and fast[1].abs().sum() > 0


@pytest.mark.parametrize("n, L, E", BLOCK_CASES)
def test_one_pass_max_and_mean_pool_match_their_textbook_forms(n, L, E):
    """text_cnn_max_mean_pool's y equals the textbook max over y's own windows (which stop at t = L' − k,
    unlike ȳ's) and its ȳ the textbook mean, over one block and several."""
    torch.manual_seed(L)
    enc = ProductEncoder(vocab_size=500, embed_dim=E, n_filters=8, kernel_sizes=(2, 3, 4, 5))
    tokens = titles_of_every_length(n, L)
    params = [t for c in enc.convs for t in (c.weight, c.bias)]
    with torch.no_grad():
        y, y_mean = text_cnn_max_mean_pool(tokens, enc.embed.weight, enc.kernel_sizes, params)
        torch.testing.assert_close(y, reference_forward(enc, tokens), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(y_mean, enc._mean_pool(tokens), rtol=1e-5, atol=1e-5)
    if L >= enc.max_kernel:  # the windows differ at the right edge: the max must not read the mean's extra ones
        edge = torch.zeros(1, L, dtype=torch.long)
        edge[0, -1] = 9  # a title token in the last column only
        with torch.no_grad():
            y_edge, _ = text_cnn_max_mean_pool(edge, enc.embed.weight, enc.kernel_sizes, params)
        torch.testing.assert_close(y_edge, reference_forward(enc, edge), rtol=1e-5, atol=1e-5)


def test_the_published_vector_is_the_same_from_the_one_pass_kernel_and_from_autograd():
    torch.manual_seed(1)
    enc = ProductEncoder(500, 64, 8, (2, 3, 4, 5), vector="max+mean/l2", vector_scale=2.0)
    tokens = titles_of_every_length(50, 16)
    with torch.no_grad():
        fast = enc.vector(tokens)  # one pass (prodemb.kernels)
    torch.testing.assert_close(fast, enc.vector(tokens).detach(), rtol=1e-5, atol=1e-5)  # autograd path
