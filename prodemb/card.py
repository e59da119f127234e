"""A registered version's quality card: one self-contained HTML page a person reads in a browser.

    build_card(cfg, model_name, version, tasks, champion_version=...) → <runs_dir>/cards/<model>/v<N>/card.html

The page holds, for the version (and, on the same rows, the current champion):
- test AUC per task at each labelled-set size against the random encoder, TF-IDF and TF-IDF + the vector
  (the evaluation protocol, ``promote.card_methods``), with the champion and the difference to it;
- the learning curves of those methods (PNG, Fig. 3 style) and the training curves of the run;
- the health figures the training recorded (spread, alignment of held-out session pairs vs random pairs,
  uniformity);
- the nearest neighbours, with titles, of a fixed sample of catalog products (the same products for every
  version: the smallest CRC32 of their key), and how many of them the champion shares.

Images are inlined (``data:`` URIs), so the file alone renders anywhere and is logged as it is to the
version's MLflow run (artifact ``quality_card/card.html``). ``render_card`` is pure: facts in, HTML out.
"""

from __future__ import annotations

import base64
import html
import logging
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from prodemb import fs

log = logging.getLogger(__name__)

CARD_FILE = "card.html"
ARTIFACT_DIR = "quality_card"
NEIGHBOUR_QUERIES = 6  # sample products shown with their neighbours
NEIGHBOUR_POOL = 20_000  # catalog products searched (a fixed sample of larger catalogs)
NEIGHBOURS = 5
CANDIDATE_METHOD = "prodemb"  # the version under review, in the card's protocol rows
CHAMPION_METHOD = "champion"  # the champion it is compared with
CARD_TAG = "promotion.quality_card"  # version tags that link a version to its card
CARD_ARTIFACT_TAG = "promotion.quality_card_artifact"


@dataclass(frozen=True)
class BuiltCard:
    path: Path  # the written page
    results: pd.DataFrame  # run_protocol's rows behind it (every method, size and sample)


@dataclass
class CardFacts:
    model_name: str
    version: str
    champion_version: str | None
    auc: pd.DataFrame  # task, train_size, method → mean test AUC (and val)
    curves: list[Path] = field(default_factory=list)  # PNG files
    training_curves: Path | None = None
    health: dict[str, float] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    neighbours: list[dict] = field(default_factory=list)  # {title, candidate: [(title, cos)], shared}
    notes: list[str] = field(default_factory=list)


# --- the page (pure) -------------------------------------------------------------------------------


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return (
        f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"><figcaption>'
        f"{html.escape(alt)}</figcaption></figure>"
    )


def _auc_table(auc: pd.DataFrame, champion: bool) -> str:
    methods = [m for m in auc["method"].drop_duplicates() if m != CHAMPION_METHOD]
    head = "".join(f"<th>{html.escape(m)}</th>" for m in methods)
    head += "<th>champion</th><th>Δ vs champion</th>" if champion else ""
    rows = []
    for (task, size), g in auc.groupby(["task", "train_size"], sort=True):
        by = dict(zip(g["method"], g["auc"]))
        best = max(v for m, v in by.items() if m != CHAMPION_METHOD)
        cells = "".join(
            f'<td class="{"best" if by.get(m) == best else ""}">{by[m]:.3f}</td>' if m in by else "<td>–</td>"
            for m in methods
        )
        if champion and CHAMPION_METHOD in by and CANDIDATE_METHOD in by:
            d = by[CANDIDATE_METHOD] - by[CHAMPION_METHOD]
            cells += f'<td>{by[CHAMPION_METHOD]:.3f}</td><td class="{"up" if d >= 0 else "down"}">{d:+.3f}</td>'
        elif champion:
            cells += "<td>–</td><td>–</td>"
        rows.append(f"<tr><td>{html.escape(str(task))}</td><td>{int(size):,}</td>{cells}</tr>")
    return (
        f'<table id="auc"><thead><tr><th>task</th><th>labelled rows</th>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _health_table(health: dict[str, float]) -> str:
    if not health:
        return '<p id="health">The training run recorded no health figures.</p>'
    explain = {
        "dim_std_mean": "mean per-dimension std of unit vectors (uniform ≈ 1/√d; collapse → 0)",
        "dim_std_uniform_reference": "1/√d",
        "alignment_holdout": "E‖u − v‖² over held-out session pairs (lower = sessions captured)",
        "alignment_random": "E‖u − v‖² over random product pairs",
        "uniformity": "log E exp(−2‖u − v‖²) over random pairs (more negative = more uniform)",
    }
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{v:.4f}</td><td class=text>{html.escape(explain.get(k, ''))}</td></tr>"
        for k, v in sorted(health.items())
    )
    return (
        f'<table id="health"><thead><tr><th>figure</th><th>value</th><th class=text>meaning</th></tr></thead>'
        f"<tbody>{rows}</tbody></table>"
    )


