"""Position bias, order debiasing and `--score p_gold` on hand-worked result rows.

Two questions of benchmark "b", shown in every cyclic order: q1 has 3 options (gold = option 0 of order 0),
q2 has 2 (gold = option 1). Cyclic order k shows option (j + k) mod n at position j, so q1's gold sits at
A, C, B in orders 0, 1, 2 and q2's at B, A.

  baseline  q1: answers A every time (options 0, 1, 2: right only in order 0)    → 1/3
            q2: option 1 in both orders (B, A)                                   → 1
  persona   q1: option 0 every time (A, C, B)                                    → 1
            q2: option 1 in order 0 (B), invalid in order 1                      → 1/2

Debiased (mean over a question's orders, then over questions): baseline 2/3, persona 3/4, Δ = +1/12 (the
per-row means would be 3/5 and 4/5). Order consistency: baseline q2 only, persona q1 only → 1/2 each.
p_gold per order: baseline q1 .5 .2 .2, q2 .8 .6; persona q1 .9 .6 .6, q2 .9 .3 → 0.5, 0.65, Δ = +0.15.

Position bias, baseline: answers A 4, B 1, C 0 of 5 cells; gold A 2, B 2, C 1 → shares .8/.2/0 vs .4/.4/.2;
χ² = 2²/6 + 1²/3 + 1²/1 = 2, df 2, p = e^−1. A takes 80% > 50%, 40 points above the gold's 40%: a warning.
Persona (valid cells only): answers A 1, B 2, C 1, gold the same → χ² = 0, p = 1, no warning.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys

import orjson
import polars as pl
import pytest

from engine.report.aggregate import Settings
from engine.report.build import ReportOptions, build_report
from engine.report.load import ReportError, open_run
from engine.report.position import chi2_answers_vs_gold, chi2_sf, position_bias, warnings
from engine.testing.synthetic import BASELINE, condition, write_run

#          item  cond       persona order answer gold option correct p_gold invalid
ROWS = [
    ("q1", "baseline", None, 0, "A", "A", 0, 1.0, 0.5, False),
    ("q1", "baseline", None, 1, "A", "C", 1, 0.0, 0.2, False),
    ("q1", "baseline", None, 2, "A", "B", 2, 0.0, 0.2, False),
    ("q2", "baseline", None, 0, "B", "B", 1, 1.0, 0.8, False),
    ("q2", "baseline", None, 1, "A", "A", 1, 1.0, 0.6, False),
    ("q1", "prose", "p1", 0, "A", "A", 0, 1.0, 0.9, False),
    ("q1", "prose", "p1", 1, "C", "C", 0, 1.0, 0.6, False),
    ("q1", "prose", "p1", 2, "B", "B", 0, 1.0, 0.6, False),
    ("q2", "prose", "p1", 0, "B", "B", 1, 1.0, 0.9, False),
    ("q2", "prose", "p1", 1, None, "A", None, 0.0, 0.3, True),
]
WARNING = (
    "model m answered position A in 80% of b cells (condition baseline; gold at A in 40%); "
    "the scores average each question over its 2–3 option orders, so they do not reward the preference"
)


def _frame(rows=ROWS) -> pl.DataFrame:
    cols = ["item_id", "condition", "persona_id", "order", "answer", "gold", "option", "correct", "p_gold", "invalid"]
    frame = pl.DataFrame([dict(zip(cols, r)) for r in rows], schema_overrides={"option": pl.Int32, "order": pl.Int32})
    return frame.with_columns(model=pl.lit("m"), benchmark=pl.lit("b"), status=pl.lit("ok"))


@pytest.fixture
def run_dir(tmp_path):
    personas = pl.DataFrame({"persona_id": ["p1"], "country": ["United States"], "sex": ["Female"]})
    return write_run(tmp_path / "run", _frame(), personas, [BASELINE, condition("prose")])


def test_chi2_sf_matches_closed_forms_and_tables():
    for x in (0.1, 1.0, 2.0, 3.841458820694124, 7.5, 30.0, 90.0):
        assert chi2_sf(x, 1) == pytest.approx(math.erfc(math.sqrt(x / 2)), rel=1e-12)
        assert chi2_sf(x, 2) == pytest.approx(math.exp(-x / 2), rel=1e-12)
        assert chi2_sf(x, 3) == pytest.approx(math.erfc(math.sqrt(x / 2)) + math.sqrt(2 * x / math.pi) * math.exp(-x / 2), rel=1e-12)
        assert chi2_sf(x, 4) == pytest.approx(math.exp(-x / 2) * (1 + x / 2), rel=1e-12)
    assert chi2_sf(3.841458820694124, 1) == pytest.approx(0.05, rel=1e-12)  # the familiar critical values
    assert chi2_sf(18.307038053275146, 10) == pytest.approx(0.05, rel=1e-10)
    assert chi2_sf(0.0, 3) == 1.0 and chi2_sf(math.inf, 3) == 0.0


def test_chi2_of_answers_against_gold_by_hand():
    stat, df, p = chi2_answers_vs_gold([12, 0, 0], [4, 4, 4])  # (8²/16) + (4²/4) + (4²/4)
    assert (stat, df) == (12.0, 2) and p == pytest.approx(math.exp(-6), rel=1e-12)
    assert chi2_answers_vs_gold([5, 0], [5, 0]) == (None, None, None)  # one position: nothing to test


def test_position_table_and_warning_on_hand_worked_rows(run_dir):
    table = position_bias(open_run(run_dir).rows)
    base = table.filter(pl.col("condition") == "baseline")
    assert base["position"].to_list() == ["A", "B", "C"]
    assert base["answer_share"].to_list() == pytest.approx([0.8, 0.2, 0.0])
    assert base["gold_share"].to_list() == pytest.approx([0.4, 0.4, 0.2])
    assert base["chi2"][0] == pytest.approx(2.0) and base["df"][0] == 2 and base["p"][0] == pytest.approx(math.exp(-1))
    assert base["invalid"][0] == 0.0 and (base["orders_min"][0], base["orders"][0]) == (2, 3)
    persona = table.filter(pl.col("condition") == "prose")
    assert persona["answer_share"].to_list() == pytest.approx([0.2, 0.4, 0.2]) and persona["invalid"][0] == pytest.approx(0.2)
    assert persona["chi2"][0] == 0.0 and persona["p"][0] == 1.0
    assert warnings(table) == [WARNING]


def test_one_order_warning_says_scores_reflect_option_order(tmp_path):
    rows = [(f"q{i}", "baseline", None, 0, "A", "ABC"[i % 3], 0, float(i % 3 == 0), None, False) for i in range(9)]
    table = position_bias(_frame(rows).lazy())
    assert table["chi2"][0] == pytest.approx((9 - 3) ** 2 / 12 + 3 + 3)  # answers 9,0,0 vs gold 3,3,3
    assert warnings(table) == [
        "model m answered position A in 100% of b cells (condition baseline; gold at A in 33%); "
        "scores mostly reflect option order (set the benchmark's orders = \"cyclic\" to average it out)"
    ]


def test_debiased_scores_delta_and_order_consistency(run_dir):
    report = build_report(open_run(run_dir), ReportOptions(by=(), settings=Settings(resamples=200)))
    scores = report.tables["scores_by_condition"]
    assert scores["score"].to_list() == pytest.approx([2 / 3, 3 / 4])
    assert scores["n"].to_list() == [2, 2]  # one row per question, not per order
    delta = report.tables["delta_by_condition"].row(0, named=True)
    assert (delta["baseline"], delta["persona"], delta["delta"]) == pytest.approx((2 / 3, 3 / 4, 1 / 12))
    assert delta["inv_persona"] == pytest.approx(0.25)  # q2: 1 of 2 orders invalid, q1: none
    p_gold = report.tables["delta_by_condition_p_gold"].row(0, named=True)
    assert (p_gold["baseline"], p_gold["persona"], p_gold["delta"]) == pytest.approx((0.5, 0.65, 0.15))
    # One persona is one resampling unit: no interval and no p (engine.report: too few units), never [x, x]*.
    assert (p_gold["delta_lo"], p_gold["delta_hi"], p_gold["p"], p_gold["p_method"]) == (None, None, None, None)
    consistency = report.tables["order_consistency"]
    assert consistency["consistency"].to_list() == pytest.approx([0.5, 0.5]) and consistency["orders"].to_list() == pytest.approx([2.5, 2.5])
    assert report.warnings == [WARNING]


def test_score_p_gold_makes_p_gold_the_delta_and_accuracy_the_second_table(run_dir):
    report = build_report(open_run(run_dir, score="p_gold"), ReportOptions(by=(), settings=Settings(resamples=200)))
    assert report.tables["delta_by_condition"]["delta"][0] == pytest.approx(0.15)
    assert report.tables["delta_by_condition_primary"]["delta"][0] == pytest.approx(1 / 12)


def test_score_p_gold_on_a_run_without_p_gold_is_a_clear_error(tmp_path):
    personas = pl.DataFrame({"persona_id": ["p1"]})
    run_dir = write_run(tmp_path / "run", _frame().with_columns(p_gold=pl.lit(None, pl.Float64)), personas, [BASELINE, condition("prose")])
    with pytest.raises(ReportError, match=r"--score p_gold: no result has a p_gold \(it needs letter logprobs"):
        open_run(run_dir, score="p_gold")


def test_report_cli_score_p_gold_prints_both_scores_and_the_warning_everywhere(run_dir, tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "engine.cli", "report", str(run_dir), "--score", "p_gold", "--bootstrap", "100", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "250"})
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.split())
    assert "Table 2 · persona effect per model on p_gold" in text and "Table 2b · the same on the primary score" in text
    # one persona: Δ printed bare, with no interval (too few resampling units)
    assert "+0.150" in text and "+0.083" in text and "+0.150 [" not in text
    assert f"warning: position bias: {WARNING}" in text
    assert f"- position bias: {WARNING}" in (out / "summary.md").read_text()
    html = (out / "report.html").read_text()
    assert "Position bias, m · b" in html and "model m answered position A in 80%" in html
    bad = subprocess.run([*cmd[:5], "--score", "mass"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--score mass: expected one of primary, p_gold" in " ".join(bad.stderr.split())


def test_the_grids_run_score_is_the_reports_default_and_a_flag_overrides_it(run_dir):
    import orjson

    manifest = orjson.loads((run_dir / "manifest.json").read_bytes())
    manifest["config"]["run"] = {"score": "p_gold"}
    (run_dir / "manifest.json").write_bytes(orjson.dumps(manifest))
    assert open_run(run_dir).score == "p_gold" and open_run(run_dir, score="primary").score == "primary"


def test_run_score_is_validated(tmp_path):
    from engine.grid import GridError, load_grid
    from tests.conftest import write_grid

    grid = write_grid(tmp_path, base_url="http://127.0.0.1:1/v1")
    grid.write_text(grid.read_text().replace('seed = 0\n', 'seed = 0\nscore = "mass"\n', 1))
    with pytest.raises(GridError, match=r"run\.score: expected primary or p_gold, got 'mass'"):
        load_grid(grid)


def test_score_p_gold_leaves_out_a_question_missing_one_orders_p_gold_and_says_so(tmp_path):
    personas = pl.DataFrame({"persona_id": ["p1"]})
    frame = _frame().with_columns(pl.when((pl.col("item_id") == "q1") & (pl.col("order") == 2)).then(None).otherwise(pl.col("p_gold")).alias("p_gold"))
    run = open_run(write_run(tmp_path / "run", frame, personas, [BASELINE, condition("prose")]), score="p_gold")
    assert run.notes == ("--score p_gold: 2 of 10 scored rows have no p_gold and are left out",)
    report = build_report(run, ReportOptions(by=(), settings=Settings(resamples=50)))
    delta = report.tables["delta_by_condition"].row(0, named=True)  # q2 alone: baseline .7, persona .6
    assert (delta["n"], delta["baseline"], delta["persona"]) == (1, pytest.approx(0.7), pytest.approx(0.6))


def test_likelihood_benchmarks_have_no_position_bias_table_or_warning(tmp_path):
    """A likelihood-mode benchmark scores each option's text alone: no position is shown, so none is tested,
    and the table's title promises no warning that was not given (fresh-user finding 13)."""
    from engine.report.tables import display_tables

    personas = pl.DataFrame({"persona_id": ["p1"], "country": ["United States"], "sex": ["Female"]})
    frame = pl.concat([_frame(), _frame().with_columns(benchmark=pl.lit("lik"))])
    run_dir = write_run(tmp_path / "run", frame, personas, [BASELINE, condition("prose")])
    manifest = orjson.loads((run_dir / "manifest.json").read_bytes())
    manifest["config"]["benchmarks"] = [{"name": "b", "id": None, "mode": "letter"}, {"name": "x", "id": "lik", "mode": "likelihood"}]
    (run_dir / "manifest.json").write_bytes(orjson.dumps(manifest))
    report = build_report(open_run(run_dir), ReportOptions(by=()))
    assert report.tables["position_bias"]["benchmark"].unique().to_list() == ["b"]
    assert report.warnings == [WARNING]
    titles = [title for title, _ in display_tables(report.tables)]
    assert any(t.endswith("(⚠: see warnings)") for t in titles)
    quiet = write_run(tmp_path / "quiet", _frame().filter(pl.col("condition") == "prose"), personas, [BASELINE, condition("prose")])
    titles = [title for title, _ in display_tables(build_report(open_run(quiet), ReportOptions(by=())).tables)]
    assert any(t.startswith("Position bias") and not t.endswith("see warnings)") for t in titles)
