"""The one typed config: ``conf/base.yaml`` + a profile overlay + CLI overrides.

    cfg = load_config("local", overrides=["sessions.gap_minutes=15"])

Profiles are YAML files in ``conf/`` deep-merged over ``base.yaml``; ``PRODEMB_PROFILE`` picks the
default profile and ``PRODEMB_CONF_DIR`` the folder. Precedence: CLI flags and ``--set`` > standard
environment variables (``MLFLOW_TRACKING_URI``, ``MLFLOW_REGISTRY_URI``, Feast's
``FEAST_FS_YAML_FILE_PATH`` and ``FEATURE_REPO_DIR_ENV_VAR``) > profile > base. String values may hold
``${NAME:-default}`` references to the environment (``PRODEMB_ROOT`` = the repository root). Overrides are
``dotted.key=value`` strings whose values are parsed as YAML scalars (``15`` → int, ``true`` → bool,
``[a, b]`` → list).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

REPO_ROOT = Path(__file__).resolve().parent.parent
CONF_DIR = Path(os.environ.get("PRODEMB_CONF_DIR", REPO_ROOT / "conf"))
DEFAULT_PROFILE = "local"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SparkConfig(_Section):
    master: str = "local[*]"
    app_name: str = "prodemb"
    conf: dict[str, Any] = Field(default_factory=dict)  # any spark.* key, passed through
    # Delta (and s3a) jars are already on the cluster's Spark classpath (its spark-defaults.conf, as
    # `make cluster-up` writes them): the DAG's spark-submit then passes no --packages, like a user does.
    packages_installed: bool = False


class PathsConfig(_Section):
    data_dir: str = "data"  # stage tables: catalog/, sessions/, pairs/, quarantine/, embeddings/
    synth_dir: str = "data/synth"  # default generated click logs
    runs_dir: str = "runs"  # tokenizer, plots, reports


class SessionsConfig(_Section):
    gap_minutes: float = 30.0
    max_items: int = 10
    format: Literal["parquet", "delta"] = "parquet"
    language: str = "es"
    max_title_chars: int = 1000
    # Events outside [valid_from, now + future_slack_days] are quarantined as ts_out_of_range.
    valid_from: str = "1995-01-01"
    future_slack_days: int = 1
    default_site: str = "default"
    # Interval runs (--start/--end) read this far past --end so sessions that begin inside the
    # interval come out whole; sessions longer than this would be cut (none in the data seen so far).
    max_session_hours: float = 24.0


class TokenizerConfig(_Section):
    vocab_size: int = 30_000  # paper A.1
    model_type: str = "unigram"
    input_sentence_size: int = 2_000_000  # titles sampled (shuffled) for training on big catalogs
    seed: int = 0


class ModelConfig(_Section):
    """Encoder dimensions (paper §3.2, A.1). Named profiles live in conf/models/<profile>.yaml: ``default``
    (the recommended model), ``paper`` (the paper's exact setting), ``small`` (tests, quick demo)."""

    profile: str = "default"
    embed_dim: int = 512  # t_θ: vocab × 512
    n_filters: int = 128  # per kernel size
    kernel_sizes: list[int] = Field(default_factory=lambda: [2, 3, 4, 5])
    pooling: Literal["max", "max+mean"] = "max"  # y: max over time (the paper), or + mean token embedding
    # The published vector v (scoring, Feast, evaluation, health; never training): "y" (the paper), or
    # "max+mean/l2": y and the same n-gram features mean-pooled, each unit-norm, side by side (2× the dims)
    vector: Literal["y", "max+mean/l2"] = "y"
    vector_scale: float = Field(1.0, gt=0.0)  # v times this
    hidden_dim: int = 1024  # MLP hidden width of g, q, h
    proj_dim: int = 128  # z = g(y), q(z)
    max_len: int = 32  # tokens per title
    bn_momentum: float = 0.1  # BatchNorm decay 0.9 (PyTorch momentum = 1 - decay)


class AugmentConfig(_Section):
    """Views of a title (prodemb/augment.py), applied to both sides of every training pair; all off by
    default (the paper has none)."""

    dropout: float = Field(0.0, ge=0.0, lt=1.0)  # drop each token with this probability
    span_mask: float = Field(0.0, ge=0.0, le=1.0)  # mask one span of this fraction of the tokens
    shuffle_window: int = Field(0, ge=0)  # no token moves further than this


# The train keys that ``train.without_categories`` may set for data without categories (besides α).
WITHOUT_CATEGORIES_KEYS = ("self_pair_fraction", "batch_size", "max_steps", "base_lr")


class WithoutCategoriesConfig(_Section):
    """What training changes on data with no category at all, where α is 1 (the BYOL term alone). A field
    left None keeps the value of ``train``. The quality study chose them on validation AUC
    (benchmarks/RESULTS.md, "Embedding quality")."""

    self_pair_fraction: float | None = Field(None, ge=0.0, le=1.0)
    batch_size: int | None = Field(None, gt=0)
    max_steps: int | None = Field(None, gt=0)
    base_lr: float | None = Field(None, gt=0.0)  # tuned for this batch size (the × batch/256 rule still applies)
    # Categories from k-means clusters of the titles (prodemb/title_clusters.py); 0: none, and α is 1.
    title_clusters: int = Field(0, ge=0)
    alpha: float | None = Field(None, ge=0.0, le=1.0)  # α with title clusters (None: train.alpha)

    @model_validator(mode="after")
    def _alpha_needs_clusters(self) -> "WithoutCategoriesConfig":
        if self.alpha is not None and self.alpha != 1.0 and self.title_clusters == 0:
            raise ValueError("without_categories.alpha < 1 needs title_clusters: there is no category to predict")
        return self


SITE_PATTERN = r"^[A-Za-z0-9_]+$"  # a site's name goes into model names, Feast view names and paths


class TrainConfig(_Section):
    site: str | None = Field(None, pattern=SITE_PATTERN)  # one site's model (jobs/train.py --site); None: all
    alpha: float = 0.9  # Eq. 4 weight of the BYOL term
    epochs: int = 1
    max_steps: int | None = None  # the budget in optimizer steps; None: ``epochs`` over the pairs
    max_minutes: float | None = Field(None, gt=0)  # cap the loop: fewer steps, the schedules rescaled to them
    batch_size: int = 4096
    base_lr: float = 0.45  # scaled by batch_size / 256 (A.1)
    momentum: float = 0.9
    weight_decay: float = 1e-5
    warmup_fraction: float = 0.05  # linear warm-up, then cosine annealing
    optimizer: Literal["lars", "sgd"] = "lars"
    lars_eta: float = 0.001
    tau_base: float = 0.996  # BYOL target EMA
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    compile: bool = False  # torch.compile the online network
    health_sample: int = 5000  # products embedded for the collapse check
    min_dim_std_ratio: float = 0.05  # collapsed if mean per-dim std < ratio / sqrt(dim) (healthy ≈ 0.5)
    log_every: int = 10
    check_sync_every: int = 0  # torchrun: every N steps check that all ranks hold identical weights
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    self_pair_fraction: float = Field(0.0, ge=0.0, le=1.0)  # share of each batch made of (p, p) pairs
    without_categories: WithoutCategoriesConfig = Field(default_factory=WithoutCategoriesConfig)

    def for_data(self, n_categories: int) -> "TrainConfig":
        """The settings that train on data with ``n_categories`` categories: without any,
        ``without_categories`` replaces what it sets, and α is 1 (Eq. 4 has no category term to weigh)
        unless title clusters stand in for the categories (then ``without_categories.alpha``, else α)."""
        if n_categories > 0:
            return self
        wc = self.without_categories
        changes = {k: getattr(wc, k) for k in WITHOUT_CATEGORIES_KEYS if getattr(wc, k) is not None}
        alpha = 1.0 if not wc.title_clusters else (self.alpha if wc.alpha is None else wc.alpha)
        return self.model_copy(update={"alpha": alpha, **changes})

    def changes_for_data(self, n_categories: int) -> dict[str, Any]:
        """{field: effective value} for the fields ``for_data`` changes."""
        eff = self.for_data(n_categories)
        return {k: getattr(eff, k) for k in ("alpha", *WITHOUT_CATEGORIES_KEYS) if getattr(eff, k) != getattr(self, k)}


class MlflowConfig(_Section):
    tracking_uri: str = "sqlite:///mlflow.db"
    registry_uri: str | None = None  # the model registry; None: the tracking URI (MLflow's default)
    experiment: str = "prodemb"
    model_name: str = "prodemb-encoder"


class FeastConfig(_Section):
    repo_dir: str = "feature_repo"
    # relative to repo_dir, or absolute; feature_store.cluster.yaml: Redis + Spark offline store
    yaml_file: str = "feature_store.yaml"


class ScoreConfig(_Section):
    keep_model_versions: int = 3  # model versions kept in the embeddings table (history)
    incremental: bool = True  # embed only new or changed products of the model's last scoring
    model_uri: str | None = None  # None: models:/<mlflow.model_name>@champion


class AnnConfig(_Section):
    """The similar-products index publishing builds per model version (prodemb.ann: faiss HNSW)."""

    enabled: bool = True
    m: int = Field(32, ge=4)  # graph links per vector
    ef_construction: int = Field(80, ge=8)
    ef_search: int = Field(96, ge=10)  # the recall/speed knob at query time
    recall_queries: int = Field(500, ge=10)  # sample whose exact top-10 measures the index's recall@10


class ServeConfig(_Section):
    """``jobs/serve.py``: MLflow's scoring server for new titles (cold start)."""

    host: str = "127.0.0.1"
    port: int = Field(5001, ge=1, le=65535)  # 5000 is the MLflow tracking server's
    workers: int = Field(1, ge=1)
    torch_threads: int = Field(0, ge=0)  # per worker; 0 = the cores / workers
    timeout_s: int = Field(60, ge=1)  # per request


class EvaluateConfig(_Section):
    """Downstream evaluation protocol (paper §4.1, §4.2, §5.1, A.1) and its baselines (A.2)."""

    methods: list[str] = Field(
        default_factory=lambda: [
            "prodemb",
            "random",
            "tfidf",
            "tfidf+prodemb",
            "fasttext",
            "prod2vec",
            "meta_prod2vec",
            "textcnn",
            "sbert",
        ]
    )
    train_sizes: list[int] = Field(default_factory=lambda: [100, 500, 1000, 5000, 10000, 50000, 100000])
    samples: int = Field(5, ge=1)  # random training subsamples per size
    split: list[float] = Field(default_factory=lambda: [0.6, 0.2, 0.2])  # train / validation / test
    seed: int = 0
    lr_max_iter: int = 1000  # LogisticRegression(solver="liblinear", max_iter=...)
    alphas: list[float] = Field(default_factory=lambda: [0.0, 0.1, 0.5, 0.9, 1.0])  # the α sweep
    # Tasks the DAG and the promotion gate evaluate on: NAME → table path (CSV/Parquet: title, label[, product_id]).
    tasks: dict[str, str] = Field(default_factory=dict)
    builtin_tasks: list[str] = Field(default_factory=list)  # prodemb.tasks.BUILTIN_TASKS names (real data)
    shared_data_dir: str | None = None  # where built-in tasks read; None: $PRODEMB_SHARED_DATA or ../shared/data
    model_uri: str | None = None  # encoder under test; None: score.model_uri
    experiment: str | None = None  # MLflow experiment of evaluation runs; None: "<mlflow.experiment>-eval"
    sweep_model_name: str = "prodemb-encoder-sweep"  # the α sweep registers here, never under mlflow.model_name
    output_dir: str = "runs/eval"
    textcnn_max_epochs: int = 25  # supervised Text-CNN baseline: early stop after `patience`
    textcnn_patience: int = 5
    knn_k: int = 5  # (Meta-)Prod2Vec classifier
    device: str = "auto"


class PromoteConfig(_Section):
    """The gate that moves ``champion`` to ``candidate``."""

    tolerance: float = Field(0.0, ge=0)  # promote if candidate AUC >= champion AUC - tolerance
    train_size: int = Field(1000, ge=2)  # LR training rows per task for the gate's validation AUC
    samples: int = Field(3, ge=1)
    card: bool = True  # write and log the candidate's quality card (prodemb/card.py)
    card_methods: list[str] = Field(default_factory=lambda: ["random", "tfidf", "tfidf+prodemb"])


class ScheduleConfig(_Section):
    """The Airflow DAG ``prodemb`` (airflow_dags/prodemb_dag.py): where raw logs land, when runs happen, where
    tasks run. Relative local paths are relative to the repository root."""

    source_path: str | None = None  # raw click logs the runs read; default <paths.synth_dir>/clicks
    source_format: str = "clicks"  # --input-format of jobs/sessionize.py
    intervals_dir: str | None = None  # per-interval sessionize tables; default <paths.data_dir>/intervals
    work_dir: str | None = None  # per-interval tokenizers and evaluation reports; default paths.runs_dir
    start_date: str = "2024-01-01"  # first data interval (UTC)
    cron: str = "@daily"  # one run per data interval (contiguous intervals, UTC)
    retrain_cron: str = "@daily"  # train/evaluate/promote only when an interval ends on this schedule
    catchup: bool = False
    max_active_runs: int = 1  # runs share the consolidated tables: one at a time
    spark_conn_id: str = "spark_default"  # master comes from the connection (local[*] in the docs' example)
    python: str | None = None  # interpreter for the jobs and PySpark; default the one Airflow runs
    train_queue: str = "default"  # Celery queue of the train task (a GPU worker listens on it)
    train_pool: str | None = None  # Airflow pool limiting concurrent trainings (GPU slots)
    retries: int = 1
    retry_delay_minutes: float = 5.0
    task_retries: dict[str, int] = Field(default_factory=dict)  # per task id, e.g. {train: 0}
    timeout_hours: float = 12.0  # execution timeout of every task


class Config(_Section):
    profile: str = DEFAULT_PROFILE
    # One model per site (paper A.1): each listed site trains, registers (<mlflow.model_name>-<site>) and
    # scores its own model, and Feast keys vectors by (site, product_id). Empty: one model for all data,
    # keyed by product_id (a single-site deployment).
    sites: list[Annotated[str, StringConstraints(pattern=SITE_PATTERN)]] = Field(default_factory=list)
    # Environment defaults of a profile (e.g. the standard AWS variables of a local object store): set for
    # this process and its children where the environment does not set them already.
    env: dict[str, str] = Field(default_factory=dict)
    spark: SparkConfig = Field(default_factory=SparkConfig)
    paths: PathsConfig = Field(default_factory=PathsConfig)
    sessions: SessionsConfig = Field(default_factory=SessionsConfig)
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    mlflow: MlflowConfig = Field(default_factory=MlflowConfig)
    feast: FeastConfig = Field(default_factory=FeastConfig)
    score: ScoreConfig = Field(default_factory=ScoreConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    ann: AnnConfig = Field(default_factory=AnnConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    promote: PromoteConfig = Field(default_factory=PromoteConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)

    @model_validator(mode="after")
    def _champion_of_this_model(self) -> "Config":
        # Scoring follows mlflow.model_name unless a URI is given: a renamed model scores its own champion.
        if self.score.model_uri is None:
            self.score.model_uri = f"models:/{self.mlflow.model_name}@champion"
        return self


def deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _read_yaml(path: Path) -> dict:
    with open(path, encoding="utf-8") as fh:
        data = yaml.safe_load(fh) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    return data


# Standard environment variables that set a config key: a profile's value gives way to them, a job's
# flag or --set still wins.
ENV_KEYS = {
    "MLFLOW_TRACKING_URI": ("mlflow", "tracking_uri"),
    "MLFLOW_REGISTRY_URI": ("mlflow", "registry_uri"),
    "FEATURE_REPO_DIR_ENV_VAR": ("feast", "repo_dir"),  # the Feast CLI's --chdir
    "FEAST_FS_YAML_FILE_PATH": ("feast", "yaml_file"),  # the Feast CLI's --feature-store-yaml
}
# Paths in those variables are relative to the working directory, as the Feast CLI reads them.
_ENV_PATHS = {"FEATURE_REPO_DIR_ENV_VAR", "FEAST_FS_YAML_FILE_PATH"}
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^${}]*))?\}")


