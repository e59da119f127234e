"""SentencePiece tokenizer: training (vocab fallback, determinism), encoding, and the CLI job."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import pickle
import random
import re
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sentencepiece as spm

from prodemb.config import TokenizerConfig
from prodemb.text import normalize_title
from prodemb.tokenizer import PAD_ID, Tokenizer, _select_titles, train_from_catalog, train_tokenizer
from tests.conftest import REPO_ROOT, shared_data

NOUNS = [
    "Cámara Réflex",
    "Zapatilla",
    "Teléfono Celular",
    "Funda",
    "Cargador",
    "Auriculares",
    "Mochila",
    "Lente",
    "Notebook",
    "Remera",
    "Pantalón",
    "Reloj",
    "Parlante",
    "Cable",
    "Mouse",
    "Teclado",
]
BRANDS = ["Canon", "Nike", "Samsung", "Adidas", "Sony", "Lenovo", "Xiaomi", "Motorola", "JBL", "Logitech"]
ADJS = ["Negro", "Rojo", "Inalámbrico", "Bluetooth", "Niño", "Mujer", "Hombre", "Original", "Pro", "Nuevo"]
EXTRAS = ["128gb", "4k", "usb tipo c", "talle 42", "50mm", "1.5 metros", "x2 unidades", "wifi"]


SYLLABLES = [
    "ca",
    "ma",
    "ra",
    "re",
    "flex",
    "ti",
    "lla",
    "to",
    "no",
    "ga",
    "mo",
    "de",
    "lu",
    "ve",
    "pi",
    "so",
    "ter",
    "cor",
    "ban",
    "dul",
]


def synthetic_titles(n: int = 400, seed: int = 3) -> list[str]:
    """Normalized, Spanish-ish product titles (normalize_title applied to raw ones); ~200 pieces max."""
    rng = random.Random(seed)
    models = ["".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))) for _ in range(150)]
    raw = [
        f"{rng.choice(NOUNS)} {rng.choice(BRANDS)} {rng.choice(models)} de {rng.choice(ADJS)} "
        f"{rng.choice(models)} {rng.choice(EXTRAS)}"
        for _ in range(n)
    ]
    return [normalize_title(t, "es") for t in raw]


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    return synthetic_titles()


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory):
    path = tmp_path_factory.mktemp("tok") / "tokenizer.model"
    info = train_tokenizer(corpus, path, vocab_size=150)
    return info, Tokenizer.load(path)


def spm_max_vocab(titles: list[str], vocab_size: int) -> int:
    """What SentencePiece itself says is the largest vocabulary this corpus supports."""
    with pytest.raises(RuntimeError, match="Vocabulary size too high") as exc:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(titles),
            model_writer=io.BytesIO(),
            vocab_size=vocab_size,
            character_coverage=1.0,
            pad_id=0,
            unk_id=1,
            bos_id=-1,
            eos_id=-1,
            minloglevel=2,
            num_threads=os.cpu_count(),
        )
    return int(re.search(r"<= (\d+)", str(exc.value)).group(1))


def test_too_large_vocab_falls_back_to_the_largest_supported(corpus, tmp_path, caplog):
    out = tmp_path / "runs" / "tokenizer.model"
    with caplog.at_level(logging.WARNING, logger="prodemb.tokenizer"):
        info = train_tokenizer(corpus + ["", "   ", None], out, vocab_size=30_000)
    expected = spm_max_vocab(corpus, 30_000)
    assert info["vocab_size_requested"] == 30_000
    assert info["vocab_size"] == expected < 30_000
    assert "too large" in info["warning"] and any("too large" in r.getMessage() for r in caplog.records)
    assert info["n_titles"] == len(corpus)  # blank titles skipped
    tok = Tokenizer.load(out)
    assert tok.vocab_size == expected and tok.pad_id == PAD_ID == 0
    assert tok.vocab_listing().splitlines()[0] == "<pad>\t0" and len(tok.vocab_listing().splitlines()) == expected
    assert info["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    # One file, and nothing beside it: no temp files, no .vocab that a killed run could leave out of step.
    assert [p.name for p in out.parent.iterdir()] == ["tokenizer.model"]
    out.with_suffix(".vocab").write_text("stale listing of an older model")
    train_tokenizer(corpus, out, vocab_size=30_000)
    assert [p.name for p in out.parent.iterdir()] == ["tokenizer.model"]


def test_too_small_vocab_is_raised_to_the_alphabet(corpus, tmp_path):
    info = train_tokenizer(corpus, tmp_path / "t.model", vocab_size=5)
    alphabet = set("".join(corpus).replace(" ", ""))
    assert info["vocab_size"] == len(alphabet) + 1 + 2  # + "▁" + <pad>, <unk>
    assert "smaller than the corpus alphabet" in info["warning"]
    assert Tokenizer.load(tmp_path / "t.model").vocab_size == info["vocab_size"]


def test_no_titles_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="no non-empty titles"):
        train_tokenizer(["", "  ", None], tmp_path / "t.model", vocab_size=100)


def test_encode_shape_padding_truncation_and_unknowns(trained, corpus):
    info, tok = trained
    assert info["vocab_size"] == tok.vocab_size == 150 and info["warning"] is None
    titles = [corpus[0], "", "zzqqj 日本語 ωμέγα", corpus[1]]
    full = tok.encode(titles, max_len=64)
    assert full.shape == (4, 64) and full.dtype == np.int32
    assert (full[1] == PAD_ID).all()  # empty title: all padding
    for i in (0, 3):  # ids equal SentencePiece's, then padding
        ids = tok._sp.encode(titles[i])
        assert list(full[i, : len(ids)]) == ids and (full[i, len(ids) :] == PAD_ID).all()
        assert PAD_ID not in ids
    assert tok.unk_id in full[2]  # unseen characters become <unk>, no crash
    short = tok.encode(titles, max_len=3)
    assert short.shape == (4, 3) and (short == full[:, :3]).all()  # truncation keeps the first ids
    assert tok.encode([], max_len=5).shape == (0, 5)
    assert (tok.encode([None], max_len=4) == PAD_ID).all()
    # character_coverage=1.0: every training title is covered without <unk>.
    assert tok.unk_id not in tok.encode(corpus, max_len=64)


def test_encode_raw_normalizes_first(trained):
    _, tok = trained
    a = tok.encode_raw(["Cámara RÉFLEX!!", "Funda de Celular"], max_len=16)
    b = tok.encode(["camara reflex", "funda celular"], max_len=16)
    assert (a == b).all() and a[0, 0] != PAD_ID


def test_same_seed_gives_byte_identical_models(corpus, tmp_path):
    # The sample (input_sentence_size < corpus) is drawn with the seed, so it is reproducible too.
    kw = dict(vocab_size=120, input_sentence_size=200, seed=5)
    a = train_tokenizer(corpus, tmp_path / "a.model", **kw)
    b = train_tokenizer(corpus, tmp_path / "b.model", **kw)
    assert a["n_titles_used"] == 200 and a["n_titles"] == len(corpus)
    assert (tmp_path / "a.model").read_bytes() == (tmp_path / "b.model").read_bytes()
    assert a["sha256"] == b["sha256"]
    assert _select_titles(corpus, 200, 5) == _select_titles(corpus, 200, 5)
    assert _select_titles(corpus, 200, 5) != _select_titles(corpus, 200, 6)
    arrow = _select_titles(pa.array(corpus + [None, ""]), 200, 5)
    assert arrow == _select_titles(corpus, 200, 5)  # Arrow input samples the same titles
    # And in a fresh process (SentencePiece's own sampler is not seedable across processes).
    code = (
        "import sys; from tests.test_tokenizer import synthetic_titles; "
        "from prodemb.tokenizer import train_tokenizer; "
        "print(train_tokenizer(synthetic_titles(), sys.argv[1], vocab_size=120, "
        "input_sentence_size=200, seed=5)['sha256'])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "c.model")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == a["sha256"]


def test_round_trip_through_model_proto_and_pickle(trained, corpus):
    _, tok = trained
    again = Tokenizer.from_bytes(tok.model_proto)
    assert again.sha256 == tok.sha256 and again.vocab_size == tok.vocab_size
    assert (again.encode(corpus, 32) == tok.encode(corpus, 32)).all()
    assert (pickle.loads(pickle.dumps(tok)).encode(corpus, 32) == tok.encode(corpus, 32)).all()


def test_train_from_catalog_reads_title_norm(corpus, tmp_path):
    write_catalog(tmp_path / "data", corpus)
    info = train_from_catalog(str(tmp_path / "data"), tmp_path / "tok.model", TokenizerConfig(vocab_size=100, seed=1))
    assert info["vocab_size"] == 100 and info["n_titles"] == len(corpus)
    assert info["catalog"].endswith("catalog")


def write_catalog(data_dir, titles_norm: list[str]) -> None:
    """A catalog table as the sessionize job writes it (a plain folder of Parquet is accepted too)."""
    n = len(titles_norm)
    table = pa.table(
        {
            "site": ["MLA"] * n,
            "product_id": [f"p{i}" for i in range(n)],
            "title": titles_norm,
            "title_norm": titles_norm,
            "category": ["c"] * n,
            "n_events": [1] * n,
        }
    )
    (data_dir / "catalog").mkdir(parents=True)
    pq.write_table(table, data_dir / "catalog" / "part-00000.parquet")


def run_job(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "jobs" / "train_tokenizer.py"), *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_job_end_to_end(corpus, tmp_path):
    write_catalog(tmp_path / "data", corpus)
    out = tmp_path / "runs" / "tokenizer.model"
    res = run_job(
        "--json",
        "--data",
        str(tmp_path / "data"),
        "--output",
        str(out),
        "--vocab-size",
        "500",
        "--set",
        "tokenizer.seed=2",
    )
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 1
    summary = json.loads(lines[0])
    assert summary["vocab_size_requested"] == 500 and summary["path"] == str(out)
    assert summary["n_titles"] == len(corpus) and summary["seed"] == 2
    assert out.exists() and not out.with_suffix(".vocab").exists()
    assert Tokenizer.load(out).vocab_size == summary["vocab_size"]
    if summary["vocab_size"] < 500:  # this small corpus cannot hold 500 pieces: said on stderr too
        assert "too large" in res.stderr and summary["warning"]


def test_job_missing_catalog_or_data_exits_2(tmp_path):
    (tmp_path / "empty").mkdir()
    res = run_job("--data", str(tmp_path / "empty"), "--output", str(tmp_path / "t.model"))
    assert res.returncode == 2 and "catalog" in res.stderr and "not found" in res.stderr
    res = run_job("--data", str(tmp_path / "nope"), "--output", str(tmp_path / "t.model"))
    assert res.returncode == 2 and "does not exist" in res.stderr
    assert not (tmp_path / "t.model").exists()


def test_movielens_titles(tmp_path):
    """Real titles (English): a vocabulary the corpus cannot fill falls back, and encoding works."""
    import pandas as pd

    movies = pd.read_csv(shared_data("movielens-latest-small", "movies.csv"))
    titles = [normalize_title(t, "en") for t in movies["title"]]
    info = train_tokenizer(titles, tmp_path / "ml.model", vocab_size=30_000)
    assert info["vocab_size"] < 30_000 and info["warning"]
    tok = Tokenizer.load(tmp_path / "ml.model")
    ids = tok.encode_raw(list(movies["title"][:50]), max_len=16, language="en")
    assert ids.shape == (50, 16) and (ids[:, 0] != PAD_ID).all()
