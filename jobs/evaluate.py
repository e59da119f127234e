"""Downstream evaluation: frozen embeddings + logistic regression on binary title tasks (paper §4, A.1).

The job is prodemb/jobs/evaluate.py; also `prodemb evaluate`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # spark-submit and torchrun without an install

from prodemb.jobs.evaluate import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
