"""The quality card: its facts (fixed product sample, neighbours) and its page, rendered by a real browser.
The card the promotion gate writes for a registered version: tests/test_promote.py."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from prodemb.card import CardFacts, fixed_sample, neighbours, render_card
from tests.conftest import browser_dom


def test_the_fixed_sample_is_the_same_products_whatever_their_order():
    keys = pd.Series([f"MLA/{i}" for i in range(1000)])
    picked = set(keys.iloc[fixed_sample(keys, 6)])
    shuffled = keys.sample(frac=1, random_state=3).reset_index(drop=True)
    assert len(picked) == 6 and set(shuffled.iloc[fixed_sample(shuffled, 6)]) == picked


def test_neighbours_are_the_closest_others_by_cosine():
    vectors = np.array([[1, 0], [0.9, 0.1], [0, 1], [-1, 0], [2, 0.1]], dtype=np.float32)
    near, sims = neighbours(vectors, np.array([0, 2]), k=2)
    assert near[0] == [4, 1] and 0 not in near[0]  # itself excluded; scale does not matter
    assert near[1][0] == 1 and sims.shape == (2, 5)


def _png(path, colour):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 1.5))
    ax.plot([0, 1], [0, 1], color=colour)
    fig.savefig(path)
    plt.close(fig)
    return path


def test_the_page_shows_the_table_and_every_image_in_a_browser(tmp_path):
    auc = pd.DataFrame(
        {
            "task": ["usado"] * 8,
            "train_size": [100] * 4 + [500] * 4,
            "method": ["prodemb", "random", "tfidf", "champion"] * 2,
            "auc": [0.71, 0.55, 0.69, 0.70, 0.80, 0.60, 0.82, 0.78],
            "val_auc": [0.7] * 8,
        }
    )
    facts = CardFacts(
        "prodemb-encoder",
        "3",
        "2",
        auc,
        [_png(tmp_path / "usado_methods.png", "red")],
        _png(tmp_path / "training_curves.png", "blue"),
        {"dim_std_mean": 0.04, "alignment_holdout": 0.8, "alignment_random": 1.6, "uniformity": -2.9},
        {"train.alpha": "0.5"},
        [{"title": "zapatilla <roja>", "candidate": [("zapatilla azul", 0.93)], "shared": 1}],
    )
    page = tmp_path / "card.html"
    page.write_text(render_card(facts), encoding="utf-8")
    dom = browser_dom(page)
    assert 'data-images-loaded="2/2"' in dom  # both PNGs decoded by the browser
    rows = re.findall(r"<tr><td>usado</td><td>(\d+)</td>(.*?)</tr>", dom)
    assert [r[0] for r in rows] == ["100", "500"]
    assert "+0.010" in rows[0][1] and "+0.020" in rows[1][1]  # Δ vs the champion on the same rows
    assert "zapatilla &lt;roja&gt;" in dom and "champion shares 1 of 5" in dom  # titles escaped
    assert "alignment_holdout" in dom
