"""The downstream evaluation protocol: splits, subsamples, AUC, the results table, the summaries, and a
failing method reported with keep-going."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from prodemb.baselines.base import EmbeddingMethod, EvalContext, Method, Scores
from prodemb.config import EvaluateConfig
from prodemb.protocol import (
    RESULT_COLUMNS,
    EvaluateInputError,
    best_alpha,
    mean_validation_auc,
    per_task_validation_auc,
    run_protocol,
    split_task,
    subsample,
    train_sizes_for,
)
from prodemb.tasks import TaskError

NOUNS = ["zapatilla", "mochila", "camiseta", "lampara", "taladro", "auricular", "cafetera", "silla"]


def keyword_task(n: int = 400, pos_rate: float = 0.3, seed: int = 0) -> pd.DataFrame:
    """label = 1 exactly when the title says "usado"."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < pos_rate).astype(int)
    titles = [f"{rng.choice(NOUNS)} {'usado' if v else 'nuevo'} modelo {rng.integers(100, 999)}" for v in y]
    return pd.DataFrame({"title": titles, "label": y, "product_id": [f"p{i}" for i in range(n)]})


# Real (if simple) methods implemented here, so the protocol is tested without the baselines.


class KeywordRule(Method):
    """Scores 1 when the title contains ``word`` (0 otherwise); records what it was given."""

    name = "keyword"

    def __init__(self, ctx, word: str = "usado", invert: bool = False):
        super().__init__(ctx)
        self.word, self.invert, self.prepared, self.fits = word, invert, [], []
        if invert:
            self.name = "not_keyword"

    def prepare(self, task_name, table):
        self.prepared.append((task_name, list(table.columns), len(table)))

    def fit_predict(self, train, val, test, seed):
        self.fits.append(
            {
                "train": tuple(train.index),
                "val_cols": list(val.columns),
                "test_cols": list(test.columns),
                "seed": seed,
                "size": len(train),
                "classes": set(train["label"]),
            }
        )
        score = lambda df: (df["title"].str.contains(self.word) != self.invert).astype(float).to_numpy()  # noqa: E731
        return Scores(val=score(val), test=score(test))


class BagOfWords(EmbeddingMethod):
    """Binary bag of words (vocabulary from every title, no labels) + the paper's liblinear probe."""

    name = "bow"

    def embed(self, table):
        from sklearn.feature_extraction.text import CountVectorizer

        return CountVectorizer(binary=True).fit_transform(table["title"]).toarray()


class NeedsProductId(EmbeddingMethod):
    """Fails on tasks without product ids, as an id-based method (Prod2Vec) does."""

    name = "needs_ids"

    def embed(self, table):
        return np.asarray(table["product_id"].str[1:].astype(float))[:, None]


def ecfg(**kw) -> EvaluateConfig:
    return EvaluateConfig(**{"train_sizes": [20, 100, 10_000], "samples": 3, **kw})


# --- splits and subsamples -------------------------------------------------------------------------


def test_split_is_stratified_disjoint_covering_and_deterministic():
    task = keyword_task(1000, pos_rate=0.3)
    train, val, test = split_task(task, [0.6, 0.2, 0.2], seed=0)
    idx = [set(p.index) for p in (train, val, test)]
    assert not (idx[0] & idx[1]) and not (idx[0] & idx[2]) and not (idx[1] & idx[2])
    assert idx[0] | idx[1] | idx[2] == set(task.index)
    assert abs(len(train) - 600) <= 2 and abs(len(val) - 200) <= 2 and abs(len(test) - 200) <= 2
    rate = task["label"].mean()
    for part in (train, val, test):
        assert abs(part["label"].mean() - rate) < 0.01
        pd.testing.assert_frame_equal(part, task.loc[part.index])  # rows untouched, index kept
    again = split_task(task, [0.6, 0.2, 0.2], seed=0)
    assert all(a.index.equals(b.index) for a, b in zip((train, val, test), again))
    assert not split_task(task, [0.6, 0.2, 0.2], seed=1)[2].index.equals(test.index)


def test_split_of_tiny_classes_and_bad_settings():
    tiny = pd.DataFrame({"title": list("abcdefgh"), "label": [1, 1, 1, 0, 0, 0, 0, 0]})
    parts = split_task(tiny, [0.6, 0.2, 0.2], seed=0)
    assert all(set(p["label"]) == {0, 1} for p in parts)  # every part has both classes
    with pytest.raises(TaskError, match="≥ 3 rows"):
        split_task(tiny.iloc[1:], [0.6, 0.2, 0.2], seed=0)  # only two positives
    with pytest.raises(EvaluateInputError):
        split_task(tiny, [0.6, 0.3, 0.2], seed=0)


def test_train_sizes_are_capped_by_the_train_split():
    sizes = [100, 500, 1000, 5000, 10000, 50000, 100000]
    assert train_sizes_for(700, sizes) == [100, 500, 700]
    assert train_sizes_for(1000, sizes) == [100, 500, 1000]
    assert train_sizes_for(200_000, sizes) == sizes
    assert train_sizes_for(50, [100]) == [50]
    with pytest.raises(EvaluateInputError):
        train_sizes_for(50, [1])


