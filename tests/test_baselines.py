"""The paper's baselines (A.2) end to end on a tiny task: TF-IDF, fastText, SBERT, Text-CNN, (Meta-)Prod2Vec.

The task: 200 Spanish product titles whose label (used = 1, new = 0) is in their words ("usado",
"reacondicionado", ... vs "nuevo", "sellado", ...), split 120 / 40 / 40 by row position. For
(Meta-)Prod2Vec a sessions table groups same-label products (so co-clicks carry the label) and holds
only the first 180 products: test rows 180..199 are in the catalog but in no session.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from prodemb.baselines import EvalContext, make_method
from prodemb.config import EvaluateConfig, ModelConfig
from prodemb.text import normalize_titles

N, N_TRAIN, N_VAL = 200, 120, 40
N_IN_SESSIONS = 180  # products 180..199 appear in no session
ITEMS = [
    "celular samsung galaxy",
    "zapatillas nike running",
    "notebook lenovo ideapad",
    "camara canon reflex",
    "heladera whirlpool",
    "auriculares sony inalambricos",
    "bicicleta rodado 29",
    "taladro bosch percutor",
]
USED = ["usado", "reacondicionado", "usada con detalles", "segunda mano"]
NEW = ["nuevo", "sellado", "nueva en caja", "original garantia"]
# Small but not tiny Text-CNN: it learns the task in well under a second per fit on 2 CPU cores.
MODEL_CFG = ModelConfig(embed_dim=128, n_filters=64, kernel_sizes=[2, 3], max_len=16)
W2V = dict(epochs=30)  # a 600-session corpus needs more passes than the default


def make_task(n: int = N, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        y = int(rng.random() < 0.5)
        item = ITEMS[rng.integers(len(ITEMS))].title()
        rows.append((f"{item} {rng.choice(USED if y else NEW)} {rng.integers(1, 99)}", y, f"p{i}"))
    return pd.DataFrame(rows, columns=["title", "label", "product_id"])


def split(task: pd.DataFrame):
    return task.iloc[:N_TRAIN], task.iloc[N_TRAIN : N_TRAIN + N_VAL], task.iloc[N_TRAIN + N_VAL :]


def write_stage_tables(task: pd.DataFrame, data_dir, n_sessions: int = 600, seed: int = 0) -> None:
    """``sessions`` and ``catalog`` as plain Parquet folders, in the sessionize job's schemas."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    ids, labels = task["product_id"].tolist()[:N_IN_SESSIONS], task["label"].to_numpy()[:N_IN_SESSIONS]
    groups = [[p for p, y in zip(ids, labels) if y == g] for g in (0, 1)]
    sessions = []
    for _ in range(n_sessions):
        g = groups[int(rng.integers(2))]
        sessions.append([g[j] for j in rng.choice(len(g), size=int(rng.integers(2, 6)), replace=False)])
    sessions.append(["p0"])  # a one-product session: no co-click signal
    ts = pa.array([datetime(2024, 1, 1, tzinfo=timezone.utc)] * len(sessions), pa.timestamp("us", tz="UTC"))
    n = len(sessions)
    tables = {
        "sessions": pa.table(
            {
                "site": ["MLA"] * n,
                "session_id": [f"s{i}" for i in range(n)],
                "user_id": [f"u{i}" for i in range(n)],
                "start_ts": ts,
                "end_ts": ts,
                "n_events": pa.array([len(s) for s in sessions], pa.int64()),
                "products": pa.array(sessions, pa.list_(pa.string())),
            }
        )
    }
    m = len(task)
    ts = pa.array([datetime(2024, 1, 1, tzinfo=timezone.utc)] * m, pa.timestamp("us", tz="UTC"))
    tables["catalog"] = pa.table(
        {
            "site": ["MLA"] * m,
            "product_id": task["product_id"].tolist(),
            "title": task["title"].tolist(),
            "title_norm": normalize_titles(task["title"], "es"),
            "category": [t.split()[0].lower() for t in task["title"]],
            "n_events": pa.array([1] * m, pa.int64()),
            "first_seen": ts,
            "last_seen": ts,
        }
    )
    for name, table in tables.items():
        os.makedirs(data_dir / name)
        pq.write_table(table, data_dir / name / "part-00000.parquet")


@pytest.fixture(scope="module")
def task() -> pd.DataFrame:
    return make_task()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, task):
    path = tmp_path_factory.mktemp("stage")
    write_stage_tables(task, path)
    return path


@pytest.fixture(scope="module")
def tokenizer_path(tmp_path_factory, task) -> str:
    from prodemb.tokenizer import train_tokenizer

    path = tmp_path_factory.mktemp("tok") / "tokenizer.model"
    train_tokenizer(normalize_titles(task["title"], "es"), path, vocab_size=90)
    return str(path)


