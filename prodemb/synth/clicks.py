"""The click log: users whose sessions stay mostly inside one category (often one product type), Zipf
popularity, repeat views and realistic gaps, generated in fixed blocks of users (one seeded stream each),
vectorized with numpy and streamed as Arrow record batches."""

from __future__ import annotations

from typing import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa

from prodemb.synth.catalog import make_catalog
from prodemb.synth.spec import STREAM_BLOCK, STREAM_POPULARITY, STREAM_USERS, SynthSpec, resolved, rng_stream
from prodemb.synth.vocabulary import CATEGORIES

# Canonical click-log schema (what the source adapters produce for real logs too).
CLICK_SCHEMA = pa.schema(
    [
        ("user_id", pa.string()),
        ("ts", pa.timestamp("ms", tz="UTC")),
        ("product_id", pa.string()),
        ("title", pa.string()),
        ("category", pa.string()),
        ("site", pa.string()),
    ]
)

_USERS_PER_BLOCK = 2048  # fixed: output must not depend on chunk_clicks

# Behaviour knobs (why these values: see the package docstring / tests).
_ZIPF_EXPONENT = 1.05  # popularity ~ 1 / rank^a within a category
_MEAN_SESSION_CLICKS = 6.0  # median events per session before the 30-min cut
_P_REPEAT = 0.2  # a click re-views a product already seen in the session
_P_SAME_TYPE = 0.45  # in-category click stays on the session's product type
_MIN_SESSION_GAP_S = 31 * 60  # generated sessions are separated by more than the default 30-min cut


