"""Look product vectors up in the Feast feature store (what other teams do with the Feast SDK).

    python jobs/lookup.py --product-id ID [--product-id ID ...]            # online store
    python jobs/lookup.py --product-id ID --at 2024-05-01T00:00:00         # point-in-time (offline store)
    python jobs/lookup.py --entities frame.csv                              # product_id,event_timestamp rows
    python jobs/lookup.py --product-id ID --model-version 3                 # pinned: version 3's vectors

Without --model-version the champion's view `product_embeddings` answers (the newest scoring); with it,
the pinned view `product_embeddings_v<N>` of a version still kept (score.keep_model_versions).
"""

from __future__ import annotations

import argparse
import json
import sys

from prodemb.config import add_config_args, config_from_args


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--product-id", action="append", default=[])
    ap.add_argument("--at", default=None, help="historical retrieval at this UTC time instead of the online store")
    ap.add_argument("--entities", default=None, help="CSV/Parquet training frame (product_id, event_timestamp)")
    ap.add_argument(
        "--model-version",
        default=None,
        help="read the pinned view of this registered version (product_embeddings_v<N>)",
    )
    ap.add_argument(
        "--site",
        default=None,
        help="the products' site (a store keyed by site: `sites:` configured, one model per site)",
    )
    ap.add_argument("--head", type=int, default=8, help="vector values to print (all with --json)")
    ap.add_argument("--json", action="store_true")
    add_config_args(ap)
    args = ap.parse_args(argv)
    cfg = config_from_args(args)
    if not args.product_id and not args.entities:
        ap.error("give --product-id or --entities")
    if cfg.sites and not args.site and not args.entities:
        ap.error(f"vectors are keyed by site (sites: {', '.join(cfg.sites)}): give --site")

    import pandas as pd

    from prodemb.features import (
        FEATURE_VIEW,
        NotPublishedError,
        feature_store,
        historical_features,
        online_vectors,
        pinned_view_name,
        require_published,
    )
    from prodemb.registry import site_model_name

    model = site_model_name(cfg.mlflow.model_name, args.site if cfg.sites else None)
    view = (
        FEATURE_VIEW
        if args.model_version is None
        else pinned_view_name(model, args.model_version, cfg.mlflow.model_name)
    )
    store = feature_store(cfg.feast.repo_dir, cfg.feast.yaml_file)
    try:
        require_published(store, view)
    except NotPublishedError as exc:
        print(f"lookup: error: {exc}", file=sys.stderr)
        return 2
    if args.entities or args.at:
        if args.entities:
            frame = pd.read_parquet(args.entities) if args.entities.endswith(".parquet") else pd.read_csv(args.entities)
        else:
            frame = pd.DataFrame({"product_id": args.product_id})
            frame["event_timestamp"] = args.at
            if cfg.sites:
                frame["site"] = args.site
        frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True)
        frame["product_id"] = frame["product_id"].astype(str)
        result = historical_features(store, frame, view)
        rows = [
            {
                "product_id": r.product_id,
                "event_timestamp": str(r.event_timestamp),
                "model_version": r.model_version,
                "embedding": None if r.embedding is None else list(map(float, r.embedding)),
            }
            for r in result.itertuples()
        ]
    else:
        sites = [args.site] * len(args.product_id) if cfg.sites else None
        found = online_vectors(store, args.product_id, view, sites)
        rows = [
            {
                "product_id": key[1] if sites else key,
                **({"site": key[0]} if sites else {}),
                "model_version": v["model_version"],
                "embedding": None if v["embedding"] is None else v["embedding"].tolist(),
            }
            for key, v in found.items()
        ]
    if args.json:
        print(json.dumps(rows))
        return 0
    for r in rows:
        emb = r["embedding"]
        head = ", ".join(f"{x:.4f}" for x in (emb or [])[: args.head])
        shown = "not found" if emb is None else f"dim={len(emb)} [{head}, ...]"
        print(f"{r['product_id']}  model_version={r['model_version']}  {r.get('event_timestamp', '')}  {shown}")
    return 0 if all(r["embedding"] is not None for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