@pytest.fixture(scope="module")
def ctx(data_dir, tokenizer_path) -> EvalContext:
    return EvalContext(
        eval_cfg=EvaluateConfig(),
        model_cfg=MODEL_CFG,
        data_dir=str(data_dir),
        tokenizer_path=tokenizer_path,
        language="es",
    )


@pytest.fixture(scope="module")
def prepared(ctx, task):
    """name → a method prepared on the task, built once per module (SBERT loads its model once)."""
    cache: dict = {}

    def get(name: str):
        if name not in cache:
            method = make_method(name, ctx, **(W2V if "prod2vec" in name else {}))
            method.prepare("tiny", task)
            cache[name] = method
        return cache[name]

    return get


def check_scores(scores, val: pd.DataFrame, test: pd.DataFrame) -> None:
    assert scores.val.shape == (len(val),) and scores.test.shape == (len(test),)
    for s in (scores.val, scores.test):
        assert np.isfinite(s).all() and (s >= 0).all() and (s <= 1).all()


@pytest.mark.parametrize("name", ["tfidf", "fasttext", "sbert", "textcnn"])
def test_text_baseline_learns_the_task(name, prepared, task):
    train, val, test = split(task)
    scores = prepared(name).fit_predict(train, val, test, seed=0)
    check_scores(scores, val, test)
    assert scores.covered_test is None
    assert roc_auc_score(test["label"], scores.test) > 0.8
    assert roc_auc_score(val["label"], scores.val) > 0.8


@pytest.mark.parametrize("name", ["fasttext", "textcnn"])
def test_trained_baselines_are_reproducible_for_a_seed(name, prepared, task):
    method = prepared(name)
    a, b = (method.fit_predict(*split(task), seed=3) for _ in range(2))
    np.testing.assert_array_equal(a.test, b.test)
    np.testing.assert_array_equal(a.val, b.val)


@pytest.mark.parametrize("name", ["tfidf", "fasttext", "sbert", "textcnn", "prod2vec", "meta_prod2vec"])
def test_one_class_training_set_scores_the_prior(name, prepared, task):
    train, val, test = split(task)
    for label in (0, 1):
        only = train[train["label"] == label]
        scores = prepared(name).fit_predict(only, val, test, seed=0)
        check_scores(scores, val, test)
        assert (scores.val == label).all() and (scores.test == label).all()


@pytest.mark.parametrize("name", ["tfidf", "fasttext"])
def test_titles_normalized_in_prepare_give_the_same_scores_as_normalizing_per_fit(name, ctx, prepared, task):
    train, val, test = split(task)
    cached = prepared(name).fit_predict(train, val, test.drop(columns=["label"]), seed=3)
    fresh = make_method(name, ctx).fit_predict(train, val, test.drop(columns=["label"]), seed=3)
    np.testing.assert_array_equal(cached.test, fresh.test)
    np.testing.assert_array_equal(cached.val, fresh.val)


