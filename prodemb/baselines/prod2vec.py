"""Prod2Vec and Meta-Prod2Vec + KNN (paper A.2): session co-occurrence embeddings of product ids.

Both train gensim Word2Vec (skip-gram, negative sampling, seeded, one worker so a run is
reproducible) once per method instance on the sessionize job's ``sessions`` table
(``DATA_DIR/sessions``: one row per session, ``products`` = product ids in first-click order) and
cache the vectors; each fit is then only a KNN classifier (k = ``eval_cfg.knn_k``, cosine distance)
on the covered training rows. Sessions with fewer than two products carry no co-click signal and are
left out, so a product seen only alone has no vector.

- **Prod2Vec** (Grbovic et al., 2015): sentences are the sessions' product sequences. A task row is
  covered when its ``product_id`` has a vector; other rows have none.
- **Meta-Prod2Vec** (Vasile et al., 2016): the product's metadata lives in the same space. Session
  sentences interleave each product with its category token (``p1 cat:c1 p2 cat:c2 ...``), so
  products predict the neighbours' categories and the other way around; and one extra sentence per
  catalog product holds its normalized title tokens with the product id (when it is in a session)
  and its category token in the middle (``w:t1 w:t2 p cat:c w:t3 ...``), tying ids, categories and
  words together. A product seen in sessions is embedded by its id vector; any other task row (a
  product outside the sessions, or a task without ``product_id``) falls back to the mean of the
  vectors of its title's tokens (``w:<token>``) known to the model, plus its category token when the
  catalog knows its category. Rows with no known token stay uncovered.

Uncovered rows: we could not find in the paper (ICLR 2021 submission "Constraining latent space to
improve deep self-supervised e-commerce products embeddings for downstream tasks", OpenReview
PcBVjfeLODY; only its abstract and introduction were reachable) how products without a session
vector were scored, so we follow the project's rule: uncovered validation/test rows get the training
prior (fraction of positives) as their score, uncovered training rows are left out of the KNN, and
``Scores.covered_test`` reports the fraction of test rows that had a vector. A task without a
``product_id`` column is entirely uncovered for Prod2Vec (covered_test = 0.0).

Task rows match the tables by ``product_id`` as a string; ids are not qualified by site (tasks carry
no site), so the same id on two sites is one product here.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from prodemb import fs
from prodemb.baselines.base import Method, Scores, positive_scores, prior_scores
from prodemb.tasks import product_id_str
from prodemb.text import normalize_title

log = logging.getLogger(__name__)

CAT = "cat:"  # category tokens
WORD = "w:"  # title tokens (Meta-Prod2Vec)


class Prod2Vec(Method):
    """Word2Vec over session product sequences + KNN; products without a session vector are uncovered."""

    name = "prod2vec"
    use_meta = False

    def __init__(
        self,
        ctx,
        vector_size: int = 100,
        window: int = 5,
        negative: int = 5,
        epochs: int = 10,
        min_count: int = 1,
        sample: float = 1e-3,
        workers: int = 1,
        seed: int | None = None,
    ):
        super().__init__(ctx)
        self.w2v_params = dict(
            vector_size=vector_size,
            window=window,
            negative=negative,
            epochs=epochs,
            min_count=min_count,
            sample=sample,
            workers=workers,
        )
        self.seed = int(ctx.eval_cfg.seed if seed is None else seed)
        self._wv = None  # gensim KeyedVectors, trained once
        self._session_products: set[str] = set()
        self._catalog: dict[str, tuple[str, str | None]] | None = None  # id → (title_norm, category)
        self._X: np.ndarray | None = None
        self._covered: np.ndarray | None = None
        self.n_sessions = 0  # sessions (≥ 2 products) the model saw

    # --- tables ---------------------------------------------------------------------------------

    def _table_path(self, name: str) -> str:
        data_dir = self.ctx.data_dir
        if not data_dir:
            raise ValueError(
                f"{self.name} needs EvalContext.data_dir: the sessionize output folder "
                f"with sessions/ and catalog/ (run jobs/sessionize.py)"
            )
        path = fs.join(data_dir, name)
        if not fs.exists(path):
            raise FileNotFoundError(
                f"{self.name} needs the {name} table: {path} not found (run jobs/sessionize.py to write {data_dir})"
            )
        return path

    def _read_sessions(self) -> list[list[str]]:
        from prodemb.tables import read_table_arrow

        products = read_table_arrow(self._table_path("sessions"), columns=["products"]).column("products")
        return [[p for p in s if p is not None] for s in products.to_pylist() if s and len(s) >= 2]

    def _read_catalog(self) -> dict[str, tuple[str, str | None]]:
        from prodemb.tables import read_table_arrow

        t = read_table_arrow(self._table_path("catalog"), columns=["product_id", "title_norm", "category"])
        out: dict[str, tuple[str, str | None]] = {}
        for pid, title, cat in zip(*(t.column(c).to_pylist() for c in ("product_id", "title_norm", "category"))):
            if pid is not None and pid not in out:  # the same id on two sites: first row wins
                out[pid] = (title or "", cat or None)
        return out

    # --- the embedding ----------------------------------------------------------------------------

    def _sentences(self, sessions: list[list[str]]) -> list[list[str]]:
        return sessions

    def _train(self) -> None:
        if self._wv is not None:
            return
        from gensim.models import Word2Vec

        sessions = self._read_sessions()
        self.n_sessions = len(sessions)
        self._session_products = {p for s in sessions for p in s}
        sentences = self._sentences(sessions)
        if not sentences:
            raise ValueError(
                f"{self.name}: {self._table_path('sessions')} has no session with two or more products to learn from"
            )
        model = Word2Vec(sentences=sentences, sg=1, hs=0, seed=self.seed, **self.w2v_params)
        self._wv = model.wv
        log.info("%s: %d sessions, %d vectors", self.name, self.n_sessions, len(self._wv))

    def _vector(self, key: str | None, title: object) -> np.ndarray | None:
        if key is not None and key in self._session_products and key in self._wv.key_to_index:
            return self._wv[key]
        return None

    def embed(self, table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(vectors [n, dim] float32, covered [n] bool) for the task rows, in row order."""
        self._train()
        n, dim = len(table), self._wv.vector_size
        keys = table["product_id"].map(product_id_str).tolist() if "product_id" in table.columns else [None] * n
        titles = table["title"].tolist() if "title" in table.columns else [None] * n
        X, covered = np.zeros((n, dim), dtype=np.float32), np.zeros(n, dtype=bool)
        for i, (key, title) in enumerate(zip(keys, titles)):
            v = self._vector(key, title)
            if v is not None:
                X[i], covered[i] = v, True
        return X, covered

    def prepare(self, task_name: str, table: pd.DataFrame) -> None:
        self._X, self._covered = self.embed(table.drop(columns=["label"], errors="ignore"))
        log.info(
            "%s: %s: %.1f%% of %d rows covered",
            self.name,
            task_name,
            100 * self._covered.mean() if len(table) else 0.0,
            len(table),
        )

    # --- the classifier ---------------------------------------------------------------------------

    def fit_predict(self, train, val, test, seed) -> Scores:
        if self._X is None or self._covered is None:
            raise RuntimeError(f"{self.name}: prepare() was not called for this task")
        idx = {name: rows.index.to_numpy() for name, rows in (("train", train), ("val", val), ("test", test))}
        cov = {name: self._covered[i] for name, i in idx.items()}
        covered_test = float(cov["test"].mean()) if len(test) else 0.0
        prior = prior_scores(train, val, test, covered_test)
        y = train["label"].to_numpy()[cov["train"]]
        if len(y) == 0:  # no training row has a vector: nothing to fit
            return prior
        from sklearn.neighbors import KNeighborsClassifier

        k = min(int(self.ctx.eval_cfg.knn_k), len(y))
        knn = KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute")
        knn.fit(self._X[idx["train"][cov["train"]]], y)
        out = {}
        for name, base in (("val", prior.val), ("test", prior.test)):
            scores = base.copy()
            if cov[name].any():
                scores[cov[name]] = positive_scores(knn, self._X[idx[name][cov[name]]])
            out[name] = scores
        return Scores(val=out["val"], test=out["test"], covered_test=covered_test)


