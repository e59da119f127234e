"""Train the SentencePiece tokenizer on the catalog's normalized titles.

The job is prodemb/jobs/train_tokenizer.py; also `prodemb train-tokenizer`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # spark-submit and torchrun without an install

from prodemb.jobs.train_tokenizer import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
