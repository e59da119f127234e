"""Downstream evaluation protocol: splits, subsamples, AUC, the results table, plots; the two encoder
methods end to end on a tiny encoder trained and registered in a real MLflow (SQLite) registry; the
evaluation job (in process and as a CLI), the validation scores the promotion gate uses, and the α sweep."""
from __future__ import annotations

import json
import subprocess
import sys

import mlflow
import numpy as np
import pandas as pd
import pytest

from prodemb.baselines.base import EmbeddingMethod, EvalContext, Method, Scores
from prodemb.config import EvaluateConfig, load_config
from prodemb.evaluate import (RESULT_COLUMNS, EvaluateInputError, best_alpha, build_context, mean_validation_auc,
                              per_task_validation_auc, plot_learning_curves, run_evaluate, run_protocol, run_sweep,
                              split_task, subsample, train_sizes_for, validation_scores)
from prodemb.tasks import TaskError
from tests.conftest import REPO_ROOT

NOUNS = ["zapatilla", "mochila", "camiseta", "lampara", "taladro", "auricular", "cafetera", "silla"]


def keyword_task(n: int = 400, pos_rate: float = 0.3, seed: int = 0) -> pd.DataFrame:
    """label = 1 exactly when the title says "usado"."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < pos_rate).astype(int)
    titles = [f"{rng.choice(NOUNS)} {'usado' if v else 'nuevo'} modelo {rng.integers(100, 999)}" for v in y]
    return pd.DataFrame({"title": titles, "label": y, "product_id": [f"p{i}" for i in range(n)]})


# Real (if simple) methods implemented here, so the protocol is tested without the baselines.

class KeywordRule(Method):
    """Scores 1 when the title contains ``word`` (0 otherwise); records what it was given."""
    name = "keyword"

    def __init__(self, ctx, word: str = "usado", invert: bool = False):
        super().__init__(ctx)
        self.word, self.invert, self.prepared, self.fits = word, invert, [], []
        if invert:
            self.name = "not_keyword"

    def prepare(self, task_name, table):
        self.prepared.append((task_name, list(table.columns), len(table)))

    def fit_predict(self, train, val, test, seed):
        self.fits.append({"train": tuple(train.index), "val_cols": list(val.columns), "test_cols": list(test.columns),
                          "seed": seed, "size": len(train), "classes": set(train["label"])})
        score = lambda df: (df["title"].str.contains(self.word) != self.invert).astype(float).to_numpy()  # noqa: E731
        return Scores(val=score(val), test=score(test))


class BagOfWords(EmbeddingMethod):
    """Binary bag of words (vocabulary from every title, no labels) + the paper's liblinear probe."""
    name = "bow"

    def embed(self, table):
        from sklearn.feature_extraction.text import CountVectorizer

        return CountVectorizer(binary=True).fit_transform(table["title"]).toarray()


class NeedsProductId(EmbeddingMethod):
    """Fails on tasks without product ids, as an id-based method (Prod2Vec) does."""
    name = "needs_ids"

    def embed(self, table):
        return np.asarray(table["product_id"].str[1:].astype(float))[:, None]


def ecfg(**kw) -> EvaluateConfig:
    return EvaluateConfig(**{"train_sizes": [20, 100, 10_000], "samples": 3, **kw})


# --- splits and subsamples -------------------------------------------------------------------------

def test_split_is_stratified_disjoint_covering_and_deterministic():
    task = keyword_task(1000, pos_rate=0.3)
    train, val, test = split_task(task, [0.6, 0.2, 0.2], seed=0)
    idx = [set(p.index) for p in (train, val, test)]
    assert not (idx[0] & idx[1]) and not (idx[0] & idx[2]) and not (idx[1] & idx[2])
    assert idx[0] | idx[1] | idx[2] == set(task.index)
    assert abs(len(train) - 600) <= 2 and abs(len(val) - 200) <= 2 and abs(len(test) - 200) <= 2
    rate = task["label"].mean()
    for part in (train, val, test):
        assert abs(part["label"].mean() - rate) < 0.01
        pd.testing.assert_frame_equal(part, task.loc[part.index])          # rows untouched, index kept
    again = split_task(task, [0.6, 0.2, 0.2], seed=0)
    assert all(a.index.equals(b.index) for a, b in zip((train, val, test), again))
    assert not split_task(task, [0.6, 0.2, 0.2], seed=1)[2].index.equals(test.index)


