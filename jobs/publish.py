"""Apply the Feast repo over DIR/embeddings and load every product's latest vector into the online store.

The job is prodemb/jobs/publish.py; also `prodemb publish`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # spark-submit and torchrun without an install

from prodemb.jobs.publish import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