def _neighbours_html(items: list[dict], champion: bool) -> str:
    out = []
    for it in items:
        lis = "".join(f"<li>{html.escape(t)} <span class=sim>{s:.3f}</span></li>" for t, s in it["candidate"])
        shared = (
            f" <span class=sim>(champion shares {it['shared']} of {NEIGHBOURS})</span>"
            if champion and it.get("shared") is not None
            else ""
        )
        out.append(f'<div class="nn"><b>{html.escape(it["title"])}</b>{shared}<ol>{lis}</ol></div>')
    return '<div id="neighbours">' + "".join(out) + "</div>"


STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
td:first-child,th:first-child,.text{text-align:left}.best{font-weight:bold}.up{color:#1a7f37}.down{color:#c62828}
figure{display:inline-block;margin:0.5em}img{max-width:520px}.nn{display:inline-block;vertical-align:top;width:340px;
margin:0.5em}.sim{color:#777;font-size:smaller}"""

# Marks the page once the browser has decoded every image: <body data-images-loaded="n/m">.
SELF_CHECK = """<script>window.addEventListener('load',function(){var im=[].slice.call(document.images);
document.body.dataset.imagesLoaded=im.filter(function(i){return i.complete&&i.naturalWidth>0}).length+'/'+im.length;});
</script>"""


def render_card(f: CardFacts) -> str:
    champion = f.champion_version is not None and f.champion_version != f.version
    title = f"{f.model_name} version {f.version}"
    vs = f"champion (version {f.champion_version})" if champion else "no other champion"
    params = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in sorted(f.params.items())
    )
    images = "".join(_img(p, p.stem.replace("_", " ")) for p in f.curves)
    if f.training_curves is not None:
        images += _img(f.training_curves, "training curves (loss, learning rate, target EMA)")
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in f.notes)
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>{html.escape(title)} · quality card</title>
<style>{STYLE}</style></head><body>
<h1>{html.escape(title)}</h1>
<p>Compared with the {html.escape(vs)} on the same rows. Test AUC-ROC, mean over the labelled samples; the frozen vector
+ logistic regression (<code>prodemb</code>) against a random encoder of the same architecture, TF-IDF, and TF-IDF with
the vector as one more feature.</p>
<h2>Downstream AUC</h2>{_auc_table(f.auc, champion)}
<h2>Learning curves</h2>{images}
<h2>Health</h2>{_health_table(f.health)}
<h2>Nearest neighbours</h2><p>A fixed sample of products (the same for every version), cosine similarity of the
published vectors.</p>
{_neighbours_html(f.neighbours, champion)}
<h2>Training</h2><table id="params"><tbody>{params}</tbody></table>
{f"<ul>{notes}</ul>" if notes else ""}
{SELF_CHECK}</body></html>"""


# --- the facts (I/O at the edge) ------------------------------------------------------------------


def _products(data_dir: str | None, fallback: dict[str, pd.DataFrame]) -> tuple[pd.DataFrame, str]:
    """(key, title) of the training catalog, else of the task rows: where neighbours are searched, and which."""
    if data_dir:
        try:
            from prodemb.tables import read_table_arrow

            t = read_table_arrow(fs.join(data_dir, "catalog"), ["site", "product_id", "title"]).to_pandas()
            return pd.DataFrame(
                {"key": t["site"].astype(str) + "/" + t["product_id"].astype(str), "title": t["title"].astype(str)}
            ), "catalog products"
        except Exception as exc:  # noqa: BLE001 - a moved or remote catalog: the task rows stand in
            log.warning("quality card: catalog of %s not readable (%s); neighbours among the task rows", data_dir, exc)
    rows = pd.concat([t[["title"]].assign(key=t.get("product_id", t.index).astype(str)) for t in fallback.values()])
    return rows.drop_duplicates("key")[["key", "title"]], "task rows (the training catalog was not readable)"


def fixed_sample(keys: pd.Series, n: int) -> np.ndarray:
    """Positions of the ``n`` keys with the smallest CRC32: the same products for every version."""
    crc = np.fromiter((zlib.crc32(str(k).encode()) for k in keys), dtype=np.int64, count=len(keys))
    return np.argsort(crc, kind="stable")[:n]


def neighbours(vectors: np.ndarray, queries: np.ndarray, k: int = NEIGHBOURS) -> tuple[list[list[int]], np.ndarray]:
    """For each query row, the rows of its k nearest other vectors (cosine), and the query × all similarities."""
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    sims = unit[queries] @ unit.T
    sims[np.arange(len(queries)), queries] = -np.inf
    return [list(np.argsort(-row, kind="stable")[:k]) for row in sims], sims


def build_card(
    cfg,
    model_name: str,
    version: str,
    tasks: dict[str, pd.DataFrame],
    *,
    champion_version: str | None = None,
    tracking_uri: str | None = None,
    out_dir: str | Path | None = None,
    log_artifact: bool = True,
) -> "BuiltCard":
    """Evaluate, gather and render the card of ``model_name`` version ``version``; write it under
    ``out_dir`` (default ``<paths.runs_dir>/cards/<model>/v<version>``) and log it to the version's run.
    Returns the page's path and the protocol's rows (the candidate as ``CANDIDATE_METHOD``, the champion as
    ``CHAMPION_METHOD``) at sizes 100, 500 and ``promote.train_size`` × ``promote.samples``."""
    import mlflow

    from prodemb.baselines import make_method
    from prodemb.baselines.encoder import PretrainedEncoder
    from prodemb.protocol import build_context, run_protocol
    from prodemb.report import plot_learning_curves

    tracking_uri = tracking_uri or cfg.mlflow.tracking_uri
    uri = f"models:/{model_name}/{version}"
    out = Path(out_dir or Path(cfg.paths.runs_dir) / "cards" / model_name / f"v{version}")
    client = mlflow.MlflowClient()
    mv = client.get_model_version(model_name, version)
    run = client.get_run(mv.run_id) if mv.run_id else None
    ecfg = cfg.evaluate.model_copy(
        update={"train_sizes": sorted({100, 500, cfg.promote.train_size}), "samples": cfg.promote.samples}
    )
    with tempfile.TemporaryDirectory(prefix="prodemb-card-") as work:
        ctx = build_context(cfg, ["prodemb"], model_uri=uri, tracking_uri=tracking_uri, workdir=work)
        ctx.eval_cfg = ecfg
        candidate = PretrainedEncoder(ctx, model_uri=uri)
        methods = [candidate, *(make_method(name, ctx) for name in cfg.promote.card_methods)]
        champion = champion_version if champion_version not in (None, str(version)) else None
        champ = None
        if champion:
            champ = PretrainedEncoder(ctx, model_uri=f"models:/{model_name}/{champion}")
            champ.name = CHAMPION_METHOD
            methods.append(champ)
        results = run_protocol(tasks, methods, ecfg, progress=False)
        auc = results.groupby(["task", "train_size", "method"], as_index=False)[["auc", "val_auc"]].mean()
        plots = Path(work) / "plots"
        curves = plot_learning_curves(results.assign(alpha=np.nan), plots)
        training_curves = None
        if run is not None:
            try:
                training_curves = Path(
                    mlflow.artifacts.download_artifacts(
                        run_id=run.info.run_id, artifact_path="training_curves.png", dst_path=work
                    )
                )
            except Exception as exc:  # noqa: BLE001 - an older run without the plot
                log.warning("quality card: no training curves for %s: %s", uri, exc)
        data_dir = run.data.params.get("data.data_dir") if run is not None else None
        pool, source = _products(data_dir, tasks)
        pool = pool.iloc[fixed_sample(pool["key"], NEIGHBOUR_POOL)].reset_index(drop=True)
        queries = fixed_sample(pool["key"], NEIGHBOUR_QUERIES)
        titles = pool["title"].tolist()
        near, sims = neighbours(candidate.embed(pool), queries)
        champ_near = neighbours(champ.embed(pool), queries)[0] if champ is not None else None
        items = [
            {
                "title": titles[q],
                "candidate": [(titles[j], float(sims[i, j])) for j in near[i]],
                "shared": len(set(near[i]) & set(champ_near[i])) if champ_near else None,
            }
            for i, q in enumerate(queries)
        ]
        health = {
            k.removeprefix("health_"): float(v)
            for k, v in (run.data.metrics if run else {}).items()
            if k.startswith("health_")
        }
        keep = (
            "model.profile",
            "model.embed_dim",
            "train.alpha",
            "train.batch_size",
            "train.max_steps",
            "train.self_pair_fraction",
            "data.data_dir",
            "data.rows_pairs_train",
            "data.vocab_size",
        )
        params = {
            k: v
            for k, v in (run.data.params if run else {}).items()
            if k in keep or (k.startswith("data.") and k.endswith("_effective"))
        }
        facts = CardFacts(
            model_name,
            str(version),
            champion,
            auc,
            curves,
            training_curves,
            health,
            params,
            items,
            notes=[f"Neighbours searched among {len(pool):,} {source}."],
        )
        page = render_card(facts)
    out.mkdir(parents=True, exist_ok=True)
    path = out / CARD_FILE
    with fs.atomic_local_file(path) as tmp:
        Path(tmp).write_text(page, encoding="utf-8")
    if log_artifact and run is not None:
        client.log_artifact(run.info.run_id, str(path), ARTIFACT_DIR)
    return BuiltCard(path.resolve(), results)


def artifact_uri(run_id: str) -> str:
    return f"runs:/{run_id}/{ARTIFACT_DIR}/{CARD_FILE}"


def try_build_card(
    cfg,
    model_name: str,
    version: str,
    tasks: dict[str, pd.DataFrame],
    *,
    champion_version: str | None = None,
    tracking_uri: str | None = None,
) -> "BuiltCard | None":
    """``build_card``, or None when the card cannot be made (logged as an error): a card is a report and
    never stops the gate or the sweep that asked for it."""
    try:
        card = build_card(cfg, model_name, version, tasks, champion_version=champion_version, tracking_uri=tracking_uri)
    except Exception as exc:  # noqa: BLE001 - a report, not a gate
        log.error("quality card of %s version %s not written: %s", model_name, version, exc)
        return None
    log.info("quality card: %s", card.path)
    return card


def link_card(client, model_name: str, version: str, card_path: str, run_id: str | None) -> str | None:
    """Tag the version with its card: ``CARD_TAG`` (the file) and, when it has a run, ``CARD_ARTIFACT_TAG``
    (the same page in the run). Returns the artifact URI (None without a run)."""
    client.set_model_version_tag(model_name, version, CARD_TAG, card_path)
    if not run_id:
        return None
    uri = artifact_uri(run_id)
    client.set_model_version_tag(model_name, version, CARD_ARTIFACT_TAG, uri)
    return uri


__all__ = [
    "BuiltCard",
    "CardFacts",
    "render_card",
    "build_card",
    "try_build_card",
    "link_card",
    "fixed_sample",
    "neighbours",
    "artifact_uri",
]
