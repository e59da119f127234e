"""Sessionize click logs into catalog / sessions / pairs / quarantine tables.

The job is prodemb/jobs/sessionize.py; also `prodemb sessionize`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # spark-submit and torchrun without an install

from prodemb.jobs.sessionize import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
