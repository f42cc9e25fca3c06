"""The report's statistics on synthetic run directories with known answers."""

from __future__ import annotations

import math
import warnings

import numpy as np
import polars as pl
import pytest

from engine.report.aggregate import OVERALL, Index, Settings
from engine.report.build import ReportOptions, build_report
from engine.report.effects import persona_effect
from engine.report.load import ReportError, open_run
from engine.report.stats import benjamini_hochberg, interval, pass_at_k
from engine.testing.synthetic import BASELINE, condition, personas_frame, random_results, write_run

PERSONAS = pl.DataFrame({"persona_id": ["p1", "p2", "p3"], "country": ["A", "B", "B"], "sex": ["Female", "Male", "Male"], "age": ["30", "70", "x"]})


def _rows(condition_name: str, persona: str | None, correct: list[float], **extra: list) -> pl.DataFrame:
    n = len(correct)
    return pl.DataFrame(
        {"model": "m", "benchmark": "b", "condition": condition_name, "item_id": [f"q{i}" for i in range(n)], "persona_id": [persona] * n, "correct": correct, **extra},
        schema_overrides={"persona_id": pl.String},
    )


def _tiny_run(tmp_path):
    """Baseline right on q0 only; p1 (A) right on both; p2 (B) wrong on q0 (an invalid answer), right on q1;
    p3's calls errored. Δ: p1 (0, +1), p2 (−1, +1) → overall +0.25, A +0.5, B 0."""
    rows = pl.concat(
        [
            _rows("baseline", None, [1.0, 0.0]),
            _rows("prose", "p1", [1.0, 1.0]),
            _rows("prose", "p2", [0.0, 1.0], invalid=[True, False]),
            _rows("prose", "p3", [None, None], status=["error", "error"]),
        ],
        how="diagonal_relaxed",
    )
    return write_run(tmp_path / "tiny", rows, PERSONAS, [BASELINE, condition("prose")])


def test_delta_is_paired_and_hand_checkable(tmp_path):
    report = build_report(open_run(_tiny_run(tmp_path)), ReportOptions(by=(("country",), ("sex", "country"))))
    overall = report.effect().row(0, named=True)
    assert (overall["n"], overall["questions"], overall["personas"]) == (4, 2, 2)
    assert overall["baseline"] == 0.5 and overall["persona"] == 0.75 and overall["delta"] == 0.25
    assert overall["inv_base"] == 0.0 and overall["inv_persona"] == 0.25
    assert overall["delta_lo"] <= 0.25 <= overall["delta_hi"]
    by_country = {r["country"]: r for r in report.effect(("country",)).iter_rows(named=True)}
    assert by_country["A"]["delta"] == 0.5 and by_country["B"]["delta"] == 0.0
    assert by_country["B"]["inv_persona"] == 0.5 and by_country["A"]["inv_persona"] == 0.0
    assert by_country["B"]["personas"] == 1, "p3 only errored: no scored rows, not counted"
    assert all(r["small"] for r in by_country.values()), "under the minimum size: flagged, still reported"
    cross = report.effect(("sex", "country"))
    assert {(r["sex"], r["country"]): r["delta"] for r in cross.iter_rows(named=True)} == {("Female", "A"): 0.5, ("Male", "B"): 0.0}
    scores = {r["condition"]: r for r in report.tables["scores_by_condition"].iter_rows(named=True)}
    assert scores["prose"]["errors"] == 2 and scores["prose"]["n"] == 4 and scores["baseline"]["score"] == 0.5


def test_age_band_and_region_are_derived_from_the_traits(tmp_path):
    run = open_run(_tiny_run(tmp_path))
    assert run.personas.sort("persona_id")["age_band"].to_list() == ["25-34", "65+", None]
    assert "region" in run.personas.columns
    report = build_report(run, ReportOptions(by=(("age_band",),)))
    assert set(report.effect(("age_band",))["age_band"]) == {"25-34", "65+"}


def test_score_column_is_used_where_present(tmp_path):
    rows = pl.concat([_rows("baseline", None, [1.0, 0.0], score=[0.5, 0.5]), _rows("prose", "p1", [1.0, 1.0], score=[0.75, 0.75])], how="diagonal_relaxed")
    report = build_report(open_run(write_run(tmp_path / "s", rows, PERSONAS, [BASELINE, condition("prose")])), ReportOptions(by=()))
    assert report.effect().row(0, named=True)["delta"] == pytest.approx(0.25)


