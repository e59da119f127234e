"""Views of a title for BYOL: token dropout, span masking and local shuffles of token id rows.

BYOL learns what its two views share. With session pairs the two views are two products, so what they
share is mostly their category; augmenting each view, and adding (p, augmented p) self-pairs
(``train.self_pair_fraction``), gives the encoder a reason to keep a product's own words as well.

Rows are right-padded id tensors [n, L] (0 = padding, ``prodemb.tokenizer``): every function keeps the
padding where it is (a shorter row is padded at its end again) and never empties a non-empty row. Each
takes a ``torch.Generator`` (CPU): the same seed gives the same views.

    tokens [n, L] ──dropout(p)──▶ [n, L] ──span_mask(frac)──▶ [n, L] ──local_shuffle(k)──▶ [n, L]
"""

from __future__ import annotations

import torch

from prodemb.tokenizer import PAD_ID as PAD
from prodemb.tokenizer import UNK_ID as UNK  # a masked token becomes the unknown piece


def _uniform(shape, gen: torch.Generator, device) -> torch.Tensor:
    return torch.rand(shape, generator=gen).to(device)


def token_dropout(tokens: torch.Tensor, p: float, gen: torch.Generator) -> torch.Tensor:
    """Drop each token with probability ``p`` and close the gaps (the row's first token survives when all
    would go): [n, L] → [n, L]."""
    if p <= 0:
        return tokens
    real = tokens != PAD  # [n, L]
    keep = real & (_uniform(tokens.shape, gen, tokens.device) >= p)
    first = real & (real.cumsum(1) == 1)  # each row's first token
    keep |= first & ~keep.any(1, keepdim=True)
    order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)  # kept tokens first, in order
    return torch.where(keep.gather(1, order), tokens.gather(1, order), torch.zeros_like(tokens))


def span_mask(tokens: torch.Tensor, fraction: float, gen: torch.Generator) -> torch.Tensor:
    """Replace one contiguous span of ``fraction`` of each row's tokens (at least one) by UNK."""
    if fraction <= 0:
        return tokens
    lengths = (tokens != PAD).sum(1)  # [n]
    span = torch.clamp(torch.round(lengths * fraction), min=1).to(lengths.dtype)
    span = torch.minimum(span, lengths)
    start = torch.floor(_uniform(lengths.shape, gen, tokens.device) * (lengths - span + 1)).to(lengths.dtype)
    pos = torch.arange(tokens.shape[1], device=tokens.device)[None, :]  # [1, L]
    masked = (pos >= start[:, None]) & (pos < (start + span)[:, None]) & (tokens != PAD)
    return torch.where(masked, torch.full_like(tokens, UNK), tokens)


def local_shuffle(tokens: torch.Tensor, window: int, gen: torch.Generator) -> torch.Tensor:
    """Shuffle each row so that no token moves more than ``window`` places (sort by i + U(0, window + 1),
    Lample et al. 2018); padding stays at the end."""
    if window <= 0:
        return tokens
    n, length = tokens.shape
    pos = torch.arange(length, device=tokens.device, dtype=torch.float32)[None, :].expand(n, length)
    key = torch.where(
        tokens != PAD, pos + _uniform((n, length), gen, tokens.device) * (window + 1), pos + 2 * length + window + 1
    )
    return tokens.gather(1, torch.argsort(key, dim=1))


def augment(tokens: torch.Tensor, cfg, gen: torch.Generator) -> torch.Tensor:
    """The configured view (``train.augment``: dropout, span_mask, shuffle_window) of a batch of rows."""
    out = token_dropout(tokens, cfg.dropout, gen)
    out = span_mask(out, cfg.span_mask, gen)
    return local_shuffle(out, cfg.shuffle_window, gen)


def with_self_pairs(a: torch.Tensor, b: torch.Tensor, fraction: float) -> torch.Tensor:
    """Session pairs (a, b) → the same a with the last ``round(fraction × batch)`` partners replaced by a
    itself: (p, p) self-pairs, whose two views differ only by augmentation. Returns the new b."""
    k = int(round(fraction * len(a)))
    if k <= 0:
        return b
    return torch.cat([b[: len(b) - k], a[len(a) - k :]])
