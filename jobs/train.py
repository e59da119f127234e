"""Train the BYOL + category encoder on sessionized pairs; log to MLflow; register `prodemb-encoder`.

The job is prodemb/jobs/train.py; also `prodemb train`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # spark-submit and torchrun without an install

from prodemb.jobs.train import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
