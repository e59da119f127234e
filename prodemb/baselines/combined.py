"""``tfidf+prodemb``: TF-IDF features and the product embedding side by side in one logistic regression.

This is how a team with a feature store uses the vector: as one more feature beside its own text
features. Neither block may swamp the other in the probe's L2-regularized fit, so both are brought to the
same scale: a TF-IDF row has unit L2 norm (``TfidfVectorizer``'s default), and the embedding is
standardized per dimension with the training rows' mean and standard deviation, then divided by
sqrt(dim), so that its rows also have a squared norm of about 1. The vocabulary, IDF weights and the
standardization are fit on the training rows only.
"""

from __future__ import annotations

import numpy as np

from prodemb.baselines.base import (
    EmbeddingMethod,
    Method,
    NormalizedTitles,
    Scores,
    logistic_regression,
    positive_scores,
    prior_scores,
)
from prodemb.baselines.tfidf import TfidfLogReg


def standardize(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Per-dimension z-scores with the training rows' statistics, divided by sqrt(dim): rows of squared
    norm about 1 (a constant dimension stays 0)."""
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    scale = np.where(std > 0, std, 1.0) * np.sqrt(train.shape[1])
    return [((x - mean) / scale).astype(np.float32) for x in (train, *others)]


class TfidfPlusEmbedding(NormalizedTitles, Method):
    name = "tfidf+prodemb"

    def __init__(self, ctx, embedding: EmbeddingMethod | None = None):
        super().__init__(ctx)
        if embedding is None:
            from prodemb.baselines.encoder import PretrainedEncoder

            embedding = PretrainedEncoder(ctx)
        self.embedding = embedding
        self.tfidf = TfidfLogReg(ctx)

    def prepare(self, task_name, table) -> None:
        super().prepare(task_name, table)  # normalized titles, once per task
        self.embedding.prepare(task_name, table)  # the embedding of every row, once per task

    def fit_predict(self, train, val, test, seed) -> Scores:
        from scipy import sparse

        y = train["label"].to_numpy()
        if len(np.unique(y)) < 2:
            return prior_scores(train, val, test)
        splits = (train, val, test)
        blocks = [[sparse.csr_matrix(e)] for e in standardize(*(self.embedding.features(r) for r in splits))]
        vec = self.tfidf.vectorizer(len(train))
        try:
            words = [
                vec.fit_transform(self.normalized(train)),
                *(vec.transform(self.normalized(r)) for r in splits[1:]),
            ]
            blocks = [[w, *b] for w, b in zip(words, blocks)]
        except ValueError:  # no vocabulary at all (every training title empty): the embedding alone
            pass
        X_train, X_val, X_test = (sparse.hstack(b, format="csr") for b in blocks)
        clf = logistic_regression(X_train, y, seed, self.ctx.eval_cfg.lr_max_iter)
        return Scores(val=positive_scores(clf, X_val), test=positive_scores(clf, X_test))
