"""The CPU Text-CNN path (blocked forward, max-pool-sparse backward) equals the textbook Conv1d encoder."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from prodemb.model import ProductEncoder


def reference_forward(enc: ProductEncoder, tokens: torch.Tensor) -> torch.Tensor:
    """Embedding → Conv1d per kernel size → ReLU → max over time → concat (paper §3.2)."""
    L = tokens.shape[1]
    if L < enc.max_kernel:
        tokens = F.pad(tokens, (0, enc.max_kernel - L), value=0)
    x = F.embedding(tokens, enc.embed.weight, padding_idx=0).transpose(1, 2)
    return torch.cat([F.relu(F.conv1d(x, c.weight, c.bias)).amax(2) for c in enc.convs], 1)


@pytest.mark.parametrize("L", [1, 4, 12, 32])
def test_cpu_path_forward_and_gradients_match_reference(L):
    torch.manual_seed(L)
    enc = ProductEncoder(vocab_size=300, embed_dim=24, n_filters=8, kernel_sizes=(2, 3, 4, 5))
    tokens = torch.randint(2, 300, (70, L))
    lengths = torch.randint(0, L + 1, (70,))
    tokens[torch.arange(L)[None, :] >= lengths[:, None]] = 0          # right padding, some empty titles
    tokens[0, :] = 7 if L > 1 else tokens[0, :]                       # repeated token: tied windows
    upstream = torch.randn(70, enc.out_dim)

    params = [enc.embed.weight] + [p for c in enc.convs for p in (c.weight, c.bias)]
    out = enc(tokens)
    got = torch.autograd.grad((out * upstream).sum(), params)
    ref = reference_forward(enc, tokens)
    want = torch.autograd.grad((ref * upstream).sum(), params)

    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5)
    assert got[0][0].abs().sum() == 0                                    # padding row gets no gradient


def test_cpu_path_in_eval_and_no_grad_equals_reference():
    torch.manual_seed(0)
    enc = ProductEncoder(vocab_size=100, embed_dim=16, n_filters=4).eval()
    tokens = torch.randint(0, 100, (33, 9))
    with torch.no_grad():
        torch.testing.assert_close(enc(tokens), reference_forward(enc, tokens), rtol=1e-5, atol=1e-5)