def test_split_of_tiny_classes_and_bad_settings():
    tiny = pd.DataFrame({"title": list("abcdefgh"), "label": [1, 1, 1, 0, 0, 0, 0, 0]})
    parts = split_task(tiny, [0.6, 0.2, 0.2], seed=0)
    assert all(set(p["label"]) == {0, 1} for p in parts)                   # every part has both classes
    with pytest.raises(TaskError, match="≥ 3 rows"):
        split_task(tiny.iloc[1:], [0.6, 0.2, 0.2], seed=0)                 # only two positives
    with pytest.raises(EvaluateInputError):
        split_task(tiny, [0.6, 0.3, 0.2], seed=0)


def test_train_sizes_are_capped_by_the_train_split():
    sizes = [100, 500, 1000, 5000, 10000, 50000, 100000]
    assert train_sizes_for(700, sizes) == [100, 500, 700]
    assert train_sizes_for(1000, sizes) == [100, 500, 1000]
    assert train_sizes_for(200_000, sizes) == sizes
    assert train_sizes_for(50, [100]) == [50]
    with pytest.raises(EvaluateInputError):
        train_sizes_for(50, [1])


def test_subsample_keeps_both_classes_and_is_deterministic():
    task = keyword_task(1000, pos_rate=0.02)
    train = split_task(task, [0.6, 0.2, 0.2], 0)[0]
    for size in (2, 10, 100):
        sub = subsample(train, size, seed=3)
        assert len(sub) == size and set(sub["label"]) == {0, 1} and set(sub.index) <= set(train.index)
        assert sub.index.equals(subsample(train, size, seed=3).index)
    big = subsample(train, 300, seed=1)
    assert abs(big["label"].mean() - train["label"].mean()) < 0.01
    assert not big.index.equals(subsample(train, 300, seed=2).index)
    assert subsample(train, 10**6, seed=0) is train


# --- the protocol ------------------------------------------------------------------------------------

def test_protocol_scores_auc_and_fills_the_results_table():
    tasks = {"usado": keyword_task(400), "usado_rare": keyword_task(300, pos_rate=0.1, seed=1)}
    cfg = ecfg()
    rule, inverted, bow = KeywordRule(None), KeywordRule(None, invert=True), BagOfWords(EvalContext(eval_cfg=cfg))
    r = run_protocol(tasks, [rule, inverted, bow], cfg, progress=False)
    assert list(r.columns) == RESULT_COLUMNS
    # train split 240 / 180 rows: sizes 20, 100 and the whole split (10,000 is more than there is)
    assert sorted(r.loc[r.task == "usado", "train_size"].unique()) == [20, 100, 240]
    assert sorted(r.loc[r.task == "usado_rare", "train_size"].unique()) == [20, 100, 180]
    assert len(r) == 2 * 3 * 3 * 3                                          # tasks × methods × sizes × samples
    kw = r[r.method == "keyword"]
    assert (kw["auc"] == 1.0).all() and (kw["val_auc"] == 1.0).all()       # the rule is the label
    # AUC is computed for the positive class: the inverted rule ranks every negative first.
    inv = r[r.method == "not_keyword"]
    assert (inv["auc"] == 0.0).all() and (inv["val_auc"] == 0.0).all()
    assert r.loc[r.method == "bow", "auc"].min() > 0.95                    # the probe learns the word
    first = r[(r.task == "usado")].iloc[0]
    assert (first["n_val"], first["n_test"], first["n_train_pool"]) == (80, 80, 240)
    assert r["seconds"].notna().all() and r["alpha"].isna().all() and r["covered"].isna().all()
    # Every method saw the same subsamples, with both classes; test rows came without labels.
    assert [f["train"] for f in rule.fits] == [f["train"] for f in inverted.fits]
    assert all(f["classes"] == {0, 1} and "label" not in f["test_cols"] and "label" in f["val_cols"] for f in rule.fits)
    assert len({f["train"] for f in rule.fits if f["size"] == 20}) == 6  # 3 different samples per task
    # prepare: once per task, all rows, no labels.
    assert rule.prepared == [("usado", ["title", "product_id"], 400), ("usado_rare", ["title", "product_id"], 300)]
    # Deterministic: the same config gives the same table.
    again = run_protocol(tasks, [KeywordRule(None), KeywordRule(None, invert=True), bow], cfg, progress=False)
    pd.testing.assert_frame_equal(r.drop(columns=["seconds", "prepare_seconds"]),
                                  again.drop(columns=["seconds", "prepare_seconds"]))


