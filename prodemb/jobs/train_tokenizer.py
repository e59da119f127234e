"""Train the SentencePiece tokenizer on the catalog's normalized titles.

    python jobs/train_tokenizer.py --data DIR --output runs/tokenizer.model [--vocab-size 30000]

Reads ``DIR/catalog`` (written by jobs/sessionize.py), writes the model (one file, atomically), prints a
one-line JSON summary. SentencePiece's ``.vocab`` listing comes from the model on demand:
``python -c "from prodemb.tokenizer import Tokenizer; print(Tokenizer.load('runs/tokenizer.model').vocab_listing())"``.
Exit code 2: missing data folder or catalog, or no usable titles. Other settings: ``--set tokenizer.seed=1``,
``--set tokenizer.input_sentence_size=...``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from prodemb.config import add_config_args, config_from_args
from prodemb.jobs import add_output_args, finish_job


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="folder holding the catalog table (default: paths.data_dir)")
    ap.add_argument("--output", default=None, help="model file to write (default: <paths.runs_dir>/tokenizer.model)")
    ap.add_argument("--vocab-size", type=int, default=None, help="pieces in the vocabulary (default 30000)")
    add_config_args(ap)
    add_output_args(ap)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = config_from_args(args, **{"tokenizer.vocab_size": args.vocab_size})
    except (FileNotFoundError, ValueError) as exc:
        print(f"train_tokenizer: error: {exc}", file=sys.stderr)
        return 2
    data = args.data or cfg.paths.data_dir
    output = args.output or os.path.join(cfg.paths.runs_dir, "tokenizer.model")

    from prodemb.tokenizer import train_from_catalog

    return finish_job("train_tokenizer", lambda: train_from_catalog(data, output, cfg.tokenizer), args)


if __name__ == "__main__":
    sys.exit(main())