class _ClickModel:
    """Precomputed sampling structures for one catalog.

    Products are organised in groups of three families: category, (category, product type) and
    (category, used). All groups share one concatenated CDF whose group g spans the values (g, g+1], so
    a single `searchsorted(cdf, g + u)` draws a product from any mix of groups in one vectorized call.
    """

    def __init__(self, catalog: pd.DataFrame, spec: SynthSpec):
        n = len(catalog)
        if n == 0:
            raise ValueError("catalog is empty")
        cat_code, cat_names = pd.factorize(catalog["category"], sort=False)
        k = len(cat_names)
        self.n_categories = k
        rng = rng_stream(spec.seed, STREAM_POPULARITY)

        # Zipf popularity by a random rank within the category; free shipping nudges products up.
        fs = catalog["free_shipping"].to_numpy(bool) if "free_shipping" in catalog else np.zeros(n, bool)
        key = rng.random(n) - 0.15 * fs
        order = np.lexsort((key, cat_code))
        first = np.searchsorted(cat_code[order], np.arange(k))
        rank = np.empty(n, np.int64)
        rank[order] = np.arange(n) - first[cat_code[order]]
        pop = (rank + 1.0) ** -_ZIPF_EXPONENT

        # Product type = first title word (works for any catalog, not only ours).
        first_word = catalog["title"].astype(str).str.split(n=1).str[0].str.lower().fillna("")
        type_code, _ = pd.factorize(first_word, sort=False)
        _, type_group = np.unique(cat_code.astype(np.int64) * (type_code.max() + 1) + type_code, return_inverse=True)
        n_types = int(type_group.max()) + 1
        used = (catalog["condition"].to_numpy() == "used") if "condition" in catalog else np.zeros(n, bool)

        # Global group ids: [0, k) categories, [k, k+T) types, then one "used" group per category that has any.
        self.cat_group = np.arange(k)
        self.type_group_of = (k + type_group).astype(np.int64)
        has_used = np.bincount(cat_code[used], minlength=k) > 0
        used_ids = np.cumsum(has_used) - 1 + k + n_types
        self.used_group = np.where(has_used, used_ids, self.cat_group)  # fall back to the whole category

        members, cdfs, last = [], [], []
        for grp, mask in ((cat_code, None), (k + type_group, None), (used_ids[cat_code], used)):
            idx = np.flatnonzero(mask) if mask is not None else np.arange(n)
            g = grp[idx] if mask is not None else grp
            if len(idx) == 0:  # e.g. no used items at all
                continue
            o = np.argsort(g, kind="stable")
            idx, g = idx[o], g[o]
            w = pop[idx]
            cs = np.cumsum(w)
            starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
            ends = np.r_[starts[1:], len(g)] - 1
            before = np.repeat(np.r_[0.0, cs[ends[:-1]]], ends - starts + 1)
            total = np.repeat(cs[ends] - np.r_[0.0, cs[ends[:-1]]], ends - starts + 1)
            frac = (cs - before) / total
            frac[ends] = 1.0
            members.append(idx)
            cdfs.append(g + frac)
            last.append((g[ends], ends))
        offs = np.cumsum([0] + [len(m) for m in members])
        self.members = np.concatenate(members).astype(np.int32)
        self.cdf = np.concatenate(cdfs)
        n_groups = k + n_types + int(has_used.sum())
        self.group_last = np.zeros(n_groups, np.int64)  # guards u -> 1.0 rounding at a group's end
        for (gids, ends), off in zip(last, offs):
            self.group_last[gids] = ends + off

        # Sessions' main categories follow traffic (built-in weights, else 1) x sqrt(category size).
        builtin = {c["name"]: c["traffic"] for c in CATEGORIES}
        traffic = np.array([builtin.get(str(c), 1.0) for c in cat_names]) * np.sqrt(np.bincount(cat_code, minlength=k))
        self.cat_cdf = np.cumsum(traffic / traffic.sum())
        self.cat_cdf[-1] = 1.0

        # Arrow columns to gather from (take() is vectorized; no per-click Python strings).
        self.product_id = pa.array(catalog["product_id"].astype(str).tolist(), pa.string())
        self.title = pa.array(catalog["title"].astype(str).tolist(), pa.string())
        self.category = pa.array(catalog["category"].astype(str).tolist(), pa.string())

    def draw_category(self, u: np.ndarray) -> np.ndarray:
        return np.minimum(np.searchsorted(self.cat_cdf, u, side="right"), self.n_categories - 1)

    def draw_product(self, group: np.ndarray, u: np.ndarray) -> np.ndarray:
        q = group + u
        # Searching sorted queries is ~3x faster than random ones (cache-friendly); argsort pays for itself.
        order = np.argsort(q)
        pos = np.empty(len(q), np.int64)
        pos[order] = np.searchsorted(self.cdf, q[order], side="right")
        return self.members[np.minimum(pos, self.group_last[group])]


def _user_click_counts(spec: SynthSpec) -> np.ndarray:
    """Clicks per user (heavy-tailed activity), summing exactly to n_clicks; O(n_users) memory."""
    n_clicks, n_users, _ = resolved(spec)
    rng = rng_stream(spec.seed, STREAM_USERS)
    w = rng.lognormal(0.0, 1.0, n_users)
    w = np.minimum(w, 50 * w.mean())  # no single user dominates a small log
    extra = rng.multinomial(n_clicks - n_users, w / w.sum()) if n_clicks > n_users else np.zeros(n_users, np.int64)
    return (1 + extra).astype(np.int64)


