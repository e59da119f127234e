"""TF-IDF bag of words + the linear probe (paper A.2): the sparse-text baseline.

Titles are normalized with ``prodemb.text.normalize_title`` (the encoder's own preprocessing), then
turned into TF-IDF vectors of word unigrams and bigrams with sublinear term frequency. The vocabulary
and IDF weights are fit on the training rows only (never on validation/test), and the classifier is
the same liblinear logistic regression the frozen encoders get (``base.logistic_regression``).

Edge cases: a training set with one class, or whose titles are all empty (no vocabulary), scores
every row with the training prior (the fraction of positives); empty titles elsewhere become
all-zero rows, which the LR scores from its intercept.
"""

from __future__ import annotations

import numpy as np

from prodemb.baselines.base import Method, NormalizedTitles, Scores, logistic_regression, positive_scores, prior_scores

# Below this many training rows every n-gram is kept; above it, n-grams seen in one title only are
# dropped (they cannot generalize and only grow the vocabulary).
MIN_DF_ROWS = 1000


class TfidfLogReg(NormalizedTitles, Method):
    name = "tfidf"

    def __init__(self, ctx, ngram_range: tuple[int, int] = (1, 2), min_df: int | None = None):
        super().__init__(ctx)
        self.ngram_range = tuple(ngram_range)
        self.min_df = min_df  # None: 1 for small training sets, 2 from MIN_DF_ROWS rows up

    def vectorizer(self, n_train: int):
        """A TfidfVectorizer for ``n_train`` training rows (unfitted)."""
        from sklearn.feature_extraction.text import TfidfVectorizer

        min_df = self.min_df if self.min_df is not None else (2 if n_train >= MIN_DF_ROWS else 1)
        # Normalized titles are lowercase words separated by single spaces: split on whitespace and
        # keep one-character tokens (sizes, "x" in "2 x 1").
        return TfidfVectorizer(
            lowercase=False,
            token_pattern=r"\S+",
            ngram_range=self.ngram_range,
            sublinear_tf=True,
            min_df=min_df,
            dtype=np.float32,
        )

    def fit_predict(self, train, val, test, seed) -> Scores:
        y = train["label"].to_numpy()
        if len(np.unique(y)) < 2:
            return prior_scores(train, val, test)
        vec = self.vectorizer(len(train))
        try:
            X_train = vec.fit_transform(self.normalized(train))
        except ValueError:  # empty vocabulary: every training title is empty after normalization
            return prior_scores(train, val, test)
        clf = logistic_regression(X_train, y, seed, self.ctx.eval_cfg.lr_max_iter)
        return Scores(
            val=positive_scores(clf, vec.transform(self.normalized(val))),
            test=positive_scores(clf, vec.transform(self.normalized(test))),
        )
