"""What an evaluation writes (``prodemb/protocol.py``'s rows in): tables at each task's largest size, the
learning-curve PNGs (Fig. 2 α sweep + random encoder; Fig. 3 methods with mean ± std bands), ``report.md``
and one MLflow run."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from prodemb.baselines import METHODS
from prodemb.protocol import ENCODER_METHODS, best_alpha, mean_validation_auc
from prodemb.tasks import LoadedTask

# --- tables --------------------------------------------------------------------------------------


def summary_table(results: pd.DataFrame, metric: str = "auc") -> pd.DataFrame:
    """Mean ± std of ``metric`` at each task's largest training size: rows = task, columns = method label."""
    if results.empty:
        return pd.DataFrame()
    r = results.assign(label=_method_labels(results))
    largest = r.groupby("task")["train_size"].transform("max")
    top = r[r["train_size"] == largest]
    table = _mean_std_pivot(top, ["task"], metric)
    sizes = top.groupby("task")["train_size"].first()
    table.insert(0, "train_size", sizes.reindex(table.index))
    return table


def few_labels_table(results: pd.DataFrame, metric: str = "auc", n_sizes: int = 2) -> pd.DataFrame:
    """Mean ± std of ``metric`` at each task's ``n_sizes`` smallest training sizes (100 and 500 rows with
    the default sizes: where a small labelled set is all a team has): rows = (task, train_size)."""
    if results.empty:
        return pd.DataFrame()
    r = results.assign(label=_method_labels(results))
    rank = r.groupby("task")["train_size"].rank(method="dense")
    return _mean_std_pivot(r[rank <= n_sizes], ["task", "train_size"], metric)


def _mean_std_pivot(rows: pd.DataFrame, index: list[str], metric: str) -> pd.DataFrame:
    agg = rows.groupby([*index, "label"])[metric].agg(["mean", "std"]).reset_index()
    agg["text"] = [f"{m:.3f} ± {0.0 if pd.isna(s) else s:.3f}" for m, s in zip(agg["mean"], agg["std"])]
    table = agg.pivot(index=index, columns="label", values="text")
    return table[sorted(table.columns, key=_label_order)]


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
    return pd.Series(
        [
            m if pd.isna(a) or m not in ENCODER_METHODS else f"{m} α={a:g}"
            for m, a in zip(results["method"], results["alpha"])
        ],
        index=results.index,
    )


# --- plots ---------------------------------------------------------------------------------------


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "task"


def _curve(ax, r: pd.DataFrame, label: str, **style) -> None:
    g = r.groupby("train_size")["auc"].agg(["mean", "std"]).sort_index()
    x, m, s = g.index.to_numpy(), g["mean"].to_numpy(), g["std"].fillna(0).to_numpy()
    (line,) = ax.plot(x, m, marker="o", ms=3, label=label, **style)
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


# --- files and the MLflow run --------------------------------------------------------------------


def _write_csv(df: pd.DataFrame, path: Path) -> Path:
    df.to_csv(path, index=False)
    return path


def _write_text(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def render_report(
    results: pd.DataFrame,
    loaded: Mapping[str, LoadedTask],
    *,
    model: str | None,
    failures: list[dict],
    plots: list[Path],
    out_dir: Path,
    notes: list[str] | None = None,
) -> str:
    lines = ["# Downstream evaluation", ""]
    if model:
        lines += [f"Model under test: `{model}`", ""]
    lines += list(notes or [])
    lines += [
        "Test AUC-ROC (mean ± std over samples) at each task's largest training size; frozen features "
        "+ liblinear logistic regression (supervised baselines train on the same rows).",
        "",
    ]
    lines += _markdown_table(summary_table(results), ["task"])
    few = few_labels_table(results)
    if not few.empty:
        lines += [
            "Test AUC-ROC at each task's two smallest training sizes (100 and 500 labelled rows by default), "
            "where a small labelled set is all a team has:",
            "",
            *_markdown_table(few, ["task", "labels"]),
        ]
    if "prodemb" in set(results["method"]) and results.loc[results["method"] == "prodemb", "alpha"].nunique() <= 1:
        lines += [f"Mean validation AUC of prodemb over tasks: {mean_validation_auc(results):.4f}", ""]
    lines += ["## Tasks", "", "| task | rows | positives | quarantined | source |", "|---|---|---|---|---|"]
    for name, t in loaded.items():
        c = t.counts
        q = ", ".join(f"{k.removeprefix('quarantined_')} {v}" for k, v in c.items() if k.startswith("quarantined_"))
        lines.append(
            f"| {name} | {c['rows_valid']} | {c['positives']} | {c['rows_quarantined']}"
            f"{f' ({q})' if q else ''} | {t.source} |"
        )
    lines.append("")
    if failures:
        lines += (
            ["## Failures", ""]
            + [f"- {f['method']} on {f['task']} ({f['stage']}): {f['error']}" for f in failures]
            + [""]
        )
    if plots:
        lines += ["## Learning curves", ""] + [f"![{p.stem}]({p.relative_to(out_dir)})" for p in plots] + [""]
    return "\n".join(lines)


def _markdown_table(table: pd.DataFrame, index_names: list[str]) -> list[str]:
    """A pivot (index = ``index_names``' values) as Markdown lines, a blank line after; none when empty."""
    if table.empty:
        return []
    cols = [*index_names, *map(str, table.columns)]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for key, row in table.iterrows():
        keys = key if isinstance(key, tuple) else (key,)
        lines.append("| " + " | ".join([*map(str, keys), *("" if pd.isna(v) else str(v) for v in row)]) + " |")
    return [*lines, ""]


def _metric_key(*parts: str) -> str:
    return ".".join(re.sub(r"[^A-Za-z0-9_\-]+", "_", p) for p in parts)


def log_to_mlflow(
    results: pd.DataFrame,
    out_dir: Path,
    *,
    tracking_uri: str,
    experiment: str,
    params: dict,
    run_name: str | None = None,
    extra_metrics: dict[str, float] | None = None,
) -> str:
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


def write_outputs(
    results: pd.DataFrame,
    out: Path,
    loaded: Mapping[str, LoadedTask],
    *,
    model: str | None,
    failures: list[dict],
    plot: bool = True,
    notes: list[str] | None = None,
    final: Path | None = None,
) -> dict[str, Any]:
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
