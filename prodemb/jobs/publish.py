"""Apply the Feast repo over DIR/embeddings and load every product's latest vector into the online store.

    python jobs/publish.py --data DIR [--embeddings PATH]

Every model version kept in the table also gets its pinned feature view (product_embeddings_v<N>) and,
unless ann.enabled is false, its similar-products index (prodemb/ann.py: faiss HNSW, beside the table in
<embeddings>_ann/), whose path, parameters, build seconds and measured recall@10 the report records.

With `sites:` configured (one model per site) Feast keys the vectors by (site, product_id); without, by
product_id, and a table holding several sites is refused.

Fast path for the SQLite online store (bulk writes of the exact bytes Feast writes); other stores go
through the Feast SDK. `cd feature_repo && feast materialize ...` remains the standard, slower path.
"""

from __future__ import annotations

import argparse
import sys

from prodemb.config import add_config_args, config_from_args
from prodemb.jobs import add_output_args, finish_job


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="folder with embeddings/ (default paths.data_dir)")
    ap.add_argument("--embeddings", default=None, help="embeddings table (default DIR/embeddings)")
    ap.add_argument("--no-progress", action="store_true")
    add_config_args(ap)
    add_output_args(ap)
    args = ap.parse_args(argv)
    cfg = config_from_args(args)

    from prodemb.ann import HnswParams
    from prodemb.features import UnservableVectorsError, run_publish

    ann = (
        HnswParams(
            m=cfg.ann.m,
            ef_construction=cfg.ann.ef_construction,
            ef_search=cfg.ann.ef_search,
            recall_queries=cfg.ann.recall_queries,
        )
        if cfg.ann.enabled
        else None
    )

    return finish_job(
        "publish",
        lambda: run_publish(
            args.data or cfg.paths.data_dir,
            repo_dir=cfg.feast.repo_dir,
            yaml_file=cfg.feast.yaml_file,
            embeddings=args.embeddings,
            progress=not args.no_progress,
            model_name=cfg.mlflow.model_name,
            ann=ann,
            by_site=bool(cfg.sites),
        ),
        args,
        bad_input=(FileNotFoundError, UnservableVectorsError, ValueError),
    )


if __name__ == "__main__":
    sys.exit(main())