def test_validation_auc_summaries():
    rows = [("a", "prodemb", 0.9, 0.8), ("a", "prodemb", 0.9, 0.6), ("b", "prodemb", 0.9, 0.5),
            ("a", "random", None, 0.55), ("b", "random", None, 0.5)]
    r = pd.DataFrame([{"task": t, "method": m, "alpha": a, "val_auc": v, "train_size": 10, "auc": v}
                      for t, m, a, v in rows])
    assert per_task_validation_auc(r) == {"a": pytest.approx(0.7), "b": pytest.approx(0.5)}
    assert mean_validation_auc(r) == pytest.approx(0.6)                     # tasks weigh the same
    assert mean_validation_auc(r, "random") == pytest.approx(0.525)
    two = pd.concat([r, r.assign(alpha=0.5, val_auc=r.val_auc - 0.1)[r.method == "prodemb"]])
    with pytest.raises(ValueError, match="several α"):
        mean_validation_auc(two)
    assert best_alpha(two) == (0.9, {0.5: pytest.approx(0.5), 0.9: pytest.approx(0.6)})
    with pytest.raises(ValueError, match="no results"):
        mean_validation_auc(r, "tfidf")


def test_a_failing_method_is_reported_with_keep_going():
    task = keyword_task(200).drop(columns="product_id")
    ids, rule = NeedsProductId(EvalContext(eval_cfg=ecfg())), KeywordRule(None)
    failures: list[dict] = []
    r = run_protocol({"t": task}, [ids, rule], ecfg(samples=1), progress=False, on_error="skip", failures=failures)
    assert set(r["method"]) == {"keyword"} and len(r) == 3
    assert failures and failures[0]["method"] == "needs_ids" and failures[0]["stage"] == "prepare"
    with pytest.raises(KeyError):
        run_protocol({"t": task}, [ids], ecfg(samples=1), progress=False)


