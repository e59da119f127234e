"""Embedding quality study: which encoder settings make the vectors earn their place downstream.

Each *variant* (``benchmarks/quality_variants.yaml``: a model profile plus ``--set``-style overrides, and
optionally ``tokenizer_vocab``: a tokenizer of that many pieces trained on the dataset's catalog) is
trained in this process with ``prodemb.train.train`` on one prepared dataset, then evaluated with the
project's protocol (``prodemb.protocol.run_protocol``: the same splits and subsamples for every method)
against TF-IDF, fastText and a random-init encoder of the same architecture. Decisions use validation
AUC only; test AUC is reported beside it.

    # once: sessionize + tokenizer + task tables per dataset (MovieLens, Online Retail, the generator)
    python benchmarks/quality_study.py prepare --out runs/study
    # a study: every variant of the file (or --variants a,b), on one dataset
    python benchmarks/quality_study.py run --dataset runs/study/retail --out runs/study/retail-results \
        [--variants paper,small] [--budget-pairs 1200000] [--sizes 100,500] [--samples 3] [--device auto]
    # the encoders a run saved (OUT/encoders/<variant>.pt), scored again with other published vectors;
    # --random scores each saved architecture's random-init floor instead
    python benchmarks/quality_study.py rescore --encoders runs/study/retail-results/encoders \
        --dataset runs/study/retail --out OUT2 --vectors y,l2maxmean*2 [--random]

A dataset folder holds ``catalog/``, ``pairs/`` (sessionize), ``tokenizer.model`` and ``tasks/*.parquet``.
The training budget is counted in pairs seen (optimizer steps × batch), the same for every variant unless
one sets ``train.max_steps``. The published vector is studied at evaluation time: ``prodemb`` is the
encoder's published vector v (``model.vector``), ``prodemb/l2`` its rows L2-normalized, ``prodemb/std``
standardized per dimension with statistics of the training catalog (what a model would store);
``VECTOR_KINDS`` lists the others, and ``KIND*F`` scales any of them. ``tfidf+prodemb`` uses v (it
standardizes on the training rows itself).

Output (rewritten after every variant, so a stopped study keeps what it measured): ``OUT/results.csv``
(one row per task × method × size × sample, with ``variant``), ``OUT/variants.json`` (training seconds,
steps, pairs/s, health), ``OUT/study.md`` (mean validation and test AUC per variant, wins against TF-IDF
and fastText). The summary prints as it goes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402

VARIANTS_FILE = Path(__file__).with_name("quality_variants.yaml")
DATASETS = {  # name → (input under ../shared/data or "synth", --input-format, built-in tasks, language)
    "movielens": (
        "movielens-latest-small",
        "movielens",
        "movielens_drama,movielens_comedy,movielens_horror,movielens_well_rated",
        "en",
    ),
    "retail": ("uci-online-retail/by-day", "online-retail", "retail_premium,retail_returned,retail_bulk", "en"),
    "synth": ("synth", "clicks", None, "es"),
}
DEFAULT_VECTOR_KINDS = ("raw", "l2", "std")  # the published vector as it is, L2-normalized, standardized
# pow: signed square root of the raw vector (power normalization of pooled features); target: the raw
# vector of BYOL's EMA target encoder ξ. Any kind may carry a factor, "KIND*F" (e.g. "l2*8"): the rows
# times F, which is how the probe's fixed L2 penalty (C = 1) sees a vector published at another scale.
# raw, l2, std and pow transform the encoder's published vector v (``model.vector``); y: the max-pooled
# features alone (the paper's vector); maxmean: y beside the same features mean-pooled (R^(2·F·K), from the
# max-pooled model's weights); l2maxmean: the two halves each L2-normalized (``model.vector=max+mean/l2``),
# "l2maxmean~W" with the mean half times W.
VECTOR_KINDS = (*DEFAULT_VECTOR_KINDS, "pow", "y", "maxmean", "l2maxmean", "target")


def vector_kind(kind: str) -> tuple[str, float]:
    """``"l2*8"`` → ``("l2", 8.0)``; ``"raw"`` → ``("raw", 1.0)``; ``"l2maxmean~0.5*2"`` → ``("l2maxmean", 2.0)``."""
    base, _, factor = kind.partition("*")
    return base.partition("~")[0], float(factor) if factor else 1.0


def mean_weight(kind: str) -> float:
    """``"l2maxmean~W"``: the mean half's weight beside the unit-norm max half (1 when not given)."""
    weight = kind.partition("*")[0].partition("~")[2]
    return float(weight) if weight else 1.0


