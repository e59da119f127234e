"""Product-title normalization (paper §3.1), identical in pure Python and in Spark SQL.

``normalize_title("Cámara Réflex p/ Niño, 2 piezas!!") == "camara reflex p nino 2 piezas"``

Steps, in this order:

1. lowercase (Python ``str.lower``; Spark ``lower``);
2. fold accents and ligatures with one fixed table (``FOLD_TABLE``): "á"->"a", "ñ"->"n", "ı"->"i",
   "ß"->"ss", "æ"->"ae", "ﬁ"->"fi", "²"->"2"; combining marks, soft hyphens, zero-width characters and
   apostrophes are deleted ("L'Oréal" -> "loreal", "men's" -> "mens");
3. every run of characters that is not a Unicode letter or number becomes one space;
4. split on spaces, drop the language's stopwords, join with single spaces.

Spark has no Unicode normalization (NFD), so step 2 is an explicit table computed once, here, from
``unicodedata`` and applied by ``str.translate`` in Python and by ``translate`` (+ ``replace`` for the
few one-to-many entries) in Spark. The table is built from compatibility decompositions of old,
stable Unicode blocks, so it does not change between Python versions.

"Letter or number" is Unicode general category L* or N*: Java regex ``[\\p{L}\\p{N}]`` and Python
``[^\\W_]`` (``str.isalnum``). The two engines agree on every code point that both their Unicode
databases know; they can differ only on characters assigned after the older one (Java 17: Unicode 13,
Python 3.11: Unicode 14, Spark's ICU ``lower``: Unicode 17), which the tests check exhaustively.
Lowercasing is locale-independent on both sides: "İ" becomes "i" + U+0307 (deleted in step 2). With
``spark.sql.icu.caseMappings.enabled=false`` Spark lowercases in the JVM's default locale; a Turkish
one gives "i"/"ı" for "İ"/"I", folded to "i", so the result is the same (checked by hand, tr_TR JVM).
Greek final sigma is folded to "σ" so that context-dependent lowercasing cannot matter.

Letters of other scripts (Greek, Cyrillic, CJK, ...) are kept as they are; their combining marks
outside the Latin diacritic blocks become spaces.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:  # keep pyspark out of the inference-time import path
    from pyspark.sql import Column

SUPPORTED_LANGUAGES: tuple[str, ...] = ("en", "es", "pt", "tr")

# Blocks whose compatibility decomposition (minus combining marks) folds to ASCII letters/digits:
# Latin-1 Supplement, Latin Extended-A/B, Latin Extended Additional, super/subscripts,
# Latin ligatures (ﬁ, ﬂ) and fullwidth ASCII.
_FOLD_BLOCKS = ((0x00A0, 0x024F), (0x1E00, 0x1EFF), (0x2070, 0x209F), (0xFB00, 0xFB06), (0xFF01, 0xFF5E))
# Letters without a decomposition, folded by hand; "ς" -> "σ" removes final-sigma context rules.
_FOLD_EXTRA = {
    "ı": "i",
    "ø": "o",
    "đ": "d",
    "ð": "d",
    "ł": "l",
    "ħ": "h",
    "ŧ": "t",
    "ß": "ss",
    "æ": "ae",
    "œ": "oe",
    "þ": "th",
    "ς": "σ",
}
# Deleted, not turned into spaces, so words stay whole: combining marks (incl. U+0307 left by
# lowercasing "İ"), soft hyphen and zero-width characters, apostrophes.
_DELETE_RANGES = (
    (0x0300, 0x036F),
    (0x1AB0, 0x1AFF),
    (0x1DC0, 0x1DFF),
    (0x20D0, 0x20FF),
    (0xFE20, 0xFE2F),
    (0x200B, 0x200D),
)
_DELETE_CHARS = "\u00ad\u2060\ufeff" + "'`\u00b4\u02bc\u2018\u2019"


def _build_fold_table() -> dict[str, str]:
    table: dict[str, str] = {}
    for lo, hi in _FOLD_BLOCKS:
        for cp in range(lo, hi + 1):
            ch = chr(cp)
            folded = "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c))
            if folded and folded != ch and folded.isascii() and folded.isalnum():
                table[ch] = folded.lower()
    table.update(_FOLD_EXTRA)
    for lo, hi in _DELETE_RANGES:
        table.update(dict.fromkeys(map(chr, range(lo, hi + 1)), ""))
    table.update(dict.fromkeys(_DELETE_CHARS, ""))
    return table


FOLD_TABLE: dict[str, str] = _build_fold_table()
_PY_FOLD = str.maketrans(FOLD_TABLE)
# Python \w is str.isalnum() plus "_", so [\W_] is exactly "not a letter or number".
_PY_NON_ALNUM = re.compile(r"[\W_]+")
_SPARK_NON_ALNUM = r"[^\p{L}\p{N}]+"


def _fold(title: str) -> list[str]:
    """Steps 1-3 and the split (no stopwords)."""
    return _PY_NON_ALNUM.sub(" ", title.lower().translate(_PY_FOLD)).split()


@lru_cache(maxsize=None)
def stopwords(language: str) -> frozenset[str]:
    """The language's stopwords, normalized like titles (so "él" is stored as "el")."""
    if language not in SUPPORTED_LANGUAGES:
        raise ValueError(f"unsupported language {language!r}; supported: {', '.join(SUPPORTED_LANGUAGES)}")
    text = resources.files("prodemb").joinpath("stopwords", f"{language}.txt").read_text(encoding="utf-8")
    words = set()
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        tokens = _fold(line)
        if len(tokens) != 1:  # a stopword must stay one token, or it could never match
            raise ValueError(f"stopword {line!r} ({language}) normalizes to {tokens}, not one word")
        words.add(tokens[0])
    return frozenset(words)


