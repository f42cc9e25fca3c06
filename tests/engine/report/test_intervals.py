"""Δ's interval and p-value per group: withheld when they cannot mean anything, the two-way cluster-robust t
for small groups, the crossed bootstrap for large ones, and one Benjamini-Hochberg family per method."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from engine.report.aggregate import OVERALL, Index, Settings
from engine.report.build import ReportOptions, build_report
from engine.report.write import write_report
from engine.report.clustered import two_way_se
from engine.report.effects import persona_effect
from engine.report.load import open_run
from engine.report.stats import benjamini_hochberg, t_critical, t_two_sided_p
from engine.report.tables import ci
from engine.testing.synthetic import BASELINE, condition, write_run


def _run(tmp_path, baseline: list[float], answers: dict[str, list[float]], countries: dict[str, str] | None = None):
    """Baseline answers per question, and each persona's answers to the same questions."""
    items = [f"q{i}" for i in range(len(baseline))]
    frames = [pl.DataFrame({"model": "m", "benchmark": "b", "condition": "baseline", "item_id": items, "correct": baseline})]
    frames += [pl.DataFrame({"model": "m", "benchmark": "b", "condition": "prose", "item_id": items, "persona_id": p, "correct": a}) for p, a in answers.items()]
    countries = countries or dict.fromkeys(answers, "A")
    personas = pl.DataFrame({"persona_id": list(countries), "country": list(countries.values())})
    return open_run(write_run(tmp_path / "run", pl.concat(frames, how="diagonal_relaxed"), personas, [BASELINE, condition("prose")]))


def _effect(run, settings: Settings = Settings(resamples=500), spec=OVERALL) -> list[dict]:
    return persona_effect(run, Index.build(run, settings), (spec,))[spec].to_dicts()


def test_one_persona_three_questions_gets_no_p_and_no_interval(tmp_path):
    """The issue's case: three paired questions from one persona, all +1. The bootstrap printed
    +1.000 [+1.000, +1.000]* with p = 0.002; an exact sign test says 2 · 0.5³ = 0.25. One persona is one
    resampling unit: nothing can be said about personas, so nothing is claimed."""
    (row,) = _effect(_run(tmp_path, [0.0, 0.0, 0.0], {"p1": [1.0, 1.0, 1.0]}))
    assert row["delta"] == 1.0 and (row["personas"], row["questions"]) == (1, 3)
    assert row["p"] is None and row["q_bh"] is None and row["p_method"] is None
    assert row["delta_lo"] is None and row["delta_hi"] is None
    assert ci(row, "delta", signed=True, tested=True) == "+1.000", "no interval, no significance mark"


def test_no_variance_gets_no_p_even_with_enough_units(tmp_path):
    """Three personas, three questions, every paired difference +1: every cluster residual is 0."""
    (row,) = _effect(_run(tmp_path, [0.0] * 3, {p: [1.0] * 3 for p in ("p1", "p2", "p3")}))
    assert row["delta"] == 1.0 and row["p"] is None and row["delta_lo"] is None and row["p_method"] is None


def test_cluster_t_on_a_hand_worked_group(tmp_path):
    """Baseline wrong on q0, q1; p1 right on both, p2 on q0 only, p3 on neither. Δ̂ = 3/6 = 0.5, residuals
    ±0.5. Persona sums (1, 0, −1): Σu² = 2, × 3/2 = 3; question sums (0.5, −0.5): 0.5 × 2/1 = 1; cells: six
    times 0.25 = 1.5 × 6/5 = 1.8. V = (3 + 1 − 1.8)/36 = 0.0611 is below the persona term 3/36, so V = 1/12 and
    SE = 0.288675, df = min(3, 2) − 1 = 1. t = 0.5/SE = √3, and with one degree of freedom
    p = 1 − (2/π)·atan(√3) = 1/3; the interval 0.5 ± 12.7062·SE = [−3.17, 4.17] reaches past what a Δ of scores
    in [0, 1] can be, and is cut to [−1, 1]."""
    (row,) = _effect(_run(tmp_path, [0.0, 0.0], {"p1": [1.0, 1.0], "p2": [1.0, 0.0], "p3": [0.0, 0.0]}))
    assert row["delta"] == 0.5 and row["p_method"] == "cluster-t"
    assert row["p"] == pytest.approx(1 / 3, abs=1e-12)
    assert 0.5 - 12.706204736174698 * math.sqrt(1 / 12) < -1 and (row["delta_lo"], row["delta_hi"]) == (-1.0, 1.0)


