"""Title normalization: hand examples, and pure Python == Spark SQL on every real title and code point."""

from __future__ import annotations

import json
import re
import unicodedata

import pandas as pd
import pytest

from prodemb.text import SUPPORTED_LANGUAGES, normalize_title, normalize_title_col, normalize_titles, stopwords
from tests.conftest import shared_data

ES = [
    ("Cámara Réflex p/ Niño, 2 piezas!!", "camara reflex p nino 2 piezas"),
    ("iPhone 12 Pro-Max 128GB", "iphone 12 pro max 128gb"),
    ("  Auriculares   Inalámbricos\tcon Micrófono\n", "auriculares inalambricos microfono"),
    ("Pingüino ÁÉÍÓÚ Ñandú", "pinguino aeiou nandu"),
    ("Ca\u0301mara decomposed", "camara decomposed"),  # NFD input: combining accent deleted
    ("Xiaomi Mi TV Stick", "xiaomi mi tv stick"),  # "mi" is not a stopword
    ("El Té de la Abuela", "te abuela"),  # té (tea) survives, el/de/la do not
    ("Parlante sin cable y con luz", "parlante sin cable luz"),
    ("Straße ÆON ﬁlm m² 3ª Generación", "strasse aeon film m2 3a generacion"),
    ("L'Oréal Paris", "loreal paris"),  # apostrophes deleted, not spaces
    ("Cable_USB-C 1.5m", "cable usb c 1 5m"),
    ("soft\u00adhyphen zero\u200bwidth", "softhyphen zerowidth"),
    ("de la para", ""),
    ("¡¿...?!", ""),
    ("", ""),
    (None, ""),
]
EN = [
    ("SET OF 3 CAKE TINS PANTRY DESIGN ", "set 3 cake tins pantry design"),
    ("The Lord of the Rings: The Fellowship of the Ring (2001)", "lord rings fellowship ring 2001"),
    ("MEN'S T-LIGHT HOLDER", "mens t light holder"),
    ("Over-Ear Headphones, 50% OFF", "over ear headphones 50 off"),
    ("Ноутбук ASUS 小米 ΟΔΟΣ", "ноутбук asus 小米 οδοσ"),  # other scripts kept; final sigma folded
]
TR = [
    ("Palette Kalıcı Doğal Renkler 10-4 PAPATYA", "palette kalici dogal renkler 10 4 papatya"),
    ("İÇİNDE IŞIK ve Su için", "icinde isik su"),  # İ -> i (not "i" + U+0307), ı -> i
    ("Erikli Su 12x0,5 lt", "erikli su 12x0 5 lt"),  # "şu" is not listed: it would fold to su
    ("Fairy Hepsi Bir Arada", "fairy hepsi bir arada"),
    ("Eti Burçak 4'lü", "eti burcak 4lu"),
]
EXAMPLES = [(t, e, "es") for t, e in ES] + [(t, e, "en") for t, e in EN] + [(t, e, "tr") for t, e in TR]


def spark_normalize(spark, titles, language):
    """normalize_title_col over the titles in one Spark job: {title: normalized}."""
    df = spark.createDataFrame(pd.DataFrame({"title": pd.Series(titles, dtype=object)}), "title string")
    out = df.select("title", normalize_title_col("title", language).alias("n")).toPandas()
    return dict(zip(out["title"], out["n"]))


def assert_parity(spark, titles, language, min_titles):
    titles = sorted({t for t in titles if isinstance(t, str)})
    assert len(titles) >= min_titles, f"only {len(titles)} titles read"
    got = spark_normalize(spark, titles, language)
    expected = normalize_titles(titles, language)
    bad = [(t, got[t], e) for t, e in zip(titles, expected) if got[t] != e]
    assert not bad, f"{len(bad)}/{len(titles)} differ (title, spark, python): {bad[:5]}"


@pytest.mark.parametrize("title,expected,language", EXAMPLES)
def test_examples_python(title, expected, language):
    assert normalize_title(title, language) == expected


def test_examples_spark(spark):
    for language in ("es", "en", "tr"):
        cases = [(t, e) for t, e, lang in EXAMPLES if lang == language]
        got = spark_normalize(spark, [t for t, _ in cases], language)
        assert {t: got[t] for t, _ in cases} == dict(cases)


def test_no_python_udf(spark):
    from pyspark.sql import functions as F

    df = spark.range(3).select(F.lit("Cámara Réflex").alias("t")).select(normalize_title_col("t"))
    plan = df._jdf.queryExecution().executedPlan().toString()
    assert "EvalPython" not in plan and "PythonUDF" not in plan, plan
    assert df.first()[0] == "camara reflex"


