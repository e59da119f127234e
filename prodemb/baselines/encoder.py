"""The encoder under test (``prodemb``) and its floor (``random``) as evaluation methods.

- ``PretrainedEncoder``: the registered ``prodemb-encoder`` pyfunc (``ctx.model_uri``, e.g.
  ``models:/prodemb-encoder@champion``) embeds the raw titles exactly as production scoring does;
  ``alpha`` is the ``train.alpha`` param of the run that trained it.
- ``RandomEncoder``: the same tokenizer and Text-CNN architecture as that model, with weights randomly
  initialized from a fixed seed (the paper's lower bound, Fig. 2).
- ``LocalEncoder``: any encoder module of this process (the random one above, a model under study in
  ``benchmarks/quality_study.py``), tokenized exactly as the pyfunc does.

Both are frozen-feature methods: every task row is embedded once, then each fit is the paper's
liblinear logistic regression (``EmbeddingMethod``). A model URI is resolved and downloaded once per
context (``encoder_model``), so both methods and ``build_context`` share one copy.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from prodemb.baselines.base import EmbeddingMethod, EvalContext

log = logging.getLogger(__name__)


@dataclass
class EncoderModel:
    """A resolved, downloaded and loaded ``prodemb-encoder`` version."""

    uri: str  # as given
    name: str  # registered model name ("unregistered" for a runs:/ or path URI)
    version: str
    local_dir: str
    pyfunc: Any  # mlflow.pyfunc.PyFuncModel
    meta: dict  # vocab_size, encoder dims, max_len, language, dim
    tokenizer_path: str  # the SentencePiece model inside the downloaded artifacts
    run_id: str | None
    alpha: float | None  # train.alpha of the training run, when recorded

    @property
    def ref(self) -> str:
        return f"{self.name}/{self.version}"


def _artifact_paths(local_dir: str) -> dict[str, Path]:
    """name → file of the pyfunc artifacts listed in the MLmodel file (tokenizer, encoder, meta)."""
    import yaml

    mlmodel = next(Path(local_dir).rglob("MLmodel"), None)
    if mlmodel is None:
        raise ValueError(f"{local_dir} is not an MLflow model (no MLmodel file)")
    conf = yaml.safe_load(mlmodel.read_text())
    arts = (conf.get("flavors", {}).get("python_function", {}) or {}).get("artifacts", {}) or {}
    out = {name: mlmodel.parent / spec["path"] for name, spec in arts.items() if isinstance(spec, dict)}
    out["_run_id"] = conf.get("run_id")  # type: ignore[assignment]
    return out


def load_encoder_model(model_uri: str, tracking_uri: str | None, download_dir: str | Path) -> EncoderModel:
    """Resolve ``model_uri`` (alias, version or any MLflow model URI), download it and load the pyfunc.

    Raises ``prodemb.score.ModelNotFoundError`` when the URI does not resolve to a prodemb encoder.
    """
    import mlflow

    from prodemb.score import ModelNotFoundError, resolve_model

    resolved = resolve_model(model_uri, tracking_uri, str(download_dir))
    arts = _artifact_paths(resolved.local_dir)
    if "tokenizer" not in arts or "meta" not in arts:
        raise ModelNotFoundError(f"{model_uri!r} has no tokenizer/meta artifacts: not a prodemb encoder")
    meta = json.loads(Path(arts["meta"]).read_text())
    run_id = arts.get("_run_id")
    client = mlflow.MlflowClient()
    if resolved.name != "unregistered":
        run_id = client.get_model_version(resolved.name, resolved.version).run_id or run_id
    alpha = None
    if run_id:
        try:
            params = client.get_run(run_id).data.params  # α actually used (1 when the data had no category)
            raw = params.get("data.alpha_effective", params.get("train.alpha"))
            alpha = float(raw) if raw is not None else None
        except (mlflow.exceptions.MlflowException, ValueError) as exc:  # run deleted / other store
            log.warning("cannot read train.alpha of run %s for %s: %s", run_id, model_uri, exc)
    return EncoderModel(
        model_uri,
        resolved.name,
        resolved.version,
        resolved.local_dir,
        resolved.pyfunc,
        meta,
        str(arts["tokenizer"]),
        run_id,
        alpha,
    )


def encoder_model(ctx: EvalContext, model_uri: str | None = None) -> EncoderModel:
    """The loaded model for ``model_uri`` (default ``ctx.model_uri``), cached in ``ctx.extra``."""
    uri = model_uri or ctx.model_uri
    if not uri:
        raise ValueError(
            "no model URI: the prodemb and random methods evaluate a registered encoder "
            "(--model-uri models:/prodemb-encoder@champion)"
        )
    cache = ctx.extra.setdefault("encoder_models", {})
    if uri not in cache:
        if "workdir" not in ctx.extra:
            tmp = tempfile.TemporaryDirectory(prefix="prodemb-eval-")
            ctx.extra["_tmpdir"] = tmp  # removed with the context
            ctx.extra["workdir"] = tmp.name
        target = Path(ctx.extra["workdir"]) / f"model-{len(cache)}"
        target.mkdir(parents=True, exist_ok=True)
        cache[uri] = load_encoder_model(uri, ctx.tracking_uri, target)
    return cache[uri]


class PretrainedEncoder(EmbeddingMethod):
    """Frozen embeddings from the registered encoder (the pyfunc: raw titles → y = f(t(title)))."""

    name = "prodemb"

    def __init__(self, ctx: EvalContext, model_uri: str | None = None):
        super().__init__(ctx)
        self.model = encoder_model(ctx, model_uri)
        self.alpha = self.model.alpha
        self.model_ref = self.model.ref

    def embed(self, table: pd.DataFrame) -> np.ndarray:
        return np.asarray(
            self.model.pyfunc.predict(pd.DataFrame({"title": table["title"].astype(str)})), dtype=np.float32
        )


class LocalEncoder(EmbeddingMethod):
    """An encoder module of this process + LR: titles are normalized and tokenized as the pyfunc does
    (``Tokenizer.encode_raw``), then embedded in eval mode on the module's device."""

    name = "prodemb"

    def __init__(
        self,
        ctx: EvalContext,
        encoder,
        tokenizer,
        max_len: int,
        language: str,
        *,
        model_ref: str | None = None,
        alpha: float | None = None,
        batch_size: int = 4096,
    ):
        super().__init__(ctx)
        self.encoder, self.tokenizer = encoder.eval(), tokenizer
        self.max_len, self.language, self.batch_size = max_len, language, batch_size
        self.model_ref, self.alpha = model_ref, alpha

    def embed(self, table: pd.DataFrame) -> np.ndarray:
        import torch

        from prodemb.health import embed

        titles = table["title"].astype(str).tolist()
        tokens = self.tokenizer.encode_raw(titles, self.max_len, language=self.language)
        return embed(self.encoder, torch.from_numpy(tokens).long(), self.batch_size).numpy().astype(np.float32)


class RandomEncoder(LocalEncoder):
    """The model's tokenizer and architecture with random weights (fixed seed): the floor."""

    name = "random"

    def __init__(self, ctx: EvalContext, model_uri: str | None = None, seed: int | None = None):
        import torch

        from prodemb.model import ProductEncoder
        from prodemb.tokenizer import Tokenizer

        model = encoder_model(ctx, model_uri)
        meta, dims = model.meta, model.meta["encoder"]
        seed = int(ctx.eval_cfg.seed if seed is None else seed)
        with torch.random.fork_rng(devices=[]):  # leave the caller's RNG state alone
            torch.manual_seed(seed)
            encoder = ProductEncoder.from_dims(meta["vocab_size"], dims)
        super().__init__(
            ctx,
            encoder,
            Tokenizer.load(model.tokenizer_path),
            meta["max_len"],
            meta["language"],
            model_ref=f"random:{model.ref}",
        )
        self.meta, self.seed = meta, seed
