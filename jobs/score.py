"""Embed every catalog product with a registered encoder into the `embeddings` table.

The job is prodemb/jobs/score.py; also `prodemb score`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # spark-submit and torchrun without an install

from prodemb.jobs.score import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