def expand_vars(value: Any) -> Any:
    """``${NAME}`` / ``${NAME:-default}`` in string values, from the environment, innermost first (so
    defaults may nest). ``PRODEMB_ROOT`` is the repository root unless set. An unset name without a
    default is an error, not an empty string."""
    if isinstance(value, dict):
        return {k: expand_vars(v) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_vars(v) for v in value]
    if not isinstance(value, str) or "${" not in value:
        return value
    env = {"PRODEMB_ROOT": str(REPO_ROOT), **os.environ}

    def sub(m: re.Match) -> str:
        if m.group(1) in env:
            return env[m.group(1)]
        if m.group(2) is None:
            raise ValueError(f"config value {value!r}: environment variable {m.group(1)} is not set")
        return m.group(2)

    while True:
        new = _VAR.sub(sub, value)
        if new == value:
            return new
        value = new


def parse_override(item: str) -> dict:
    """``"a.b.c=1"`` → ``{"a": {"b": {"c": 1}}}``."""
    if "=" not in item:
        raise ValueError(f"override {item!r} must look like section.key=value")
    key, raw = item.split("=", 1)
    value: Any = yaml.safe_load(raw) if raw.strip() else ""
    parts = key.strip().split(".")
    if parts[:2] == ["spark", "conf"] and len(parts) > 2:  # Spark keys contain dots themselves
        parts = parts[:2] + [".".join(parts[2:])]
    for part in reversed(parts):
        value = {part: value}
    return value


