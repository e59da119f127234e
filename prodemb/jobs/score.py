"""Embed every catalog product with a registered encoder into the `embeddings` table.

    spark-submit jobs/score.py --data DIR --model-uri models:/prodemb-encoder@champion [--output DIR/embeddings]
    python jobs/score.py ...                      # Spark local[*]

A bad model URI fails before anything is written: the previous embeddings stay as they were.
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
    add_config_args(ap)
    add_output_args(ap)
    args = ap.parse_args(argv)
    cfg = config_from_args(args, **{"mlflow.tracking_uri": args.mlflow_uri, "score.model_uri": args.model_uri,
                                    "sessions.format": args.format})

    from prodemb import fs
    from prodemb.score import ModelNotFoundError, run_score
    from prodemb.spark import spark_for

    data = args.data or cfg.paths.data_dir
    if not fs.exists(fs.join(data, "catalog")):
        print(f"score: error: no catalog under {data}: run jobs/sessionize.py first", file=sys.stderr)
        return 2
    spark = spark_for(cfg, "score")
    return finish_job("score", lambda: run_score(spark, data, cfg.score.model_uri, args.output,
                                                 tracking_uri=cfg.mlflow.tracking_uri, fmt=cfg.sessions.format,
                                                 keep_model_versions=cfg.score.keep_model_versions),
                      args, bad_input=(ModelNotFoundError,))


if __name__ == "__main__":
    sys.exit(main())