# --- prepare ---------------------------------------------------------------------------------------


def prepare(out: Path, names: list[str], shared: Path, clicks: int) -> None:
    """Each dataset as the pipeline's own jobs make it (whole processes, as a user runs them)."""
    root = Path(__file__).resolve().parent.parent
    py = sys.executable
    for name in names:
        src, fmt, builtin, language = DATASETS[name]
        ds = out / name
        lang = ["--set", f"sessions.language={language}"]
        if name == "synth":
            subprocess.run(
                [py, "-m", "prodemb.synth", "--out", str(out / "synth-src"), "--clicks", str(clicks)],
                check=True,
                cwd=root,
            )
            source = out / "synth-src" / "clicks"
        else:
            source = shared / src
        subprocess.run(
            [py, "jobs/sessionize.py", "--input", str(source), "--input-format", fmt, "--output", str(ds), *lang],
            check=True,
            cwd=root,
        )
        subprocess.run(
            [py, "jobs/train_tokenizer.py", "--data", str(ds), "--output", str(ds / "tokenizer.model"), *lang],
            check=True,
            cwd=root,
        )
        tasks = ds / "tasks"
        tasks.mkdir(parents=True, exist_ok=True)
        if builtin:
            from prodemb.tasks import write_builtin_tasks

            write_builtin_tasks(tasks, builtin.split(","), shared)
        else:
            for f in (out / "synth-src" / "tasks").glob("*.parquet"):
                (tasks / f.name).write_bytes(f.read_bytes())
        (ds / "study.json").write_text(json.dumps({"language": language, "format": fmt}))
        print(f"prepared {name}: {ds}")


# --- run -------------------------------------------------------------------------------------------


class StudiedVector:
    """An encoder's vectors for each task's rows, embedded once per task and shared by the vector kinds:
    v (the encoder's published vector, as its profile sets ``model.vector``), y (the max-pooled n-gram
    features alone, the paper's vector) and ȳ (the same features mean-pooled: ``ProductEncoder.mean_pool``)."""

    def __init__(self, encoder, tokenizer, max_len: int, language: str, catalog_tokens):
        import torch

        from prodemb.health import embed

        self.encoder, self.tokenizer = encoder.eval(), tokenizer
        self.max_len, self.language = max_len, language
        sample = catalog_tokens[
            torch.randperm(len(catalog_tokens), generator=torch.Generator().manual_seed(0))[:20_000]
        ]
        V = embed(encoder, sample).numpy()
        self.mean, self.std = V.mean(axis=0), np.where(V.std(axis=0) > 0, V.std(axis=0), 1.0)
        self._key, self._parts, self._tokens = None, {}, None

    def part(self, table: pd.DataFrame, name: str) -> np.ndarray:
        """ "v", "y" or "mean" for the table's titles (tokenized as the pyfunc does, ``encode_raw``), each
        computed once per task and only when a vector kind asks for it."""
        import torch

        key = int(pd.util.hash_pandas_object(table["title"], index=True).sum())  # the same rows, any copy
        if key != self._key:
            self._key, self._parts = key, {}
            tokens = self.tokenizer.encode_raw(
                table["title"].astype(str).tolist(), self.max_len, language=self.language
            )
            self._tokens = torch.from_numpy(tokens).long()
        if name not in self._parts:
            fn = {"v": self.encoder.vector, "y": self.encoder, "mean": self.encoder.mean_pool}[name]
            with torch.inference_mode():
                out = [fn(self._tokens[i : i + 4096]) for i in range(0, len(self._tokens), 4096)]
            self._parts[name] = torch.cat(out).float().numpy()
        return self._parts[name]

    def rows(self, table: pd.DataFrame, kind: str) -> np.ndarray:
        base, factor = vector_kind(kind)
        unit = lambda v: v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)  # noqa: E731
        if base == "maxmean":
            V = np.concatenate([self.part(table, "y"), self.part(table, "mean")], axis=1)
        elif base == "l2maxmean":  # each half unit-norm, so neither swamps the other
            V = np.concatenate([unit(self.part(table, "y")), mean_weight(kind) * unit(self.part(table, "mean"))], 1)
        elif base == "y":
            V = self.part(table, "y")
        elif base == "l2":
            V = unit(self.part(table, "v"))
        elif base == "std":
            V = (self.part(table, "v") - self.mean) / self.std
        elif base == "pow":
            V = np.sign(self.part(table, "v")) * np.sqrt(np.abs(self.part(table, "v")))
        else:
            V = self.part(table, "v")
        return V * factor if factor != 1.0 else V