class MetaProd2Vec(Prod2Vec):
    """Prod2Vec with categories and title words in the same space; title-token fallback for the rest."""

    name = "meta_prod2vec"
    use_meta = True

    def _sentences(self, sessions: list[list[str]]) -> list[list[str]]:
        if self._catalog is None:
            self._catalog = self._read_catalog()
        catalog = self._catalog

        def cat_of(p: str) -> str | None:
            entry = catalog.get(p)
            return entry[1] if entry else None

        sentences = []
        for s in sessions:  # p1 cat:c1 p2 cat:c2 ...
            sent = []
            for p in s:
                sent.append(p)
                c = cat_of(p)
                if c is not None:
                    sent.append(CAT + c)
            sentences.append(sent)
        for pid, (title_norm, cat) in catalog.items():  # w:t1 .. [p] [cat:c] .. w:tn
            words = [WORD + t for t in title_norm.split()]
            middle = ([pid] if pid in self._session_products else []) + ([CAT + cat] if cat else [])
            h = len(words) // 2
            sent = words[:h] + middle + words[h:]
            if len(sent) >= 2:
                sentences.append(sent)
        return sentences

    def _vector(self, key: str | None, title: object) -> np.ndarray | None:
        v = super()._vector(key, title)
        if v is not None:
            return v
        # Fallback: mean of the known title-token vectors (+ the category's, when the catalog has it).
        tokens = [
            WORD + t for t in normalize_title(title if isinstance(title, str) else None, self.ctx.language).split()
        ]
        entry = self._catalog.get(key) if key is not None and self._catalog else None
        if entry and entry[1]:
            tokens.append(CAT + entry[1])
        known = [t for t in tokens if t in self._wv.key_to_index]
        if not known:
            return None
        return np.mean([self._wv[t] for t in known], axis=0)
