"""The promotion gate on a real MLflow registry (SQLite): promotes a better candidate, refuses a worse or
unhealthy one, honours the tolerance, and records the decision and both scores on the candidate version."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch

from prodemb.config import load_config
from prodemb.model import ProductEncoder
from prodemb.promote import decide, run_promote, validation_scores
from prodemb.registry import log_encoder, setup_tracking
from prodemb.text import normalize_title
from prodemb.tokenizer import train_tokenizer
from tests.conftest import REPO_ROOT, browser_dom, tiny_cfg

NAME = "prodemb-encoder"


def _task(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """Label decided by one word of the title, the rest is noise: learnable from any informative encoder."""
    rng = np.random.default_rng(seed)
    nouns = ["zapatilla", "mochila", "camiseta", "lampara", "taladro", "auricular", "cafetera", "silla"]
    colors = ["roja", "azul", "negra", "blanca", "verde"]
    label = rng.integers(0, 2, n)
    titles = [
        f"{rng.choice(nouns)} {rng.choice(colors)} {'usada reacondicionada' if y else 'nueva sellada'} "
        f"modelo {rng.integers(100, 999)}"
        for y in label
    ]
    return pd.DataFrame({"title": titles, "label": label})


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """Tokenizer + a registry with four versions: v1 constant (zero) encoder, v2 random encoder,
    v3 constant again, v4 random but tagged unhealthy."""
    work = tmp_path_factory.mktemp("promote")
    task = _task()
    tok = work / "tok.model"
    train_tokenizer([normalize_title(t, "es") for t in task.title] * 3, tok, vocab_size=60)
    uri = f"sqlite:///{work / 'mlflow.db'}"
    cfg = load_config(
        "local",
        overrides=[
            f"mlflow.tracking_uri={uri}",
            f"paths.runs_dir={work}/runs",
            "promote.train_size=120",
            "promote.samples=2",
            "evaluate.split=[0.6, 0.2, 0.2]",
        ],
    )
    setup_tracking(uri, cfg.mlflow.experiment)
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    import sentencepiece as spm

    vocab = spm.SentencePieceProcessor(model_file=str(tok)).get_piece_size()
    versions = ((1, "zero", "ok"), (2, "random", "ok"), (3, "zero", "ok"), (4, "random", "collapsed"))
    for version, kind, health in versions:
        torch.manual_seed(version)
        enc = ProductEncoder(vocab, embed_dim=16, n_filters=32, kernel_sizes=(2, 3))
        if kind == "zero":
            with torch.no_grad():
                for p in enc.parameters():
                    p.zero_()
        with mlflow.start_run():
            v = log_encoder(
                enc,
                tok,
                max_len=12,
                language="es",
                model_name=NAME,
                workdir=work / f"m{version}",
                example_titles=list(task.title[:3]),
            )
        assert v == str(version)
        client.set_model_version_tag(NAME, v, "health", health)
    return {"cfg": cfg, "uri": uri, "client": client, "tasks": {"usado": task}, "work": work}


def _aliases(client) -> dict[str, str]:
    return {
        a: str(client.get_model_version_by_alias(NAME, a).version)
        for a in ("champion", "candidate", "previous_champion")
        if _has_alias(client, a)
    }


def _has_alias(client, alias) -> bool:
    try:
        client.get_model_version_by_alias(NAME, alias)
        return True
    except mlflow.exceptions.MlflowException:
        return False


def test_decide_rule():
    assert decide(0.80, 0.79, 0.0, True)[0] and decide(0.79, 0.79, 0.0, True)[0]
    assert not decide(0.78, 0.79, 0.0, True)[0] and decide(0.78, 0.79, 0.02, True)[0]
    assert decide(0.5, None, 0.0, True) == (True, "no champion yet")
    assert not decide(0.99, 0.5, 0.0, False)[0]


def test_gate_promotes_better_then_refuses_worse_and_unhealthy(registry):
    cfg, client, tasks = registry["cfg"], registry["client"], registry["tasks"]
    # A first version is champion from training, never gated: the gate still writes its card, once.
    client.set_registered_model_alias(NAME, "champion", "1")
    client.set_registered_model_alias(NAME, "candidate", "1")
    first = run_promote(cfg, tasks, tracking_uri=registry["uri"])
    assert not first.promoted and "already" in first.reason
    v1_tags = client.get_model_version(NAME, "1").tags
    assert Path(first.quality_card).is_file() and v1_tags["promotion.quality_card"] == first.quality_card
    assert v1_tags["promotion.quality_card_artifact"] == first.quality_card_artifact
    assert "promotion.decision" not in v1_tags
    again = run_promote(cfg, tasks, tracking_uri=registry["uri"])
    assert again.quality_card == first.quality_card and client.get_model_version(NAME, "1").tags == v1_tags

    client.set_registered_model_alias(NAME, "champion", "1")
    client.set_registered_model_alias(NAME, "candidate", "2")

    d = run_promote(cfg, tasks, tracking_uri=registry["uri"])
    assert d.promoted, d.reason
    assert d.champion_auc == pytest.approx(0.5)  # constant features carry no signal
    assert d.candidate_auc > 0.6
    assert _aliases(client) == {"champion": "2", "candidate": "2", "previous_champion": "1"}
    tags = client.get_model_version(NAME, "2").tags
    assert tags["promotion.decision"] == "promoted" and tags["promotion.champion_version"] == "1"
    assert float(tags["promotion.candidate_val_auc"]) == pytest.approx(d.candidate_auc, abs=1e-6)
    assert float(tags["promotion.champion_val_auc"]) == pytest.approx(0.5, abs=1e-6)
    assert set(json.loads(tags["promotion.per_task"])["candidate"]) == {"usado"}
    # The gate read both scores from the card's protocol run: they are what the protocol gives each version
    # alone on the gate's rows (promote.train_size × promote.samples).
    for version, got in (("2", d.candidate_per_task), ("1", d.champion_per_task)):
        alone = validation_scores(f"models:/{NAME}/{version}", tasks, cfg, tracking_uri=registry["uri"])
        assert got == pytest.approx(alone, abs=1e-9)

    # The candidate's quality card: written under the runs folder, logged to its run, linked in its tags,
    # and readable in a browser (the AUC table against the champion, every image decoded).
    card = Path(d.quality_card)
    assert card.is_file() and card.parent == registry["work"] / "runs" / "cards" / NAME / "v2"
    run_id = client.get_model_version(NAME, "2").run_id
    assert tags["promotion.quality_card"] == str(card)
    assert tags["promotion.quality_card_artifact"] == f"runs:/{run_id}/quality_card/card.html"
    assert [a.path for a in client.list_artifacts(run_id, "quality_card")] == ["quality_card/card.html"]
    dom = browser_dom(card)
    loaded, total = re.search(r'data-images-loaded="(\d+)/(\d+)"', dom).groups()
    assert loaded == total and int(total) >= 1
    assert re.search(r"<tr><td>usado</td><td>100</td>", dom) and "Δ vs champion" in dom
    assert "champion (version 1)" in dom

    # Same version in both aliases (a rerun): nothing to do, the recorded decision stays.
    again = run_promote(cfg, tasks, tracking_uri=registry["uri"])
    assert not again.promoted and "already" in again.reason
    assert client.get_model_version(NAME, "2").tags == tags

    # A worse candidate is refused and the champion stays.
    client.set_registered_model_alias(NAME, "candidate", "3")
    worse = run_promote(cfg, tasks, tracking_uri=registry["uri"])
    assert not worse.promoted and worse.candidate_auc < worse.champion_auc
    assert _aliases(client)["champion"] == "2"
    assert client.get_model_version(NAME, "3").tags["promotion.decision"] == "refused"

    # ... unless the tolerance allows the gap.
    tolerated = run_promote(cfg, tasks, tolerance=1.0, tracking_uri=registry["uri"])
    assert tolerated.promoted and _aliases(client)["champion"] == "3"
    client.set_registered_model_alias(NAME, "champion", "2")

    # An unhealthy candidate is refused without being scored.
    client.set_registered_model_alias(NAME, "candidate", "4")
    sick = run_promote(cfg, tasks, tracking_uri=registry["uri"])
    assert not sick.promoted and "health" in sick.reason and sick.candidate_auc is None
    assert _aliases(client)["champion"] == "2"


def test_job_reports_json_and_rejects_missing_tasks(registry):
    work, uri = registry["work"], registry["uri"]
    path = work / "usado.csv"
    registry["tasks"]["usado"].to_csv(path, index=False)
    registry["client"].set_registered_model_alias(NAME, "champion", "1")
    registry["client"].set_registered_model_alias(NAME, "candidate", "2")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    base = [
        sys.executable,
        str(REPO_ROOT / "jobs" / "promote.py"),
        "--json",
        "--mlflow-uri",
        uri,
        "--set",
        "promote.train_size=120",
        "--set",
        "promote.samples=1",
    ]
    out = subprocess.run(base + ["--task", f"usado={path}"], capture_output=True, text=True, env=env, cwd=work)
    assert out.returncode == 0, out.stderr[-2000:]
    decision = json.loads(out.stdout[out.stdout.index("{") :])
    assert decision["promoted"] and decision["candidate_version"] == "2" and decision["champion_version"] == "1"
    none = subprocess.run(base + ["--config-profile", "base"], capture_output=True, text=True, env=env, cwd=work)
    assert none.returncode == 2 and "no evaluation tasks" in none.stderr


def test_validation_scores_for_the_gate_are_deterministic(tiny):
    cfg = tiny_cfg(tiny["work"], "promote.train_size=100", "promote.samples=2")
    tasks = {k: tiny["tasks"][k] for k in ("condition", "category")}
    a = validation_scores("models:/prodemb-encoder/1", tasks, cfg)
    b = validation_scores("models:/prodemb-encoder@champion", {k: pd.read_parquet(v) for k, v in tasks.items()}, cfg)
    assert set(a) == {"condition", "category"} and a == b
    assert a["category"] > 0.6  # category words are in the titles: the probe finds them