def load_config(
    profile: str | None = None, overrides: list[str] | None = None, conf_dir: str | Path | None = None
) -> Config:
    conf_dir = Path(conf_dir or CONF_DIR)
    profile = profile or os.environ.get("PRODEMB_PROFILE", DEFAULT_PROFILE)
    data = _read_yaml(conf_dir / "base.yaml") if (conf_dir / "base.yaml").exists() else {}
    overlay = conf_dir / f"{profile}.yaml"
    if profile != "base":
        if not overlay.exists():
            known = sorted(p.stem for p in conf_dir.glob("*.yaml"))
            raise FileNotFoundError(f"config profile {profile!r} not found in {conf_dir} (have: {known})")
        data = deep_merge(data, _read_yaml(overlay))
    for var, (section, key) in ENV_KEYS.items():
        if os.environ.get(var):
            value = str(Path(os.environ[var]).resolve()) if var in _ENV_PATHS else os.environ[var]
            data = deep_merge(data, {section: {key: value}})
    cli = [parse_override(item) for item in overrides or []]
    for over in cli:
        data = deep_merge(data, over)
    # Model dimensions come from conf/models/<model.profile>.yaml; explicit keys still win.
    model_profile = (data.get("model") or {}).get("profile", ModelConfig().profile)
    model_file = conf_dir / "models" / f"{model_profile}.yaml"
    if not model_file.exists():
        known = sorted(p.stem for p in (conf_dir / "models").glob("*.yaml"))
        raise FileNotFoundError(f"model profile {model_profile!r} not found in {conf_dir / 'models'} (have: {known})")
    # A model profile sets `model:` dimensions and may set `train:` defaults suited to its size.
    prof = _read_yaml(model_file)
    data["model"] = deep_merge(deep_merge(prof.get("model", {}), data.get("model") or {}), {"profile": model_profile})
    data["train"] = deep_merge(prof.get("train", {}), data.get("train") or {})  # data holds the CLI overrides
    # A train key set on the command line holds for every kind of data: it also replaces the profile's
    # setting for data without categories, unless that is set on the command line too.
    wc = data["train"].get("without_categories") or {}
    for key in set(WithoutCategoriesConfig.model_fields) & set(wc):
        said = [over["train"] for over in cli if isinstance(over.get("train"), dict)]
        if any(key in t for t in said) and not any(key in (t.get("without_categories") or {}) for t in said):
            wc[key] = None
    data["profile"] = profile
    for var, value in expand_vars(data.get("env") or {}).items():  # first: other values may name them
        os.environ.setdefault(str(var), str(value))
    return Config.model_validate(expand_vars(data))