def test_unknown_trait_and_baseline_are_refused(tmp_path):
    run_dir = _tiny_run(tmp_path)
    with pytest.raises(ReportError, match="religiosity"):
        build_report(open_run(run_dir), ReportOptions(by=(("religiosity",),)))
    with pytest.raises(ReportError, match="--baseline nope"):
        open_run(run_dir, "nope")


def _synthetic(tmp_path, name: str, effect: float, questions: int, personas: int, seed: int):
    people = personas_frame(personas, ["A", "B"], seed=seed)
    chunks = random_results(models=["m"], benchmarks=["b"], effects={"prose": effect}, questions=questions, personas=people, seed=seed)
    return write_run(tmp_path / name, list(chunks), people, [BASELINE, condition("prose")])


def test_interval_contains_the_true_effect_and_the_test_rejects_zero(tmp_path):
    run = open_run(_synthetic(tmp_path, "big", effect=0.15, questions=300, personas=12, seed=3))
    row = persona_effect(run, Index.build(run, Settings(resamples=2000, seed=1)), (OVERALL,))[OVERALL].row(0, named=True)
    assert row["delta_lo"] < 0.15 < row["delta_hi"]
    assert row["delta_lo"] > 0 and row["p"] < 0.01
    assert 0.02 < row["delta_hi"] - row["delta_lo"] < 0.2


def test_interval_coverage_is_near_nominal(tmp_path):
    """Over 60 independent runs with a true Δ of 0.1, the 95% interval should cover it about 95% of the time."""
    covered = 0
    for seed in range(60):
        run = open_run(_synthetic(tmp_path, f"r{seed}", effect=0.1, questions=80, personas=4, seed=seed))
        row = persona_effect(run, Index.build(run, Settings(resamples=400, seed=seed)), (OVERALL,))[OVERALL].row(0, named=True)
        covered += row["delta_lo"] <= 0.1 <= row["delta_hi"]
    assert 51 <= covered <= 60  # binomial(60, 0.95): below 51 has probability < 0.5%


def test_null_effect_is_not_significant_and_results_are_seeded(tmp_path):
    run = open_run(_synthetic(tmp_path, "null", effect=0.0, questions=200, personas=6, seed=7))
    first = persona_effect(run, Index.build(run, Settings(resamples=500, seed=5)), (OVERALL, ("country",)))
    again = persona_effect(run, Index.build(run, Settings(resamples=500, seed=5)), (OVERALL, ("country",)))
    other = persona_effect(run, Index.build(run, Settings(resamples=500, seed=6)), (OVERALL, ("country",)))
    assert first[OVERALL].equals(again[OVERALL]) and first[("country",)].equals(again[("country",)])
    assert first[OVERALL]["baseline_lo"][0] != other[OVERALL]["baseline_lo"][0], "bootstrap intervals follow the seed"
    assert first[OVERALL]["p_method"][0] == "cluster-t", "6 personas: a small group, tested without resampling"
    assert first[OVERALL]["delta_lo"][0] == other[OVERALL]["delta_lo"][0]
    assert first[OVERALL]["p"][0] > 0.05
    country = first[("country",)]
    assert country["q_bh"].to_list() == pytest.approx(benjamini_hochberg(country["p"].to_numpy()).tolist())


def test_interval_on_hand_worked_draws():
    # Column 0: draws 1..5 (n = 5): 2.5% at virtual index 4 × 0.025 = 0.1 → 1 + 0.1 × (2 − 1) = 1.1; 97.5% at
    # 3.9 → 4 + 0.9 × (5 − 4) = 4.9. Column 1: one usable draw (the rest NaN) is both bounds. Column 2: no usable
    # draw (no resample reached the group) has no interval.
    draws = np.array([[3.0, np.nan, np.nan], [1.0, 7.0, np.nan], [5.0, np.nan, np.nan], [2.0, np.nan, np.nan], [4.0, np.nan, np.nan]])
    lo, hi = interval(draws)
    assert lo[0] == pytest.approx(1.1, abs=1e-12) and hi[0] == pytest.approx(4.9, abs=1e-12)
    assert lo[1] == hi[1] == 7.0
    assert math.isnan(lo[2]) and math.isnan(hi[2])