def test_tfidf_with_only_empty_training_titles_scores_the_prior(ctx, task):
    train, val, test = split(task)
    train = train.assign(title=["", None] * (len(train) // 2))
    scores = make_method("tfidf", ctx).fit_predict(train, val, test, seed=0)
    np.testing.assert_allclose(scores.test, train["label"].mean())


def test_prod2vec_reports_products_missing_from_sessions_as_uncovered(prepared, task):
    train, val, test = split(task)
    method = prepared("prod2vec")
    scores = method.fit_predict(train, val, test, seed=0)
    check_scores(scores, val, test)
    in_sessions = test.index < N_IN_SESSIONS
    assert scores.covered_test == pytest.approx(in_sessions.mean())  # 20 of 40
    # Uncovered rows get the training prior; covered rows are classified by their co-clicks.
    np.testing.assert_allclose(scores.test[~in_sessions], train["label"].mean())
    assert roc_auc_score(test["label"][in_sessions], scores.test[in_sessions]) > 0.9
    # p0 was also clicked alone; a one-product session adds nothing but it is covered by the others.
    assert method._covered[0]


def test_meta_prod2vec_covers_missing_products_through_title_tokens(prepared, task):
    train, val, test = split(task)
    scores = prepared("meta_prod2vec").fit_predict(train, val, test, seed=0)
    check_scores(scores, val, test)
    assert scores.covered_test == 1.0
    missing = test.index >= N_IN_SESSIONS
    assert roc_auc_score(test["label"][missing], scores.test[missing]) > 0.8
    assert roc_auc_score(test["label"], scores.test) > 0.8


def test_prod2vec_without_product_ids(ctx, prepared, task):
    train, val, test = split(task)
    no_ids = task.drop(columns=["product_id"])
    p2v = prepared("prod2vec")
    model = p2v._wv
    p2v.prepare("no-ids", no_ids)
    assert p2v._wv is model  # word2vec is trained once per method instance
    scores = p2v.fit_predict(train, val, test, seed=0)
    assert scores.covered_test == 0.0
    np.testing.assert_allclose(scores.test, train["label"].mean())
    meta = make_method("meta_prod2vec", ctx, **W2V)
    meta.prepare("no-ids", no_ids)
    scores = meta.fit_predict(train, val, test, seed=0)
    assert scores.covered_test == 1.0  # every title has known words
    assert roc_auc_score(test["label"], scores.test) > 0.8


def test_prod2vec_needs_the_sessions_table(tmp_path, task):
    with pytest.raises(ValueError, match="data_dir"):
        make_method("prod2vec", EvalContext(eval_cfg=EvaluateConfig())).prepare("t", task)
    with pytest.raises(FileNotFoundError, match="sessions"):
        make_method("meta_prod2vec", EvalContext(eval_cfg=EvaluateConfig(), data_dir=str(tmp_path))).prepare("t", task)


def test_textcnn_stops_early_when_validation_cannot_improve(ctx, task):
    # Empty validation titles are all padding: every epoch scores them alike (AUC 0.5), so with
    # patience 1 training stops after epoch 2 and keeps epoch 1's weights.
    eval_cfg = EvaluateConfig(textcnn_max_epochs=25, textcnn_patience=1)
    method = make_method(
        "textcnn", EvalContext(eval_cfg=eval_cfg, model_cfg=MODEL_CFG, tokenizer_path=ctx.tokenizer_path)
    )
    blank = task.assign(title=[t if not N_TRAIN <= i < N_TRAIN + N_VAL else "" for i, t in enumerate(task["title"])])
    method.prepare("blank-val", blank)
    scores = method.fit_predict(*split(blank), seed=0)
    assert method.epochs_run == 2 and method.best_epoch == 1
    assert method.history == [0.5, 0.5]
    assert np.unique(scores.val).size == 1


def test_textcnn_needs_a_tokenizer(task):
    method = make_method("textcnn", EvalContext(eval_cfg=EvaluateConfig(), model_cfg=MODEL_CFG))
    with pytest.raises(ValueError, match="tokenizer_path"):
        method.prepare("t", task)


class _FixedFeatures:
    """A frozen-feature method whose vectors are given (the embedding side of tfidf+prodemb, without a model)."""

    def __init__(self, ctx, vectors: np.ndarray):
        from prodemb.baselines.base import EmbeddingMethod

        class Fixed(EmbeddingMethod):
            name = "fixed"

            def embed(self, table):
                return vectors[table.index.to_numpy()]

        self.method = Fixed(ctx)


@pytest.mark.parametrize("signal", ["words", "vector"])
def test_tfidf_plus_embedding_uses_both_blocks_without_either_swamping_the_other(signal):
    """Labels carried by the title's words only, or by the embedding only (vectors 100x the TF-IDF scale):
    the joint probe finds the signal either way, where TF-IDF alone finds only the words'."""
    from prodemb.baselines.combined import TfidfPlusEmbedding, standardize

    rng = np.random.default_rng(1)
    task = make_task()
    vectors = rng.normal(scale=100.0, size=(N, 32)).astype(np.float32)
    if signal == "vector":  # the words say nothing (random suffixes); the label moves the vector along a direction
        task["title"] = [f"{ITEMS[i % len(ITEMS)]} {rng.integers(1, 99)}" for i in range(N)]
        direction = rng.normal(size=32)
        vectors += 300.0 * task["label"].to_numpy()[:, None] * (direction / np.linalg.norm(direction))[None, :]
    ctx = EvalContext(eval_cfg=EvaluateConfig())
    joint = TfidfPlusEmbedding(ctx, embedding=_FixedFeatures(ctx, vectors).method)
    tfidf = make_method("tfidf", ctx)
    for m in (joint, tfidf):
        m.prepare("t", task.drop(columns=["label"]))
    train, val, test = split(task)
    auc = {m.name: roc_auc_score(test["label"], m.fit_predict(train, val, test, seed=0).test) for m in (joint, tfidf)}
    assert auc["tfidf+prodemb"] > 0.9
    assert (auc["tfidf"] > 0.9) == (signal == "words")
    scaled = standardize(vectors[:N_TRAIN])[0]
    assert abs(float(np.mean((scaled**2).sum(axis=1))) - 1.0) < 1e-3  # rows of squared norm ~1
