"""Downstream evaluation protocol (paper §4.1, §4.2, §5.1, A.1): frozen embeddings + logistic regression.

For every task (a table of ``title`` and binary ``label``, optionally ``product_id``):

    split once, stratified by label: 60 % train / 20 % validation / 20 % test      (split_task)
    training sizes: 100, 500, 1000, 5000, 10000, 50000, 100000, capped by the train split
                                                                                    (train_sizes_for)
    per size, ``samples`` stratified random subsamples of the train split (the same rows for every method)
    per method: prepare(all rows, no labels) once, then fit_predict(subsample, val, test) per size × sample
    score: AUC-ROC on test (the figure of merit) and on validation (model selection: α, promotion)

``run_protocol`` is pure (DataFrames in, a results DataFrame out); the summaries read its rows. The job
around it is ``prodemb/evaluate.py``, its outputs ``prodemb/report.py``, the α sweep ``prodemb/sweep.py``
and the gate's scoring ``prodemb/promote.py``.
"""

from __future__ import annotations

import logging
import time
import zlib
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from prodemb.baselines import METHODS, make_method
from prodemb.baselines.base import EvalContext, Method
from prodemb.tasks import TaskError

log = logging.getLogger(__name__)

RESULT_COLUMNS = [
    "task",
    "method",
    "alpha",
    "train_size",
    "sample",
    "auc",
    "val_auc",
    "covered",
    "seconds",
    "prepare_seconds",
    "n_train_pool",
    "n_val",
    "n_test",
    "model",
]
ENCODER_METHODS = ("prodemb", "random")


class EvaluateInputError(ValueError):
    """Bad input to an evaluation (unknown method, no tasks, bad protocol settings)."""


# --- splits and subsamples -----------------------------------------------------------------------


def _derived_seed(*parts: Any) -> int:
    """A stable 31-bit seed from any parts (CRC32 of their text: same on every machine and run)."""
    return zlib.crc32("|".join(map(str, parts)).encode()) & 0x7FFFFFFF