@pytest.mark.parametrize("resamples", [1, 2, 7, 40, 1000])
def test_interval_equals_numpy_nanquantile_bit_for_bit(resamples):
    """The one-sort interval is np.nanquantile's linear method exactly: ties, NaN (empty resamples) in any share
    of a column, all-NaN columns, one usable draw, another level."""
    rng = np.random.default_rng(resamples)
    columns = 60
    draws = rng.normal(size=(resamples, columns)).round(2)  # rounding makes ties
    draws[:, 1] = 0.25
    nan_share = rng.uniform(size=columns)
    draws[rng.uniform(size=draws.shape) < nan_share] = np.nan
    draws[:, 2] = np.nan
    draws[1:, 3] = np.nan
    for level in (0.95, 0.9, 0.5):
        alpha = (1 - level) / 2
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            want_lo, want_hi = np.nanquantile(draws, [alpha, 1 - alpha], axis=0)
        lo, hi = interval(draws, level)
        np.testing.assert_array_equal(lo, want_lo)
        np.testing.assert_array_equal(hi, want_hi)


def test_benjamini_hochberg_on_known_p_values():
    q = benjamini_hochberg(np.array([0.01, 0.04, 0.03, 0.20, np.nan]))
    assert q[:4] == pytest.approx([0.04, 0.04 * 4 / 3, 0.04 * 4 / 3, 0.20])
    assert math.isnan(q[4])
    assert benjamini_hochberg(np.array([0.5, 0.9])) == pytest.approx([0.9, 0.9])


def test_pass_at_k_unbiased_estimator_on_known_counts():
    n, c = np.array([5, 5, 5, 5, 2]), np.array([2, 2, 0, 1, 1])
    assert pass_at_k(n, c, 1)[:4] == pytest.approx([0.4, 0.4, 0.0, 0.2])
    assert pass_at_k(n[:2], c[:2], 2) == pytest.approx([1 - 3 / 10, 1 - 3 / 10])  # 1 − C(3,2)/C(5,2)
    at5 = pass_at_k(n, c, 5)
    assert at5[:4] == pytest.approx([1.0, 1.0, 0.0, 1.0]) and math.isnan(at5[4])


def test_pass_at_k_and_agreement_across_samples_and_formats(tmp_path):
    """k = 3 samples. prose: q0 answers A,A,B (gold A: 2 passes), q1 answers C,C,C (gold D: none).
    json: q0 A,A,A; q1 D,D,D. pass@1 prose = (2/3 + 0)/2; pass@3 prose = (1 + 0)/2; agreement prose =
    (1/3 + 1)/2; format agreement prose vs json per (question, sample): q0 1,1,0  q1 0,0,0 → 1/3."""
    answers = {"prose": [["A", "A", "B"], ["C", "C", "C"]], "json": [["A", "A", "A"], ["D", "D", "D"]]}
    gold = ["A", "D"]
    frames = [
        pl.DataFrame({"model": "m", "benchmark": "b", "condition": name, "item_id": f"q{q}", "persona_id": "p1", "sample": list(range(3)),
                      "answer": ans, "correct": [float(a == gold[q]) for a in ans]})
        for name, per_q in answers.items() for q, ans in enumerate(per_q)
    ]
    frames += [pl.DataFrame({"model": "m", "benchmark": "b", "condition": "baseline", "item_id": f"q{q}", "sample": list(range(3)), "answer": "A",
                             "correct": float(q == 0)}) for q in range(2)]
    run_dir = write_run(tmp_path / "k", pl.concat(frames, how="diagonal_relaxed"), PERSONAS, [BASELINE, condition("prose"), condition("json", "json")])
    report = build_report(open_run(run_dir), ReportOptions(by=()))
    consistency = {r["condition"]: r for r in report.tables["sample_consistency"].iter_rows(named=True)}
    assert consistency["prose"]["pass@1"] == pytest.approx(1 / 3) and consistency["prose"]["pass@3"] == pytest.approx(0.5)
    assert consistency["prose"]["agreement"] == pytest.approx((1 / 3 + 1) / 2)
    assert consistency["json"]["pass@1"] == pytest.approx(1.0) and consistency["json"]["agreement"] == 1.0
    assert consistency["baseline"]["pass@2"] == pytest.approx(0.5) and consistency["baseline"]["personas"] == 0
    formats = report.tables["format_agreement"].row(0, named=True)
    assert formats["condition"] == "prose+json" and formats["agreement"] == pytest.approx(1 / 3) and formats["n"] == 6