def normalize_title(title: str | None, language: str = "es") -> str:
    """Normalized title: lowercase, accents folded, no punctuation or stopwords. None -> ""."""
    if title is None or (isinstance(title, float) and title != title):  # None or NaN (pandas missing)
        return ""
    if not isinstance(title, str):
        raise TypeError(f"title must be str or None, got {type(title).__name__}")
    stop = stopwords(language)
    return " ".join(t for t in _fold(title) if t not in stop)


def normalize_titles(titles: Iterable[str | None], language: str = "es") -> list[str]:
    """``normalize_title`` over many titles (stopwords looked up once)."""
    stopwords(language)  # fail fast on an unknown language, even for an empty input
    return [normalize_title(t, language) for t in titles]


def normalize_title_col(col: "Column | str", language: str = "es") -> "Column":
    """``normalize_title`` as a Spark column expression (SQL functions only, no Python UDF)."""
    from pyspark.sql import functions as F

    stop = sorted(stopwords(language))
    one_to_one = {k: v for k, v in FOLD_TABLE.items() if len(v) == 1}
    deleted = "".join(k for k, v in FOLD_TABLE.items() if v == "")
    expanded = {k: v for k, v in FOLD_TABLE.items() if len(v) > 1}

    c = F.col(col) if isinstance(col, str) else col
    c = F.lower(F.coalesce(c.cast("string"), F.lit("")))
    # translate: characters of `from` beyond the length of `to` are deleted.
    c = F.translate(c, "".join(one_to_one) + deleted, "".join(one_to_one.values()))
    for src, dst in sorted(expanded.items()):  # one-to-many folds (ß -> ss); translate is one-to-one
        c = F.replace(c, F.lit(src), F.lit(dst))
    c = F.regexp_replace(c, _SPARK_NON_ALNUM, " ")
    # "" is dropped with the stopwords: it is what split leaves for leading/trailing/empty input.
    # A literal list of more than 10 values becomes a hash-set lookup (InSet) in the optimizer.
    tokens = F.filter(F.split(c, " "), lambda t: ~t.isin(["", *stop]))
    return F.array_join(tokens, " ")