def test_learning_curve_plots(tmp_path):
    cfg = ecfg(samples=2)
    methods = []
    for alpha, word in ((0.5, "usado"), (0.9, "modelo")):   # the second "encoder" is uninformative
        m = KeywordRule(None, word=word)
        m.name, m.alpha = "prodemb", alpha
        methods.append(m)
    floor = KeywordRule(None, word="nuevo", invert=True)
    floor.name = "random"
    r = run_protocol({"t1": keyword_task(200), "t 2": keyword_task(200, seed=2)}, methods + [floor], cfg,
                     progress=False)
    paths = plot_learning_curves(r, tmp_path / "plots")
    names = sorted(p.name for p in paths)
    assert names == ["t1_alpha.png", "t1_methods.png", "t_2_alpha.png", "t_2_methods.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000 for p in paths)
    single = plot_learning_curves(r[r.alpha.isna() | (r.alpha == 0.5)], tmp_path / "single")
    assert sorted(p.name for p in single) == ["t1_methods.png", "t_2_methods.png"]   # no α sweep: no Fig. 2


# --- a tiny registered encoder -------------------------------------------------------------------------

TINY = ["model.profile=small", "model.max_len=12", "model.embed_dim=16", "model.n_filters=8", "model.hidden_dim=32",
        "model.proj_dim=16", "train.batch_size=64", "train.max_steps=4", "train.health_sample=200",
        "train.min_dim_std_ratio=0", "train.log_every=2"]


def tiny_cfg(work, *extra):
    return load_config("local", overrides=[f"mlflow.tracking_uri=sqlite:///{work}/mlflow.db", *TINY,
                                           "evaluate.train_sizes=[50, 5000]", "evaluate.samples=2", *extra])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A 600-product generated catalog with category sessions (written as the sessionize tables), a
    SentencePiece tokenizer, one encoder trained for a few steps and registered as prodemb-encoder v1,
    and the generator's task tables (condition, free_shipping) plus a category task."""
    from prodemb.synth import SynthSpec, make_catalog, write_task_tables
    from prodemb.text import normalize_titles
    from prodemb.tokenizer import train_tokenizer
    from prodemb.train import run_training

    work = tmp_path_factory.mktemp("eval")
    cat = make_catalog(SynthSpec(n_products=600, seed=3))
    catalog = pd.DataFrame({"site": "default", "product_id": cat.product_id, "title": cat.title,
                            "title_norm": normalize_titles(cat.title, "es"), "category": cat.category})
    rng = np.random.default_rng(0)
    groups = [g.to_numpy() for _, g in catalog.groupby("category")["product_id"] if len(g) >= 2]
    pairs = [("default", s, *sorted(rng.choice(groups[rng.integers(len(groups))], 2, replace=False)))
             for s in range(2000)]
    for name, df in (("catalog", catalog),
                     ("pairs", pd.DataFrame(pairs, columns=["site", "session_id", "product_a", "product_b"]))):
        (work / "data" / name).mkdir(parents=True)
        df.to_parquet(work / "data" / name / "part-0.parquet", index=False)
    train_tokenizer(catalog["title_norm"], work / "tok.model", vocab_size=300)
    summary = run_training(str(work / "data"), str(work / "tok.model"), tiny_cfg(work), progress=False)
    assert summary["model_version"] == "1"
    tasks = write_task_tables(cat, work)
    top = cat["category"].value_counts().index[0]
    pd.DataFrame({"title": cat.title, "label": (cat.category == top).astype(int), "product_id": cat.product_id}
                 ).to_parquet(work / "tasks" / "category.parquet", index=False)
    return {"work": work, "uri": f"sqlite:///{work}/mlflow.db", "run_id": summary["run_id"],
            "tasks": {**{k: str(v) for k, v in tasks.items()}, "category": str(work / "tasks" / "category.parquet")}}


def test_encoder_methods_embed_like_the_registered_model(tiny):
    from prodemb.baselines import make_method

    cfg = tiny_cfg(tiny["work"])
    ctx = build_context(cfg, ["prodemb", "random"], model_uri="models:/prodemb-encoder@champion")
    # The Text-CNN baseline gets the model's own tokenizer, and the model's normalization language.
    assert open(ctx.tokenizer_path, "rb").read() == (tiny["work"] / "tok.model").read_bytes()
    assert ctx.language == "es" and ctx.tracking_uri == tiny["uri"]
    # ... and the model's architecture, even when the config names another profile (small: 64-d, 32 filters).
    other = build_context(load_config("local", overrides=[f"mlflow.tracking_uri={tiny['uri']}"]), ["textcnn"],
                          model_uri="models:/prodemb-encoder@champion")
    assert (other.model_cfg.embed_dim, other.model_cfg.n_filters, other.model_cfg.max_len) == (16, 8, 12)
    prod, rand = make_method("prodemb", ctx), make_method("random", ctx)
    assert prod.alpha == 0.9 and prod.model_ref == "prodemb-encoder/1" and rand.alpha is None
    table = pd.read_parquet(tiny["tasks"]["condition"]).head(50)
    got = prod.embed(table)
    want = mlflow.pyfunc.load_model("models:/prodemb-encoder/1").predict(table[["title"]])
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    assert got.shape == (50, 32) and got.dtype == np.float32
    r1 = rand.embed(table)
    r2 = make_method("random", build_context(cfg, ["random"])).embed(table)    # a fresh context: same seed
    assert r1.shape == got.shape and np.array_equal(r1, r2)
    assert not np.allclose(r1, got)
    assert {k: tuple(v.shape) for k, v in rand.encoder.state_dict().items()} == \
        {k: tuple(v.shape) for k, v in prod.model.pyfunc.unwrap_python_model().encoder.state_dict().items()}
    # A bad URI fails clearly, before any evaluation.
    from prodemb.score import ModelNotFoundError
    with pytest.raises(ModelNotFoundError):
        build_context(cfg, ["prodemb"], model_uri="models:/prodemb-encoder@nope")


def test_validation_scores_for_the_gate_are_deterministic(tiny):
    cfg = tiny_cfg(tiny["work"], "promote.train_size=100", "promote.samples=2")
    tasks = {k: tiny["tasks"][k] for k in ("condition", "category")}
    a = validation_scores("models:/prodemb-encoder/1", tasks, cfg)
    b = validation_scores("models:/prodemb-encoder@champion", {k: pd.read_parquet(v) for k, v in tasks.items()}, cfg)
    assert set(a) == {"condition", "category"} and a == b
    assert a["category"] > 0.6                  # category words are in the titles: the probe finds them


def test_run_evaluate_writes_results_plots_report_and_an_mlflow_run(tiny, tmp_path):
    cfg = tiny_cfg(tiny["work"])
    dirty = pd.read_parquet(tiny["tasks"]["free_shipping"]).head(300)
    dirty = dirty.astype({"label": object})
    dirty.loc[0, "title"] = "  "
    dirty.loc[1, "label"] = "sí"
    out = tmp_path / "out"
    summary = run_evaluate(cfg, output=out, tasks={"category": tiny["tasks"]["category"], "dirty": dirty},
                           methods=["prodemb", "random"], progress=False)
    results = pd.read_csv(out / "results.csv")
    assert list(results.columns) == RESULT_COLUMNS and len(results) == 2 * 2 * 2 * 2
    assert set(results["method"]) == {"prodemb", "random"} and set(results["train_size"]) == {50, 360, 178}   # 298 valid rows
    assert results.loc[results.method == "prodemb", "alpha"].eq(0.9).all()
    assert results.loc[results.method == "prodemb", "model"].eq("prodemb-encoder/1").all()
    top = results[(results.task == "category") & (results.train_size == 360)]
    assert top["auc"].min() > 0.7                                            # both encoders carry the words
    assert summary["tasks"]["dirty"] == {"rows_in": 300, "rows_valid": 298, "rows_quarantined": 2,
                                         "positives": summary["tasks"]["dirty"]["positives"],
                                         "quarantined_empty_title": 1, "quarantined_invalid_label": 1}
    assert pd.read_csv(out / "quarantine" / "dirty.csv")["reason"].tolist() == ["empty_title", "invalid_label"]
    assert summary["mean_val_auc_prodemb"] == pytest.approx(mean_validation_auc(results), abs=1e-6)
    assert {p.rsplit("/", 1)[1] for p in summary["plots"]} == {"category_methods.png", "dirty_methods.png"}
    report = (out / "report.md").read_text()
    assert "| category | 360 |" in report and "prodemb α=0.9" in report and "invalid_label 1" in report
    assert not [p for p in out.iterdir() if p.name.startswith(".")]          # no temporary files left
    run = mlflow.get_run(summary["mlflow_run_id"])
    assert mlflow.get_experiment(run.info.experiment_id).name == "prodemb-eval"
    assert run.data.params["model_version"] == "prodemb-encoder/1"
    assert run.data.metrics["auc.category.prodemb_0_9"] == pytest.approx(top[top.method == "prodemb"]["auc"].mean())
    arts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id)}
    assert {"results.csv", "report.md", "summary.json", "plots", "quarantine"} <= arts


