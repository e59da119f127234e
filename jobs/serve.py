"""Serve the registered encoder over HTTP: vectors for titles that scoring has not seen yet (cold start).

The job is prodemb/jobs/serve.py; also `prodemb serve`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # spark-submit and torchrun without an install

from prodemb.jobs.serve import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