def test_normalize_titles_and_missing_values():
    assert normalize_titles(["Hola Mundo", None, float("nan"), "El Niño"]) == ["hola mundo", "", "", "nino"]
    assert normalize_titles([], "tr") == []
    with pytest.raises(TypeError):
        normalize_title(12)


def test_stopwords():
    for language in SUPPORTED_LANGUAGES:
        words = stopwords(language)
        assert len(words) >= 50
        # stored normalized (folded to ASCII, one token each): a title of stopwords only is empty
        assert all(re.fullmatch("[a-z]+", w) for w in words), sorted(words)
        assert normalize_title(" ".join(sorted(words)).upper(), language) == ""
    assert {"el", "de", "la", "y", "para", "con", "mis"} <= stopwords("es")  # "él" is stored as "el"
    assert not {"mi", "te", "sin", "mas"} & stopwords("es")
    assert {"ve", "ile", "icin"} <= stopwords("tr") and "su" not in stopwords("tr")
    assert {"the", "of", "and"} <= stopwords("en") and not {"t", "off", "no"} & stopwords("en")
    assert {"e", "nao"} & stopwords("pt") == {"e"}  # "é" is stored as "e"


@pytest.mark.parametrize(
    "call",
    [
        lambda: stopwords("de"),
        lambda: normalize_title("x", "de"),
        lambda: normalize_titles([], "de"),
        lambda: normalize_title_col("x", "de"),
    ],
)
def test_unknown_language(call):
    with pytest.raises(ValueError, match="supported: en, es, pt, tr"):
        call()


# ---- parity on the real titles in ../shared/data (one Spark job per data set) ------------------------


def test_parity_mercadolibre(spark):
    folder = shared_data("meli-api-items")
    titles = []
    for name in ("audio_items_MLA_2024-03.csv", "chromecast_results_MLA_2024-01.csv"):
        titles += pd.read_csv(folder / name, usecols=["title"])["title"].tolist()
    titles += [item["title"] for item in json.loads((folder / "chromecast_search_MLA_2024-11.json").read_text())]
    assert_parity(spark, titles, "es", min_titles=1500)


def test_parity_uci_online_retail(spark):
    files = sorted(shared_data("uci-online-retail", "by-day").glob("*.csv"))
    titles = pd.concat(pd.read_csv(f, usecols=["Description"], dtype=str)["Description"] for f in files)
    assert_parity(spark, titles.tolist(), "en", min_titles=3500)


def test_parity_hepsiburada(spark):
    meta = json.loads(shared_data("hepsiburada-products-meta", "meta.json").read_text(encoding="utf-8"))["meta"]
    assert_parity(spark, [r.get("name") for r in meta], "tr", min_titles=10000)


def test_parity_movielens(spark):
    movies = pd.read_csv(shared_data("movielens-latest-small", "movies.csv"))
    assert_parity(spark, movies["title"].tolist(), "en", min_titles=9000)


@pytest.mark.slow
def test_parity_every_code_point(spark):
    """Every code point inside a word: the engines may differ only where one Unicode database is older.

    Java 17's regex knows Unicode 13, Python 3.11's re Unicode 14, Spark's ICU lower() Unicode 17; a
    character unassigned on one side (Python category Cn, or Java Character.isDefined false) can
    legitimately be treated differently. Anything else is a bug in the folding table or the classes.
    """
    chars = [chr(cp) for cp in range(1, 0x110000) if not 0xD800 <= cp <= 0xDFFF]
    words = [f"A{c}B" for c in chars]
    # Words are independent, so check them 256 to a row (fast), then one per row where a row differs.
    rows = {" ".join(words[i : i + 256]): words[i : i + 256] for i in range(0, len(words), 256)}
    got = spark_normalize(spark, list(rows), "en")
    suspects = [w for row, e in zip(rows, normalize_titles(rows, "en")) if got[row] != e for w in rows[row]]
    got = spark_normalize(spark, suspects, "en")
    java_char = spark._jvm.java.lang.Character
    unexplained = [
        (f"U+{ord(w[1]):04X}", unicodedata.name(w[1], "?"), got[w], e)
        for w, e in zip(suspects, normalize_titles(suspects, "en"))
        if got[w] != e and unicodedata.category(w[1]) != "Cn" and java_char.isDefined(ord(w[1]))
    ]
    assert not unexplained, f"{len(unexplained)} differ (char, spark, python): {unexplained[:5]}"
