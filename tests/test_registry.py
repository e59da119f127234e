"""prodemb/registry.py: a model registry apart from the tracking store, as MLflow's MLFLOW_REGISTRY_URI says."""

from __future__ import annotations

import argparse
import os
import sqlite3

import pytest

from prodemb import config


def registered_models(db) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [r[0] for r in conn.execute("select name from registered_models")]


def register(encoder, tokenizer_path, model_name: str, workdir) -> str:
    """Log and register a tiny encoder (max_len 16, Spanish) in a run of its own; returns its version."""
    import mlflow

    from prodemb.registry import log_encoder

    with mlflow.start_run():
        return log_encoder(
            encoder,
            tokenizer_path,
            max_len=16,
            language="es",
            model_name=model_name,
            workdir=workdir,
            example_titles=["mate"],
        )


def test_the_registry_variable_sends_versions_to_their_own_store(tiny, tmp_path, monkeypatch):
    import mlflow
    import torch

    from prodemb.model import ProductEncoder
    from prodemb.registry import resolve_version, setup_tracking, use_tracking
    from prodemb.score import ModelNotFoundError, resolve_model

    track, reg = f"sqlite:///{tmp_path}/track.db", f"sqlite:///{tmp_path}/registry.db"
    monkeypatch.setattr(config, "_job_registry_uri", None)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", reg)  # what the user exported
    ap = argparse.ArgumentParser()
    config.add_config_args(ap)
    config.config_from_args(ap.parse_args([]))  # a job starts
    before = os.environ.get("MLFLOW_TRACKING_URI")
    setup_tracking(track, "registry-test")
    assert mlflow.get_registry_uri() == reg and mlflow.get_tracking_uri() == track
    assert os.environ.get("MLFLOW_TRACKING_URI") == before  # MLflow's setters leave the environment as is
    tok = next((tiny["work"]).glob("tok.model"))
    torch.manual_seed(0)
    version = register(ProductEncoder(300, 8, 4, (2, 3)), tok, "separate-registry", tmp_path / "model")
    assert registered_models(tmp_path / "registry.db") == ["separate-registry"]
    assert registered_models(tmp_path / "track.db") == []  # the run is there, the version is not
    assert resolve_version("models:/separate-registry/1") == ("separate-registry", version)
    # Scoring resolves and loads it through the same variable; without it the tracking store has no such model.
    resolved = resolve_model("models:/separate-registry/1", track, str(tmp_path / "dl"))
    assert resolved.dim == 4 * 2  # 4 filters x 2 kernel sizes
    monkeypatch.setattr(config, "_job_registry_uri", None)  # a process with no registry configured
    with pytest.raises(ModelNotFoundError, match="separate-registry"):
        resolve_model("models:/separate-registry/1", track, str(tmp_path / "dl2"))
    assert use_tracking(track, reg) == reg  # an explicit registry needs no variable
    assert resolve_version("models:/separate-registry/1")[1] == version


def test_a_registered_model_serves_its_published_vector(tiny, tmp_path):
    """A model whose profile sets ``model.vector`` serves exactly ``ProductEncoder.vector`` through the
    pyfunc MLflow loads (so scoring, Feast and evaluation all get it), and records its dimension."""
    import mlflow
    import numpy as np
    import pandas as pd
    import torch

    from prodemb.model import ProductEncoder
    from prodemb.registry import setup_tracking
    from prodemb.score import resolve_model
    from prodemb.tokenizer import Tokenizer

    track = f"sqlite:///{tmp_path}/track.db"
    setup_tracking(track, "vector-test")
    tok_path = next((tiny["work"]).glob("tok.model"))
    torch.manual_seed(0)
    encoder = ProductEncoder(
        Tokenizer.load(str(tok_path)).vocab_size, 8, 4, (2, 3), vector="max+mean/l2", vector_scale=2.0
    )
    register(encoder, tok_path, "vector-model", tmp_path / "model")
    resolved = resolve_model("models:/vector-model/1", track, str(tmp_path / "dl"))
    assert resolved.dim == 2 * 4 * 2  # [y ; ȳ]: twice the 4 filters × 2 kernel sizes
    titles = ["Mate de calabaza usado", "Termo acero 1 litro", "Bombilla alpaca"]
    served = mlflow.pyfunc.load_model("models:/vector-model/1").predict(pd.DataFrame({"title": titles}))
    tokens = Tokenizer.load(str(tok_path)).encode_raw(titles, 16, language="es")
    with torch.inference_mode():
        expected = encoder.eval().vector(torch.from_numpy(tokens).long()).numpy()
    np.testing.assert_allclose(served, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(served, axis=1), 2.0 * np.sqrt(2), rtol=1e-5)