def test_subsample_keeps_both_classes_and_is_deterministic():
    task = keyword_task(1000, pos_rate=0.02)
    train = split_task(task, [0.6, 0.2, 0.2], 0)[0]
    for size in (2, 10, 100):
        sub = subsample(train, size, seed=3)
        assert len(sub) == size and set(sub["label"]) == {0, 1} and set(sub.index) <= set(train.index)
        assert sub.index.equals(subsample(train, size, seed=3).index)
    big = subsample(train, 300, seed=1)
    assert abs(big["label"].mean() - train["label"].mean()) < 0.01
    assert not big.index.equals(subsample(train, 300, seed=2).index)
    assert subsample(train, 10**6, seed=0) is train


# --- the protocol ------------------------------------------------------------------------------------


def test_protocol_scores_auc_and_fills_the_results_table():
    tasks = {"usado": keyword_task(400), "usado_rare": keyword_task(300, pos_rate=0.1, seed=1)}
    cfg = ecfg()
    rule, inverted, bow = KeywordRule(None), KeywordRule(None, invert=True), BagOfWords(EvalContext(eval_cfg=cfg))
    r = run_protocol(tasks, [rule, inverted, bow], cfg, progress=False)
    assert list(r.columns) == RESULT_COLUMNS
    # train split 240 / 180 rows: sizes 20, 100 and the whole split (10,000 is more than there is)
    assert sorted(r.loc[r.task == "usado", "train_size"].unique()) == [20, 100, 240]
    assert sorted(r.loc[r.task == "usado_rare", "train_size"].unique()) == [20, 100, 180]
    assert len(r) == 2 * 3 * 3 * 3  # tasks × methods × sizes × samples
    kw = r[r.method == "keyword"]
    assert (kw["auc"] == 1.0).all() and (kw["val_auc"] == 1.0).all()  # the rule is the label
    # AUC is computed for the positive class: the inverted rule ranks every negative first.
    inv = r[r.method == "not_keyword"]
    assert (inv["auc"] == 0.0).all() and (inv["val_auc"] == 0.0).all()
    assert r.loc[r.method == "bow", "auc"].min() > 0.95  # the probe learns the word
    first = r[(r.task == "usado")].iloc[0]
    assert (first["n_val"], first["n_test"], first["n_train_pool"]) == (80, 80, 240)
    assert r["seconds"].notna().all() and r["alpha"].isna().all() and r["covered"].isna().all()
    # Every method saw the same subsamples, with both classes; test rows came without labels.
    assert [f["train"] for f in rule.fits] == [f["train"] for f in inverted.fits]
    assert all(f["classes"] == {0, 1} and "label" not in f["test_cols"] and "label" in f["val_cols"] for f in rule.fits)
    assert len({f["train"] for f in rule.fits if f["size"] == 20}) == 6  # 3 different samples per task
    # prepare: once per task, all rows, no labels.
    assert rule.prepared == [("usado", ["title", "product_id"], 400), ("usado_rare", ["title", "product_id"], 300)]
    # Deterministic: the same config gives the same table.
    again = run_protocol(tasks, [KeywordRule(None), KeywordRule(None, invert=True), bow], cfg, progress=False)
    pd.testing.assert_frame_equal(
        r.drop(columns=["seconds", "prepare_seconds"]), again.drop(columns=["seconds", "prepare_seconds"])
    )


def test_validation_auc_summaries():
    rows = [
        ("a", "prodemb", 0.9, 0.8),
        ("a", "prodemb", 0.9, 0.6),
        ("b", "prodemb", 0.9, 0.5),
        ("a", "random", None, 0.55),
        ("b", "random", None, 0.5),
    ]
    r = pd.DataFrame(
        [{"task": t, "method": m, "alpha": a, "val_auc": v, "train_size": 10, "auc": v} for t, m, a, v in rows]
    )
    assert per_task_validation_auc(r) == {"a": pytest.approx(0.7), "b": pytest.approx(0.5)}
    assert mean_validation_auc(r) == pytest.approx(0.6)  # tasks weigh the same
    assert mean_validation_auc(r, "random") == pytest.approx(0.525)
    two = pd.concat([r, r.assign(alpha=0.5, val_auc=r.val_auc - 0.1)[r.method == "prodemb"]])
    with pytest.raises(ValueError, match="several α"):
        mean_validation_auc(two)
    assert best_alpha(two) == (0.9, {0.5: pytest.approx(0.5), 0.9: pytest.approx(0.6)})
    with pytest.raises(ValueError, match="no results"):
        mean_validation_auc(r, "tfidf")


def test_a_failing_method_is_reported_with_keep_going():
    task = keyword_task(200).drop(columns="product_id")
    ids, rule = NeedsProductId(EvalContext(eval_cfg=ecfg())), KeywordRule(None)
    failures: list[dict] = []
    r = run_protocol({"t": task}, [ids, rule], ecfg(samples=1), progress=False, on_error="skip", failures=failures)
    assert set(r["method"]) == {"keyword"} and len(r) == 3
    assert failures and failures[0]["method"] == "needs_ids" and failures[0]["stage"] == "prepare"
    with pytest.raises(KeyError):
        run_protocol({"t": task}, [ids], ecfg(samples=1), progress=False)
