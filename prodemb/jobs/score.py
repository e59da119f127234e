"""Embed every catalog product with a registered encoder into the `embeddings` table.

    spark-submit jobs/score.py --data DIR --model-uri models:/prodemb-encoder@champion [--output DIR/embeddings]
    python jobs/score.py ...                      # Spark local[*]

A bad model URI fails before anything is written: the previous embeddings stay as they were.
Incremental by default: a product whose normalized title and category are unchanged since the last scoring
with the same model version keeps its vector; new and changed products are embedded; a new model version
embeds everything. The output equals a full rescoring (--full) row for row.
"""

from __future__ import annotations

import argparse
import sys

from prodemb.config import add_config_args, config_from_args
from prodemb.jobs import add_output_args, finish_job


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="sessionize output folder with catalog/ (default paths.data_dir)")
    ap.add_argument("--model-uri", default=None, help="MLflow model URI (default models:/prodemb-encoder@champion)")
    ap.add_argument("--output", default=None, help="embeddings table (default DIR/embeddings)")
    ap.add_argument("--mlflow-uri", default=None, help="tracking URI (default sqlite:///mlflow.db)")
    ap.add_argument("--format", choices=["parquet", "delta"], default=None)
    ap.add_argument(
        "--full",
        action="store_true",
        help="embed every product (default: only products that are new, or whose normalized title or "
        "category changed, since the last scoring with the same model version)",
    )
    ap.add_argument(
        "--site",
        default=None,
        help="score one site's products with its model (models:/<model_name>-<site>@champion); "
        "default: every site of `sites:` in turn, or all products with one model",
    )
    add_config_args(ap)
    add_output_args(ap)
    args = ap.parse_args(argv)
    cfg = config_from_args(
        args,
        **{"mlflow.tracking_uri": args.mlflow_uri, "score.model_uri": args.model_uri, "sessions.format": args.format},
    )

    from prodemb import fs
    from prodemb.registry import site_model_name
    from prodemb.score import ModelNotFoundError, run_score
    from prodemb.spark import spark_for

    data = args.data or cfg.paths.data_dir
    if not fs.exists(fs.join(data, "catalog")):
        print(f"score: error: no catalog under {data}: run jobs/sessionize.py first", file=sys.stderr)
        return 2
    spark = spark_for(cfg, "score")
    sites = [args.site] if args.site else cfg.sites or [None]

    def score_sites() -> dict:
        reports = []
        for site in sites:  # one site's model at a time; each write keeps the other sites' rows
            uri = args.model_uri or (
                f"models:/{site_model_name(cfg.mlflow.model_name, site)}@champion" if site else cfg.score.model_uri
            )
            reports.append(
                run_score(
                    spark,
                    data,
                    uri,
                    args.output,
                    tracking_uri=cfg.mlflow.tracking_uri,
                    fmt=cfg.sessions.format,
                    keep_model_versions=cfg.score.keep_model_versions,
                    site=site,
                    incremental=cfg.score.incremental and not args.full,
                )
            )
        return reports[0] if len(reports) == 1 else combined(reports)

    return finish_job("score", score_sites, args, bad_input=(ModelNotFoundError, ValueError))


def combined(reports: list[dict]) -> dict:
    """One report for a scoring of several sites: the sums, the models, and each site's report."""
    return {
        "rows_in": sum(r["rows_in"] for r in reports),
        "rows_out": sum(r["rows_out"] for r in reports),
        "rows_quarantined": sum(r["rows_quarantined"] for r in reports),
        "rows_carried": sum(r["rows_carried"] for r in reports),
        "output": reports[-1]["output"],
        "seconds": round(sum(r["seconds"] for r in reports), 2),
        "rows_by_model_version": reports[-1]["rows_by_model_version"],
        "sites": {r["site"]: r for r in reports},
    }


if __name__ == "__main__":
    sys.exit(main())
