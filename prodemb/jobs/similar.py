"""Nearest products by cosine over the current embeddings, with titles; optional recall@k.

    python jobs/similar.py --product-id ID [--k 10] [--data DIR] [--exact] [--recall]

The neighbours come from the similar-products index that jobs/publish.py built for the newest scoring's
model (prodemb/ann.py: HNSW; its measured recall@10 is printed with the answer). --exact searches every
vector instead (chunked matrix products), as does a table whose model has no index yet (with a note).

--recall reports recall@k of held-out session co-occurrences (the sessions training never saw): the
share of held-out pairs (a, b) with b among a's k nearest products. The held-out sessions are exactly
those of the newest model's training run (its recorded ``holdout.*`` parameters, read from MLflow).
"""

from __future__ import annotations

import argparse
import json
import sys

from prodemb.config import add_config_args, config_from_args


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--product-id", action="append", default=[], help="query product (repeatable)")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--data", default=None, help="folder with embeddings/, catalog/, pairs/ (default paths.data_dir)")
    ap.add_argument("--exact", action="store_true", help="search every vector instead of the index")
    ap.add_argument(
        "--recall",
        action="store_true",
        help="also report recall@k on held-out sessions (an exact search over every vector)",
    )
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ap.add_argument("--mlflow-uri", default=None, help="tracking URI of the model's training run (--recall)")
    add_config_args(ap)
    args = ap.parse_args(argv)
    cfg = config_from_args(args, **{"mlflow.tracking_uri": args.mlflow_uri})
    data = (args.data or cfg.paths.data_dir).rstrip("/")

    import numpy as np

    from prodemb import fs
    from prodemb.ann import index_dir, load_index, read_meta, search
    from prodemb.score import model_partition
    from prodemb.similar import current_vectors, recall_at_k, top_k
    from prodemb.tables import read_table_arrow
    from prodemb.train_data import HoldoutRule

    if not fs.exists(f"{data}/embeddings"):
        print(f"similar: error: no embeddings under {data}: run jobs/score.py first", file=sys.stderr)
        return 2
    read = lambda name, cols: read_table_arrow(f"{data}/{name}", cols).to_pandas()  # noqa: E731
    titles = dict(read("catalog", ["product_id", "title"]).astype({"product_id": str}).values)
    keys = read("embeddings", ["model_name", "model_version", "event_timestamp"])
    newest = keys.sort_values("event_timestamp", kind="stable").iloc[-1]
    model = f"{newest['model_name']}/{newest['model_version']}"
    folder = index_dir(f"{data}/embeddings", model_partition(newest["model_name"], str(newest["model_version"])))
    use_index = not args.exact and read_meta(folder) is not None
    if not args.exact and not use_index:
        print(f"note: no similar-products index for {model} (jobs/publish.py builds it): exact search", file=sys.stderr)
    out = {"model": model, "search": "hnsw" if use_index else "exact", "neighbours": {}}
    if args.recall or not use_index:  # every current vector, in memory
        ids, vectors, rows = current_vectors(
            read("embeddings", ["product_id", "embedding", "model_name", "model_version", "event_timestamp"])
        )
        position = {p: i for i, p in enumerate(ids)}
        out["model_version"] = sorted(rows["model_version"].unique().tolist())
    if use_index:  # the index and its product ids only
        index, index_ids, meta = load_index(folder)
        out["index"] = {"path": folder, **{k: meta[k] for k in ("recall_at_10", "params", "rows", "build")}}
        index_position = {p: i for i, p in enumerate(index_ids)}
    for pid in args.product_id:
        if pid not in (index_position if use_index else position):
            where = f"the index of {model}" if use_index else "the embeddings"
            print(f"similar: error: unknown product {pid!r} (not in {where})", file=sys.stderr)
            return 2
        if use_index:
            i = index_position[pid]
            found, scores = search(index, index.reconstruct(i)[None, :], args.k + 1)
            hits = [(index_ids[j], c) for j, c in zip(found[0], scores[0]) if 0 <= j != i][: args.k]
        else:
            i = position[pid]
            idx, sc = top_k(vectors[[i]], vectors, args.k, exclude=np.array([i]))
            hits = [(ids[j], c) for j, c in zip(idx[0], sc[0])]
        out["neighbours"][pid] = [
            {"product_id": str(p), "cosine": round(float(c), 4), "title": titles.get(p)} for p, c in hits
        ]
    if args.recall:
        newest = rows.sort_values("event_timestamp").iloc[-1]
        model = f"{newest['model_name']}/{newest['model_version']}"
        try:
            import mlflow

            from prodemb.registry import training_params, use_tracking

            use_tracking(cfg.mlflow.tracking_uri, cfg.mlflow.registry_uri)
            rule = HoldoutRule.from_params(training_params(newest["model_name"], str(newest["model_version"])))
        except mlflow.exceptions.MlflowException as exc:
            print(
                f"similar: error: cannot read the training run of {model} from {cfg.mlflow.tracking_uri} "
                f"(--mlflow-uri): {' '.join(str(exc).split())[:300]}",
                file=sys.stderr,
            )
            return 2
        if rule is None:
            rule = HoldoutRule()
            print(
                f"note: {model} was trained before held-out sessions were recorded: using every session the "
                "hash selects (some of them may have been trained on)",
                file=sys.stderr,
            )
        pairs = read("pairs", ["session_id", "product_a", "product_b"])
        held = pairs[rule.select(pairs["session_id"].to_numpy())]
        out["holdout"] = {"model": model, **rule.as_params()}
        a = held["product_a"].map(position).dropna().astype(int)
        b = held["product_b"].map(position).reindex(a.index).dropna().astype(int)
        a = a.loc[b.index]
        out[f"recall_at_{args.k}"] = recall_at_k(vectors, a.to_numpy(), b.to_numpy(), args.k)
        out["holdout_pairs"] = int(len(a))
    if args.json:
        print(json.dumps(out))
        return 0
    for pid, neighbours in out["neighbours"].items():
        print(f"{pid}  {titles.get(pid)}")
        for n in neighbours:
            print(f"   {n['cosine']:.3f}  {n['product_id']:>16}  {n['title']}")
    if use_index:
        print(
            f"(HNSW index of {model}: recall@10 {out['index']['recall_at_10']:.3f} against exact search; "
            "--exact for exact)"
        )
    if args.recall:
        print(
            f"recall@{args.k} of held-out session pairs: {out[f'recall_at_{args.k}']:.3f} "
            f"({out['holdout_pairs']} pairs)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