def test_degrees_of_freedom_are_the_fewer_clusters_minus_one():
    """Two identical personas over 40 questions: all the variance is between questions, yet only two
    personas were seen, so df = min(P, Q) − 1 = 1 and the interval is 12.7 SEs wide: two personas say
    nothing about personas in general."""
    q = np.tile(np.arange(40), 2)
    p = np.repeat([0, 1], 40)
    d = (q % 2 == 0).astype(float)  # Δ 1 on even questions, 0 on odd: mean 0.5
    se, df = two_way_se(d, np.ones(80), q, p, np.zeros((2, 1), dtype=np.int64), 1)
    # persona sums 0; question sums 2·(±0.5): Σu² = 40, × 40/39; cells: 80 · 0.25 × 80/79; W = 80 → V = the question term
    assert df[0] == 1 and se[0] == pytest.approx(math.sqrt(40 * 40 / 39 / 6400), abs=1e-15)


def test_student_t_tail_and_critical_values_by_hand():
    # df 1: 1 − (2/π)atan(t); df 2: 1 − t/√(t² + 2); df 3, t = √3: θ = π/4 → 1 − (2/π)(π/4 + 1/2) = 1/2 − 1/π
    assert t_two_sided_p(np.array([1.0, 2.0, math.sqrt(3)]), np.array([1, 2, 3])) == pytest.approx([0.5, 1 - 2 / math.sqrt(6), 0.5 - 1 / math.pi], abs=1e-14)
    assert t_critical(np.array([1, 4, 29])) == pytest.approx([12.706204736174698, 2.7764451051977987, 2.045229642132703], abs=1e-9)
    assert np.isnan(t_two_sided_p(np.array([1.0]), np.array([0]))).all() and np.isnan(t_critical(np.array([0]))).all()


def test_small_and_large_groups_are_separate_benjamini_hochberg_families(tmp_path):
    """With min_size 3: country A (4 personas, 6 questions) is tested by the bootstrap, B and C (2 personas
    each) by cluster-t; q_bh adjusts A alone and B with C, never all three together."""
    rng = np.random.default_rng(1)
    answers = {f"p{i}": rng.integers(0, 2, 6).astype(float).tolist() for i in range(8)}
    countries = {f"p{i}": "A" if i < 4 else "B" if i < 6 else "C" for i in range(8)}
    run = _run(tmp_path, [0.0, 1.0, 0.0, 1.0, 0.0, 0.0], answers, countries)
    rows = {r["country"]: r for r in _effect(run, Settings(resamples=400, min_size=3), ("country",))}
    assert {c: r["p_method"] for c, r in rows.items()} == {"A": "bootstrap", "B": "cluster-t", "C": "cluster-t"}
    assert rows["A"]["q_bh"] == pytest.approx(rows["A"]["p"])
    small = benjamini_hochberg(np.array([rows["B"]["p"], rows["C"]["p"]]))
    assert [rows["B"]["q_bh"], rows["C"]["q_bh"]] == pytest.approx(small.tolist())
    assert rows["A"]["small"] is False and rows["B"]["small"] is True


def test_report_notes_say_how_intervals_were_made(tmp_path):
    run = _run(tmp_path, [0.0, 1.0, 0.0], {"p1": [1.0, 1.0, 0.0], "p2": [0.0, 1.0, 1.0], "p3": [1.0, 0.0, 1.0]})
    report = build_report(run, ReportOptions(by=()))
    assert report.effect()["p_method"].to_list() == ["cluster-t"]
    written = write_report(report, tmp_path / "report")
    text = {path.name: path.read_text() for path in written if path.suffix in (".md", ".html")}
    for name in ("summary.md", "report.html"):
        assert "cluster-robust t" in text[name] and "fewer than 2 personas or 2 questions" in text[name], name
