"""What an evaluation writes: the learning-curve plots (the job's report and MLflow run:
tests/test_evaluate.py)."""

from __future__ import annotations

import pandas as pd

from prodemb.protocol import run_protocol
from prodemb.report import few_labels_table, plot_learning_curves, summary_table
from tests.test_protocol import KeywordRule, ecfg, keyword_task


def test_learning_curve_plots(tmp_path):
    cfg = ecfg(samples=2)
    methods = []
    for alpha, word in ((0.5, "usado"), (0.9, "modelo")):  # the second "encoder" is uninformative
        m = KeywordRule(None, word=word)
        m.name, m.alpha = "prodemb", alpha
        methods.append(m)
    floor = KeywordRule(None, word="nuevo", invert=True)
    floor.name = "random"
    r = run_protocol(
        {"t1": keyword_task(200), "t 2": keyword_task(200, seed=2)}, methods + [floor], cfg, progress=False
    )
    paths = plot_learning_curves(r, tmp_path / "plots")
    names = sorted(p.name for p in paths)
    assert names == ["t1_alpha.png", "t1_methods.png", "t_2_alpha.png", "t_2_methods.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000 for p in paths)
    single = plot_learning_curves(r[r.alpha.isna() | (r.alpha == 0.5)], tmp_path / "single")
    assert sorted(p.name for p in single) == ["t1_methods.png", "t_2_methods.png"]  # no α sweep: no Fig. 2


def test_the_few_labels_table_holds_each_tasks_two_smallest_sizes_and_the_summary_its_largest():
    rows = [
        dict(
            task=task,
            method=method,
            alpha=0.9 if method == "prodemb" else float("nan"),
            train_size=size,
            sample=sample,
            auc=auc + 0.01 * sample,
        )
        for task, sizes in (("a", (100, 500, 1000)), ("b", (50, 300)))
        for size in sizes
        for method, auc in (("prodemb", size / 2000), ("tfidf", 0.6))
        for sample in (0, 1)
    ]
    results = pd.DataFrame(rows)
    few = few_labels_table(results)
    assert list(few.index) == [("a", 100), ("a", 500), ("b", 50), ("b", 300)]
    assert list(few.columns) == ["prodemb α=0.9", "tfidf"]
    assert few.loc[("a", 500), "prodemb α=0.9"] == "0.255 ± 0.007"  # mean and std over the two samples
    top = summary_table(results)
    assert top["train_size"].to_dict() == {"a": 1000, "b": 300}
    assert top.loc["a", "prodemb α=0.9"] == "0.505 ± 0.007"
