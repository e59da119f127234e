"""Nearest products by cosine over the current embeddings, with titles; optional recall@k.

The job is prodemb/jobs/similar.py; also `prodemb similar`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # spark-submit and torchrun without an install

from prodemb.jobs.similar import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
