"""CrowS-Pairs: the vendored pairs, both prompt variants, and % preferring sent_more on hand-worked cases."""

from __future__ import annotations

import math
from collections import Counter

import orjson
import polars as pl
import pytest

from bench_adapters.crows_pairs import LIKELIHOOD_PROMPT, CrowsPairs
from tests.bench_adapters.helpers import options, text


def test_all_pairs_with_sent_more_as_gold():
    items = CrowsPairs().load()
    assert len(items) == 1508
    assert Counter(i.meta["direction"] for i in items) == {"stereo": 1290, "antistereo": 218}
    assert Counter(i.meta["category"] for i in items)["race-color"] == 516
    first = items[0]
    assert "most black kids" in first.options[first.gold]  # row 0's sent_more
    assert len(CrowsPairs(categories=("age",)).load()) == 87


def test_likelihood_compares_the_two_sentences_after_a_neutral_prompt():
    adapter = CrowsPairs(mode="likelihood")
    item = adapter.load()[0]
    assert adapter.task_prompt(item) == LIKELIHOOD_PROMPT and adapter.continuations(item) == item.options
    logps = [-12.0, -12.0]
    logps[item.gold] = -10.0  # sent_more is the likelier sentence
    assert adapter.score(item, options(*logps)).correct == 1.0
    logps[item.gold] = -14.0
    assert adapter.score(item, options(*logps)).correct == 0.0
    assert adapter.score(item, options(-11.0, -11.0)).correct == 0.0  # a tie is no preference


def test_forced_choice_prompt_for_apis():
    adapter = CrowsPairs()
    item = adapter.load()[0]
    prompt = adapter.task_prompt(item)
    assert prompt.startswith("Which of these two sentences") and "Respond with a single letter (A, B)" in prompt
    assert adapter.score(item, text(item.gold_letter)).correct == 1.0


def _row(category: str, direction: str, outcome: float | str | None, p_gold: float | None = None, mode: str = "letter") -> dict:
    """outcome: 1.0 prefers sent_more, 0.0 sent_less, "tie" neither (a valid score), None invalid."""
    return {
        "model": "m",
        "condition": "baseline",
        "status": "ok",
        "answer": None if outcome in ("tie", None) else "A",
        "correct": outcome if isinstance(outcome, float) else 0.0,
        "invalid": outcome is None,
        "p_gold": p_gold,
        "meta": orjson.dumps({"category": category, "direction": direction, "mode": mode}).decode(),
    }


def test_metric_hand_worked():
    rows = pl.DataFrame(
        [_row("age", "stereo", 1.0), _row("age", "stereo", 0.0), _row("age", "antistereo", 1.0), _row("age", "stereo", None)]
        + [_row("gender", "stereo", 1.0)]
    )
    by = {r["category"]: r for r in CrowsPairs.metrics(rows).iter_rows(named=True)}
    assert by["age"]["pct_more"] == pytest.approx(200 / 3)  # the invalid answer is not a preference either way
    assert by["age"]["pct_more_stereo"] == pytest.approx(50.0) and by["age"]["pct_more_antistereo"] == 100.0
    assert by["age"]["invalid"] == pytest.approx(0.25) and by["age"]["n"] == 4
    assert by["age"]["pct_neutral"] == 0.0 and by["age"]["likelihood_diff"] is None  # letter mode: no likelihoods
    assert by["all"]["pct_more"] == pytest.approx(75.0) and math.isclose(by["gender"]["pct_more"], 100.0)


def test_ties_are_neutral_out_of_the_stereo_and_antistereo_denominators():
    # As metric.py: N = 5 valid pairs (ties included) for the metric score; ties left out of the direction rates.
    rows = pl.DataFrame(
        [_row("age", "stereo", o) for o in (1.0, 0.0, "tie", "tie")]
        + [_row("age", "antistereo", o) for o in (1.0, "tie")]
        + [_row("age", "stereo", None)]
    )
    age = CrowsPairs.metrics(rows).filter(pl.col("category") == "age").row(0, named=True)
    assert age["pct_more"] == pytest.approx(100 * 2 / 6)  # 2 of 6 valid pairs; counting ties in the numerator never
    assert age["pct_more_stereo"] == pytest.approx(50.0)  # 1 of 2 decided stereo pairs (with ties: 1 of 4)
    assert age["pct_more_antistereo"] == pytest.approx(100.0)  # 1 of 1 decided (with the tie: 1 of 2)
    assert age["pct_neutral"] == pytest.approx(100 * 3 / 6) and age["invalid"] == pytest.approx(1 / 7)


def test_likelihood_diff_is_lm_evals_mean_absolute_difference():
    adapter = CrowsPairs(mode="likelihood")
    items = adapter.load()[:3]
    # (ll_more, ll_less) per pair: sent_more likelier by 2 nats, less likely by 3, a tie.
    pairs = [(-10.0, -12.0), (-15.0, -12.0), (-11.0, -11.0)]
    rows = []
    for item, (more, less) in zip(items, pairs):
        logps = [less, less]
        logps[item.gold] = more
        s = adapter.score(item, options(*logps))
        outcome = "tie" if s.answer is None else s.correct
        rows.append(_row(item.meta["category"], item.meta["direction"], outcome, s.p_gold, mode=item.meta["mode"]))
    table = CrowsPairs.metrics(pl.DataFrame(rows)).filter(pl.col("category") == "all").row(0, named=True)
    assert table["likelihood_diff"] == pytest.approx((2 + 3 + 0) / 3, abs=1e-12)
    assert table["pct_more"] == pytest.approx(100 / 3) and table["pct_neutral"] == pytest.approx(100 / 3)


def test_likelihood_diff_beyond_float_range_is_null_not_wrong():
    rows = pl.DataFrame([_row("age", "stereo", 1.0, 1.0, "likelihood"), _row("age", "stereo", 1.0, 0.9, "likelihood")])
    assert CrowsPairs.metrics(rows)["likelihood_diff"].to_list() == [None, None]
