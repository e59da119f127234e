"""MLflow: tracking setup, the ``prodemb-encoder`` pyfunc (raw titles → vectors), registration, aliases,
and the training job's run keys (idempotent reruns).

The registered model is self-contained and pickle-free (a model from code, ``prodemb/encoder_from_code.py``):
the tokenizer, the encoder weights, the normalization settings and this package's code travel inside it, so

    mlflow.pyfunc.load_model("models:/prodemb-encoder@champion").predict(pd.DataFrame({"title": [...]}))

works in a fresh process. Aliases (MLflow 3, no stages): the training job sets ``candidate`` on the
new version and ``champion`` when none exists yet; promotion by evaluation moves ``champion`` later.

Run keys: a training job started with ``run_key=KEY`` (the scheduler's data interval) tags its MLflow run
and its version ``run_key=KEY``; a rerun with the same key finds that version and trains nothing
(``find_run_key_version``, ``reuse_version``). ``aliases_set=true`` marks a version whose job got as far
as setting its aliases, so a rerun completes what a killed job left undone.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

# Versions registered before the model came from code hold a pickle of ``prodemb.registry.EncoderPyfunc``:
# the name stays importable here so they still load.
from prodemb.encoder_pyfunc import EncoderPyfunc  # noqa: F401

log = logging.getLogger(__name__)
PACKAGE_DIR = Path(__file__).resolve().parent
MODEL_CODE = PACKAGE_DIR / "encoder_from_code.py"  # the model-from-code file (no pickle in the model)


def site_model_name(model_name: str, site: str | None) -> str:
    """The registered name of one site's model: ``prodemb-encoder-MLA`` (one name per site, so each site
    has its own versions and its own ``champion``); ``model_name`` itself when no site is given."""
    return f"{model_name}-{site}" if site else model_name


def use_tracking(tracking_uri: str, registry_uri: str | None = None) -> str:
    """Point this process's MLflow client at a tracking store and a model registry. The registry is
    ``registry_uri``, else the job's ``mlflow.registry_uri`` (``config.job_registry_uri``: a flag,
    ``$MLFLOW_REGISTRY_URI`` or the profile), else the tracking store (MLflow's own default).
    Returns the registry URI.

    MLflow's setters also write ``MLFLOW_TRACKING_URI``/``MLFLOW_REGISTRY_URI`` into the process
    environment; they are put back, so that the environment keeps saying what the user set, for this
    process's later configs and for the processes it starts."""
    from prodemb.config import job_registry_uri

    registry_uri = registry_uri or job_registry_uri() or tracking_uri
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(registry_uri)
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    return registry_uri


def setup_tracking(
    tracking_uri: str, experiment: str, artifact_root: str | Path | None = None, registry_uri: str | None = None
) -> str:
    """Point MLflow at ``tracking_uri`` (SQLite by default) and its registry (``use_tracking``), and make
    sure the experiment exists.

    With a database backend and no tracking server, new experiments store artifacts under
    ``artifact_root`` (default: ``mlartifacts`` next to the SQLite file) as absolute file URIs.
    """
    use_tracking(tracking_uri, registry_uri)
    if mlflow.get_experiment_by_name(experiment) is None:
        if artifact_root is None and tracking_uri.startswith("sqlite:///"):
            artifact_root = Path(tracking_uri.removeprefix("sqlite:///")).resolve().parent / "mlartifacts"
        location = (
            Path(artifact_root).resolve().as_uri()
            if artifact_root and "://" not in str(artifact_root)
            else (str(artifact_root) if artifact_root else None)
        )
        try:
            mlflow.create_experiment(experiment, artifact_location=location)
        except mlflow.exceptions.MlflowException:
            if mlflow.get_experiment_by_name(experiment) is None:  # not a concurrent run that created it first
                raise
    return mlflow.set_experiment(experiment).experiment_id


def resolve_version(model_uri: str) -> tuple[str, str]:
    """``models:/name@alias`` or ``models:/name/N`` → (name, version), checked against the registry (the
    tracking URI must be set; raises MlflowException when absent). Any other model URI → ("unregistered", uri)."""
    if not model_uri.startswith("models:/"):
        return "unregistered", model_uri
    client = mlflow.MlflowClient()
    ref = model_uri.removeprefix("models:/")
    if "@" in ref:
        name, alias = ref.split("@", 1)
        return name, str(client.get_model_version_by_alias(name, alias).version)
    name, version = ref.split("/", 1)
    client.get_model_version(name, version)
    return name, version


def encoder_signature(dim: int):
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, Schema, TensorSpec

    # -1: any batch size (the pt2-style fixed shapes are avoided by design).
    return ModelSignature(
        inputs=Schema([ColSpec("string", "title")]), outputs=Schema([TensorSpec(np.dtype("float32"), (-1, dim))])
    )


def pip_requirements() -> list[str]:
    from importlib.metadata import version

    return [f"{p}=={version(p)}" for p in ("torch", "sentencepiece", "numpy", "pandas", "mlflow")]


def log_encoder(
    encoder,
    tokenizer_path: str | Path,
    *,
    max_len: int,
    language: str,
    model_name: str,
    workdir: Path,
    example_titles: list[str],
) -> str:
    """Log the pyfunc to the active run and register it; returns the new version number."""
    import torch

    workdir.mkdir(parents=True, exist_ok=True)
    state = workdir / "encoder.pt"
    torch.save({k: v.detach().cpu() for k, v in encoder.state_dict().items()}, state)
    meta = workdir / "encoder_meta.json"
    meta.write_text(
        json.dumps(
            {
                "vocab_size": encoder.embed.num_embeddings,
                "encoder": encoder.dims(),
                "max_len": max_len,
                "language": language,
                "dim": encoder.vector_dim,
            },
            indent=2,
        )
    )
    info = mlflow.pyfunc.log_model(
        name="encoder",
        python_model=str(MODEL_CODE),
        artifacts={"tokenizer": str(tokenizer_path), "encoder": str(state), "meta": str(meta)},
        code_paths=[str(PACKAGE_DIR)],
        signature=encoder_signature(encoder.vector_dim),
        input_example=pd.DataFrame({"title": example_titles[:3]}),
        pip_requirements=pip_requirements(),
        registered_model_name=model_name,
    )
    return str(info.registered_model_version)


def set_aliases_after_training(model_name: str, version: str) -> dict[str, str]:
    """``candidate`` → the new version; ``champion`` too when the model has none yet."""
    client = mlflow.MlflowClient()
    client.set_registered_model_alias(model_name, "candidate", version)
    aliases = {"candidate": version}
    try:
        aliases["champion"] = str(client.get_model_version_by_alias(model_name, "champion").version)
    except mlflow.exceptions.MlflowException:
        client.set_registered_model_alias(model_name, "champion", version)
        aliases["champion"] = version
    return aliases


def tag_trained_version(
    model_name: str, version: str, *, dim_std_mean: float, content_sha256: str, run_key: str | None = None
) -> dict[str, str]:
    """What the training job sets on the version it registered: tags ``health=ok``, ``dim_std_mean``,
    ``content_sha256`` (and ``run_key``), then the aliases (``set_aliases_after_training``), then
    ``aliases_set=true`` last, so a job killed in between is completed by its rerun. Returns the aliases."""
    client = mlflow.MlflowClient()
    tags = {"health": "ok", "dim_std_mean": dim_std_mean, "content_sha256": content_sha256}
    if run_key:
        tags[RUN_KEY_TAG] = run_key
    for key, value in tags.items():
        client.set_model_version_tag(model_name, version, key, str(value))
    aliases = set_aliases_after_training(model_name, version)
    client.set_model_version_tag(model_name, version, ALIASES_SET_TAG, "true")
    return aliases


# --- run keys: one registered version per training run key ---------------------------------------

RUN_KEY_TAG = "run_key"
ALIASES_SET_TAG = "aliases_set"
_RUN_KEY_CHARS = re.compile(r"^[A-Za-z0-9_.:/+=@-]{1,250}$")


def check_run_key(run_key: str) -> str:
    if not _RUN_KEY_CHARS.match(run_key):
        raise ValueError(f"run key {run_key!r}: use 1-250 letters, digits and _ . : / + = @ -")
    return run_key


def find_run_key_version(model_name: str, run_key: str) -> str | None:
    """The registered version trained under ``run_key``, if any (the tracking URI must be set).

    Looks at the version tag first, then at the MLflow run tag, which is set before training starts:
    a job killed between registering and tagging its version is still found.
    """
    client = mlflow.MlflowClient()
    check_run_key(run_key)
    try:
        found = client.search_model_versions(f"name = '{model_name}' and tags.{RUN_KEY_TAG} = '{run_key}'")
        if not found:
            runs = mlflow.search_runs(
                search_all_experiments=True, output_format="list", filter_string=f"tags.{RUN_KEY_TAG} = '{run_key}'"
            )
            found = [
                v
                for r in runs
                for v in client.search_model_versions(f"name = '{model_name}' and run_id = '{r.info.run_id}'")
            ]
    except mlflow.exceptions.MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":  # no such registered model yet
            return None
        raise  # an unreachable or failing server: not "no version"
    return str(min(int(v.version) for v in found)) if found else None


def training_params(model_name: str, version: str) -> dict[str, str]:
    """The parameters of the run that trained a registered version (the tracking URI must be set)."""
    client = mlflow.MlflowClient()
    run_id = client.get_model_version(model_name, version).run_id
    return dict(client.get_run(run_id).data.params) if run_id else {}


def _run_version_tags(client, run_id: str) -> dict[str, str]:
    """The version tags the training job sets, as recorded on the training run (``health`` tag,
    ``health_dim_std_mean`` metric, ``data.content_sha256`` param); those the run lacks are left out."""
    data = client.get_run(run_id).data
    found = {
        "health": data.tags.get("health"),
        "dim_std_mean": data.metrics.get("health_dim_std_mean"),
        "content_sha256": data.params.get("data.content_sha256"),
    }
    return {k: str(v) for k, v in found.items() if v is not None}


def reuse_version(model_name: str, version: str, run_key: str) -> dict:
    """Summary for a run key that already has a version. Aliases stay as they are, unless the job that
    registered the version died before setting them (no ``aliases_set`` tag): then they are set now.
    Version tags the job did not get to set (``health``, ``dim_std_mean``, ``content_sha256``) are
    copied from the training run, which recorded them before registering (a version exists only if
    its run passed the health check); without ``health=ok`` the promotion gate would refuse it."""
    client = mlflow.MlflowClient()
    mv = client.get_model_version(model_name, version)
    if mv.run_id:
        for key, value in _run_version_tags(client, mv.run_id).items():
            if key not in mv.tags:
                log.info("run key %s: restoring tag %s=%s on version %s", run_key, key, value, version)
                client.set_model_version_tag(model_name, version, key, value)
    if mv.tags.get(ALIASES_SET_TAG) != "true":
        set_aliases_after_training(model_name, version)
        client.set_model_version_tag(model_name, version, RUN_KEY_TAG, run_key)
        client.set_model_version_tag(model_name, version, ALIASES_SET_TAG, "true")
    aliases = {
        a: str(client.get_model_version_by_alias(model_name, a).version)
        for a in ("candidate", "champion")
        if _has_alias(client, model_name, a)
    }
    return {
        "reused": True,
        "run_key": run_key,
        "run_id": mv.run_id,
        "model_name": model_name,
        "model_version": version,
        "aliases": aliases,
    }


def _has_alias(client, model_name: str, alias: str) -> bool:
    try:
        client.get_model_version_by_alias(model_name, alias)
        return True
    except mlflow.exceptions.MlflowException:
        return False
