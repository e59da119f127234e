"""The generator's vocabulary, loaded once from ``vocabulary.yaml`` (shipped in the package): categories and
their product types, the words that tell a product's condition, promotion words, the title words that move
the price, and the free-shipping tag."""

from __future__ import annotations

from importlib.resources import files

import yaml

_DATA = yaml.safe_load(files(__package__).joinpath("vocabulary.yaml").read_text(encoding="utf-8"))

CATEGORIES: list[dict] = _DATA["categories"]
CATEGORY_NAMES: tuple[str, ...] = tuple(c["name"] for c in CATEGORIES)
# Words that tell the condition. Real used listings often say nothing (see meli-api-items), so used items
# carry one of these only sometimes, and a few new items carry an ambiguous one.
USED_WORDS: list[str] = _DATA["condition_words"]["used"]
AMBIGUOUS_WORDS: list[str] = _DATA["condition_words"]["ambiguous"]
NEW_WORDS: list[str] = _DATA["condition_words"]["new"]
PROMO_WORDS: list[str] = _DATA["promo_words"]
PRICE_WORDS: dict[str, float] = _DATA["price_words"]  # title words that move the price (readable from the title)
FREE_SHIPPING_TAG: str = _DATA["free_shipping_tag"]
