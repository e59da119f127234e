"""The registered model's Python class: raw titles → the paper's product embedding y = f(t(tokens)).

It is logged as a *model from code* (``prodemb/encoder_from_code.py`` names it with
``mlflow.models.set_model``): the registered model holds that file, this package as code, and the weights,
tokenizer and settings as artifacts, with no pickle. ``predict`` is type-hinted, so MLflow checks its input
against the signature (one string column ``title``) on every call, in process and over HTTP.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

BATCH = 4096  # titles per forward: bounds the activations' memory, whatever a caller sends at once


class EncoderPyfunc(mlflow.pyfunc.PythonModel):
    """Raw titles → the model's published vectors v, float32 (what scoring writes and Feast serves)."""

    def load_context(self, context) -> None:
        import torch

        from prodemb.model import ProductEncoder
        from prodemb.tokenizer import Tokenizer

        meta = json.loads(Path(context.artifacts["meta"]).read_text())
        self.meta = meta
        self.tokenizer = Tokenizer.load(context.artifacts["tokenizer"])
        self.encoder = ProductEncoder.from_dims(meta["vocab_size"], meta["encoder"])
        self.encoder.load_state_dict(torch.load(context.artifacts["encoder"], map_location="cpu", weights_only=True))
        self.encoder.eval()

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> np.ndarray:
        """[n] titles (a DataFrame with a ``title`` column; a missing title embeds as "") → [n, dim] float32."""
        return self.embed(titles_of(model_input))[0]

    def embed(self, titles: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(vectors [n, dim] float32, tokens the encoder saw per title [n]): ``predict``'s vectors, and what
        batch scoring needs to tell an empty title (0 tokens: a vector of pure padding) from a real one."""
        import torch

        tokens = self.tokenizer.encode_raw(titles, self.meta["max_len"], language=self.meta["language"])
        with torch.inference_mode():  # local to this call: never flip the process's grad mode
            out = [
                self.encoder.vector(torch.from_numpy(tokens[i : i + BATCH]).long()).numpy()
                for i in range(0, len(tokens), BATCH)
            ]
        vectors = (np.concatenate(out) if out else np.zeros((0, self.encoder.vector_dim))).astype(np.float32)
        return vectors, (tokens != self.tokenizer.pad_id).sum(axis=1)


def titles_of(model_input) -> list[str]:
    """The titles of a predict input: a DataFrame's ``title`` column, or any sequence of strings."""
    if isinstance(model_input, pd.DataFrame):
        if "title" not in model_input.columns:
            raise ValueError(f"expected a DataFrame with a 'title' column, got columns {list(model_input.columns)}")
        series = model_input["title"]
    else:
        series = pd.Series(list(model_input))
    return [t if isinstance(t, str) else "" for t in series.tolist()]
