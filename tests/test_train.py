"""Training loop, optimizer, schedules, health check, MLflow registration and the pyfunc round trip."""
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
from prodemb.train import (LARS, build_training_data, embed, embedding_health, lr_at,
                           run_training, train)
from tests.conftest import REPO_ROOT, shared_data


# --- optimizer and schedules -------------------------------------------------------------------

def test_lars_scales_by_trust_ratio_and_skips_excluded_groups():
    w = torch.nn.Parameter(torch.tensor([3.0, 4.0]))          # ‖w‖ = 5
    b = torch.nn.Parameter(torch.tensor([1.0]))
    opt = LARS([{"params": [w], "weight_decay": 0.0}, {"params": [b], "weight_decay": 0.0, "lars_exclude": True}],
               lr=0.1, momentum=0.9, eta=0.01)
    w.grad = torch.tensor([0.0, 2.0])                          # ‖g‖ = 2 → trust = 0.01·5/2 = 0.025
    b.grad = torch.tensor([2.0])
    opt.step()
    assert torch.allclose(w.detach(), torch.tensor([3.0, 4.0 - 0.1 * 0.025 * 2.0]))
    assert torch.allclose(b.detach(), torch.tensor([1.0 - 0.1 * 2.0]))   # plain SGD
    w.grad, b.grad = torch.tensor([0.0, 2.0]), torch.tensor([2.0])
    before = w.detach().clone()
    opt.step()                                                  # momentum: 0.9·u + u
    trust = 0.01 * torch.linalg.vector_norm(before) / 2.0
    assert torch.allclose(w.detach()[1], before[1] - 0.1 * (0.9 * 0.025 * 2.0 + trust * 2.0))


def test_lars_weight_decay_enters_the_update():
    w = torch.nn.Parameter(torch.tensor([1.0, 0.0]))
    opt = LARS([{"params": [w], "weight_decay": 0.5}], lr=1.0, momentum=0.0, eta=1.0)
    w.grad = torch.tensor([0.0, 1.0])
    opt.step()                                                  # g' = g + 0.5 w = [0.5, 1]; trust = 1/‖g'‖
    g = torch.tensor([0.5, 1.0])
    assert torch.allclose(w.detach(), torch.tensor([1.0, 0.0]) - g / torch.linalg.vector_norm(g))


def test_lr_warmup_then_cosine():
    peak, total, warm = 7.2, 100, 10
    assert lr_at(0, total, peak, warm) == pytest.approx(peak / 10)
    assert lr_at(9, total, peak, warm) == pytest.approx(peak)
    assert lr_at(10, total, peak, warm) == pytest.approx(peak)
    assert lr_at(55, total, peak, warm) == pytest.approx(peak / 2)
    assert lr_at(100, total, peak, warm) == pytest.approx(0.0, abs=1e-12)
    assert all(lr_at(s, total, peak, warm) >= lr_at(s + 1, total, peak, warm) for s in range(10, 99))


# --- data ----------------------------------------------------------------------------------------

class _ToyTokenizer:
    vocab_size = 50

    def encode(self, titles, max_len):
        out = np.zeros((len(titles), max_len), dtype=np.int32)
        for i, t in enumerate(titles):
            ids = [2 + (sum(map(ord, w)) % 48) for w in t.split()][:max_len]
            out[i, :len(ids)] = ids
        return out


def toy_data(n_products=60, n_sessions=400, n_cat=3, seed=0, categories=True):
    """Products in n_cat groups with group-specific words; sessions stay within a group."""
    rng = np.random.default_rng(seed)
    words = [[f"w{c}x{k}" for k in range(6)] for c in range(n_cat)]
    cat = np.arange(n_products) % n_cat
    titles = [" ".join(rng.choice(words[c], 4)) for c in cat]
    catalog = pd.DataFrame({"site": "s", "product_id": [f"p{i}" for i in range(n_products)], "title_norm": titles,
                            "category": [f"c{c}" for c in cat] if categories else None})
    rows = []
    for s in range(n_sessions):
        c = rng.integers(n_cat)
        a, b = sorted(rng.choice(np.flatnonzero(cat == c), 2, replace=False))
        rows.append(("s", s, f"p{a}", f"p{b}"))
    pairs = pd.DataFrame(rows, columns=["site", "session_id", "product_a", "product_b"])
    return build_training_data(catalog, pairs, _ToyTokenizer(), max_len=6, holdout_fraction=0.1)


