"""Config layering: base < profile < standard environment variables < flags; ${VAR} references."""

from __future__ import annotations

import os

import pytest

from prodemb.config import REPO_ROOT, expand_vars, load_config


@pytest.fixture(autouse=True)
def _profile_env_stays_in_the_test():
    """Loading a profile with an ``env:`` section (cluster-local) sets those variables in this process
    (``os.environ.setdefault``); put the environment back so later tests in this worker do not inherit them."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def test_expand_vars_nested_defaults_and_repo_root(monkeypatch):
    monkeypatch.delenv("PRODEMB_LAKE", raising=False)
    assert expand_vars("${PRODEMB_LAKE:-file://${PRODEMB_ROOT}/lake}/t") == f"file://{REPO_ROOT}/lake/t"
    monkeypatch.setenv("PRODEMB_LAKE", "s3a://lake")
    assert expand_vars({"a": ["${PRODEMB_LAKE:-x}/t"]}) == {"a": ["s3a://lake/t"]}
    assert expand_vars("no refs") == "no refs" and expand_vars(3) == 3


def test_an_unset_variable_without_default_is_an_error(monkeypatch):
    monkeypatch.delenv("PRODEMB_NOT_SET", raising=False)
    with pytest.raises(ValueError, match="PRODEMB_NOT_SET is not set"):
        expand_vars("${PRODEMB_NOT_SET}/x")


def test_mlflow_tracking_uri_env_sits_between_profile_and_flags(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert load_config("local").mlflow.tracking_uri == "sqlite:///mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert load_config("local").mlflow.tracking_uri == "http://127.0.0.1:5999"
    assert load_config("cluster-local").mlflow.tracking_uri == "http://127.0.0.1:5999"
    flagged = load_config("local", ["mlflow.tracking_uri=sqlite:///x.db"])
    assert flagged.mlflow.tracking_uri == "sqlite:///x.db"


def test_registry_and_feast_variables_sit_between_profile_and_flags(monkeypatch, tmp_path):
    import argparse

    from prodemb.config import add_config_args, config_from_args

    _unset_for_this_test(monkeypatch, "MLFLOW_REGISTRY_URI", "FEAST_FS_YAML_FILE_PATH", "FEATURE_REPO_DIR_ENV_VAR")
    monkeypatch.chdir(tmp_path)
    plain = load_config("local")
    assert plain.mlflow.registry_uri is None and plain.feast.repo_dir == "feature_repo"
    assert load_config("cluster-local").feast.yaml_file == "feature_store.cluster-local.yaml"
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", "http://127.0.0.1:5998")
    monkeypatch.setenv("FEATURE_REPO_DIR_ENV_VAR", "repos/prodemb")  # relative to the working dir,
    monkeypatch.setenv("FEAST_FS_YAML_FILE_PATH", "repos/prodemb/online.yaml")  # as the Feast CLI reads them
    for profile in ("local", "cluster-local"):
        cfg = load_config(profile)
        assert cfg.mlflow.registry_uri == "http://127.0.0.1:5998"
        assert cfg.feast.repo_dir == str(tmp_path / "repos" / "prodemb")
        assert cfg.feast.yaml_file == str(tmp_path / "repos" / "prodemb" / "online.yaml")
    flagged = load_config("local", ["mlflow.registry_uri=sqlite:///reg.db", "feast.yaml_file=other.yaml"])
    assert flagged.mlflow.registry_uri == "sqlite:///reg.db" and flagged.feast.yaml_file == "other.yaml"
    # A job's registry (here from --set, over the environment) is the one its MLflow clients use.
    from prodemb import config

    monkeypatch.setattr(config, "_job_registry_uri", None)
    ap = argparse.ArgumentParser()
    add_config_args(ap)
    config_from_args(ap.parse_args(["--set", "mlflow.registry_uri=sqlite:///reg.db"]))
    assert config.job_registry_uri() == "sqlite:///reg.db"


def _unset_for_this_test(monkeypatch, *names: str) -> None:
    for name in names:  # set first, so that teardown removes whatever the code under test sets
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)


def test_cluster_local_profile_points_at_the_local_services(monkeypatch):
    from prodemb import cluster

    _unset_for_this_test(monkeypatch, "MLFLOW_TRACKING_URI", "PRODEMB_LAKE", *cluster.S3_ENV)
    cfg = load_config("cluster-local")
    assert cfg.spark.master == "spark://127.0.0.1:7077"
    assert cfg.mlflow.tracking_uri == "http://127.0.0.1:5000"
    assert cfg.sessions.format == "delta"
    assert cfg.paths.data_dir == f"s3a://{cluster.LAKE_BUCKET}/tables"
    assert cfg.feast.yaml_file == "feature_store.cluster-local.yaml"
    assert cfg.spark.packages_installed is True and load_config("cluster").spark.packages_installed is False
    # The object store's variables are defaulted for this process and its children, s3a built from them.
    assert {k: os.environ[k] for k in cluster.S3_ENV} == cluster.S3_ENV == cfg.env
    assert cfg.spark.conf["spark.hadoop.fs.s3a.endpoint"] == cluster.S3_URL


def test_the_environment_wins_over_a_profiles_env_defaults(monkeypatch):
    from prodemb import cluster

    _unset_for_this_test(monkeypatch, *cluster.S3_ENV)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9999")
    cfg = load_config("cluster-local")
    assert os.environ["AWS_ENDPOINT_URL"] == "http://127.0.0.1:9999"
    assert cfg.spark.conf["spark.hadoop.fs.s3a.endpoint"] == "http://127.0.0.1:9999"
    assert os.environ["AWS_REGION"] == cluster.S3_ENV["AWS_REGION"]


def test_scoring_follows_the_model_name_unless_a_uri_is_given():
    assert load_config("local").score.model_uri == "models:/prodemb-encoder@champion"
    assert load_config("local", ["mlflow.model_name=other"]).score.model_uri == "models:/other@champion"
    assert (
        load_config("local", ["mlflow.model_name=other", "score.model_uri=models:/x/3"]).score.model_uri
        == "models:/x/3"
    )


def test_the_default_model_profile_is_the_recommended_one_and_paper_keeps_every_extension_off():
    default, paper = load_config("local"), load_config("local", ["model.profile=paper"])
    assert default.model.profile == "default"
    vector = {"profile", "vector", "vector_scale"}  # the published vector: the default's extension
    assert default.model.model_dump(exclude=vector) == paper.model.model_dump(exclude=vector)
    assert (default.model.vector, default.model.vector_scale) == ("max+mean/l2", 2.0)
    assert (paper.model.vector, paper.model.vector_scale) == ("y", 1.0)  # the paper publishes y
    assert (default.train.max_steps, default.train.alpha, default.train.self_pair_fraction) == (300, 0.5, 0.25)
    assert (paper.train.max_steps, paper.train.alpha, paper.train.self_pair_fraction) == (None, 0.9, 0.0)
    # the ≤ 20-minute contract of `jobs/train.py` with no flags holds on a slower machine too
    assert (default.train.max_minutes, paper.train.max_minutes) == (19, None)
    assert load_config("local", ["train.max_minutes=null"]).train.max_minutes is None
    assert default.train.changes_for_data(0) == {
        "alpha": 1.0,
        "self_pair_fraction": 0.0,
        "batch_size": 1024,
        "max_steps": 1600,
        "base_lr": 1.0,
    }
    assert paper.train.changes_for_data(0) == {"alpha": 1.0} and default.train.changes_for_data(5) == {}
    assert paper.train.augment.model_dump() == {"dropout": 0.0, "span_mask": 0.0, "shuffle_window": 0}
    assert load_config("local", ["model.profile=small"]).model.embed_dim == 64


def test_a_train_key_set_on_the_command_line_holds_for_data_without_categories_too():
    assert load_config("local", ["train.batch_size=256"]).train.changes_for_data(0) == {
        "alpha": 1.0,
        "self_pair_fraction": 0.0,
        "max_steps": 1600,
        "base_lr": 1.0,
    }
    lr = load_config("local", ["train.base_lr=0.3"]).train
    assert (lr.for_data(3).base_lr, lr.for_data(0).base_lr) == (0.3, 0.3)
    epochs = load_config("local", ["train.max_steps=null", "train.epochs=2"]).train  # what --epochs sets
    assert epochs.for_data(0).max_steps is None and epochs.for_data(0).batch_size == 1024
    both = load_config("local", ["train.batch_size=256", "train.without_categories.batch_size=64"]).train
    assert (both.for_data(3).batch_size, both.for_data(0).batch_size) == (256, 64)


def test_a_step_budget_asked_for_by_flag_lifts_the_profiles_time_cap_unless_one_is_asked_for_too():
    from argparse import Namespace

    from prodemb.config import config_from_args

    def train_cfg(**flags):
        return config_from_args(Namespace(conf_profile=None, overrides=[]), **flags).train

    assert train_cfg().max_minutes == 19  # the default profile's cap
    assert train_cfg(**{"train.epochs": 3}).max_minutes is None
    assert train_cfg(**{"train.max_steps": 5000}).max_minutes is None
    capped = train_cfg(**{"train.epochs": 3, "train.max_minutes": 4})
    assert (capped.epochs, capped.max_steps, capped.max_minutes) == (3, None, 4)


def test_every_quality_study_variant_is_a_valid_config():
    """Each row of RESULTS.md's study table reproduces from one command (benchmarks/quality_study.py
    --variants NAME): a variant whose `set:` names an unknown key or breaks a rule would fail only hours
    into a study run, so every one is built here. The loader must also refuse a bad one."""
    import importlib.util

    path = REPO_ROOT / "benchmarks" / "quality_study.py"
    spec = importlib.util.spec_from_file_location("quality_study", path)
    study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study)
    variants = study.load_variants(None)
    assert len(variants) > 20
    for name, variant in variants.items():
        cfg = study.variant_config(variant, budget_pairs=1_228_800, device="cpu", language="en")
        assert cfg.train.max_steps >= 1, name
        assert cfg.train.max_minutes is None, name  # a step budget, whatever the machine's pace
    with pytest.raises(ValueError, match="no_such_key"):
        study.variant_config({"profile": "default", "set": ["train.no_such_key=1"]}, 1_228_800, "cpu", "en")
    # the rescore's vector kinds: KIND*F scales the rows, l2maxmean~W weighs the mean half
    assert [study.vector_kind(k) for k in ("raw", "l2*8", "l2maxmean~0.5*2")] == [
        ("raw", 1.0),
        ("l2", 8.0),
        ("l2maxmean", 2.0),
    ]
    assert (study.mean_weight("l2maxmean~0.5*2"), study.mean_weight("l2maxmean*2")) == (0.5, 1.0)
