"""The α sweep (paper §5.1, Fig. 2): one encoder per α, each evaluated with the random encoder as the floor;
the α with the best mean validation AUC is the one to train production encoders with."""

from __future__ import annotations

import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping

from prodemb import fs
from prodemb.baselines.base import Method
from prodemb.card import link_card, try_build_card
from prodemb.protocol import (
    EvaluateInputError,
    best_alpha,
    build_context,
    mean_validation_auc,
    run_protocol,
    train_sizes_for,
)
from prodemb.report import _metric_key, _write_text, largest_size_means, log_to_mlflow, write_outputs
from prodemb.tasks import configured_tasks

log = logging.getLogger(__name__)


def equal_steps(train_cfg, steps: int):
    """``train_cfg`` with a fixed budget of ``steps`` for data with or without categories, and no time cap.

    A time-capped sweep (``train.max_minutes``) lets the first α's pace set the steps, and every later α
    trains exactly as many: the pace drifts with the machine's load (35 to 40 steps of 4,096 in two
    minutes within one run on 2 cores), and a few steps more move the mean validation AUC by more than
    neighbouring α values differ, so equal wall time would rank the machine's load, not α."""
    wc = train_cfg.without_categories.model_copy(update={"max_steps": None})  # None: train.max_steps holds
    return train_cfg.model_copy(update={"max_steps": steps, "max_minutes": None, "without_categories": wc})