def test_build_training_data_indexes_pairs_and_holds_out_whole_sessions():
    data = toy_data()
    assert data.tokens.shape == (60, 6) and data.tokens.dtype == torch.int64
    assert data.n_categories == 3 and data.categories.min() >= 0
    assert data.stats["pairs_train"] + data.stats["pairs_holdout"] == 400
    assert 10 <= data.stats["pairs_holdout"] <= 80
    assert int(data.pair_a.max()) < 60 and bool((data.pair_a != data.pair_b).all())
    nocat = toy_data(categories=False)
    assert nocat.n_categories == 0 and bool((nocat.categories == -1).all())
    assert len(data.content_hash()) == 64 and data.content_hash() != toy_data(seed=1).content_hash()


def small_cfg(**train):
    cfg = load_config("local", overrides=["model.profile=small", "model.max_len=6", "model.embed_dim=16",
                                          "model.n_filters=8", "model.hidden_dim=32", "model.proj_dim=16"])
    return cfg.model, cfg.train.model_copy(update={"batch_size": 64, "epochs": 4, "log_every": 1,
                                                     "base_lr": 0.45, **train})


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


def test_health_flags_a_collapsed_encoder_and_passes_a_spread_one():
    data = toy_data()
    model_cfg, cfg = small_cfg(epochs=10, base_lr=20.0)   # LARS at batch 64 needs a large base lr
    good = train(data, model_cfg, cfg, vocab_size=50, progress=False).model.encoder
    h = embedding_health(good, data, sample=200)
    assert not h["collapsed"] and h["dim_std_mean"] > 0
    assert h["alignment_holdout"] < h["alignment_random"]   # session pairs closer than random pairs
    collapsed = train(data, model_cfg, cfg.model_copy(update={"max_steps": 1}), vocab_size=50,
                      progress=False).model.encoder
    with torch.no_grad():   # every product maps to the same vector: the failure BYOL can fall into
        for p in collapsed.parameters():
            p.zero_()
        next(p for n, p in collapsed.named_parameters() if n.endswith("bias")).fill_(1.0)
    hc = embedding_health(collapsed, data, sample=200)
    assert hc["collapsed"] and hc["dim_std_mean"] < 1e-6


def test_embed_is_batched_eval_mode():
    data = toy_data()
    model_cfg, cfg = small_cfg(max_steps=2)
    enc = train(data, model_cfg, cfg, vocab_size=50, progress=False).model.encoder
    full = embed(enc, data.tokens, batch_size=1000)
    assert torch.allclose(full, embed(enc, data.tokens, batch_size=7), atol=1e-6)
    assert enc.training   # restored


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
    return load_config("local", overrides=[
        f"mlflow.tracking_uri=sqlite:///{work}/mlflow.db", "sessions.language=en", "model.profile=small",
        "train.batch_size=256", "train.max_steps=60", "train.health_sample=1000", "train.log_every=5",
        *extra])


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
    second = run_training(str(work / "data"), str(work / "tok.model"), run_cfg(work, "train.seed=1"),
                          progress=False)
    assert second["aliases"] == {"candidate": "2", "champion": "1"}

    # The registered model works in a fresh process from the alias, with nothing but MLflow.
    titles = ["Toy Story (1995)", "Jumanji (1995)", "Heat", ""]
    code = ("import mlflow, pandas as pd, json, sys; mlflow.set_tracking_uri(sys.argv[1]); "
            "m = mlflow.pyfunc.load_model('models:/prodemb-encoder@champion'); "
            "y = m.predict(pd.DataFrame({'title': json.loads(sys.argv[2])})); "
            "print(json.dumps({'shape': list(y.shape), 'dtype': str(y.dtype), 'y': y.tolist()}))")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", code, f"sqlite:///{work}/mlflow.db", json.dumps(titles)],
                          capture_output=True, text=True, timeout=300, cwd=str(work), env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["shape"] == [4, 128] and got["dtype"] == "float32"
    # Same vectors as the in-process model for the same raw titles.
    local = mlflow.pyfunc.load_model("models:/prodemb-encoder/1").predict(pd.DataFrame({"title": titles}))
    np.testing.assert_allclose(np.array(got["y"]), local, rtol=1e-5, atol=1e-6)
    assert not np.allclose(local[0], local[1])


def test_collapse_registers_nothing_and_the_job_exits_3(movielens_run):
    import mlflow

    work = movielens_run
    uri = f"sqlite:///{work}/collapse.db"
    # An impossible spread threshold stands in for a collapsed encoder: the job must refuse to register.
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "jobs" / "train.py"), "--data", str(work / "data"),
                           "--tokenizer", str(work / "tok.model"), "--max-steps", "3", "--batch-size", "128",
                           "--mlflow-uri", uri, "--no-progress", "--set", "sessions.language=en",
                           "--set", "train.min_dim_std_ratio=1000"],
                          capture_output=True, text=True, timeout=300)
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
    chance = 2 * math.log(data.n_categories)            # CE_ij + CE_ji of a uniform guess
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
    assert not (tmp_path / "mlflow.db").exists()          # failed before touching the tracking store