def split_task(
    df: pd.DataFrame, fractions: Iterable[float] = (0.6, 0.2, 0.2), seed: int = 0
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
        parts[1].append(idx[n_train : n_train + n_val])
        parts[2].append(idx[n_train + n_val :])
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


def run_protocol(
    tasks: Mapping[str, pd.DataFrame],
    methods: list[Method],
    cfg,
    *,
    progress: bool = True,
    on_error: str = "raise",
    failures: list[dict] | None = None,
) -> pd.DataFrame:
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
        subs = {
            (size, s): subsample(train, size, _derived_seed(cfg.seed, name, size, s))
            for size in train_sizes_for(len(train), cfg.train_sizes)
            for s in range(cfg.samples)
        }
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
                except Exception as exc:  # noqa: BLE001 - reported per method with on_error="skip"
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
                    except Exception as exc:  # noqa: BLE001
                        if on_error == "raise":
                            raise
                        log.error("%s on %s (size %d, sample %d) failed: %s", label, name, size, s, exc)
                        failures.append(
                            {"task": name, "method": label, "stage": f"fit size={size} sample={s}", "error": repr(exc)}
                        )
                        bar.update(1)
                        continue
                    rows.append(
                        {
                            "task": name,
                            "method": method.name,
                            "alpha": method.alpha,
                            "train_size": size,
                            "sample": s,
                            "auc": auc,
                            "val_auc": val_auc,
                            "covered": scores.covered_test,
                            "seconds": round(time.perf_counter() - t1, 4),
                            "prepare_seconds": round(prepare_seconds, 4),
                            "n_train_pool": len(train),
                            "n_val": len(val),
                            "n_test": len(test),
                            "model": getattr(method, "model_ref", None),
                        }
                    )
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


def per_task_validation_auc(
    results: pd.DataFrame, method: str = "prodemb", *, alpha: float | None = None, train_size: int | None = None
) -> dict[str, float]:
    """{task: mean validation AUC over the method's rows (all sizes and samples unless filtered)}."""
    r = _select(results, method, alpha, train_size)
    return {k: float(v) for k, v in r.groupby("task", sort=True)["val_auc"].mean().items()}


def mean_validation_auc(
    results: pd.DataFrame, method: str = "prodemb", *, alpha: float | None = None, train_size: int | None = None
) -> float:
    """Mean over tasks of the per-task mean validation AUC (each task weighs the same)."""
    return float(np.mean(list(per_task_validation_auc(results, method, alpha=alpha, train_size=train_size).values())))


def best_alpha(results: pd.DataFrame, method: str = "prodemb") -> tuple[float, dict[float, float]]:
    """(α with the best mean validation AUC, {α: mean validation AUC}) over the sweep's encoders."""
    r = results[(results["method"] == method) & results["alpha"].notna()]
    if r.empty:
        raise ValueError(f"no {method!r} results with an α")
    scores = {float(a): mean_validation_auc(r, method, alpha=float(a)) for a in sorted(r["alpha"].unique())}
    return max(scores, key=lambda a: (scores[a], -a)), scores


# --- context and methods -------------------------------------------------------------------------


def check_method_names(names: Iterable[str]) -> list[str]:
    names = [n.strip() for n in names if n and n.strip()]
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise EvaluateInputError(f"unknown method(s) {unknown} (known: {', '.join(METHODS)})")
    if not names:
        raise EvaluateInputError("no methods to evaluate")
    return list(dict.fromkeys(names))


def build_context(
    cfg,
    method_names: Iterable[str] | None = None,
    *,
    model_uri: str | None = None,
    tracking_uri: str | None = None,
    data_dir: str | None = None,
    tokenizer_path: str | None = None,
    workdir: str | Path | None = None,
) -> EvalContext:
    """The ``EvalContext`` every method gets, from the full ``Config``.

    The model under test (``model_uri``, else ``evaluate.model_uri``, else ``score.model_uri``) is
    resolved and loaded once when an encoder method needs it, or when the supervised Text-CNN needs a
    tokenizer and none was given: ``ctx.tokenizer_path`` is then the model's own SentencePiece file,
    ``ctx.language`` its normalization language and ``ctx.model_cfg`` its encoder dimensions and max_len.
    Raises ``prodemb.score.ModelNotFoundError`` for a bad URI.
    """
    from prodemb.baselines.encoder import encoder_model

    names = list(method_names) if method_names is not None else list(cfg.evaluate.methods)
    ctx = EvalContext(
        eval_cfg=cfg.evaluate,
        model_cfg=cfg.model,
        data_dir=data_dir or cfg.paths.data_dir,
        tokenizer_path=tokenizer_path,
        model_uri=model_uri or cfg.evaluate.model_uri or cfg.score.model_uri,
        tracking_uri=tracking_uri or cfg.mlflow.tracking_uri,
        language=cfg.sessions.language,
    )
    if workdir is not None:
        ctx.extra["workdir"] = str(workdir)
    if any(n in ENCODER_METHODS for n in names) or ("textcnn" in names and not tokenizer_path):
        model = encoder_model(ctx)
        ctx.tokenizer_path = tokenizer_path or model.tokenizer_path
        ctx.language = model.meta.get("language", ctx.language)
        # The supervised Text-CNN gets the architecture of the model under test, whatever cfg.model says.
        dims, max_len = model.meta.get("encoder", {}), model.meta.get("max_len")
        ctx.model_cfg = cfg.model.model_copy(
            update={
                k: v
                for k, v in {**dims, "max_len": max_len}.items()
                if k in type(cfg.model).model_fields and v is not None
            }
        )
    return ctx


def make_methods(
    names: list[str], ctx: EvalContext, *, on_error: str = "raise", failures: list[dict] | None = None
) -> list[Method]:
    """Instantiate methods by name; with ``on_error="skip"`` one that cannot be built (a missing optional
    package, a baseline without its inputs) is recorded in ``failures`` and left out."""
    methods = []
    for name in names:
        try:
            methods.append(make_method(name, ctx))
        except Exception as exc:  # noqa: BLE001
            if on_error == "raise":
                raise
            log.error("method %s cannot be built: %s", name, exc)
            if failures is not None:
                failures.append({"task": "*", "method": name, "stage": "build", "error": repr(exc)})
    return methods