def _gen_block(
    model: _ClickModel, counts: np.ndarray, first_user: int, window_s: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """All clicks of one block of users: (global user index, seconds from start, product index, n sessions)."""
    n_u = len(counts)
    n = int(counts.sum())
    user = np.repeat(np.arange(n_u), counts)
    ustart = np.cumsum(counts) - counts
    pos = np.arange(n) - ustart[user]

    # --- users: favourite categories, session-length propensity, interest in used items
    fav1 = model.draw_category(rng.random(n_u))
    fav2 = model.draw_category(rng.random(n_u))
    p_new_session = 1.0 / (1.0 + rng.lognormal(np.log(_MEAN_SESSION_CLICKS - 1), 0.6, n_u))
    used_affinity = np.where(rng.random(n_u) < 0.15, 0.5, 0.03)

    # --- sessions: each click after a user's first starts a new session with the user's probability
    new_sess = (pos == 0) | (rng.random(n) < p_new_session[user])
    sess = np.cumsum(new_sess) - 1
    sess_first = np.flatnonzero(new_sess)
    n_s = len(sess_first)
    s_user = user[sess_first]
    r = rng.random((4, n_s))
    main = np.where(r[0] < 0.6, fav1[s_user], np.where(r[1] < 0.65, fav2[s_user], model.draw_category(r[2])))
    purity = 0.6 + 0.35 * rng.beta(4.0, 2.0, n_s)  # share of in-category clicks, mean ~0.83
    used_seek = r[3] < used_affinity[s_user]

    # --- products. The session's first click (the "anchor") comes from the main category; later ones
    # stay on the anchor's product type, on used items, on the whole category, or wander off.
    anchor = model.draw_product(model.cat_group[main], rng.random(n_s))
    # Repeated views: re-open the previous product or any earlier one in the same session.
    pos_in_sess = np.arange(n) - sess_first[sess]
    d = rng.random((3, n))
    repeat = (pos_in_sess > 0) & (d[0] < _P_REPEAT)
    # Fresh draws only for the clicks that are neither anchors nor repeats (sampling is the hot spot).
    fresh = np.flatnonzero(~new_sess & ~repeat)
    f_sess, f_user = sess[fresh], user[fresh]
    c = rng.random((5, len(fresh)))
    s_main = main[f_sess]
    in_cat = c[0] < purity[f_sess]
    same_type = in_cat & (c[1] < _P_SAME_TYPE)
    want_used = in_cat & ~same_type & (c[1] < _P_SAME_TYPE + 0.35) & used_seek[f_sess]
    off_cat = np.where(c[2] < 0.4, fav2[f_user], model.draw_category(c[3]))
    group = np.where(in_cat, model.cat_group[s_main], model.cat_group[off_cat])
    group = np.where(same_type, model.type_group_of[anchor[f_sess]], group)
    group = np.where(want_used, model.used_group[s_main], group)
    prod = np.empty(n, np.int32)
    prod[fresh] = model.draw_product(group, c[4])
    prod[sess_first] = anchor

    src = np.where(d[1] < 0.5, np.arange(n) - 1, sess_first[sess] + (d[2] * pos_in_sess).astype(np.int64))
    ptr = np.where(repeat, src, np.arange(n))
    while True:  # pointer jumping resolves chains of repeats in O(log chain) passes
        nxt = ptr[ptr]
        if np.array_equal(nxt, ptr):
            break
        ptr = nxt
    prod = prod[ptr]

    # --- time. Within a session: mostly seconds (lognormal, median 25 s), some multi-minute pauses, a
    # few 25-45 min pauses that straddle the 30-min cut. Between sessions: > 31 min, hours to days.
    g = rng.random((2, n))
    gap = np.clip(rng.lognormal(np.log(25.0), 1.0, n), 1.0, 900.0)
    gap = np.where(g[0] > 0.93, 180.0 + 1020.0 * g[1], gap)
    gap = np.where(g[0] > 0.985, 1500.0 + 1200.0 * g[1], gap)
    gap[new_sess] = 0.0
    dur = np.bincount(sess, weights=gap, minlength=n_s)
    n_sess_u = np.bincount(s_user, minlength=n_u)
    # Each user's sessions spread over a random share of the window; the slack left after the session
    # durations and the minimum gaps is split between the inter-session gaps with lognormal weights.
    budget = window_s * rng.uniform(0.2, 0.97, n_u)
    slack = np.maximum(
        budget - np.bincount(s_user, weights=dur, minlength=n_u) - (n_sess_u - 1) * _MIN_SESSION_GAP_S, 0
    )
    first_of_user = pos[sess_first] == 0
    w = np.where(first_of_user, 0.0, rng.lognormal(0.0, 1.2, n_s))
    w_tot = np.bincount(s_user, weights=w, minlength=n_u)
    between = np.where(
        first_of_user, 0.0, _MIN_SESSION_GAP_S + slack[s_user] * w / np.where(w_tot > 0, w_tot, 1.0)[s_user]
    )
    gap[sess_first] = between
    cs = np.cumsum(gap)
    t_rel = cs - cs[ustart][user]
    span = t_rel[ustart + counts - 1]
    # The rare hyperactive user whose minimum gaps alone exceed the window is compressed into it.
    limit = window_s * 0.999
    scale = np.where(span > limit, limit / np.maximum(span, 1e-9), 1.0)
    offset = rng.random(n_u) * (window_s - span * scale)
    t = offset[user] + t_rel * scale[user]
    return user + first_user, t, prod, n_s


def log_start_ms(spec: SynthSpec) -> int:
    ts = pd.Timestamp(spec.start)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return int(ts.value // 1_000_000)


def click_batches(spec: SynthSpec, catalog: pd.DataFrame | None, stats: dict) -> Iterator[pa.RecordBatch]:
    n_clicks, n_users, _ = resolved(spec)
    if catalog is None:
        catalog = make_catalog(spec)
    model = _ClickModel(catalog, spec)
    counts = _user_click_counts(spec)
    start_ms = log_start_ms(spec)
    window_ms = spec.days * 86_400_000
    site = pa.scalar(spec.site, pa.string())
    chunk = int(spec.chunk_clicks)
    stats.update(n_users=n_users, n_sessions=0, n_categories=model.n_categories, n_products=len(catalog))

    def to_batch(user: np.ndarray, t: np.ndarray, prod: np.ndarray) -> pa.RecordBatch:
        ms = np.minimum(start_ms + np.floor(t * 1000.0).astype(np.int64), start_ms + window_ms - 1)
        u0, u1 = int(user[0]), int(user[-1])
        # Users are contiguous in a batch, so their ids are formatted once per user, then gathered.
        uid = pa.array([f"U{i:09d}" for i in range(u0, u1 + 1)], pa.string()).take(pa.array(user - u0))
        idx = pa.array(prod)
        return pa.RecordBatch.from_arrays(
            [
                uid,
                pa.array(ms, CLICK_SCHEMA.field("ts").type),
                model.product_id.take(idx),
                model.title.take(idx),
                model.category.take(idx),
                pa.repeat(site, len(prod)),
            ],
            schema=CLICK_SCHEMA,
        )

    pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    n_pending = 0
    for b, lo in enumerate(range(0, n_users, _USERS_PER_BLOCK)):
        blk = counts[lo : lo + _USERS_PER_BLOCK]
        user, t, prod, n_s = _gen_block(model, blk, lo, window_ms / 1000.0, rng_stream(spec.seed, STREAM_BLOCK, b))
        stats["n_sessions"] += n_s
        pending.append((user, t, prod))
        n_pending += len(user)
        last_block = lo + _USERS_PER_BLOCK >= n_users
        if n_pending < chunk and not last_block:
            continue
        user, t, prod = (np.concatenate(a) for a in zip(*pending))
        cut = 0
        while n_pending - cut >= chunk or (last_block and cut < n_pending):
            end = min(cut + chunk, n_pending)
            yield to_batch(user[cut:end], t[cut:end], prod[cut:end])
            cut = end
        pending = [(user[cut:], t[cut:], prod[cut:])] if cut < n_pending else []
        n_pending -= cut
    assert n_pending == 0


def iter_click_batches(spec: SynthSpec, catalog: pd.DataFrame | None = None) -> Iterator[pa.RecordBatch]:
    """Stream the click log as Arrow record batches of at most `spec.chunk_clicks` rows.

    Columns (CLICK_SCHEMA): user_id, ts (timestamp[ms, UTC] in [start, start+days)), product_id, title,
    category, site. Exactly `spec.n_clicks` rows in total, ordered by user then time. `catalog` defaults
    to `make_catalog(spec)`; any DataFrame with product_id, title, category works (condition and
    free_shipping are used when present).
    """
    return click_batches(spec, catalog, {})
