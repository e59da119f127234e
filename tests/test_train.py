"""The training loop and the job: MLflow registration and the pyfunc round trip.

Optimizer and schedules: tests/test_optim.py; inputs: tests/test_train_data.py; health: tests/test_health.py;
torchrun: tests/test_train_distributed.py."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from prodemb.config import SessionsConfig, load_config
from prodemb.health import embedding_health
from prodemb.train import run_training, train
from prodemb.train_data import build_training_data
from tests.conftest import REPO_ROOT, shared_data
from tests.test_train_data import toy_data


def small_cfg(**train):
    cfg = load_config(
        "local",
        overrides=[
            "model.profile=small",
            "model.max_len=6",
            "model.embed_dim=16",
            "model.n_filters=8",
            "model.hidden_dim=32",
            "model.proj_dim=16",
        ],
    )
    return cfg.model, cfg.train.model_copy(
        update={"batch_size": 64, "epochs": 4, "log_every": 1, "base_lr": 0.45, **train}
    )


# --- the loop ------------------------------------------------------------------------------------


def test_training_is_deterministic_on_cpu_and_lowers_the_loss():
    data = toy_data()
    model_cfg, cfg = small_cfg()
    r1 = train(data, model_cfg, cfg, vocab_size=50, progress=False)
    r2 = train(data, model_cfg, cfg, vocab_size=50, progress=False)
    losses = [h["loss"] for h in r1.history]
    assert losses == [h["loss"] for h in r2.history]
    assert r1.steps == 4 * (len(data.pair_a) // 64)
    assert np.mean(losses[-3:]) < np.mean(losses[:3])
    assert all(k in r1.history[0] for k in ("loss_byol", "loss_ce", "lr", "tau", "pairs_per_second"))


def test_no_categories_trains_with_alpha_one():
    data = toy_data(categories=False)
    model_cfg, cfg = small_cfg(alpha=0.5, epochs=1)
    result = train(data, model_cfg, cfg, vocab_size=50, progress=False)
    assert result.alpha == 1.0 and result.model.category_head is None
    assert all(h["loss_ce"] == 0 for h in result.history)


def test_without_categories_settings_replace_the_profiles_only_on_data_without_categories():
    from prodemb.config import WithoutCategoriesConfig

    model_cfg, cfg = small_cfg(alpha=0.5, epochs=1, self_pair_fraction=0.25, max_steps=3)
    cfg = cfg.model_copy(
        update={
            "without_categories": WithoutCategoriesConfig(
                self_pair_fraction=0.0, batch_size=32, max_steps=5, base_lr=0.2
            )
        }
    )
    no_cats = train(toy_data(categories=False), model_cfg, cfg, vocab_size=50, progress=False)
    spelled_out = cfg.model_copy(
        update={"alpha": 1.0, "self_pair_fraction": 0.0, "batch_size": 32, "max_steps": 5, "base_lr": 0.2}
    )
    assert (no_cats.steps, no_cats.pairs_seen, no_cats.alpha) == (5, 160, 1.0)
    assert [h["loss"] for h in no_cats.history] == [
        h["loss"]
        for h in train(toy_data(categories=False), model_cfg, spelled_out, vocab_size=50, progress=False).history
    ]
    with_cats = train(toy_data(), model_cfg, cfg, vocab_size=50, progress=False)
    assert (with_cats.steps, with_cats.pairs_seen, with_cats.alpha) == (3, 3 * 64, 0.5)
    assert cfg.changes_for_data(0) == {
        "alpha": 1.0,
        "self_pair_fraction": 0.0,
        "batch_size": 32,
        "max_steps": 5,
        "base_lr": 0.2,
    }
    assert cfg.changes_for_data(4) == {}
    # The learning rate of data without categories is its own: at the same batch and steps, without
    # ``without_categories.base_lr`` the schedule scales with train.base_lr (0.45) instead of 0.2.
    train_lr = cfg.model_copy(
        update={"without_categories": cfg.without_categories.model_copy(update={"base_lr": None})}
    )
    plain = train(toy_data(categories=False), model_cfg, train_lr, vocab_size=50, progress=False)
    assert [h["lr"] for h in no_cats.history] == pytest.approx([h["lr"] * 0.2 / 0.45 for h in plain.history])


def test_title_clusters_stand_in_for_categories_on_data_without_any():
    from prodemb.config import WithoutCategoriesConfig

    model_cfg, cfg = small_cfg(alpha=0.9, epochs=1)
    clustered = cfg.model_copy(update={"without_categories": WithoutCategoriesConfig(title_clusters=4, alpha=0.5)})
    result = train(toy_data(categories=False), model_cfg, clustered, vocab_size=50, progress=False)
    assert result.alpha == 0.5 and result.model.category_head is not None
    assert result.model.n_categories == 4 and all(h["loss_ce"] > 0 for h in result.history)
    assert clustered.changes_for_data(0) == {"alpha": 0.5} and clustered.changes_for_data(3) == {}
    # Data with categories keeps them: the clusters are only for data that has none.
    with_cats = train(toy_data(), model_cfg, clustered, vocab_size=50, progress=False)
    assert with_cats.model.n_categories == 3 and with_cats.alpha == 0.9
    # Without an α of their own, the clusters are weighed with train.alpha.
    own = cfg.model_copy(update={"without_categories": WithoutCategoriesConfig(title_clusters=4)})
    assert own.for_data(0).alpha == 0.9


def test_an_alpha_below_one_without_categories_needs_title_clusters():
    from pydantic import ValidationError

    from prodemb.config import WithoutCategoriesConfig

    with pytest.raises(ValidationError, match="needs title_clusters"):
        WithoutCategoriesConfig(alpha=0.5)
    assert WithoutCategoriesConfig(alpha=1.0).alpha == 1.0


@pytest.mark.parametrize("categories", [True, False])
def test_augmented_views_and_self_pairs_train_deterministically_with_or_without_categories(categories):
    from prodemb.config import AugmentConfig

    data = toy_data(categories=categories)
    model_cfg, plain = small_cfg(epochs=2)
    cfg = plain.model_copy(
        update={"augment": AugmentConfig(dropout=0.2, span_mask=0.3, shuffle_window=2), "self_pair_fraction": 0.25}
    )
    r1, r2 = (train(data, model_cfg, cfg, vocab_size=50, progress=False) for _ in range(2))
    losses = [h["loss"] for h in r1.history]
    assert losses == [h["loss"] for h in r2.history] and all(np.isfinite(losses))
    assert losses != [h["loss"] for h in train(data, model_cfg, plain, vocab_size=50, progress=False).history]
    assert r1.alpha == (0.9 if categories else 1.0)


def test_time_cap_projects_the_steps_that_fit_from_the_pace_after_the_first_step():
    from prodemb.train import TimeCap

    cap, cpu = TimeCap(1.0, start=0.0), torch.device("cpu")  # deadline: 60 s after the start
    assert cap.steps(1, 1000, now=5.0, world=1, device=cpu) == 1000  # step 1 (warm-up) is not paced
    assert cap.steps(2, 1000, now=6.0, world=1, device=cpu) == 1000  # one paced step: too few to project
    assert cap.steps(3, 1000, now=7.0, world=1, device=cpu) == 1000  # 2 s measured: under a tenth of 60 s
    assert cap.steps(12, 1000, now=16.0, world=1, device=cpu) == 56  # 1 s a step: 44 more fit
    assert cap.steps(12, 57, now=16.0, world=1, device=cpu) == 57  # within 2 %: left alone
    assert cap.steps(50, 1000, now=61.0, world=1, device=cpu) == 51  # past the deadline: this step ends it
    assert TimeCap(None, 0.0).steps(3, 1000, now=1e9, world=1, device=cpu) == 1000


def test_max_minutes_cuts_the_steps_and_still_anneals_the_schedule(monkeypatch):
    import itertools

    import prodemb.train

    # A clock that advances 0.1 s each time the loop reads it (twice a step at log_every=1): a pace of
    # 0.2 s a step, whatever this machine's speed, so a 6-second cap holds about 30 steps.
    ticks = itertools.count()
    monkeypatch.setattr(prodemb.train, "_clock", lambda: 0.1 * next(ticks))
    data = toy_data()
    model_cfg, cfg = small_cfg(epochs=500, max_minutes=0.1, log_every=1)
    result = train(data, model_cfg, cfg, vocab_size=50, progress=False)
    assert result.planned_steps == 500 * (len(data.pair_a) // 64)
    assert 25 <= result.steps <= 35 < result.planned_steps
    assert result.history[-1]["step"] == result.steps  # the loop ended where the schedule did
    lrs = [h["lr"] for h in result.history]
    assert lrs[-1] < 0.1 * max(lrs)  # the cosine reached (near) its end


def test_max_minutes_does_not_cut_on_the_pace_of_a_slow_start(monkeypatch):
    import itertools

    import prodemb.train

    # The loop reads the clock twice before the first step and twice a step (log_every=1). Steps 2-3 take
    # 1 s each, every later one 0.1 s: 200 steps need about 23 s, well inside a 1-minute cap. A pace
    # taken over steps 2-3 alone would project 60 steps and cut there for good.
    reads = itertools.count()
    elapsed = itertools.accumulate(0.5 if next(reads) < 8 else 0.05 for _ in itertools.count())
    monkeypatch.setattr(prodemb.train, "_clock", lambda: next(elapsed))
    data = toy_data()
    model_cfg, cfg = small_cfg(epochs=1, max_steps=200, max_minutes=1.0, log_every=1)
    result = train(data, model_cfg, cfg, vocab_size=50, progress=False)
    assert result.planned_steps == result.steps == 200


# --- real sessions, MLflow, registry, pyfunc ------------------------------------------------------


@pytest.fixture(scope="module")
def movielens_run(spark, tmp_path_factory):
    """Sessionize MovieLens once, train a tokenizer; shared by the tests below."""
    from prodemb.sessions import run_sessionize
    from prodemb.tokenizer import train_from_catalog

    root = shared_data("movielens-latest-small")
    work = tmp_path_factory.mktemp("ml")
    run_sessionize(spark, str(root), "movielens", str(work / "data"), SessionsConfig(language="en"))
    cfg = load_config("local", overrides=["tokenizer.vocab_size=2000"])
    train_from_catalog(str(work / "data"), work / "tok.model", cfg.tokenizer)
    return work


def run_cfg(work, *extra):
    return load_config(
        "local",
        overrides=[
            f"mlflow.tracking_uri=sqlite:///{work}/mlflow.db",
            "sessions.language=en",
            "model.profile=small",
            "train.batch_size=256",
            "train.max_steps=60",
            "train.health_sample=1000",
            "train.log_every=5",
            *extra,
        ],
    )


def test_short_training_on_movielens_registers_a_healthy_model(movielens_run):
    import mlflow

    work = movielens_run
    summary = run_training(str(work / "data"), str(work / "tok.model"), run_cfg(work), progress=False)
    assert summary["model_version"] == "1"
    assert summary["aliases"] == {"candidate": "1", "champion": "1"}
    assert not summary["health"]["collapsed"]
    assert summary["health"]["alignment_holdout"] < summary["health"]["alignment_random"]
    run = mlflow.get_run(summary["run_id"])
    losses = [m.value for m in mlflow.MlflowClient().get_metric_history(summary["run_id"], "loss")]
    assert np.mean(losses[-3:]) < np.mean(losses[:3])
    assert run.data.params["train.alpha"] == "0.9" and run.data.params["data.rows_products"]
    assert {"health_dim_std_mean", "lr", "tau", "loss_byol", "loss_ce", "pairs_per_second"} <= set(run.data.metrics)
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(summary["run_id"])}
    assert {"tokenizer", "config.json", "trained_on.json", "training_curves.png"} <= artifacts

    # A second training moves `candidate`, keeps `champion`.
    second = run_training(str(work / "data"), str(work / "tok.model"), run_cfg(work, "train.seed=1"), progress=False)
    assert second["aliases"] == {"candidate": "2", "champion": "1"}

    # The registered model works in a fresh process from the alias, with nothing but MLflow.
    titles = ["Toy Story (1995)", "Jumanji (1995)", "Heat", ""]
    code = (
        "import mlflow, pandas as pd, json, sys; mlflow.set_tracking_uri(sys.argv[1]); "
        "m = mlflow.pyfunc.load_model('models:/prodemb-encoder@champion'); "
        "y = m.predict(pd.DataFrame({'title': json.loads(sys.argv[2])})); "
        "print(json.dumps({'shape': list(y.shape), 'dtype': str(y.dtype), 'y': y.tolist()}))"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, "-c", code, f"sqlite:///{work}/mlflow.db", json.dumps(titles)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=str(work),
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["shape"] == [4, 128] and got["dtype"] == "float32"
    # Same vectors as the in-process model for the same raw titles.
    local = mlflow.pyfunc.load_model("models:/prodemb-encoder/1").predict(pd.DataFrame({"title": titles}))
    np.testing.assert_allclose(np.array(got["y"]), local, rtol=1e-5, atol=1e-6)
    assert not np.allclose(local[0], local[1])


def test_epochs_replace_the_default_profiles_step_budget_and_max_minutes_caps_it(movielens_run):
    work = movielens_run
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "jobs" / "train.py"),
            "--json",
            "--data",
            str(work / "data"),
            "--tokenizer",
            str(work / "tok.model"),
            "--epochs",
            "3",
            "--batch-size",
            "64",
            "--max-minutes",
            "0.05",
            "--mlflow-uri",
            f"sqlite:///{work}/epochs.db",
            "--no-progress",
            "--set",
            "sessions.language=en",
            "--set",
            "model.embed_dim=16",
            "--set",
            "model.n_filters=8",
            "--set",
            "model.hidden_dim=32",
            "--set",
            "model.proj_dim=16",
            "--set",
            "train.health_sample=200",
            "--set",
            "train.min_dim_std_ratio=0",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    # The default profile's 300-step budget gave way to three epochs of the training pairs ...
    assert summary["planned_steps"] == 3 * (summary["trained_on"]["rows_pairs_train"] // 64) > 300
    # ... and three seconds of training hold only part of it (the schedule rescaled to what fits).
    assert summary["steps"] < summary["planned_steps"]
    assert "train.max_minutes=0.05" in proc.stderr
    # MLflow's INFO lines and artifact progress bars are not the user's business
    assert "INFO mlflow" not in proc.stderr and "Downloading artifacts" not in proc.stderr, proc.stderr[-2000:]


def test_collapse_registers_nothing_and_the_job_exits_3(movielens_run):
    import mlflow

    work = movielens_run
    uri = f"sqlite:///{work}/collapse.db"
    # An impossible spread threshold stands in for a collapsed encoder: the job must refuse to register.
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "jobs" / "train.py"),
            "--data",
            str(work / "data"),
            "--tokenizer",
            str(work / "tok.model"),
            "--profile",
            "small",
            "--max-steps",
            "3",
            "--batch-size",
            "128",
            "--mlflow-uri",
            uri,
            "--no-progress",
            "--set",
            "sessions.language=en",
            "--set",
            "train.min_dim_std_ratio=1000",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "collapsed" in proc.stderr
    assert mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri).search_registered_models() == []


def test_alpha_one_vs_alpha_point_nine(movielens_run):
    """α = 1 is pure BYOL: the category head gets no gradient and its loss stays at chance; α = 0.9
    trains it (Eq. 4). Both produce spread-out embeddings on this short run."""
    from prodemb.tables import read_table_arrow
    from prodemb.tokenizer import Tokenizer

    work = movielens_run
    catalog = read_table_arrow(str(work / "data" / "catalog")).to_pandas()
    pairs = read_table_arrow(str(work / "data" / "pairs")).to_pandas()
    tok = Tokenizer.load(work / "tok.model")
    cfg = run_cfg(work, "train.max_steps=120")
    data = build_training_data(catalog, pairs, tok, cfg.model.max_len)
    chance = 2 * math.log(data.n_categories)  # CE_ij + CE_ji of a uniform guess
    ce = {}
    for alpha in (1.0, 0.9):
        cfg_a = run_cfg(work, f"train.alpha={alpha}", "train.max_steps=120")
        result = train(data, cfg_a.model, cfg_a.train, tok.vocab_size, progress=False)
        ce[alpha] = float(np.mean([h["loss_ce"] for h in result.history[-4:]]))
        assert not embedding_health(result.model.encoder, data, 1000)["collapsed"]
    assert ce[1.0] > 0.95 * chance, ce
    assert ce[0.9] < 0.8 * chance, ce


def test_run_training_names_a_missing_input_before_any_work(tmp_path):
    cfg = load_config("local", overrides=[f"mlflow.tracking_uri=sqlite:///{tmp_path}/mlflow.db"])
    with pytest.raises(FileNotFoundError, match="catalog not found"):
        run_training(str(tmp_path / "nothing"), str(tmp_path / "tok.model"), cfg, progress=False)
    assert not (tmp_path / "mlflow.db").exists()  # failed before touching the tracking store