def vector_method(ctx, vectors: StudiedVector, kind: str, name: str | None = None):
    from prodemb.baselines.base import EmbeddingMethod

    class Vector(EmbeddingMethod):
        def embed(self, table):
            return vectors.rows(table, kind)

    Vector.name = name or ("prodemb" if kind == "raw" else f"prodemb/{kind}")

    return Vector(ctx)


def tokenizer_for(vocab_size: int | None, ds: Path, out: Path, language: str):
    """The dataset's tokenizer (``prepare``'s, trained at the pipeline's default size: the largest the corpus
    supports), or one of ``vocab_size`` pieces trained on the same catalog the same way (under OUT; a
    fraction of a second, so it is trained again rather than trusted from an earlier run)."""
    from prodemb.config import load_config
    from prodemb.tokenizer import Tokenizer, train_from_catalog

    if vocab_size is None:
        return Tokenizer.load(str(ds / "tokenizer.model"))
    path = out / f"tokenizer-{vocab_size}.model"
    tcfg = load_config("local", [f"sessions.language={language}"]).tokenizer
    train_from_catalog(str(ds), path, tcfg.model_copy(update={"vocab_size": int(vocab_size)}))
    return Tokenizer.load(str(path))


def load_variants(names: list[str] | None) -> dict[str, dict]:
    spec = yaml.safe_load(VARIANTS_FILE.read_text())["variants"]
    if names:
        missing = [n for n in names if n not in spec]
        if missing:
            sys.exit(f"quality_study: error: unknown variant(s) {missing} (in {VARIANTS_FILE.name}: {list(spec)})")
        spec = {n: spec[n] for n in names}
    return spec


def variant_config(spec: dict, budget_pairs: int, device: str, language: str):
    from prodemb.config import load_config

    overrides = [
        f"model.profile={spec.get('profile', 'paper')}",
        f"train.device={device}",
        f"sessions.language={language}",
        "train.max_minutes=null",  # a fixed step budget on any machine (the profile's wall-time cap is not)
        *spec.get("set", []),
    ]
    cfg = load_config("local", overrides)
    if cfg.train.max_steps is None:
        cfg.train.max_steps = max(1, round(budget_pairs / cfg.train.batch_size))
    return cfg


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    """Mean validation and test AUC per (variant, method, task, size) and the deltas to the baselines."""
    g = results.groupby(["variant", "method", "task", "train_size"], dropna=False)[["val_auc", "auc"]].mean()
    return g.reset_index()