def run_sweep(
    cfg,
    *,
    data_dir: str,
    tokenizer_path: str,
    output: str | Path | None = None,
    tasks: Mapping[str, Any] | None = None,
    builtin: list[str] | str | None = None,
    alphas: list[float] | None = None,
    tracking_uri: str | None = None,
    progress: bool = True,
    log_mlflow: bool = True,
) -> dict[str, Any]:
    """Train one encoder per α (``evaluate.alphas``), evaluate each with the random encoder as the floor,
    and report the α with the best mean validation AUC (paper §5.1, Fig. 2).

    The encoders are registered under ``evaluate.sweep_model_name`` (never ``mlflow.model_name``), so
    the production aliases are untouched. An α whose embeddings collapse is reported and skipped.
    Writes OUT/results.csv (with the ``alpha`` column), OUT/plots/<task>_alpha.png (Fig. 2) and
    <task>_methods.png, OUT/report.md, OUT/summary.json, and logs an MLflow run. Every registered version
    gets its quality card (``prodemb/card.py``), linked in its tags, unless ``promote.card`` is off.
    """
    import mlflow

    from prodemb.baselines.encoder import PretrainedEncoder, RandomEncoder
    from prodemb.registry import use_tracking
    from prodemb.train import CollapsedError, run_training

    t0 = time.perf_counter()
    ecfg = cfg.evaluate
    out = Path(output or (Path(ecfg.output_dir) / "sweep_alpha"))
    tracking_uri = tracking_uri or cfg.mlflow.tracking_uri
    alphas = [float(a) for a in (alphas if alphas is not None else ecfg.alphas)]
    if not alphas or any(not 0.0 <= a <= 1.0 for a in alphas):
        raise EvaluateInputError(f"α values must lie in [0, 1], got {alphas}")
    taskset = configured_tasks(ecfg, tasks, builtin)  # fail before training
    if not taskset.tables:
        raise EvaluateInputError("no tasks: give --task NAME=PATH, --builtin NAME or set evaluate.tasks")
    train_sizes_for(10**9, ecfg.train_sizes)
    sweep_name = ecfg.sweep_model_name
    if sweep_name == cfg.mlflow.model_name:
        raise EvaluateInputError(f"evaluate.sweep_model_name must differ from mlflow.model_name ({sweep_name!r})")

    cfg_sweep = cfg.model_copy(
        update={  # what each α trains and registers with, but for α itself
            "mlflow": cfg.mlflow.model_copy(update={"model_name": sweep_name, "tracking_uri": tracking_uri})
        }
    )
    trained: list[dict] = []
    skipped: list[dict] = []
    budget = cfg.train  # what every α trains with, but for α itself
    for alpha in alphas:
        cfg_a = cfg_sweep.model_copy(update={"train": budget.model_copy(update={"alpha": alpha})})
        log.info("sweep: training α = %g", alpha)
        try:
            s = run_training(data_dir, tokenizer_path, cfg_a, progress=progress)
        except CollapsedError as exc:
            log.error("sweep: α = %g collapsed: %s", alpha, exc)
            skipped.append({"alpha": alpha, "reason": str(exc)})
            continue
        if budget.max_minutes is not None:
            budget = equal_steps(budget, int(s["steps"]))
            minutes = cfg.train.max_minutes
            log.info("sweep: every α trains %d steps (what fit in α = %g's %g minutes)", s["steps"], alpha, minutes)
        if s.get("alpha") is not None and abs(float(s["alpha"]) - alpha) > 1e-9:
            log.warning("sweep: α = %g trained with α = %g (the data has no categories)", alpha, s["alpha"])
        trained.append(
            {
                "alpha": alpha,
                "alpha_effective": s.get("alpha"),
                "run_id": s["run_id"],
                "model_uri": f"models:/{sweep_name}/{s['model_version']}",
                "version": s["model_version"],
            }
        )
    if not trained:
        raise CollapsedError(f"every α collapsed: {skipped}")

    failures: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="prodemb-sweep-") as work:
        ctx = build_context(
            cfg, ["prodemb"], model_uri=trained[0]["model_uri"], tracking_uri=tracking_uri, workdir=work
        )
        methods: list[Method] = []
        for t in trained:
            m = PretrainedEncoder(ctx, model_uri=t["model_uri"])
            m.alpha = t["alpha"]  # the requested α labels the curve
            methods.append(m)
        methods.append(RandomEncoder(ctx, model_uri=trained[0]["model_uri"]))
        results = run_protocol(taskset.tables, methods, ecfg, progress=progress)
        best, scores = best_alpha(results)
        random_val = mean_validation_auc(results, "random")
        notes = [
            "## α sweep",
            "",
            "Mean validation AUC over tasks (all sizes and samples) per α; the best α "
            "is the one to train production encoders with.",
            "",
            "| α | model version | mean validation AUC |",
            "|---|---|---|",
        ]
        notes += [
            f"| {t['alpha']:g}{' (best)' if t['alpha'] == best else ''} | {sweep_name}/{t['version']} | "
            f"{scores[t['alpha']]:.4f} |"
            for t in trained
        ]
        notes += [f"| random encoder | - | {random_val:.4f} |", ""]
        notes += [f"α = {c['alpha']:g} collapsed and was skipped." for c in skipped] + ([""] if skipped else [])
    use_tracking(tracking_uri, cfg.mlflow.registry_uri)
    client = mlflow.MlflowClient()
    for t in trained:
        t["mean_val_auc"] = round(scores[t["alpha"]], 6)
        client.set_model_version_tag(sweep_name, t["version"], "sweep_mean_val_auc", str(t["mean_val_auc"]))
        card = (
            try_build_card(cfg_sweep, sweep_name, t["version"], taskset.tables, tracking_uri=tracking_uri)
            if cfg.promote.card
            else None
        )
        if card is not None:
            t["quality_card"] = str(card.path)
            link_card(client, sweep_name, t["version"], t["quality_card"], t["run_id"])
    with fs.output_lock(out, "sweep_alpha"), fs.atomic_dir(out) as stage:  # all at once, or not at all
        written = write_outputs(
            results,
            stage,
            taskset.loaded,
            model=f"{sweep_name} (one version per α)",
            failures=failures,
            notes=notes,
            final=out,
        )
        summary: dict[str, Any] = {
            "output": str(out),
            **written,
            "rows": len(results),
            "alphas": alphas,
            "trained": trained,
            "collapsed": skipped,
            "best_alpha": best,
            "mean_val_auc_by_alpha": {str(a): round(v, 6) for a, v in scores.items()},
            "mean_val_auc_random": round(random_val, 6),
            "model_name": sweep_name,
            "tasks": {k: t.counts for k, t in taskset.loaded.items()},
            "test_auc_at_largest_size": largest_size_means(results),
            "seconds": round(time.perf_counter() - t0, 2),
        }
        _write_text(stage / "summary.json", json.dumps(summary, indent=2, default=str))
    if log_mlflow:
        summary["mlflow_run_id"] = log_to_mlflow(
            results,
            out,
            tracking_uri=tracking_uri,
            experiment=ecfg.experiment or f"{cfg.mlflow.experiment}-eval",
            run_name="sweep_alpha",
            params={
                "alphas": alphas,
                "model_name": sweep_name,
                "versions": {str(t["alpha"]): t["version"] for t in trained},
                "tasks": {k: t.source for k, t in taskset.loaded.items()},
                "train_sizes": ecfg.train_sizes,
                "samples": ecfg.samples,
                "split": ecfg.split,
                "seed": ecfg.seed,
                "best_alpha": best,
            },
            extra_metrics={
                "best_alpha": best,
                "mean_val_auc_random": random_val,
                **{_metric_key("mean_val_auc", f"alpha_{a:g}"): v for a, v in scores.items()},
            },
        )
    return summary
