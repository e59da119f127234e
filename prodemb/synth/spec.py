"""What to generate (``SynthSpec``), its resolved sizes, and the seeded random streams."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from prodemb.synth.vocabulary import CATEGORIES

# RNG streams: every independent random quantity gets its own stream so that changing one piece of the
# generator (or the chunk size) does not shift the numbers drawn by another.
STREAM_CATALOG, STREAM_POPULARITY, STREAM_USERS, STREAM_BLOCK = 1, 2, 3, 4


@dataclass
class SynthSpec:
    n_clicks: int = 200_000
    n_products: int = 5_000
    n_users: int | None = None  # default: n_clicks // 40 (about 40 clicks, ~6 sessions per user)
    n_categories: int | None = None  # default: all built-in categories (the first N otherwise)
    seed: int = 7
    start: str = "2024-01-01"  # first day of the log (UTC)
    days: int = 30
    site: str = "MLA"
    chunk_clicks: int = 1_000_000


def rng_stream(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def resolved(spec: SynthSpec) -> tuple[int, int, int]:
    """(n_clicks, n_users, n_categories) after defaults and sanity limits."""
    if spec.n_clicks < 1 or spec.n_products < 1 or spec.days < 1 or spec.chunk_clicks < 1:
        raise ValueError(f"n_clicks, n_products, days and chunk_clicks must be >= 1: {spec}")
    n_users = spec.n_users if spec.n_users is not None else max(1, spec.n_clicks // 40)
    n_users = max(1, min(n_users, spec.n_clicks))  # every user has at least one click
    k = len(CATEGORIES) if spec.n_categories is None else spec.n_categories
    k = max(1, min(k, len(CATEGORIES), spec.n_products))
    return spec.n_clicks, n_users, k
