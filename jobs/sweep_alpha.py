"""α sweep (paper §5.1, Fig. 2): train one encoder per α of Eq. 4, evaluate each on the downstream tasks

The job is prodemb/jobs/sweep_alpha.py; also `prodemb sweep-alpha`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # spark-submit and torchrun without an install

from prodemb.jobs.sweep_alpha import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
