"""Downstream-evaluation methods: the encoder under test, a random-initialized encoder (the floor) and
the paper's baselines (A.2). ``make_method(name, ctx)`` builds one; see ``base.py`` for the contract."""

from __future__ import annotations

from importlib import import_module

from prodemb.baselines.base import EmbeddingMethod, EvalContext, Method, Scores

# name → "module:Class" (imported on demand: gensim, fastText and sentence-transformers are heavy).
METHODS: dict[str, str] = {
    "prodemb": "prodemb.baselines.encoder:PretrainedEncoder",
    "random": "prodemb.baselines.encoder:RandomEncoder",
    "tfidf": "prodemb.baselines.tfidf:TfidfLogReg",
    "tfidf+prodemb": "prodemb.baselines.combined:TfidfPlusEmbedding",  # the vector as one more feature
    "fasttext": "prodemb.baselines.fasttext_clf:FastTextClassifier",
    "textcnn": "prodemb.baselines.textcnn:SupervisedTextCNN",
    "prod2vec": "prodemb.baselines.prod2vec:Prod2Vec",
    "meta_prod2vec": "prodemb.baselines.prod2vec:MetaProd2Vec",
    "sbert": "prodemb.baselines.sbert:SentenceEncoder",
}


def make_method(name: str, ctx: EvalContext, **kwargs) -> Method:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r} (known: {', '.join(METHODS)})")
    module, cls = METHODS[name].split(":")
    return getattr(import_module(module), cls)(ctx, **kwargs)


__all__ = ["METHODS", "make_method", "Method", "EmbeddingMethod", "EvalContext", "Scores"]
