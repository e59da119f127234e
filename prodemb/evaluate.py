"""Downstream evaluation protocol (paper §4.1, §4.2, §5.1, A.1): frozen embeddings + logistic regression.

For every task (a table of ``title`` and binary ``label``, optionally ``product_id``):

    split once, stratified by label: 60 % train / 20 % validation / 20 % test      (split_task)
    training sizes: 100, 500, 1000, 5000, 10000, 50000, 100000, capped by the train split
                                                                                    (train_sizes_for)
    per size, ``samples`` stratified random subsamples of the train split (the same rows for every method)
    per method: prepare(all rows, no labels) once, then fit_predict(subsample, val, test) per size × sample
    score: AUC-ROC on test (the figure of merit) and on validation (model selection: α, promotion)

``run_protocol`` is pure (DataFrames in, a results DataFrame out). ``run_evaluate`` is the job:
tasks and methods in, ``OUT/results.csv``, learning-curve PNGs (Fig. 2 α sweep + random encoder; Fig. 3
methods with mean ± std bands), ``OUT/report.md``, ``OUT/summary.json`` (all written into a fresh folder
that ``OUT``, a symlink, is swapped to in one step: a reader sees the previous report or the new one,
never a mix) and an MLflow run.

The promotion gate calls ``validation_scores(model_uri, tasks, cfg)`` → {task: mean validation AUC}
(prodemb method only, ``promote.train_size`` rows × ``promote.samples`` samples, the same splits and
subsamples for every model, so two models are compared on identical rows).
"""
from __future__ import annotations

import json
import logging
import re
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from prodemb import fs
from prodemb.baselines import METHODS, make_method
from prodemb.baselines.base import EvalContext, Method
from prodemb.tasks import LoadedTask, TaskError, TaskSet, configured_tasks, gather_tasks

log = logging.getLogger(__name__)

RESULT_COLUMNS = ["task", "method", "alpha", "train_size", "sample", "auc", "val_auc", "covered", "seconds",
                  "prepare_seconds", "n_train_pool", "n_val", "n_test", "model"]
ENCODER_METHODS = ("prodemb", "random")


class EvaluateInputError(ValueError):
    """Bad input to an evaluation (unknown method, no tasks, bad protocol settings)."""


# --- splits and subsamples -----------------------------------------------------------------------

def _derived_seed(*parts: Any) -> int:
    """A stable 31-bit seed from any parts (CRC32 of their text: same on every machine and run)."""
    return zlib.crc32("|".join(map(str, parts)).encode()) & 0x7FFFFFFF


