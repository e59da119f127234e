"""Consolidate per-interval sessionize tables into the full tables the downstream stages read.

The job is prodemb/jobs/consolidate.py; also `prodemb consolidate`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # spark-submit and torchrun without an install

from prodemb.jobs.consolidate import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
