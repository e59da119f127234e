"""Nearest products by cosine over the current embeddings, with titles; optional recall@k.

    python jobs/similar.py --product-id ID [--k 10] [--data DIR] [--recall]

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
    ap.add_argument("--recall", action="store_true", help="also report recall@k on held-out sessions")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ap.add_argument("--mlflow-uri", default=None, help="tracking URI of the model's training run (--recall)")
    add_config_args(ap)
    args = ap.parse_args(argv)
    cfg = config_from_args(args, **{"mlflow.tracking_uri": args.mlflow_uri})
    data = (args.data or cfg.paths.data_dir).rstrip("/")

    import numpy as np

    from prodemb import fs
    from prodemb.similar import current_vectors, recall_at_k, top_k
    from prodemb.tables import read_table_arrow
    from prodemb.train_data import HoldoutRule

    if not fs.exists(f"{data}/embeddings"):
        print(f"similar: error: no embeddings under {data}: run jobs/score.py first", file=sys.stderr)
        return 2
    read = lambda name, cols: read_table_arrow(f"{data}/{name}", cols).to_pandas()  # noqa: E731
    ids, vectors, rows = current_vectors(read("embeddings", ["product_id", "embedding", "model_name",
                                                             "model_version", "event_timestamp"]))
    titles = dict(read("catalog", ["product_id", "title"]).astype({"product_id": str}).values)
    position = {p: i for i, p in enumerate(ids)}
    out = {"model_version": sorted(rows["model_version"].unique().tolist()), "neighbours": {}}
    for pid in args.product_id:
        if pid not in position:
            print(f"similar: error: unknown product {pid!r}", file=sys.stderr)
            return 2
        i = position[pid]
        idx, scores = top_k(vectors[[i]], vectors, args.k, exclude=np.array([i]))
        out["neighbours"][pid] = [{"product_id": ids[j], "cosine": round(float(s), 4), "title": titles.get(ids[j])}
                                  for j, s in zip(idx[0], scores[0])]
    if args.recall:
        newest = rows.sort_values("event_timestamp").iloc[-1]
        model = f"{newest['model_name']}/{newest['model_version']}"
        try:
            import mlflow

            from prodemb.registry import training_params, use_tracking

            use_tracking(cfg.mlflow.tracking_uri, cfg.mlflow.registry_uri)
            rule = HoldoutRule.from_params(training_params(newest["model_name"], str(newest["model_version"])))
        except mlflow.exceptions.MlflowException as exc:
            print(f"similar: error: cannot read the training run of {model} from {cfg.mlflow.tracking_uri} "
                  f"(--mlflow-uri): {' '.join(str(exc).split())[:300]}", file=sys.stderr)
            return 2
        if rule is None:
            rule = HoldoutRule()
            print(f"note: {model} was trained before held-out sessions were recorded: using every session the "
                  "hash selects (some of them may have been trained on)", file=sys.stderr)
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
    if args.recall:
        print(f"recall@{args.k} of held-out session pairs: {out[f'recall_at_{args.k}']:.3f} "
              f"({out['holdout_pairs']} pairs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
