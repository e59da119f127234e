"""What an evaluation writes: the learning-curve plots (the job's report and MLflow run:
tests/test_evaluate.py)."""

from __future__ import annotations

from prodemb.protocol import run_protocol
from prodemb.report import plot_learning_curves
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
