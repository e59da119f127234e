"""Promotion gate: move alias `champion` to the `candidate` version of `prodemb-encoder` only if it is at least

The job is prodemb/jobs/promote.py; also `prodemb promote`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # spark-submit and torchrun without an install

from prodemb.jobs.promote import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
