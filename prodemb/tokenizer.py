"""SentencePiece tokenizer for normalized product titles (paper §3.1; 30,000 pieces in A.1).

    info = train_tokenizer(titles_norm, "runs/tokenizer.model", vocab_size=30_000)
    tok = Tokenizer.load("runs/tokenizer.model")
    ids = tok.encode(["camara reflex canon"], max_len=32)       # int32 [1, 32], right-padded with 0
    ids = tok.encode_raw(["Cámara Réflex Canon!"], max_len=32)  # raw titles: normalized first

Ids: ``<pad>`` = 0 (the encoder's embedding uses ``padding_idx=0``), ``<unk>`` = 1, no BOS/EOS.

Training is deterministic for a seed on a given machine: when the corpus has more titles than
``input_sentence_size``, the sample is drawn here with NumPy and the seed, and SentencePiece gets
exactly that sample (its own ``shuffle_input_sentence`` reservoir sampler ignores
``set_random_generator_seed`` in 0.2.3, so the same seed gave different models run to run). Without
sampling, SentencePiece training is deterministic for a fixed ``num_threads``; the thread count is
stored in the model and can change the float sums of the EM steps, so byte-identical models need the
same thread count.

``character_coverage`` is 1.0: titles are already lowercased and accent-folded, so the alphabet is
small, and the default 0.9995 could map rare but real letters of a small catalog ("w", "k", "x") to
``<unk>``. Letters of other scripts that survive normalization each get a piece.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np
import sentencepiece as spm

from prodemb import fs

if TYPE_CHECKING:  # pyspark (via prodemb.tables) stays out of the inference-time import path
    from prodemb.config import TokenizerConfig

log = logging.getLogger(__name__)

PAD_ID = 0
UNK_ID = 1
MODEL_TYPES = ("unigram", "bpe", "char", "word")

_TOO_HIGH = re.compile(r"Vocabulary size too high \((\d+)\)\. Please set it to a value <= (\d+)")
_TOO_LOW = re.compile(r"Vocabulary size is smaller than required_chars\. (\d+) vs (\d+)")
_MAX_ATTEMPTS = 4


def vocab_path_for(model_path: str | Path) -> str:
    """``runs/tokenizer.model`` -> ``runs/tokenizer.vocab`` (SentencePiece's prefix convention): the listing
    this project no longer writes beside the model (``Tokenizer.vocab_listing`` gives it)."""
    p = str(model_path)
    return p.removesuffix(".model") + ".vocab"


def _select_titles(titles_norm: Any, input_sentence_size: int, seed: int) -> tuple[list[str], int]:
    """Non-blank titles, sampled down to ``input_sentence_size`` (0 = all) with the seed.

    Returns (titles to train on, number of non-blank titles before sampling). A pyarrow array is
    filtered and sampled in Arrow, so only the sample becomes Python strings.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(titles_norm, (pa.Array, pa.ChunkedArray)):
        arr = titles_norm
        keep = pc.and_(pc.is_valid(arr), pc.not_equal(pc.utf8_trim_whitespace(arr), ""))
        arr = arr.filter(pc.fill_null(keep, False))
        n = len(arr)
        if input_sentence_size and n > input_sentence_size:
            idx = np.sort(np.random.default_rng(seed).choice(n, size=input_sentence_size, replace=False))
            arr = arr.take(pa.array(idx))
        return arr.to_pylist(), n
    kept = [t for t in titles_norm if isinstance(t, str) and t.strip()]
    n = len(kept)
    if input_sentence_size and n > input_sentence_size:
        idx = np.sort(np.random.default_rng(seed).choice(n, size=input_sentence_size, replace=False))
        kept = [kept[i] for i in idx]
    return kept, n


def _train_once(
    titles: list[str], vocab_size: int, model_type: str, num_threads: int, character_coverage: float
) -> bytes:
    buf = _BytesWriter()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(titles),
        model_writer=buf,
        vocab_size=vocab_size,
        model_type=model_type,
        character_coverage=character_coverage,
        # The sample was drawn above (seeded); SentencePiece takes all of it, in order.
        input_sentence_size=0,
        shuffle_input_sentence=False,
        num_threads=num_threads,
        pad_id=PAD_ID,
        unk_id=UNK_ID,
        bos_id=-1,
        eos_id=-1,
        pad_piece="<pad>",
        unk_piece="<unk>",
        hard_vocab_limit=True,  # vocab_size is exact: the embedding matrix is sized from it
        minloglevel=2,  # errors only; they come back as exceptions anyway
    )
    return buf.getvalue()


