"""Look product vectors up in the Feast feature store (what other teams do with the Feast SDK).

The job is prodemb/jobs/lookup.py; also `prodemb lookup`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # spark-submit and torchrun without an install

from prodemb.jobs.lookup import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
