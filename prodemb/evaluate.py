"""The evaluation job: tasks and methods in; ``OUT/results.csv``, learning-curve PNGs, ``OUT/report.md``,
``OUT/summary.json`` (all written into a fresh folder that ``OUT``, a symlink, is swapped to in one step: a
reader sees the previous report or the new one, never a mix) and an MLflow run out.

The protocol itself is ``prodemb/protocol.py`` (pure), the outputs ``prodemb/report.py``.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping

from prodemb import fs
from prodemb.protocol import (
    EvaluateInputError,
    build_context,
    check_method_names,
    make_methods,
    mean_validation_auc,
    per_task_validation_auc,
    run_protocol,
    train_sizes_for,
)
from prodemb.report import _write_text, largest_size_means, log_to_mlflow, write_outputs
from prodemb.tasks import configured_tasks

__all__ = ["EvaluateInputError", "run_evaluate"]


def run_evaluate(
    cfg,
    *,
    output: str | Path | None = None,
    tasks: Mapping[str, Any] | None = None,
    builtin: list[str] | str | None = None,
    methods: list[str] | None = None,
    model_uri: str | None = None,
    data_dir: str | None = None,
    tokenizer_path: str | None = None,
    tracking_uri: str | None = None,
    progress: bool = True,
    log_mlflow: bool = True,
    keep_going: bool = False,
) -> dict[str, Any]:
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
    train_sizes_for(10**9, ecfg.train_sizes)  # validates the sizes before any work
    on_error = "skip" if keep_going else "raise"
    failures: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="prodemb-eval-") as work:
        ctx = build_context(
            cfg,
            names,
            model_uri=model_uri,
            tracking_uri=tracking_uri,
            data_dir=data_dir,
            tokenizer_path=tokenizer_path,
            workdir=work,
        )
        model = ctx.extra.get("encoder_models", {}).get(ctx.model_uri)
        built = make_methods(names, ctx, on_error=on_error, failures=failures)
        results = run_protocol(taskset.tables, built, ecfg, progress=progress, on_error=on_error, failures=failures)
        model_label = f"{ctx.model_uri} ({model.ref})" if model is not None else None
    with fs.output_lock(out, "evaluate"), fs.atomic_dir(out) as stage:  # all at once, or not at all
        written = write_outputs(results, stage, taskset.loaded, model=model_label, failures=failures, final=out)
        summary: dict[str, Any] = {
            "output": str(out),
            **written,
            "rows": len(results),
            "tasks": {k: t.counts for k, t in taskset.loaded.items()},
            "methods": names,
            "model_uri": ctx.model_uri if model is not None else None,
            "model_version": model.ref if model is not None else None,
            "alpha": model.alpha if model is not None else None,
            "failures": failures,
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
            results,
            out,
            tracking_uri=tracking_uri,
            experiment=ecfg.experiment or f"{cfg.mlflow.experiment}-eval",
            run_name="evaluate",
            params={
                "model_uri": summary["model_uri"] or "",
                "model_version": summary["model_version"] or "",
                "methods": names,
                "tasks": {k: t.source for k, t in taskset.loaded.items()},
                "train_sizes": ecfg.train_sizes,
                "samples": ecfg.samples,
                "split": ecfg.split,
                "seed": ecfg.seed,
                "lr_max_iter": ecfg.lr_max_iter,
            },
        )
    return summary