def test_format_agreement_compares_only_conditions_alike_but_for_their_format(tmp_path):
    """prose and json (answers A / A, B / A on q0, q1): agreement (1 + 0) / 2. A prose condition with reasoning or
    a summary differs by mode, not by render format: never paired (fresh-user finding 12)."""
    answers = {"prose": ["A", "B"], "json": ["A", "A"], "cot": ["C", "C"], "summarised": ["D", "D"]}
    frames = [
        pl.DataFrame({"model": "m", "benchmark": "b", "condition": name, "item_id": ["q0", "q1"], "persona_id": "p1", "answer": ans, "correct": 0.0})
        for name, ans in answers.items()
    ]
    frames.append(pl.DataFrame({"model": "m", "benchmark": "b", "condition": "baseline", "item_id": ["q0", "q1"], "answer": "A", "correct": 0.0}))
    conditions = [BASELINE, condition("prose"), condition("json", "json"), {**condition("cot"), "reasoning": True}, {**condition("summarised"), "summary": True}]
    run = open_run(write_run(tmp_path / "f", pl.concat(frames, how="diagonal_relaxed"), PERSONAS, conditions))
    assert (run.conditions["cot"].reasoning, run.conditions["summarised"].summary, run.conditions["prose"].reasoning) == (True, True, False)
    table = build_report(run, ReportOptions(by=())).tables["format_agreement"]
    assert table.height == 1 and table.row(0, named=True)["condition"] == "prose+json" and table.row(0, named=True)["agreement"] == pytest.approx(0.5)


def test_trait_ablation_pairs_each_partial_persona_with_the_full_one(tmp_path):
    """Full persona right on every question; without country right on even questions only → country adds 0.5;
    demographics only right everywhere → values add 0; values only never right → demographics add 1."""
    questions, people = 40, ["p1", "p2"]
    patterns = {"full": lambda q: 1.0, "no_country": lambda q: float(q % 2 == 0), "demo": lambda q: 1.0, "vals": lambda q: 0.0}
    frames = [pl.DataFrame({"model": "m", "benchmark": "b", "condition": name, "item_id": [f"q{q}" for q in range(questions)], "persona_id": p,
                            "correct": [f(q) for q in range(questions)]}) for name, f in patterns.items() for p in people]
    frames.append(pl.DataFrame({"model": "m", "benchmark": "b", "condition": "baseline", "item_id": [f"q{q}" for q in range(questions)], "correct": 0.5}))
    conditions = [BASELINE, condition("full"), condition("no_country", traits="-country"), condition("demo", traits="demographic"), condition("vals", traits="values")]
    report = build_report(open_run(write_run(tmp_path / "abl", pl.concat(frames, how="diagonal_relaxed"), PERSONAS, conditions)), ReportOptions(by=()))
    ablation = {r["condition"]: r for r in report.tables["trait_ablation"].iter_rows(named=True)}
    assert {c: (r["removed"], r["reference"], r["effect"]) for c, r in ablation.items()} == {
        "no_country": ("country", "full", 0.5), "demo": ("values traits", "full", 0.0), "vals": ("demographic traits", "full", 1.0)
    }
    # Two personas that agree: the effect is plain, but two personas are two clusters (cluster-t, 1 df).
    assert ablation["no_country"]["p_method"] == "cluster-t" and ablation["no_country"]["effect_lo"] < 0.5 < ablation["no_country"]["effect_hi"]
    deltas = {r["condition"]: r["delta"] for r in report.effect().iter_rows(named=True)}
    assert deltas == {"full": 0.5, "no_country": 0.0, "demo": 0.5, "vals": -0.5}