def _cli(*args, timeout=300):
    return subprocess.run([sys.executable, str(REPO_ROOT / "jobs" / "evaluate.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, cwd=str(REPO_ROOT))


def test_evaluate_cli(tiny, tmp_path):
    uri, tasks = tiny["uri"], tiny["tasks"]
    common = ["--mlflow-uri", uri, "--no-progress", "--set", "evaluate.train_sizes=[40]", "--samples", "2",
              *sum((["--set", o] for o in TINY), [])]
    proc = _cli("--model-uri", "models:/prodemb-encoder@champion", "--task", f"condition={tasks['condition']}",
                "--methods", "prodemb,random", "--output", tmp_path / "out", "--no-mlflow", *common)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["model_version"] == "prodemb-encoder/1" and summary["rows"] == 2 * 2
    assert len(pd.read_csv(tmp_path / "out" / "results.csv")) == 4
    # Bad input: exit 2 with a clear message, nothing written.
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"title": ["a", "b"], "etiqueta": [0, 1]}).to_csv(bad, index=False)
    for args, msg in ((("--task", f"bad={bad}"), "lacks column"),
                      (("--task", f"condition={tasks['condition']}", "--methods", "prodemb,word2vec"), "unknown method"),
                      (("--task", f"condition={tasks['condition']}", "--model-uri", "models:/prodemb-encoder@nope"),
                       "cannot resolve model"),
                      (("--config-profile", "base"), "no tasks")):   # base: no evaluate.tasks configured
        proc = _cli(*args, "--output", tmp_path / "bad_out", *common)
        assert proc.returncode == 2 and msg in proc.stderr, (args, proc.returncode, proc.stderr[-2000:])
    assert not (tmp_path / "bad_out").exists()


def test_alpha_sweep_trains_one_encoder_per_alpha_and_picks_the_best(tiny, tmp_path):
    work = tiny["work"]
    cfg = tiny_cfg(work, "evaluate.samples=1")
    client = mlflow.MlflowClient(tracking_uri=tiny["uri"], registry_uri=tiny["uri"])
    prod_before = client.get_model_version_by_alias("prodemb-encoder", "champion").version
    n_prod = len(client.search_model_versions("name='prodemb-encoder'"))
    summary = run_sweep(cfg, data_dir=str(work / "data"), tokenizer_path=str(work / "tok.model"),
                        output=tmp_path / "sweep", tasks={"category": tiny["tasks"]["category"]},
                        alphas=[0.5, 1.0], progress=False)
    results = pd.read_csv(tmp_path / "sweep" / "results.csv")
    assert sorted(results.loc[results.method == "prodemb", "alpha"].unique()) == [0.5, 1.0]
    assert results.loc[results.method == "random", "alpha"].isna().all()
    assert [t["alpha"] for t in summary["trained"]] == [0.5, 1.0]
    best, scores = best_alpha(results)
    assert summary["best_alpha"] == best and summary["mean_val_auc_by_alpha"]["0.5"] == pytest.approx(scores[0.5], abs=1e-6)
    assert (tmp_path / "sweep" / "plots" / "category_alpha.png").exists()
    assert "## α sweep" in (tmp_path / "sweep" / "report.md").read_text()
    # Registered under the sweep name: the production model's versions and champion are untouched.
    sweep_versions = client.search_model_versions("name='prodemb-encoder-sweep'")
    assert len(sweep_versions) >= 2
    assert client.get_model_version_by_alias("prodemb-encoder", "champion").version == prod_before
    assert len(client.search_model_versions("name='prodemb-encoder'")) == n_prod
    assert mlflow.get_run(summary["mlflow_run_id"]).data.metrics["best_alpha"] == best
    with pytest.raises(EvaluateInputError):
        run_sweep(cfg, data_dir=str(work / "data"), tokenizer_path=str(work / "tok.model"),
                  tasks={"category": tiny["tasks"]["category"]}, alphas=[1.5])
