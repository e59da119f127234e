"""Which optimizer trains the small encoder: LARS vs plain SGD, α = 0.9 vs α = 1, on real sessions.

    python jobs/sessionize.py --input ../shared/data/movielens-latest-small --input-format movielens \
        --output /tmp/ml/data --set sessions.language=en
    python jobs/train_tokenizer.py --data /tmp/ml/data --output /tmp/ml/tok.model --vocab-size 4000
    python benchmarks/optimizer_compare.py --data /tmp/ml/data --tokenizer /tmp/ml/tok.model [--steps 300]

For each setting: first/last loss, the category loss (chance = 2·ln C), embedding spread relative to
uniform, and alignment of held-out session pairs vs random pairs (lower than random = sessions captured).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prodemb.config import load_config  # noqa: E402
from prodemb.health import embedding_health  # noqa: E402
from prodemb.tables import read_table_arrow  # noqa: E402
from prodemb.tokenizer import Tokenizer  # noqa: E402
from prodemb.train import train  # noqa: E402
from prodemb.train_data import build_training_data  # noqa: E402

SETTINGS = [  # (alpha, optimizer, base lr)
    (0.9, "lars", 0.45),
    (1.0, "lars", 0.45),
    (0.9, "lars", 5.0),
    (1.0, "lars", 5.0),
    (0.9, "sgd", 0.05),
    (1.0, "sgd", 0.05),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--language", default="en")
    args = ap.parse_args()
    tok = Tokenizer.load(args.tokenizer)
    catalog = read_table_arrow(f"{args.data}/catalog").to_pandas()
    pairs = read_table_arrow(f"{args.data}/pairs").to_pandas()
    base = load_config(overrides=["model.profile=small"])
    data = build_training_data(catalog, pairs, tok, base.model.max_len, args.language)
    print(
        f"{'alpha':>5} {'opt':>4} {'lr':>5} {'secs':>5} {'loss0':>6} {'lossN':>6} {'ce':>5} {'spread':>6} "
        f"{'align_held':>10} {'align_rand':>10}"
    )
    for alpha, opt, lr in SETTINGS:
        cfg = load_config(
            overrides=[
                "model.profile=small",
                f"train.alpha={alpha}",
                f"train.optimizer={opt}",
                f"train.base_lr={lr}",
                f"train.batch_size={args.batch_size}",
                f"train.max_steps={args.steps}",
            ]
        )
        t = time.perf_counter()
        r = train(data, cfg.model, cfg.train, tok.vocab_size, progress=False)
        h = embedding_health(r.model.encoder, data, 3000)
        print(
            f"{alpha:>5} {opt:>4} {lr:>5} {time.perf_counter() - t:>5.0f} {r.history[0]['loss']:>6.2f} "
            f"{r.history[-1]['loss']:>6.2f} {r.history[-1]['loss_ce']:>5.2f} "
            f"{h['dim_std_mean'] / h['dim_std_uniform_reference']:>6.3f} {h['alignment_holdout']:>10.3f} "
            f"{h['alignment_random']:>10.3f}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
