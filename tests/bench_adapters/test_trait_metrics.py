"""Trait-inference metrics, hand-worked on the ten fixture respondents, and alignment against scipy."""

from __future__ import annotations

import math

import numpy as np
import orjson
import polars as pl
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import wasserstein_distance

from bench_adapters.trait_metrics import PRIORS, alignment, js_alignment, loo_priors, per_target, trait_tables, wasserstein_alignment
from bench_adapters.traits import Traits
from persona_builder.persona import load_personas
from tests.bench_adapters.helpers import text
from tests.bench_adapters.traits_fixtures import PEOPLE, write_personas

BANDS = {"23": "<25", "24": "<25", "22": "<25", "40": "35-44", "41": "35-44", "70": "65+", "30": "25-34", "31": "25-34", "50": "45-54", "52": "45-54"}


@pytest.mark.parametrize(
    ("p", "q"),
    [([0.2, 0.5, 0.3], [0.3, 0.4, 0.3]), ([1, 0, 0, 0], [0, 0, 0, 1]), ([0.1, 0.0, 0.6, 0.3, 0.0], [0.25, 0.25, 0.0, 0.25, 0.25]), ([0.5, 0.5], [0.5, 0.5])],
)
def test_alignment_matches_scipy(p, q):
    p, q = np.array(p, float), np.array(q, float)
    k = p.size
    points = np.arange(k)
    assert math.isclose(wasserstein_alignment(p, q), 1 - wasserstein_distance(points, points, p, q) / (k - 1), abs_tol=1e-12)
    assert math.isclose(js_alignment(p, q), 1 - jensenshannon(p, q, base=2), abs_tol=1e-12)
    # counts normalise to the same distributions; a batch axis gives the same values row by row
    assert math.isclose(alignment(p * 7, q * 3, ordinal=True), wasserstein_alignment(p, q), abs_tol=1e-12)
    both = alignment(np.stack([p, q]), np.stack([q, q]), ordinal=False)
    assert math.isclose(both[0], js_alignment(p, q), abs_tol=1e-12) and math.isclose(both[1], 1.0)


def test_alignment_of_an_empty_distribution_is_undefined():
    assert np.isnan(alignment(np.zeros(3), np.array([1.0, 0, 0]), ordinal=True))


# Happiness (A Very, B Pretty, C Not too happy) of p01..p10: A A B C B B C C A B; totals A 3, B 4, C 3.
HAPPY = np.array([0, 0, 1, 2, 1, 1, 2, 2, 0, 1])
# Prior cells country × sex × age band: p01-p03 share one, p04-p05 one, p06 alone, p07-p08, p09-p10.
CELLS = np.array([0, 0, 0, 1, 1, 2, 3, 3, 4, 4])


def test_leave_one_out_priors_by_hand():
    priors = loo_priors(HAPPY, CELLS, 3)
    third = [1 / 3] * 3
    # global: leaving an A out leaves B 4 the majority; leaving a B out ties A, B, C at 3 (shared); a C → B
    expected_global = [[0, 1, 0], [0, 1, 0], third, [0, 1, 0], third, third, [0, 1, 0], [0, 1, 0], [0, 1, 0], third]
    np.testing.assert_allclose(priors["prior:majority"], expected_global)
    # cell: p01 sees A, B (tie); p03 sees A, A; p04 sees B; p05 sees C; p06 is alone → its global row
    expected_cell = [[0.5, 0.5, 0], [0.5, 0.5, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], third, [0, 0, 1], [0, 0, 1], [0, 1, 0], [1, 0, 0]]
    np.testing.assert_allclose(priors["prior:country_sex_age"], expected_cell)
    np.testing.assert_allclose(priors["prior:uniform"], np.full((10, 3), 1 / 3))


def test_loo_prior_ignores_respondents_without_an_answer():
    priors = loo_priors(np.array([0, -1, 1, 1]), np.zeros(4, np.int64), 2)
    np.testing.assert_allclose(priors["prior:majority"], [[0, 1], [0, 1], [0.5, 0.5], [0.5, 0.5]])


