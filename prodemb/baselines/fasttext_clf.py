"""fastText supervised classifier on normalized titles (paper A.2).

One model per fit, trained from scratch on the training rows only: the training file holds
``__label__0``/``__label__1`` followed by the normalized title (``prodemb.text.normalize_title``),
written to a private temporary folder. Word bigrams (``wordNgrams=2``), 25 epochs, lr 0.5, dim 100,
one thread and a fixed seed, so a fit is reproducible (fastText's Hogwild training is only
deterministic with ``thread=1``). The score is fastText's P(__label__1).

Edge cases: a training set with one class, or with no words at all (every title empty after
normalization), is scored with the training prior, and so is one where fastText diverges
("Encountered NaN", which it does on some tiny corpora) for ``MAX_ATTEMPTS`` seeds in a row. At
prediction time an empty title (or one made only of unseen words) gets one constant score: what the
model outputs for an input with no known word.
"""

from __future__ import annotations

import logging
import os
import tempfile

import numpy as np

from prodemb.baselines.base import Method, NormalizedTitles, Scores, prior_scores

log = logging.getLogger(__name__)

LABEL = "__label__"
MAX_ATTEMPTS = 5


class FastTextClassifier(NormalizedTitles, Method):
    name = "fasttext"

    def __init__(self, ctx, epoch: int = 25, lr: float = 0.5, dim: int = 100, word_ngrams: int = 2, min_count: int = 1):
        super().__init__(ctx)
        self.params = dict(epoch=epoch, lr=lr, dim=dim, wordNgrams=word_ngrams, minCount=min_count)

    def fit_predict(self, train, val, test, seed) -> Scores:
        import fasttext

        y = train["label"].to_numpy().astype(int)
        # fastText splits on whitespace and treats "\n" as end of example; normalized titles have
        # neither newlines nor tabs, only single spaces.
        texts = self.normalized(train)
        if len(np.unique(y)) < 2 or not any(texts):
            return prior_scores(train, val, test)
        with tempfile.TemporaryDirectory(prefix="prodemb-fasttext-") as tmp:
            path = os.path.join(tmp, "train.txt")
            with open(path, "w", encoding="utf-8") as fh:
                for label, text in zip(y, texts):
                    fh.write(f"{LABEL}{label} {text}\n")
            model = self._train(fasttext, path, int(seed))
        if model is None:
            return prior_scores(train, val, test)
        return Scores(val=self._positive(model, val), test=self._positive(model, test))

    def _train(self, fasttext, path: str, seed: int):
        """train_supervised, retried with other seeds when fastText aborts with "Encountered NaN".

        fastText 0.9/0.10 sometimes diverges on very small corpora (a few hundred tokens) for some
        seeds whatever the learning rate; another seed trains fine. Deterministic for a given seed.
        """
        for attempt in range(MAX_ATTEMPTS):
            try:
                return fasttext.train_supervised(
                    input=path, thread=1, seed=seed + 7919 * attempt, verbose=0, loss="softmax", **self.params
                )
            except RuntimeError as exc:
                if "NaN" not in str(exc):
                    raise
                log.warning("fastText diverged (seed %d): %s; retrying with another seed", seed + 7919 * attempt, exc)
        return None

    def _positive(self, model, rows) -> np.ndarray:
        """P(__label__1) per row; ``predict(k=2)`` returns both labels in descending probability."""
        texts = self.normalized(rows)
        if not texts:
            return np.zeros(0)
        labels, probs = model.predict(texts, k=2)
        out = np.empty(len(texts))
        for i, (ls, ps) in enumerate(zip(labels, probs)):
            p = dict(zip(ls, ps))
            if f"{LABEL}1" in p:
                out[i] = p[f"{LABEL}1"]
            else:  # k=2 of 2 labels always returns both; complement if one were ever missing
                out[i] = 1.0 - p.get(f"{LABEL}0", 0.5)
        # fastText adds 1e-5 to probabilities before its softmax output; keep them in [0, 1].
        return np.clip(out, 0.0, 1.0)
