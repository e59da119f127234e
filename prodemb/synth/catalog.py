"""The catalog: one title per product from its category's vocabulary, and the noisy downstream labels
(condition, free shipping, price) that depend on title words, brand tier, category and price."""

from __future__ import annotations

import numpy as np
import pandas as pd

from prodemb.synth.spec import STREAM_CATALOG, SynthSpec, resolved, rng_stream
from prodemb.synth.vocabulary import (
    AMBIGUOUS_WORDS,
    CATEGORIES,
    FREE_SHIPPING_TAG,
    NEW_WORDS,
    PRICE_WORDS,
    PROMO_WORDS,
    USED_WORDS,
)

_TIER_PRICE = (0.7, 1.0, 1.6)  # price multiplier of brand tiers 0, 1, 2


def _fill(pattern: str, code: int) -> str:
    """Replace '#' by digits and '@' by letters taken from `code` (deterministic per product)."""
    if "#" not in pattern and "@" not in pattern:
        return pattern
    out = []
    for ch in pattern:
        if ch == "#":
            code, d = divmod(code, 10)
            out.append(str(d))
        elif ch == "@":
            code, d = divmod(code, 26)
            out.append(chr(97 + d))
        else:
            out.append(ch)
    word = "".join(out)
    return word[:1].upper() + word[1:]  # sellers' Title Case: "Ds-2ce16d", "Rt38k"


def _pick(options, u: float):
    return options[min(int(u * len(options)), len(options) - 1)]


def _title(cat: dict, u: list[float], code: int, used: bool) -> tuple[str, float, int]:
    """One product title from the category vocabulary; returns (title, type median price, brand tier).

    `u` holds the product's pre-drawn uniforms, so the Python work here consumes no RNG state.
    """
    types = cat["types"]
    t = types[min(int(u[0] ** 1.3 * len(types)), len(types) - 1)]  # earlier types are more common
    noun, median, brands, models, pools = t["noun"], t["median_price"], t["brands"], t["models"], t["pools"]
    brand_last = t.get("brand_last", False)
    brand, tier = None, 0
    if brands and u[1] > 0.1:  # ~10% unbranded ("genérico") listings even for branded goods
        brand = _pick(list(brands), u[2])
        tier = brands[brand]
    model = None
    if isinstance(models, dict):
        if brand is not None:
            model = _pick(models[brand], u[3])
    elif models and (brand_last or u[4] > 0.15):  # a book title is never left out
        model = _pick(models, u[3])
    if model is not None:
        model = _fill(model, code)
    attrs = [
        _fill(_pick(pool, u[6 + 2 * i]), code >> (8 * i)) for i, pool in enumerate(pools[:5]) if u[5 + 2 * i] < 0.7
    ]

    parts = [noun]
    if brand_last:  # books: "Libro Rayuela - Julio Cortázar - Alfaguara Tapa Blanda"
        parts += [model] if model else []
        parts += ["-", brand] if brand else []
    else:
        parts += [brand] if brand else []
        parts += [model] if model else []
    if attrs:
        if len(attrs) >= 2 and u[15] < 0.12:  # "Negro/Azul", "128gb/4gb Ram"
            attrs[-2:] = [attrs[-2] + "/" + attrs[-1]]
        if u[16] < 0.2:  # "... Galaxy A54 - 128gb Negro"
            parts.append("-")
        parts += attrs

    # Condition words: the latent label leaks into the title only sometimes (and sometimes wrongly).
    cond_word = None
    if used and u[17] < 0.6:
        cond_word = _pick(USED_WORDS, u[18])
    elif not used and u[17] < 0.02:
        cond_word = _pick(AMBIGUOUS_WORDS, u[18])
    elif not used and u[17] > 0.75:
        cond_word = _pick(NEW_WORDS, u[18])
    if cond_word:
        if u[19] < 0.25:
            parts.insert(1, cond_word)  # "Celular Usado Samsung ..."
        else:
            parts.append(cond_word)
    if u[20] < 0.06:
        parts.append(_pick(PROMO_WORDS, u[21]))

    title = " ".join(parts)
    if u[22] < 0.05:  # sellers' casing habits: normalization must cope
        title = title.lower()
    elif u[22] > 0.97:
        title = title.upper()
    return title, float(median), tier


def _price_multiplier(title: str) -> float:
    m = 1.0
    for tok in set(title.lower().replace("/", " ").split()):
        m *= PRICE_WORDS.get(tok, 1.0)
    return m


def make_catalog(spec: SynthSpec) -> pd.DataFrame:
    """Products with titles and noisy downstream labels.

    Columns: product_id (str), title (str), category (str), condition ("new"/"used"),
    free_shipping (bool), price (float). Deterministic for `spec.seed`, independent of click settings.
    """
    _, _, k = resolved(spec)
    n = spec.n_products
    cats = CATEGORIES[:k]
    rng = rng_stream(spec.seed, STREAM_CATALOG)

    # Category per product; the first k products guarantee that no category is empty.
    share = np.array([c["share"] for c in cats])
    cat_of = np.concatenate([np.arange(min(k, n)), rng.choice(k, size=n - min(k, n), p=share / share.sum())])
    cat_of = rng.permutation(cat_of)
    used_rate = np.array([c["used"] for c in cats])
    used = rng.random(n) < used_rate[cat_of]
    uniforms = rng.random((n, 24)).tolist()
    codes = rng.integers(0, 2**62, size=n).tolist()

    titles, medians, tiers = [], np.empty(n), np.empty(n)
    for i in range(n):
        t, med, tier = _title(cats[cat_of[i]], uniforms[i], codes[i], bool(used[i]))
        titles.append(t)
        medians[i], tiers[i] = med, tier

    # Price: type median x brand tier x title words x condition, with multiplicative noise.
    mult = np.array([_price_multiplier(t) for t in titles])
    price = medians * np.take(_TIER_PRICE, tiers.astype(int)) * mult * np.where(used, 0.62, 1.0)
    price *= rng.lognormal(0.0, 0.3, n)
    price = np.where(price >= 1000, np.round(price, -1), np.round(price, 2))

    # Free shipping: more likely for premium brands, pricey items, some categories; less for used.
    ship_bias = np.array([c["ship"] for c in cats])[cat_of]
    logit = (
        -0.2
        + ship_bias
        + 0.7 * (tiers - 1)
        + 1.1 * np.clip(np.log(price / 30_000), -3, 3)
        - 0.6 * used
        + rng.normal(0.0, 0.6, n)
    )
    free_shipping = rng.random(n) < 1 / (1 + np.exp(-logit))
    # A few sellers advertise it in the title (and a few stale titles still do after it ended).
    tag = np.where(free_shipping, rng.random(n) < 0.08, rng.random(n) < 0.005)
    titles = [f"{t} {FREE_SHIPPING_TAG}" if g else t for t, g in zip(titles, tag.tolist())]

    # Unique MercadoLibre-like ids: site + 10 digits.
    ids = rng.choice(9_000_000_000, size=n, replace=False) + 1_000_000_000
    return pd.DataFrame(
        {
            "product_id": [f"{spec.site}{x}" for x in ids.tolist()],
            "title": titles,
            "category": [cats[c]["name"] for c in cat_of.tolist()],
            "condition": np.where(used, "used", "new").astype(object),
            "free_shipping": free_shipping.astype(bool),
            "price": price.astype(float),
        }
    )
