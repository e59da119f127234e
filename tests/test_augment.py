"""prodemb.augment: the views of a title, and self-pairs mixed into a batch."""

from __future__ import annotations

import torch

from prodemb.augment import PAD, UNK, augment, local_shuffle, span_mask, token_dropout, with_self_pairs
from prodemb.config import AugmentConfig


def rows() -> torch.Tensor:
    """Right-padded id rows of lengths 8, 5, 1, 0 and 3 (ids 10+ so they never equal PAD or UNK)."""
    out = torch.zeros((5, 8), dtype=torch.int64)
    for i, n in enumerate((8, 5, 1, 0, 3)):
        out[i, :n] = torch.arange(10 + 10 * i, 10 + 10 * i + n)
    return out


def lengths(t: torch.Tensor) -> list[int]:
    return (t != PAD).sum(1).tolist()


def padded_at_the_end(t: torch.Tensor) -> bool:
    real = (t != PAD).to(torch.int8)
    return bool((real[:, 1:] <= real[:, :-1]).all())  # no token after a pad


def test_dropout_keeps_order_and_padding_and_never_empties_a_row():
    t = rows()
    out = token_dropout(t, 0.5, torch.Generator().manual_seed(0))
    assert out.shape == t.shape and padded_at_the_end(out)
    assert all(0 < m <= n for m, n in zip(lengths(out), lengths(t)) if n) and lengths(out)[3] == 0
    for row, orig in zip(out, t):  # a subsequence, in its order
        kept = [int(x) for x in row if x != PAD]
        source = [int(x) for x in orig if x != PAD]
        assert kept == [x for x in source if x in kept]
    dropped_all = token_dropout(t, 0.999, torch.Generator().manual_seed(1))
    assert lengths(dropped_all) == [1, 1, 1, 0, 1] and dropped_all[0, 0] == t[0, 0]  # the first survives


def test_span_mask_masks_one_run_of_the_right_length_and_nothing_else():
    t = rows()
    out = span_mask(t, 0.5, torch.Generator().manual_seed(0))
    assert out.shape == t.shape and bool(((out == PAD) == (t == PAD)).all())  # padding untouched
    for row, orig, n in zip(out, t, lengths(t)):
        masked = (row == UNK).nonzero().flatten().tolist()
        assert len(masked) == (max(1, round(n * 0.5)) if n else 0)
        assert masked == list(range(masked[0], masked[0] + len(masked))) if masked else True  # contiguous
        assert bool((row[row != UNK] == orig[row != UNK]).all())


def test_local_shuffle_moves_no_token_further_than_the_window():
    t = rows()
    out = local_shuffle(t, 2, torch.Generator().manual_seed(3))
    assert bool(((out == PAD) == (t == PAD)).all())
    moved = False
    for row, orig in zip(out, t):
        for i, x in enumerate(row.tolist()):
            if x != PAD:
                j = orig.tolist().index(x)
                assert abs(i - j) <= 2
                moved |= i != j
        assert sorted(row.tolist()) == sorted(orig.tolist())
    assert moved


def test_the_same_seed_gives_the_same_views_and_nothing_configured_changes_nothing():
    t = rows().repeat(20, 1)
    cfg = AugmentConfig(dropout=0.2, span_mask=0.3, shuffle_window=2)
    a = augment(t, cfg, torch.Generator().manual_seed(5))
    assert torch.equal(a, augment(t, cfg, torch.Generator().manual_seed(5)))
    assert not torch.equal(a, augment(t, cfg, torch.Generator().manual_seed(6)))
    assert a.shape == t.shape and padded_at_the_end(a)
    assert torch.equal(augment(t, AugmentConfig(), torch.Generator().manual_seed(5)), t)


def test_self_pairs_replace_the_last_partners_by_the_product_itself():
    a, b = torch.arange(10), torch.arange(100, 110)
    mixed = with_self_pairs(a, b, 0.3)
    assert mixed[:7].tolist() == b[:7].tolist() and mixed[7:].tolist() == a[7:].tolist()
    assert torch.equal(with_self_pairs(a, b, 0.0), b) and torch.equal(with_self_pairs(a, b, 1.0), a)