class _BytesWriter:
    """What ``model_writer=`` needs: a ``write(bytes)`` method."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []

    def write(self, data: bytes) -> None:
        self._chunks.append(bytes(data))

    def getvalue(self) -> bytes:
        return b"".join(self._chunks)


def train_tokenizer(
    titles_norm: Iterable[str],
    output_path: str | Path,
    vocab_size: int = 30_000,
    model_type: str = "unigram",
    input_sentence_size: int = 2_000_000,
    seed: int = 0,
    num_threads: int | None = None,
    character_coverage: float = 1.0,
) -> dict[str, Any]:
    """Train a SentencePiece model on normalized titles; write ``output_path`` atomically, one file: the
    model is the whole tokenizer (SentencePiece's ``.vocab`` listing is derived from it on demand,
    ``Tokenizer.vocab_listing``, so no second file can disagree with it after a killed run; a stale
    ``.vocab`` left beside it by an older version is removed).

    Blank titles are skipped. When the corpus cannot support ``vocab_size`` pieces, the largest size
    it supports is used instead (a WARNING is logged and returned under ``"warning"``); a size below
    the alphabet (+ special pieces) is raised to that minimum, also with a warning.

    ``titles_norm`` may be any iterable of str or a pyarrow (Chunked)Array of strings.
    Returns vocab_size_requested, vocab_size (actual), n_titles (non-blank titles given),
    n_titles_used (after sampling), seconds, path, sha256 (of the model file), warning.
    """
    t0 = time.perf_counter()
    if model_type not in MODEL_TYPES:
        raise ValueError(f"model_type must be one of {MODEL_TYPES}, got {model_type!r}")
    if vocab_size < 3:
        raise ValueError(f"vocab_size must be at least 3 (<pad>, <unk> and one piece), got {vocab_size}")
    if input_sentence_size < 0:
        raise ValueError(f"input_sentence_size must be >= 0 (0 = all titles), got {input_sentence_size}")
    output_path = str(output_path)
    titles, n_titles = _select_titles(titles_norm, input_sentence_size, seed)
    if not titles:
        raise ValueError("no non-empty titles to train the tokenizer on")
    threads = max(1, min(num_threads or os.cpu_count() or 1, 1024))
    spm.set_random_generator_seed(seed)  # no random step is left in training, but be explicit

    size, warnings = vocab_size, []
    for attempt in range(_MAX_ATTEMPTS):
        try:
            model = _train_once(titles, size, model_type, threads, character_coverage)
            break
        except RuntimeError as exc:
            msg = str(exc)
            high, low = _TOO_HIGH.search(msg), _TOO_LOW.search(msg)
            if high and attempt < _MAX_ATTEMPTS - 1 and int(high.group(2)) < size:
                new = int(high.group(2))
                warnings.append(
                    f"vocab_size {size} is too large for this corpus ({len(titles)} titles); "
                    f"using the largest size it supports, {new}"
                )
            elif low and attempt < _MAX_ATTEMPTS - 1 and int(low.group(2)) > size:
                new = int(low.group(2))
                warnings.append(
                    f"vocab_size {size} is smaller than the corpus alphabet plus special "
                    f"pieces; using the smallest size that holds them, {new}"
                )
            else:
                raise
            log.warning("%s", warnings[-1])
            size = new

    sp = spm.SentencePieceProcessor(model_proto=model)
    fs.write_bytes(output_path, model)
    fs.remove(vocab_path_for(output_path))  # an older version's listing, out of step with this model
    return {
        "vocab_size_requested": vocab_size,
        "vocab_size": sp.get_piece_size(),
        "model_type": model_type,
        "n_titles": n_titles,
        "n_titles_used": len(titles),
        "seed": seed,
        "num_threads": threads,
        "seconds": round(time.perf_counter() - t0, 3),
        "path": str(output_path),
        "sha256": hashlib.sha256(model).hexdigest(),
        "warning": "; ".join(warnings) or None,
    }


def train_from_catalog(data_dir: str, output_path: str | Path, cfg: "TokenizerConfig") -> dict[str, Any]:
    """Train on ``DIR/catalog`` ``title_norm`` (the sessionize job's catalog table)."""
    from prodemb.tables import read_table_arrow, table_version

    catalog = fs.join(data_dir, "catalog")
    if not fs.is_dir(data_dir):
        raise FileNotFoundError(f"data folder {data_dir} does not exist (run jobs/sessionize.py first)")
    if not fs.exists(catalog):
        raise FileNotFoundError(f"catalog table {catalog} not found (run jobs/sessionize.py first)")
    table = read_table_arrow(catalog, ["title_norm"])
    with fs.output_lock(output_path, "train_tokenizer"):
        info = train_tokenizer(
            table.column("title_norm"),
            output_path,
            vocab_size=cfg.vocab_size,
            model_type=cfg.model_type,
            input_sentence_size=cfg.input_sentence_size,
            seed=cfg.seed,
        )
    info["catalog"] = catalog
    info["catalog_version"] = table_version(catalog)
    return info


class Tokenizer:
    """A trained SentencePiece model: normalized titles -> padded int32 id matrices."""

    def __init__(self, model_proto: bytes):
        self._proto = bytes(model_proto)
        self._sp = spm.SentencePieceProcessor(model_proto=self._proto)
        if self._sp.pad_id() != PAD_ID:
            raise ValueError(
                f"tokenizer model must have pad_id {PAD_ID}, has {self._sp.pad_id()} "
                "(train it with prodemb.tokenizer.train_tokenizer)"
            )

    @classmethod
    def load(cls, path: str | Path) -> "Tokenizer":
        return cls(fs.read_bytes(path))

    @classmethod
    def from_bytes(cls, model_proto: bytes) -> "Tokenizer":
        return cls(model_proto)

    @property
    def vocab_size(self) -> int:
        return self._sp.get_piece_size()

    @property
    def pad_id(self) -> int:
        return PAD_ID

    @property
    def unk_id(self) -> int:
        return self._sp.unk_id()

    @property
    def model_proto(self) -> bytes:
        """The serialized model (what ``.model`` files hold): ship it inside an MLflow model."""
        return self._proto

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self._proto).hexdigest()

    def vocab_listing(self) -> str:
        """SentencePiece's ``.vocab`` text: one ``piece<TAB>score`` line per id, in id order."""
        return "".join(f"{self._sp.id_to_piece(i)}\t{self._sp.get_score(i):g}\n" for i in range(self.vocab_size))

    def pieces(self, title_norm: str) -> list[str]:
        """The pieces of one normalized title (for inspection)."""
        return self._sp.encode(title_norm, out_type=str)

    def encode(self, titles_norm: Sequence[str], max_len: int) -> np.ndarray:
        """int32 [n, max_len]: ids of each normalized title, truncated to max_len, right-padded with 0.

        None (or any non-str) counts as an empty title: all padding.
        """
        if max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {max_len}")
        titles = [t if isinstance(t, str) else "" for t in titles_norm]
        n = len(titles)
        out = np.zeros((n, max_len), dtype=np.int32)  # PAD_ID == 0
        if n == 0:
            return out
        # One multithreaded C++ call; each row comes back as an int32 buffer.
        rows = self._sp.encode(titles, out_type="numpy")
        lengths = np.fromiter(map(len, rows), dtype=np.int64, count=n)
        if int(lengths.max()) > max_len:  # truncate: a slice per row is a view, no token copying
            rows = [r[:max_len] for r in rows]
            np.minimum(lengths, max_len, out=lengths)
        if not lengths.any():
            return out
        # Boolean-mask assignment fills row-major, i.e. each row's first `length` slots in order.
        out[np.arange(max_len) < lengths[:, None]] = np.concatenate(rows)
        return out

    def encode_raw(self, titles: Sequence[str | None], max_len: int, language: str = "es") -> np.ndarray:
        """``encode`` of raw titles, normalized first with ``prodemb.text`` (what inference gets)."""
        from prodemb.text import normalize_titles

        return self.encode(normalize_titles(titles, language), max_len)

    def __getstate__(self) -> dict[str, Any]:  # picklable (DataLoader workers, Spark UDFs)
        return {"model_proto": self._proto}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["model_proto"])

    def __repr__(self) -> str:
        return f"Tokenizer(vocab_size={self.vocab_size}, sha256={self.sha256[:12]})"