def _run_rows(tmp_path, answers: dict[str, str]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Result rows of model m (condition prose) answering the happiness items, scored by the adapter, and the
    run's persona frame."""
    adapter = Traits(targets=["happiness"])
    personas = load_personas(write_personas(tmp_path / "p.jsonl"))
    adapter.bind(personas)
    rows = []
    for p in personas:
        for item in adapter.items_for(p):
            s = adapter.score(item, text(answers[p.id]))
            rows.append({"model": "m", "condition": "prose", "persona_id": p.id, "item_id": item.id, "sample": 0, "status": "ok",
                         "answer": s.answer, "gold": item.gold_letter, "correct": s.correct, "invalid": s.invalid, "score": s.score,
                         "meta": orjson.dumps(item.meta).decode()})
    frame = pl.DataFrame([{"persona_id": pid, "country": c, "sex": sex, "age": age, "age_band": BANDS[age], "happiness": h}
                          for pid, c, sex, age, h, _, _ in PEOPLE])
    return pl.DataFrame(rows), frame


def test_per_trait_table_by_hand(tmp_path):
    # B for everyone, except C for p07 and p08, and no letter at all for p09
    answers = {pid: "B" for pid, *_ in PEOPLE} | {"p07": "C", "p08": "C", "p09": "no idea"}
    rows, personas = _run_rows(tmp_path, answers)
    tables = trait_tables(rows, personas, [("country",)], resamples=200, seed=1)
    overall = {r["model"]: r for r in tables[()].iter_rows(named=True)}
    m = overall["m"]
    assert m["n"] == 10 and m["condition"] == "prose" and m["ordinal"]
    assert math.isclose(m["accuracy"], 6 / 10)  # p03, p05, p06, p10 (B) and p07, p08 (C)
    # ordinal: p01, p02, p04 one step off (0.5), p09 invalid (0), the six exact ones 1 → 7.5 / 10
    assert math.isclose(m["ordinal_score"], 0.75)
    assert math.isclose(m["invalid"], 0.1)
    # priors (rows above): majority acc 4/3 / 10, ordinal (6 × 0.5 + 4 × 2/3) / 10; the cell prior acc
    # (0.5 + 0.5 + 1/3 + 1 + 1) / 10, ordinal (0.75 + 0.75 + 0.5 × 5 + 2/3 + 1 + 1) / 10; uniform 1/3 and the same
    # ordinal as the tie rows
    assert math.isclose(overall["prior:majority"]["accuracy"], 4 / 30) and math.isclose(overall["prior:majority"]["ordinal_score"], 17 / 30)
    assert math.isclose(overall["prior:country_sex_age"]["accuracy"], 1 / 3) and math.isclose(overall["prior:country_sex_age"]["ordinal_score"], 2 / 3)
    assert math.isclose(overall["prior:uniform"]["accuracy"], 1 / 3) and math.isclose(overall["prior:uniform"]["ordinal_score"], 17 / 30)
    assert overall["prior:uniform"]["accuracy_lo"] == pytest.approx(1 / 3) == overall["prior:uniform"]["accuracy_hi"]
    # lift over the best prior (the cell majority, on the ordinal score): 0.75 − 2/3
    assert m["best_prior"] == "prior:country_sex_age" and math.isclose(m["lift"], 0.75 - 2 / 3)
    assert m["lift_lo"] <= m["lift"] <= m["lift_hi"] and all(overall[p]["lift"] is None for p in PRIORS)
    # alignment: predicted (0, 7, 2) over the 9 valid answers vs real (3, 4, 3): W1 = 0.3 + |7/9 − 0.7| on 2 steps
    assert math.isclose(m["alignment"], 1 - (0.3 + abs(7 / 9 - 0.7)) / 2)
    assert m["alignment_lo"] <= m["alignment"] <= m["alignment_hi"]
    # a prior's predicted distribution is the mean of its rows (ties shared), against the real answers
    cell = loo_priors(HAPPY, CELLS, 3)["prior:country_sex_age"].sum(axis=0)
    assert math.isclose(overall["prior:country_sex_age"]["alignment"], float(wasserstein_alignment(cell / 10, np.array([0.3, 0.4, 0.3]))))
    by_country = {(r["model"], r["country"]): r for r in tables[("country",)].iter_rows(named=True)}
    assert math.isclose(by_country["m", "Aland"]["accuracy"], 3 / 6) and math.isclose(by_country["m", "Borduria"]["accuracy"], 3 / 4)
    assert by_country["m", "Borduria"]["n"] == 4 and by_country["m", "Borduria"]["small"]
    # Borduria: predicted C C B (p09 invalid) vs real C C A B
    assert math.isclose(by_country["m", "Borduria"]["alignment"], float(wasserstein_alignment(np.array([0, 1 / 3, 2 / 3]), np.array([0.25, 0.25, 0.5]))))


def test_nominal_alignment_uses_jensen_shannon(tmp_path):
    adapter = Traits(targets=["death_penalty"])
    personas = load_personas(write_personas(tmp_path / "p.jsonl"))
    adapter.bind(personas)
    items = [i for p in personas for i in adapter.items_for(p)]
    rows = pl.DataFrame([{"model": "m", "condition": "c", "persona_id": i.id.split(":")[0], "item_id": i.id, "sample": 0, "status": "ok",
                          "answer": "A", "gold": i.gold_letter, "correct": float(i.gold == 0), "invalid": False, "score": float(i.gold == 0),
                          "meta": orjson.dumps(i.meta).decode()} for i in items])
    tables = trait_tables(rows, pl.DataFrame({"persona_id": [p.id for p in personas]}), resamples=0)
    m = tables[()].filter(pl.col("model") == "m").row(0, named=True)
    # 9 answers: Favor 4, Oppose 5; the model always says Favor
    assert m["ordinal_score"] is None and math.isclose(m["accuracy"], 4 / 9)
    assert math.isclose(m["alignment"], 1 - jensenshannon([1, 0], [4 / 9, 5 / 9], base=2))
    assert m["alignment_lo"] is None, "no resamples, no interval"
    summary = per_target(rows).row(0, named=True)
    assert summary["target"] == "death_penalty" and summary["n"] == 9 and math.isclose(summary["accuracy"], 4 / 9)


def test_a_target_that_is_a_prior_cell_trait_is_left_out_of_the_cell():
    # Predicting sex: a country × sex × age-band cell would hold the answer itself. Four respondents of one
    # country and age band, M M F F: leave-one-out over country × age band alone gives each the other sex's
    # majority (p1: M F F → F), so the cell prior scores 0, where a cell keyed on sex would score 1.
    from bench_adapters.trait_metrics import _prior_predictors

    personas = pl.DataFrame({"persona_id": ["p1", "p2", "p3", "p4"], "country": ["X"] * 4, "age_band": ["30-44"] * 4,
                             "sex": ["Male", "Male", "Female", "Female"]})
    real = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    priors = {p.model: p for p in _prior_predictors("sex", ("Male", "Female"), False, personas["persona_id"], personas, real, np.zeros((4, 2)))}
    np.testing.assert_allclose(priors["prior:country_sex_age"].accuracy, [0, 0, 0, 0])
    np.testing.assert_allclose(priors["prior:country_sex_age"].probs, [[0, 1], [0, 1], [1, 0], [1, 0]])