def split_task(df: pd.DataFrame, fractions: Iterable[float] = (0.6, 0.2, 0.2), seed: int = 0
               ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Stratified train / validation / test split of a task table (rows keep their index).

    Deterministic for ``seed``, disjoint and covering; within each class the validation and test
    sizes are ``round(n_class · fraction)`` (at least one row each), the train split gets the rest,
    so every part has both classes. Each class needs at least 3 rows.
    """
    f = np.asarray(list(fractions), dtype=float)
    if f.shape != (3,) or (f <= 0).any() or abs(f.sum() - 1) > 1e-6:
        raise EvaluateInputError(f"split must be three positive fractions summing to 1, got {list(f)}")
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[], [], []]
    for label in sorted(df["label"].unique().tolist()):
        idx = rng.permutation(df.index[df["label"] == label].to_numpy())
        n = len(idx)
        if n < 3:
            raise TaskError(f"label {label} has {n} row(s): every class needs ≥ 3 rows (train, validation, test)")
        n_val, n_test = max(1, round(n * f[1])), max(1, round(n * f[2]))
        n_train = n - n_val - n_test
        if n_train < 1:
            n_train, n_val = 1, n - 1 - n_test
        parts[0].append(idx[:n_train])
        parts[1].append(idx[n_train:n_train + n_val])
        parts[2].append(idx[n_train + n_val:])
    train, val, test = (df.loc[np.sort(np.concatenate(p))] for p in parts)
    return train, val, test


def train_sizes_for(n_train: int, sizes: Iterable[int]) -> list[int]:
    """The listed sizes that fit in ``n_train`` rows, plus ``n_train`` itself when a listed size exceeds it."""
    sizes = [int(s) for s in sizes]
    if not sizes:
        raise EvaluateInputError("no training sizes given")
    if min(sizes) < 2:
        raise EvaluateInputError(f"training sizes must be ≥ 2 (both classes), got {sizes}")
    out = sorted({s for s in sizes if s <= n_train})
    if any(s > n_train for s in sizes) and n_train not in out:
        out.append(n_train)
    return out


def subsample(train: pd.DataFrame, size: int, seed: int) -> pd.DataFrame:
    """``size`` rows of ``train`` drawn per class in proportion to the class shares, at least one row of
    each class (so the probe always sees both). ``size >= len(train)`` returns all of it."""
    if size >= len(train):
        return train
    rng = np.random.default_rng(seed)
    y = train["label"].to_numpy()
    pos, neg = train.index[y == 1].to_numpy(), train.index[y == 0].to_numpy()
    k_pos = int(min(max(1, round(size * len(pos) / len(train))), len(pos), size - 1))
    k_neg = size - k_pos
    if k_neg > len(neg):
        k_neg, k_pos = len(neg), size - len(neg)
    chosen = np.concatenate([rng.choice(pos, k_pos, replace=False), rng.choice(neg, k_neg, replace=False)])
    return train.loc[np.sort(chosen)]


def _auc(y: np.ndarray, scores: np.ndarray, what: str) -> float:
    from sklearn.metrics import roc_auc_score

    scores = np.asarray(scores, dtype=float)
    if scores.shape != y.shape:
        raise ValueError(f"{what}: {scores.shape[0] if scores.ndim else 0} scores for {len(y)} rows")
    if not np.isfinite(scores).all():
        raise ValueError(f"{what}: scores contain NaN or inf")
    return float(roc_auc_score(y, scores))


def _check_table(name: str, table: pd.DataFrame) -> pd.DataFrame:
    if not {"title", "label"} <= set(table.columns):
        raise TaskError(f"{name}: a task table needs 'title' and 'label' (has {list(table.columns)})")
    if not table.index.equals(pd.RangeIndex(len(table))):
        table = table.reset_index(drop=True)
    if not set(table["label"].unique().tolist()) <= {0, 1}:
        raise TaskError(f"{name}: labels must be 0/1 (use prodemb.tasks.validate_task)")
    return table


# --- the protocol --------------------------------------------------------------------------------

def run_protocol(tasks: Mapping[str, pd.DataFrame], methods: list[Method], cfg, *, progress: bool = True,
                 on_error: str = "raise", failures: list[dict] | None = None) -> pd.DataFrame:
    """Evaluate every method on every task; one row per (task, method, train size, sample).

    ``cfg`` is an ``EvaluateConfig`` (split, train_sizes, samples, seed). Every method sees the same
    split and the same training subsamples. ``method.prepare`` gets each task's rows without labels;
    ``fit_predict`` gets the train subsample and validation rows with labels and the test rows without.
    ``on_error="skip"`` records a failing method in ``failures`` (task, method, stage, error) and goes
    on with the others; ``"raise"`` (default) stops.
    """
    from tqdm.auto import tqdm

    if on_error not in ("raise", "skip"):
        raise ValueError("on_error must be 'raise' or 'skip'")
    failures = failures if failures is not None else []
    plans = {}
    for name, table in tasks.items():
        table = _check_table(name, table)
        train, val, test = split_task(table, cfg.split, cfg.seed)
        subs = {(size, s): subsample(train, size, _derived_seed(cfg.seed, name, size, s))
                for size in train_sizes_for(len(train), cfg.train_sizes) for s in range(cfg.samples)}
        plans[name] = (table, train, val, test, subs)
    total = sum(len(p[4]) for p in plans.values()) * len(methods)
    rows: list[dict] = []
    with tqdm(total=total, disable=not progress, desc="evaluate", unit="fit", dynamic_ncols=True) as bar:
        for name, (table, train, val, test, subs) in plans.items():
            y_val, y_test = val["label"].to_numpy(), test["label"].to_numpy()
            test_rows = test.drop(columns=["label"])
            for method in methods:
                label = method.name if method.alpha is None else f"{method.name} α={method.alpha:g}"
                bar.set_postfix_str(f"{name}: {label}", refresh=False)
                t0 = time.perf_counter()
                try:
                    method.prepare(name, table.drop(columns=["label"]))
                except Exception as exc:   # noqa: BLE001 - reported per method with on_error="skip"
                    if on_error == "raise":
                        raise
                    log.error("%s on %s: prepare failed: %s", label, name, exc)
                    failures.append({"task": name, "method": label, "stage": "prepare", "error": repr(exc)})
                    bar.update(len(subs))
                    continue
                prepare_seconds = time.perf_counter() - t0
                for (size, s), sub in subs.items():
                    seed = _derived_seed(cfg.seed, name, size, s)
                    t1 = time.perf_counter()
                    try:
                        scores = method.fit_predict(sub, val, test_rows, seed)
                        auc = _auc(y_test, scores.test, f"{label} on {name} (test)")
                        val_auc = _auc(y_val, scores.val, f"{label} on {name} (validation)")
                    except Exception as exc:   # noqa: BLE001
                        if on_error == "raise":
                            raise
                        log.error("%s on %s (size %d, sample %d) failed: %s", label, name, size, s, exc)
                        failures.append({"task": name, "method": label, "stage": f"fit size={size} sample={s}",
                                         "error": repr(exc)})
                        bar.update(1)
                        continue
                    rows.append({"task": name, "method": method.name, "alpha": method.alpha, "train_size": size,
                                 "sample": s, "auc": auc, "val_auc": val_auc, "covered": scores.covered_test,
                                 "seconds": round(time.perf_counter() - t1, 4),
                                 "prepare_seconds": round(prepare_seconds, 4), "n_train_pool": len(train),
                                 "n_val": len(val), "n_test": len(test),
                                 "model": getattr(method, "model_ref", None)})
                    bar.update(1)
    out = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    return out.astype({"alpha": "float64", "covered": "float64", "train_size": "int64", "sample": "int64"})


# --- summaries -----------------------------------------------------------------------------------

def _select(results: pd.DataFrame, method: str, alpha: float | None, train_size: int | None) -> pd.DataFrame:
    r = results[results["method"] == method]
    if r.empty:
        raise ValueError(f"no results for method {method!r} (have {sorted(results['method'].unique())})")
    if alpha is not None:
        r = r[np.isclose(r["alpha"].astype(float), alpha)]
    elif r["alpha"].nunique() > 1:
        raise ValueError(f"{method!r} has results for several α {sorted(r['alpha'].dropna().unique())}: pass alpha=")
    if train_size is not None:
        r = r[r["train_size"] == train_size]
    if r.empty:
        raise ValueError(f"no results for {method!r} with alpha={alpha} train_size={train_size}")
    return r


def per_task_validation_auc(results: pd.DataFrame, method: str = "prodemb", *, alpha: float | None = None,
                            train_size: int | None = None) -> dict[str, float]:
    """{task: mean validation AUC over the method's rows (all sizes and samples unless filtered)}."""
    r = _select(results, method, alpha, train_size)
    return {k: float(v) for k, v in r.groupby("task", sort=True)["val_auc"].mean().items()}


def mean_validation_auc(results: pd.DataFrame, method: str = "prodemb", *, alpha: float | None = None,
                        train_size: int | None = None) -> float:
    """Mean over tasks of the per-task mean validation AUC (each task weighs the same)."""
    return float(np.mean(list(per_task_validation_auc(results, method, alpha=alpha, train_size=train_size).values())))


def summary_table(results: pd.DataFrame, metric: str = "auc") -> pd.DataFrame:
    """Mean ± std of ``metric`` at each task's largest training size: rows = task, columns = method label."""
    if results.empty:
        return pd.DataFrame()
    r = results.assign(label=_method_labels(results))
    largest = r.groupby("task")["train_size"].transform("max")
    top = r[r["train_size"] == largest]
    agg = top.groupby(["task", "label"])[metric].agg(["mean", "std", "count"]).reset_index()
    agg["text"] = [f"{m:.3f} ± {0.0 if pd.isna(s) else s:.3f}" for m, s in zip(agg["mean"], agg["std"])]
    table = agg.pivot(index="task", columns="label", values="text")
    table = table[sorted(table.columns, key=_label_order)]
    sizes = top.groupby("task")["train_size"].first()
    table.insert(0, "train_size", sizes.reindex(table.index))
    return table


def largest_size_means(results: pd.DataFrame, metric: str = "auc") -> dict[str, dict[str, float]]:
    """{task: {method label: mean ``metric`` at the task's largest training size}}."""
    if results.empty:
        return {}
    r = results.assign(label=_method_labels(results))
    top = r[r["train_size"] == r.groupby("task")["train_size"].transform("max")]
    out: dict[str, dict[str, float]] = {}
    for (task, label), g in top.groupby(["task", "label"], sort=True):
        out.setdefault(str(task), {})[str(label)] = round(float(g[metric].mean()), 6)
    return out


def _label_order(label: str) -> tuple:
    """prodemb (by α), random, then the baselines in ``METHODS`` order, then anything else."""
    name, _, alpha = label.partition(" α=")
    order = list(METHODS)
    return (order.index(name) if name in order else len(order), name, float(alpha) if alpha else -1.0)


def _method_labels(results: pd.DataFrame) -> pd.Series:
    return pd.Series([m if pd.isna(a) or m not in ENCODER_METHODS else f"{m} α={a:g}"
                      for m, a in zip(results["method"], results["alpha"])], index=results.index)


def best_alpha(results: pd.DataFrame, method: str = "prodemb") -> tuple[float, dict[float, float]]:
    """(α with the best mean validation AUC, {α: mean validation AUC}) over the sweep's encoders."""
    r = results[(results["method"] == method) & results["alpha"].notna()]
    if r.empty:
        raise ValueError(f"no {method!r} results with an α")
    scores = {float(a): mean_validation_auc(r, method, alpha=float(a)) for a in sorted(r["alpha"].unique())}
    return max(scores, key=lambda a: (scores[a], -a)), scores


# --- plots ---------------------------------------------------------------------------------------

def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "task"


def _curve(ax, r: pd.DataFrame, label: str, **style) -> None:
    g = r.groupby("train_size")["auc"].agg(["mean", "std"]).sort_index()
    x, m, s = g.index.to_numpy(), g["mean"].to_numpy(), g["std"].fillna(0).to_numpy()
    line, = ax.plot(x, m, marker="o", ms=3, label=label, **style)
    ax.fill_between(x, m - s, m + s, alpha=0.15, color=line.get_color())


def plot_learning_curves(results: pd.DataFrame, out_dir: str | Path) -> list[Path]:
    """Test AUC vs training size (log x), mean ± std over samples, one PNG per task:

    - ``<task>_methods.png`` (paper Fig. 3): one curve per method; when several α of the encoder are
      present, the one with the best mean validation AUC stands for ``prodemb``;
    - ``<task>_alpha.png`` (paper Fig. 2), when ≥ 2 α are present: one curve per α plus the random encoder.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    if results.empty:
        return paths
    enc = results[(results["method"] == "prodemb") & results["alpha"].notna()]
    alphas = sorted(enc["alpha"].unique().tolist())
    chosen = best_alpha(results)[0] if len(alphas) > 1 else None
    for task, r in results.groupby("task", sort=True):
        fig, ax = plt.subplots(figsize=(6.4, 4.4))
        for method, rm in r.groupby("method", sort=True):
            if method == "prodemb" and chosen is not None:
                rm = rm[np.isclose(rm["alpha"].astype(float), chosen)]
                label = f"prodemb (α={chosen:g})"
            else:
                a = rm["alpha"].dropna().unique()
                label = f"{method} (α={a[0]:g})" if method == "prodemb" and len(a) == 1 else method
            if not rm.empty:
                _curve(ax, rm, label, lw=2.2 if method == "prodemb" else 1.4)
        _finish(ax, f"{task}: frozen features + logistic regression", r["train_size"])
        paths.append(_save(fig, out / f"{_slug(task)}_methods.png"))
        if len(alphas) > 1:
            fig, ax = plt.subplots(figsize=(6.4, 4.4))
            cmap = plt.get_cmap("viridis")
            for i, a in enumerate(alphas):
                ra = r[(r["method"] == "prodemb") & np.isclose(r["alpha"].astype(float), a)]
                if not ra.empty:
                    _curve(ax, ra, f"α = {a:g}", color=cmap(i / max(1, len(alphas) - 1)))
            rr = r[r["method"] == "random"]
            if not rr.empty:
                _curve(ax, rr, "random encoder", color="grey", ls="--")
            _finish(ax, f"{task}: α sweep (BYOL weight in Eq. 4)", r["train_size"])
            paths.append(_save(fig, out / f"{_slug(task)}_alpha.png"))
    return paths


def _finish(ax, title: str, sizes) -> None:
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    ax.set_xscale("log")
    ax.set_xticks(sorted(int(s) for s in set(sizes)))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("training examples")
    ax.set_ylabel("test AUC-ROC")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# --- context and methods -------------------------------------------------------------------------

def check_method_names(names: Iterable[str]) -> list[str]:
    names = [n.strip() for n in names if n and n.strip()]
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise EvaluateInputError(f"unknown method(s) {unknown} (known: {', '.join(METHODS)})")
    if not names:
        raise EvaluateInputError("no methods to evaluate")
    return list(dict.fromkeys(names))


def build_context(cfg, method_names: Iterable[str] | None = None, *, model_uri: str | None = None,
                  tracking_uri: str | None = None, data_dir: str | None = None,
                  tokenizer_path: str | None = None, workdir: str | Path | None = None) -> EvalContext:
    """The ``EvalContext`` every method gets, from the full ``Config``.

    The model under test (``model_uri``, else ``evaluate.model_uri``, else ``score.model_uri``) is
    resolved and loaded once when an encoder method needs it, or when the supervised Text-CNN needs a
    tokenizer and none was given: ``ctx.tokenizer_path`` is then the model's own SentencePiece file,
    ``ctx.language`` its normalization language and ``ctx.model_cfg`` its encoder dimensions and max_len. Raises ``prodemb.score.ModelNotFoundError`` for a bad URI.
    """
    from prodemb.baselines.encoder import encoder_model

    names = list(method_names) if method_names is not None else list(cfg.evaluate.methods)
    ctx = EvalContext(eval_cfg=cfg.evaluate, model_cfg=cfg.model, data_dir=data_dir or cfg.paths.data_dir,
                      tokenizer_path=tokenizer_path,
                      model_uri=model_uri or cfg.evaluate.model_uri or cfg.score.model_uri,
                      tracking_uri=tracking_uri or cfg.mlflow.tracking_uri, language=cfg.sessions.language)
    if workdir is not None:
        ctx.extra["workdir"] = str(workdir)
    if any(n in ENCODER_METHODS for n in names) or ("textcnn" in names and not tokenizer_path):
        model = encoder_model(ctx)
        ctx.tokenizer_path = tokenizer_path or model.tokenizer_path
        ctx.language = model.meta.get("language", ctx.language)
        # The supervised Text-CNN gets the architecture of the model under test, whatever cfg.model says.
        dims, max_len = model.meta.get("encoder", {}), model.meta.get("max_len")
        ctx.model_cfg = cfg.model.model_copy(update={k: v for k, v in {**dims, "max_len": max_len}.items()
                                                     if k in type(cfg.model).model_fields and v is not None})
    return ctx


def make_methods(names: list[str], ctx: EvalContext, *, on_error: str = "raise",
                 failures: list[dict] | None = None) -> list[Method]:
    """Instantiate methods by name; with ``on_error="skip"`` one that cannot be built (a missing optional
    package, a baseline without its inputs) is recorded in ``failures`` and left out."""
    methods = []
    for name in names:
        try:
            methods.append(make_method(name, ctx))
        except Exception as exc:   # noqa: BLE001
            if on_error == "raise":
                raise
            log.error("method %s cannot be built: %s", name, exc)
            if failures is not None:
                failures.append({"task": "*", "method": name, "stage": "build", "error": repr(exc)})
    return methods


# --- what the promotion gate calls ---------------------------------------------------------------

def _as_tables(tasks: Mapping[str, Any] | TaskSet) -> dict[str, pd.DataFrame]:
    if isinstance(tasks, TaskSet):
        return dict(tasks.tables)
    return gather_tasks(dict(tasks)).tables   # paths are read, DataFrames validated, order kept


def evaluate_model(model_uri: str, tasks: Mapping[str, Any] | TaskSet, cfg, *, train_size: int | None = None,
                   samples: int | None = None, tracking_uri: str | None = None, progress: bool = False,
                   ctx: EvalContext | None = None) -> pd.DataFrame:
    """Results of the ``prodemb`` method alone for one model URI, at ``train_size`` rows per task (default
    ``promote.train_size``, capped by each task) × ``samples`` samples (default ``promote.samples``).
    ``tasks``: {name: task table (DataFrame) or path to one}."""
    train_size = int(train_size if train_size is not None else cfg.promote.train_size)
    samples = int(samples if samples is not None else cfg.promote.samples)
    ecfg = cfg.evaluate.model_copy(update={"train_sizes": [train_size], "samples": samples})
    tables = _as_tables(tasks)
    if not tables:
        raise EvaluateInputError("no tasks to evaluate the model on")
    ctx = ctx or build_context(cfg, ["prodemb"], model_uri=model_uri, tracking_uri=tracking_uri)
    ctx.eval_cfg = ecfg
    from prodemb.baselines.encoder import PretrainedEncoder

    return run_protocol(tables, [PretrainedEncoder(ctx, model_uri=model_uri)], ecfg, progress=progress)


def validation_scores(model_uri: str, tasks: Mapping[str, Any] | TaskSet, cfg, *, train_size: int | None = None,
                      samples: int | None = None, tracking_uri: str | None = None,
                      progress: bool = False) -> dict[str, float]:
    """{task: mean validation AUC} of the encoder at ``model_uri`` (see ``evaluate_model``).

    Deterministic: the same tasks and config give the same splits and subsamples for every model, so
    ``validation_scores(champion, ...)`` and ``validation_scores(candidate, ...)`` compare like with like.
    """
    results = evaluate_model(model_uri, tasks, cfg, train_size=train_size, samples=samples,
                             tracking_uri=tracking_uri, progress=progress)
    return per_task_validation_auc(results, "prodemb")


# --- the job -------------------------------------------------------------------------------------

def _write_csv(df: pd.DataFrame, path: Path) -> Path:
    df.to_csv(path, index=False)
    return path


def _write_text(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def render_report(results: pd.DataFrame, loaded: Mapping[str, LoadedTask], *, model: str | None,
                  failures: list[dict], plots: list[Path], out_dir: Path, notes: list[str] | None = None) -> str:
    lines = ["# Downstream evaluation", ""]
    if model:
        lines += [f"Model under test: `{model}`", ""]
    lines += list(notes or [])
    lines += ["Test AUC-ROC (mean ± std over samples) at each task's largest training size; frozen features "
              "+ liblinear logistic regression (supervised baselines train on the same rows).", ""]
    table = summary_table(results)
    if not table.empty:
        cols = ["task", *table.columns]
        lines += ["| " + " | ".join(map(str, cols)) + " |", "|" + "---|" * len(cols)]
        for task, row in table.iterrows():
            lines.append("| " + " | ".join([str(task), *("" if pd.isna(v) else str(v) for v in row)]) + " |")
        lines.append("")
    if "prodemb" in set(results["method"]) and results.loc[results["method"] == "prodemb", "alpha"].nunique() <= 1:
        lines += [f"Mean validation AUC of prodemb over tasks: {mean_validation_auc(results):.4f}", ""]
    lines += ["## Tasks", "", "| task | rows | positives | quarantined | source |", "|---|---|---|---|---|"]
    for name, t in loaded.items():
        c = t.counts
        q = ", ".join(f"{k.removeprefix('quarantined_')} {v}" for k, v in c.items() if k.startswith("quarantined_"))
        lines.append(f"| {name} | {c['rows_valid']} | {c['positives']} | {c['rows_quarantined']}"
                     f"{f' ({q})' if q else ''} | {t.source} |")
    lines.append("")
    if failures:
        lines += ["## Failures", ""] + [f"- {f['method']} on {f['task']} ({f['stage']}): {f['error']}"
                                        for f in failures] + [""]
    if plots:
        lines += ["## Learning curves", ""] + [f"![{p.stem}]({p.relative_to(out_dir)})" for p in plots] + [""]
    return "\n".join(lines)


def _metric_key(*parts: str) -> str:
    return ".".join(re.sub(r"[^A-Za-z0-9_\-]+", "_", p) for p in parts)


def log_to_mlflow(results: pd.DataFrame, out_dir: Path, *, tracking_uri: str, experiment: str,
                  params: dict, run_name: str | None = None, extra_metrics: dict[str, float] | None = None) -> str:
    """One MLflow run: params, mean test/val AUC per task × method at the largest size, artifacts."""
    import mlflow

    from prodemb.registry import setup_tracking

    setup_tracking(tracking_uri, experiment)
    with mlflow.start_run(run_name=run_name) as run:
        mlflow.log_params({k: (json.dumps(v) if not isinstance(v, str) else v)[:6000] for k, v in params.items()})
        metrics = {}
        if not results.empty:
            for metric in ("auc", "val_auc"):
                for task, by_label in largest_size_means(results, metric).items():
                    metrics.update({_metric_key(metric, task, label): v for label, v in by_label.items()})
            r = results.assign(label=_method_labels(results))
            for (task, label, size), g in r.groupby(["task", "label", "train_size"]):
                mlflow.log_metric(_metric_key("auc_curve", task, label), float(g["auc"].mean()), step=int(size))
            prod = results[results["method"] == "prodemb"]
            if not prod.empty and prod["alpha"].nunique() <= 1:
                metrics["mean_val_auc_prodemb"] = mean_validation_auc(results)
        metrics["rows"] = float(len(results))
        metrics.update(extra_metrics or {})
        mlflow.log_metrics(metrics)
        for name in ("results.csv", "report.md", "summary.json"):
            if (out_dir / name).exists():
                mlflow.log_artifact(str(out_dir / name))
        for sub in ("plots", "quarantine"):
            if (out_dir / sub).is_dir():
                mlflow.log_artifacts(str(out_dir / sub), sub)
        return run.info.run_id


def write_outputs(results: pd.DataFrame, out: Path, loaded: Mapping[str, LoadedTask], *, model: str | None,
                  failures: list[dict], plot: bool = True, notes: list[str] | None = None,
                  final: Path | None = None) -> dict[str, Any]:
    """OUT/results.csv, OUT/quarantine/<task>.csv, OUT/plots/*.png, OUT/report.md into ``out`` (a staging
    folder of ``fs.atomic_dir``); the paths returned are under ``final`` (where it is published)."""
    out.mkdir(parents=True, exist_ok=True)
    named = lambda p: str((final or out) / Path(p).relative_to(out))  # noqa: E731
    written: dict[str, Any] = {"results": named(_write_csv(results, out / "results.csv"))}
    qdir = out / "quarantine"
    for name, t in loaded.items():
        if len(t.quarantine):
            qdir.mkdir(exist_ok=True)
            _write_csv(t.quarantine, qdir / f"{_slug(name)}.csv")
    plots = plot_learning_curves(results, out / "plots") if plot else []
    written["plots"] = [named(p) for p in plots]
    report = render_report(results, loaded, model=model, failures=failures, plots=plots, out_dir=out, notes=notes)
    written["report"] = named(_write_text(out / "report.md", report))
    return written


def run_evaluate(cfg, *, output: str | Path | None = None, tasks: Mapping[str, Any] | None = None,
                 builtin: list[str] | str | None = None, methods: list[str] | None = None,
                 model_uri: str | None = None, data_dir: str | None = None, tokenizer_path: str | None = None,
                 tracking_uri: str | None = None, progress: bool = True, log_mlflow: bool = True,
                 keep_going: bool = False) -> dict[str, Any]:
    """The evaluation job: tasks × methods → OUT/results.csv, plots, report.md, an MLflow run.

    ``tasks``: {name: path or raw DataFrame}; with neither ``tasks`` nor ``builtin``, the config's
    ``evaluate.tasks`` / ``evaluate.builtin_tasks``. ``keep_going``: a method that fails is reported
    (summary ``failures``, report) instead of stopping the run. Returns a JSON-able summary.
    """
    t0 = time.perf_counter()
    ecfg = cfg.evaluate
    out = Path(output or ecfg.output_dir)
    tracking_uri = tracking_uri or cfg.mlflow.tracking_uri
    names = check_method_names(methods or ecfg.methods)
    taskset = configured_tasks(ecfg, tasks, builtin)
    if not taskset.tables:
        raise EvaluateInputError("no tasks: give --task NAME=PATH, --builtin NAME or set evaluate.tasks")
    train_sizes_for(10**9, ecfg.train_sizes)                 # validates the sizes before any work
    on_error = "skip" if keep_going else "raise"
    failures: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="prodemb-eval-") as work:
        ctx = build_context(cfg, names, model_uri=model_uri, tracking_uri=tracking_uri, data_dir=data_dir,
                            tokenizer_path=tokenizer_path, workdir=work)
        model = ctx.extra.get("encoder_models", {}).get(ctx.model_uri)
        built = make_methods(names, ctx, on_error=on_error, failures=failures)
        results = run_protocol(taskset.tables, built, ecfg, progress=progress, on_error=on_error, failures=failures)
        model_label = f"{ctx.model_uri} ({model.ref})" if model is not None else None
    with fs.output_lock(out, "evaluate"), fs.atomic_dir(out) as stage:   # all at once, or not at all
        written = write_outputs(results, stage, taskset.loaded, model=model_label, failures=failures, final=out)
        summary: dict[str, Any] = {
            "output": str(out), **written, "rows": len(results),
            "tasks": {k: t.counts for k, t in taskset.loaded.items()}, "methods": names,
            "model_uri": ctx.model_uri if model is not None else None,
            "model_version": model.ref if model is not None else None,
            "alpha": model.alpha if model is not None else None, "failures": failures,
            "test_auc_at_largest_size": largest_size_means(results),
        }
        prod = results[results["method"] == "prodemb"]
        if not prod.empty and prod["alpha"].nunique() <= 1:
            summary["mean_val_auc_prodemb"] = round(mean_validation_auc(results), 6)
            summary["val_auc_prodemb"] = {k: round(v, 6) for k, v in per_task_validation_auc(results).items()}
        summary["seconds"] = round(time.perf_counter() - t0, 2)
        _write_text(stage / "summary.json", json.dumps(summary, indent=2, default=str))
    if log_mlflow:
        summary["mlflow_run_id"] = log_to_mlflow(
            results, out, tracking_uri=tracking_uri, experiment=ecfg.experiment or f"{cfg.mlflow.experiment}-eval",
            run_name="evaluate",
            params={"model_uri": summary["model_uri"] or "", "model_version": summary["model_version"] or "",
                    "methods": names, "tasks": {k: t.source for k, t in taskset.loaded.items()},
                    "train_sizes": ecfg.train_sizes, "samples": ecfg.samples, "split": ecfg.split,
                    "seed": ecfg.seed, "lr_max_iter": ecfg.lr_max_iter})
    return summary


# --- the α sweep ---------------------------------------------------------------------------------

def run_sweep(cfg, *, data_dir: str, tokenizer_path: str, output: str | Path | None = None,
              tasks: Mapping[str, Any] | None = None, builtin: list[str] | str | None = None,
              alphas: list[float] | None = None, tracking_uri: str | None = None, progress: bool = True,
              log_mlflow: bool = True) -> dict[str, Any]:
    """Train one encoder per α (``evaluate.alphas``), evaluate each with the random encoder as the floor,
    and report the α with the best mean validation AUC (paper §5.1, Fig. 2).

    The encoders are registered under ``evaluate.sweep_model_name`` (never ``mlflow.model_name``), so
    the production aliases are untouched. An α whose embeddings collapse is reported and skipped.
    Writes OUT/results.csv (with the ``alpha`` column), OUT/plots/<task>_alpha.png (Fig. 2) and
    <task>_methods.png, OUT/report.md, OUT/summary.json, and logs an MLflow run.
    """
    import mlflow

    from prodemb.baselines.encoder import PretrainedEncoder, RandomEncoder
    from prodemb.train import CollapsedError, run_training

    t0 = time.perf_counter()
    ecfg = cfg.evaluate
    out = Path(output or (Path(ecfg.output_dir) / "sweep_alpha"))
    tracking_uri = tracking_uri or cfg.mlflow.tracking_uri
    alphas = [float(a) for a in (alphas if alphas is not None else ecfg.alphas)]
    if not alphas or any(not 0.0 <= a <= 1.0 for a in alphas):
        raise EvaluateInputError(f"α values must lie in [0, 1], got {alphas}")
    taskset = configured_tasks(ecfg, tasks, builtin)   # fail before training
    if not taskset.tables:
        raise EvaluateInputError("no tasks: give --task NAME=PATH, --builtin NAME or set evaluate.tasks")
    train_sizes_for(10**9, ecfg.train_sizes)
    sweep_name = ecfg.sweep_model_name
    if sweep_name == cfg.mlflow.model_name:
        raise EvaluateInputError(f"evaluate.sweep_model_name must differ from mlflow.model_name ({sweep_name!r})")

    trained: list[dict] = []
    skipped: list[dict] = []
    for alpha in alphas:
        cfg_a = cfg.model_copy(update={
            "train": cfg.train.model_copy(update={"alpha": alpha}),
            "mlflow": cfg.mlflow.model_copy(update={"model_name": sweep_name, "tracking_uri": tracking_uri})})
        log.info("sweep: training α = %g", alpha)
        try:
            s = run_training(data_dir, tokenizer_path, cfg_a, progress=progress)
        except CollapsedError as exc:
            log.error("sweep: α = %g collapsed: %s", alpha, exc)
            skipped.append({"alpha": alpha, "reason": str(exc)})
            continue
        if s.get("alpha") is not None and abs(float(s["alpha"]) - alpha) > 1e-9:
            log.warning("sweep: α = %g trained with α = %g (the data has no categories)", alpha, s["alpha"])
        trained.append({"alpha": alpha, "alpha_effective": s.get("alpha"), "run_id": s["run_id"],
                        "model_uri": f"models:/{sweep_name}/{s['model_version']}", "version": s["model_version"]})
    if not trained:
        raise CollapsedError(f"every α collapsed: {skipped}")

    failures: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="prodemb-sweep-") as work:
        ctx = build_context(cfg, ["prodemb"], model_uri=trained[0]["model_uri"], tracking_uri=tracking_uri,
                            workdir=work)
        methods: list[Method] = []
        for t in trained:
            m = PretrainedEncoder(ctx, model_uri=t["model_uri"])
            m.alpha = t["alpha"]                       # the requested α labels the curve
            methods.append(m)
        methods.append(RandomEncoder(ctx, model_uri=trained[0]["model_uri"]))
        results = run_protocol(taskset.tables, methods, ecfg, progress=progress)
        best, scores = best_alpha(results)
        random_val = mean_validation_auc(results, "random")
        notes = ["## α sweep", "", "Mean validation AUC over tasks (all sizes and samples) per α; the best α "
                 "is the one to train production encoders with.", "", "| α | model version | mean validation AUC |",
                 "|---|---|---|"]
        notes += [f"| {t['alpha']:g}{' (best)' if t['alpha'] == best else ''} | {sweep_name}/{t['version']} | "
                  f"{scores[t['alpha']]:.4f} |" for t in trained]
        notes += [f"| random encoder | - | {random_val:.4f} |", ""]
        notes += [f"α = {c['alpha']:g} collapsed and was skipped." for c in skipped] + ([""] if skipped else [])
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    client = mlflow.MlflowClient()
    for t in trained:
        t["mean_val_auc"] = round(scores[t["alpha"]], 6)
        client.set_model_version_tag(sweep_name, t["version"], "sweep_mean_val_auc", str(t["mean_val_auc"]))
    with fs.output_lock(out, "sweep_alpha"), fs.atomic_dir(out) as stage:   # all at once, or not at all
        written = write_outputs(results, stage, taskset.loaded, model=f"{sweep_name} (one version per α)",
                                failures=failures, notes=notes, final=out)
        summary: dict[str, Any] = {
            "output": str(out), **written, "rows": len(results), "alphas": alphas, "trained": trained,
            "collapsed": skipped, "best_alpha": best,
            "mean_val_auc_by_alpha": {str(a): round(v, 6) for a, v in scores.items()},
            "mean_val_auc_random": round(random_val, 6), "model_name": sweep_name,
            "tasks": {k: t.counts for k, t in taskset.loaded.items()},
            "test_auc_at_largest_size": largest_size_means(results), "seconds": round(time.perf_counter() - t0, 2)}
        _write_text(stage / "summary.json", json.dumps(summary, indent=2, default=str))
    if log_mlflow:
        summary["mlflow_run_id"] = log_to_mlflow(
            results, out, tracking_uri=tracking_uri, experiment=ecfg.experiment or f"{cfg.mlflow.experiment}-eval",
            run_name="sweep_alpha",
            params={"alphas": alphas, "model_name": sweep_name, "versions": {str(t["alpha"]): t["version"] for t in trained},
                    "tasks": {k: t.source for k, t in taskset.loaded.items()}, "train_sizes": ecfg.train_sizes,
                    "samples": ecfg.samples, "split": ecfg.split, "seed": ecfg.seed, "best_alpha": best},
            extra_metrics={"best_alpha": best, "mean_val_auc_random": random_val,
                           **{_metric_key("mean_val_auc", f"alpha_{a:g}"): v for a, v in scores.items()}})
    return summary
