"""The contract every downstream-evaluation method follows (the encoder under test and the baselines).

A task is a table with ``title`` (str), ``label`` (0/1) and optionally ``product_id`` (str), indexed
0..n-1. The protocol (``prodemb.protocol``) splits it 60/20/20 once per task, then for each training
size and sample calls ``fit_predict(train, val, test, seed)`` with row subsets of that table (their
index is the task row index) and scores the returned probabilities with AUC-ROC.

Two kinds of method:
- ``EmbeddingMethod``: frozen features (the prodemb encoder, a random encoder, SBERT, (Meta-)Prod2Vec).
  ``prepare`` embeds every task row once; each fit is only the classifier on cached rows
  (LogisticRegression(solver="liblinear") by default, the paper's A.1 probe).
- ``Method`` subclasses that learn from the labels themselves (TF-IDF + LR, fastText, supervised
  Text-CNN): ``fit_predict`` trains from scratch on ``train`` (``val`` for early stopping only).

Methods never see the labels in ``prepare``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd


@dataclass
class EvalContext:
    """What a method may use besides the task table."""

    eval_cfg: Any  # prodemb.config.EvaluateConfig
    model_cfg: Any = None  # prodemb.config.ModelConfig (Text-CNN baseline, random encoder)
    data_dir: str | None = None  # sessionize output: catalog/, sessions/ (Prod2Vec side)
    tokenizer_path: str | None = None  # SentencePiece model (Text-CNN baseline, random encoder)
    model_uri: str | None = None  # the registered encoder under test
    tracking_uri: str | None = None
    language: str = "es"
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Scores:
    """Positive-class scores for the validation and test rows, in the order they were given."""

    val: np.ndarray
    test: np.ndarray
    covered_test: float | None = None  # fraction of test rows the method had a vector for (Prod2Vec)


class Method:
    name: str = "method"
    alpha: float | None = None  # set for encoders of the α sweep

    def __init__(self, ctx: EvalContext):
        self.ctx = ctx

    def prepare(self, task_name: str, table: pd.DataFrame) -> None:
        """Called once per task with every row (title, product_id; no labels) before any fit."""

    def fit_predict(self, train: pd.DataFrame, val: pd.DataFrame, test: pd.DataFrame, seed: int) -> Scores:
        raise NotImplementedError


class NormalizedTitles:
    """Mixin for methods that learn from normalized title text: titles are normalized once per task in
    ``prepare`` and looked up by row index in every fit (not renormalized per size × sample)."""

    _norm: np.ndarray | None = None

    def prepare(self, task_name: str, table: pd.DataFrame) -> None:
        from prodemb.text import normalize_titles

        self._norm = np.asarray(normalize_titles(table["title"], self.ctx.language), dtype=object)

    def normalized(self, rows: pd.DataFrame) -> list[str]:
        if self._norm is None:  # used without prepare(): normalize these rows now
            from prodemb.text import normalize_titles

            return normalize_titles(rows["title"], self.ctx.language)
        return self._norm[rows.index.to_numpy()].tolist()


def prior_scores(
    train: pd.DataFrame, val: pd.DataFrame, test: pd.DataFrame, covered_test: float | None = None
) -> Scores:
    """Every row scored with the training prior P(label = 1): what a method without a model can say
    (a training sample with one class, a product with no vector)."""
    prior = float(np.mean(train["label"].to_numpy())) if len(train) else 0.5
    return Scores(val=np.full(len(val), prior), test=np.full(len(test), prior), covered_test=covered_test)


def logistic_regression(X: np.ndarray, y: np.ndarray, seed: int, max_iter: int = 1000):
    """The paper's linear probe (A.1): liblinear logistic regression on frozen features."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(solver="liblinear", max_iter=max_iter, random_state=seed).fit(X, y)


def positive_scores(clf, X) -> np.ndarray:
    """P(label = 1) whatever the order of ``clf.classes_``; constant when training saw one class."""
    classes = list(clf.classes_)
    if len(classes) == 1:
        return np.full(X.shape[0], float(classes[0]))
    return clf.predict_proba(X)[:, classes.index(1)]


class EmbeddingMethod(Method):
    """Frozen features + a probe. Subclasses implement ``embed``; rows are cached by task row index."""

    def __init__(self, ctx: EvalContext):
        super().__init__(ctx)
        self._X: np.ndarray | None = None

    def embed(self, table: pd.DataFrame) -> np.ndarray:
        """(n_rows, dim) float32 features for ``table`` (title, product_id) in row order."""
        raise NotImplementedError

    def prepare(self, task_name: str, table: pd.DataFrame) -> None:
        X = np.asarray(self.embed(table.drop(columns=["label"], errors="ignore")), dtype=np.float32)
        if X.shape[0] != len(table):
            raise ValueError(f"{self.name}: embed returned {X.shape[0]} rows for {len(table)}")
        self._X = X

    def features(self, rows: pd.DataFrame) -> np.ndarray:
        if self._X is None:
            raise RuntimeError(f"{self.name}: prepare() was not called for this task")
        return self._X[rows.index.to_numpy()]

    def fit_predict(self, train, val, test, seed) -> Scores:
        if train["label"].nunique() < 2:  # liblinear needs two classes
            return prior_scores(train, val, test)
        clf = logistic_regression(self.features(train), train["label"].to_numpy(), seed, self.ctx.eval_cfg.lr_max_iter)
        return Scores(val=positive_scores(clf, self.features(val)), test=positive_scores(clf, self.features(test)))