def study_markdown(results: pd.DataFrame, trained: dict) -> str:
    s = summarize(results)
    base = s[s.variant == "baselines"].set_index(["method", "task", "train_size"])
    lines = [
        "| variant | method | mean val AUC | mean test AUC | ≥ tfidf (val) | ≥ fasttext (val) | "
        "≥ random+0.03 (val) | train s | steps × batch |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    cells = [(t, n) for t, n in s[["task", "train_size"]].drop_duplicates().itertuples(index=False)]

    def wins(rows: pd.DataFrame, peer: str, margin: float = 0.0) -> str:
        got = [
            r.val_auc >= base.loc[(peer, r.task, r.train_size), "val_auc"] + margin
            for r in rows.itertuples()
            if (peer, r.task, r.train_size) in base.index
        ]
        return f"{sum(got)}/{len(got)}" if got else "–"

    trained_rows = s[~s.variant.isin(["baselines", "floors"])]
    for (variant, method), rows in trained_rows.groupby(["variant", "method"], sort=False):
        info = trained.get(variant, {})
        floor = f"random:{info.get('architecture')}"
        fl = s[(s.variant == "floors") & (s.method == floor)].set_index(["task", "train_size"])
        above = [
            r.val_auc >= fl.loc[(r.task, r.train_size), "val_auc"] + 0.03
            for r in rows.itertuples()
            if (r.task, r.train_size) in fl.index
        ]
        lines.append(
            f"| {variant} | {method} | {rows.val_auc.mean():.4f} | {rows.auc.mean():.4f} | "
            f"{wins(rows, 'tfidf')} | {wins(rows, 'fasttext')} | "
            f"{f'{sum(above)}/{len(above)}' if above else '–'} | {info.get('seconds', 0):.0f} | "
            f"{info.get('steps', 0)} × {info.get('batch_size', 0)} |"
        )
    for (variant, method), rows in s[s.variant.isin(["baselines", "floors"])].groupby(["variant", "method"]):
        lines.append(f"| {variant} | {method} | {rows.val_auc.mean():.4f} | {rows.auc.mean():.4f} | | | | | |")
    per_cell = s.pivot_table(index=["variant", "method"], columns=["task", "train_size"], values="val_auc")
    per_cell.columns = [f"{t}@{n}" for t, n in per_cell.columns]
    return (
        "\n".join(lines)
        + "\n\nMean validation AUC per task and size:\n\n"
        + per_cell.round(4).to_markdown()
        + f"\n\n({len(cells)} task × size cells)\n"
    )


def run(args) -> int:
    import torch

    from prodemb.baselines import make_method
    from prodemb.baselines.base import EvalContext
    from prodemb.baselines.combined import TfidfPlusEmbedding
    from prodemb.baselines.encoder import LocalEncoder
    from prodemb.config import ModelConfig, load_config
    from prodemb.health import embedding_health
    from prodemb.model import ProductEncoder
    from prodemb.protocol import run_protocol
    from prodemb.tasks import load_task_checked
    from prodemb.train import train
    from prodemb.train_data import load_training_data

    ds = Path(args.dataset)
    meta = json.loads((ds / "study.json").read_text()) if (ds / "study.json").exists() else {"language": "es"}
    language = meta["language"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tasks = {p.stem: load_task_checked(p).table for p in sorted((ds / "tasks").glob("*.parquet"))}
    if args.tasks:
        tasks = {k: v for k, v in tasks.items() if k in args.tasks}
    rescoring = args.cmd == "rescore"
    encoders = Path(args.encoders) if rescoring else out / "encoders"
    if rescoring:
        names = args.variants or sorted(p.stem for p in encoders.glob("*.pt"))
        missing = [n for n in names if not (encoders / f"{n}.pt").exists()]
        if not names or missing:
            sys.exit(f"quality_study: error: no saved encoder for {missing or 'any variant'} in {encoders}")
        variants = load_variants(names)
    else:
        variants = load_variants(args.variants)
    base_cfg = load_config("local", [f"sessions.language={language}"])
    ecfg = base_cfg.evaluate.model_copy(update={"train_sizes": args.sizes, "samples": args.samples})
    ctx = EvalContext(eval_cfg=ecfg, model_cfg=base_cfg.model, data_dir=str(ds), language=language)
    frames, trained, data_by_len = [], {}, {}
    t_start = time.perf_counter()

    def save() -> None:
        results = pd.concat(frames, ignore_index=True)
        results.to_csv(out / "results.csv", index=False)
        (out / "variants.json").write_text(json.dumps(trained, indent=1, default=str))
        (out / "study.md").write_text(study_markdown(results, trained))

    def evaluate(variant: str, methods) -> pd.DataFrame:
        r = run_protocol(tasks, methods, ecfg, progress=False)
        r.insert(0, "variant", variant)
        frames.append(r)
        return r

    if args.baselines:
        evaluate("baselines", [make_method(n, ctx) for n in args.baselines])
        save()
        print(f"baselines {','.join(args.baselines)} evaluated ({time.perf_counter() - t_start:.0f} s)", flush=True)

    floors_done: set[str] = set()
    for name, spec in variants.items():
        if args.max_minutes and time.perf_counter() - t_start > 60 * args.max_minutes:
            print(f"time budget of {args.max_minutes} min spent: {name} and later variants not run", flush=True)
            break
        saved = torch.load(encoders / f"{name}.pt", weights_only=False) if rescoring else None
        if saved is not None:
            m = ModelConfig(**saved["model"])
        else:
            cfg = variant_config(spec, args.budget_pairs, args.device, language)
            m = cfg.model
        arch = (
            f"{m.embed_dim}x{m.n_filters}x{'-'.join(map(str, m.kernel_sizes))}@{m.max_len}"
            + ("" if m.pooling == "max" else f"+{m.pooling}")
            + ("" if m.vector == "y" and m.vector_scale == 1 else f"/v:{m.vector}*{m.vector_scale:g}")
        )
        vocab = spec.get("tokenizer_vocab")
        if vocab is not None:
            arch += f"/vocab{vocab}"
        tok = tokenizer_for(vocab, ds, out, language)
        if (m.max_len, vocab) not in data_by_len:
            data_by_len[m.max_len, vocab] = load_training_data(
                str(ds / "catalog"), str(ds / "pairs"), tok, m.max_len, language
            )
        data = data_by_len[m.max_len, vocab]
        if arch not in floors_done:  # the random-init floor of this architecture and tokenizer (fixed seed)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(ecfg.seed)
                rnd = ProductEncoder.from_config(m, tok.vocab_size)
            floor = LocalEncoder(ctx, rnd, tok, m.max_len, language)
            floor.name = f"random:{arch}"
            evaluate("floors", [floor])
            floors_done.add(arch)
        if saved is not None:  # rescore: the encoders a run saved, evaluated again (other vector kinds)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(ecfg.seed)  # --random: the floor's random init, with every vector kind
                encoder = ProductEncoder.from_config(m, tok.vocab_size)
            target_encoder = encoder  # --random: the floor has one set of weights
            if not args.random:
                target_encoder = ProductEncoder.from_config(m, tok.vocab_size)
                encoder.load_state_dict(saved["encoder"])
                target_encoder.load_state_dict(saved["target_encoder"])
            trained[name] = saved["info"]
        else:
            result = train(data, cfg.model, cfg.train, tok.vocab_size, progress=not args.no_progress)
            encoder, target_encoder = result.model.encoder, result.model.target_encoder
            batch = result.pairs_seen // max(result.steps, 1)  # the effective batch (train.without_categories)
            trained[name] = {
                "architecture": arch,
                "steps": result.steps,
                "batch_size": batch,
                "seconds": round(result.seconds, 1),
                "device": result.device,
                "alpha": result.alpha,
                "pairs_per_second": round(result.pairs_seen / max(result.seconds, 1e-9)),
                "final_loss": result.history[-1]["loss"] if result.history else None,
                "health": embedding_health(encoder, data, cfg.train.health_sample, cfg.train.seed),
                "set": spec.get("set", []),
                "profile": spec.get("profile", "paper"),
                "vocab_size": tok.vocab_size,
            }
            encoders.mkdir(exist_ok=True)
            torch.save(
                {
                    "model": m.model_dump(),
                    "encoder": encoder.state_dict(),
                    "target_encoder": target_encoder.state_dict(),
                    "info": trained[name],
                },
                encoders / f"{name}.pt",
            )
        vectors = StudiedVector(encoder, tok, m.max_len, language, data.tokens)
        methods = [vector_method(ctx, vectors, k) for k in args.vectors if vector_kind(k)[0] != "target"]
        for kind in (k for k in args.vectors if vector_kind(k)[0] == "target"):
            target = StudiedVector(target_encoder, tok, m.max_len, language, data.tokens)
            methods.append(vector_method(ctx, target, "raw" + kind[len("target") :], name=f"prodemb/{kind}"))
        methods.append(TfidfPlusEmbedding(ctx, embedding=vector_method(ctx, vectors, "raw")))
        evaluate(name, methods)
        save()
        s = summarize(pd.concat(frames))
        row = s[(s.variant == name) & (s.method == "prodemb")]
        info = trained[name]
        print(
            f"{name}: {info['steps']} steps × {info['batch_size']} in {info['seconds']:.0f} s on "
            f"{info['device']}; prodemb mean val AUC {row.val_auc.mean():.4f} (test {row.auc.mean():.4f})",
            flush=True,
        )
    save()
    print((out / "study.md").read_text())
    return 0


def main() -> int:
    from prodemb.config import comma_list

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare", help="sessionize, tokenize and write task tables per dataset")
    p.add_argument("--out", default="runs/study")
    p.add_argument("--datasets", type=comma_list(), default=list(DATASETS))
    p.add_argument("--shared", default="../shared/data")
    p.add_argument("--clicks", type=int, default=200_000, help="generator clicks (synth)")
    r = sub.add_parser("run", help="train and evaluate variants on one prepared dataset")
    s = sub.add_parser("rescore", help="evaluate the encoders a run saved (OUT/encoders) again, e.g. other --vectors")
    s.add_argument("--encoders", required=True, help="a run's OUT/encoders")
    s.add_argument(
        "--random", action="store_true", help="score the random-init floor of each saved architecture instead"
    )
    for q in (r, s):
        q.add_argument("--dataset", required=True)
        q.add_argument("--out", required=True)
        q.add_argument("--variants", type=comma_list(), default=None, help="names in quality_variants.yaml")
        q.add_argument("--tasks", type=comma_list(), default=None)
        q.add_argument("--sizes", type=comma_list(int), default=[100, 500])
        q.add_argument("--samples", type=int, default=3)
        q.add_argument(
            "--vectors",
            type=comma_list(),
            default=list(DEFAULT_VECTOR_KINDS),
            help=f"{', '.join(VECTOR_KINDS)}; KIND*F scales the rows by F",
        )
        q.add_argument("--baselines", type=comma_list(), default=["tfidf", "fasttext"])
        q.add_argument("--max-minutes", type=float, default=None, help="start no variant after this")
    r.add_argument("--budget-pairs", type=int, default=1_200_000, help="pairs seen per variant (steps × batch)")
    r.add_argument("--device", default="auto")
    r.add_argument("--no-progress", action="store_true")
    args = ap.parse_args()
    if args.cmd == "prepare":
        unknown = [d for d in args.datasets if d not in DATASETS]
        if unknown:
            sys.exit(f"quality_study: error: unknown dataset(s) {unknown} (known: {list(DATASETS)})")
        prepare(Path(args.out), args.datasets, Path(args.shared), args.clicks)
        return 0

    def known(kind: str) -> bool:
        try:
            (base, factor), weight = vector_kind(kind), mean_weight(kind)
        except ValueError:  # a factor or weight that is not a number
            return False
        return base in VECTOR_KINDS and factor > 0 and weight > 0 and (weight == 1.0 or base == "l2maxmean")

    bad = [k for k in args.vectors if not known(k)]
    if bad:
        sys.exit(f"quality_study: error: unknown vector kind(s) {bad} (known: {VECTOR_KINDS})")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