def add_config_args(parser) -> None:
    """The config flags every job shares."""
    parser.add_argument(
        "--config-profile",
        dest="conf_profile",
        default=None,
        help="environment profile in conf/ (default: $PRODEMB_PROFILE or 'local')",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config key, e.g. --set sessions.gap_minutes=15 (repeatable)",
    )


BUSY_EXIT = 75  # EX_TEMPFAIL: another run holds the output's lock; try again when it has finished


def comma_list(kind=str):
    """argparse ``type=`` for ``--flag 1,2,3`` → ``[kind(1), kind(2), kind(3)]`` (at least one value)."""
    import argparse

    def parse(text: str) -> list:
        try:
            values = [kind(x) for x in text.split(",") if x.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a comma-separated list of {kind.__name__}, got {text!r}"
            ) from None
        if not values:
            raise argparse.ArgumentTypeError("expected at least one value")
        return values

    return parse


def config_from_args(args, **flag_overrides: Any) -> Config:
    """Config from ``--profile``/``--set`` plus explicit job flags (``section.key`` → value, None = unset)."""
    extra = [
        f"{k}={yaml.safe_dump(v, default_flow_style=True).strip().removesuffix('...').strip()}"
        for k, v in flag_overrides.items()
        if v is not None
    ]
    # An --epochs flag means epochs: it replaces a profile's step budget (unless --max-steps or a --set
    # train.max_steps, both applied after this, says otherwise). A budget asked for by flag (--epochs or
    # --max-steps) also lifts a profile's wall-time cap (the default's 19 minutes) unless --max-minutes or
    # a --set train.max_minutes asks for one.
    epochs, steps = (flag_overrides.get(k) is not None for k in ("train.epochs", "train.max_steps"))
    lead = (["train.max_steps=null"] if epochs else []) + (["train.max_minutes=null"] if epochs or steps else [])
    cfg = load_config(getattr(args, "conf_profile", None), lead + list(getattr(args, "overrides", [])) + extra)
    global _job_registry_uri
    _job_registry_uri = cfg.mlflow.registry_uri
    return cfg


_job_registry_uri: str | None = None


def job_registry_uri() -> str | None:
    """The running job's ``mlflow.registry_uri`` (set by ``config_from_args``; cfg already ranks a flag over
    ``$MLFLOW_REGISTRY_URI`` over the profile): every MLflow client of the job uses that registry, also
    where a library call is given only a tracking URI (``prodemb.registry.use_tracking``)."""
    return _job_registry_uri
