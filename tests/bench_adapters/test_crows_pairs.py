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


def _row(category: str, direction: str, correct: float | None) -> dict:
    return {
        "model": "m",
        "condition": "baseline",
        "status": "ok",
        "correct": 0.0 if correct is None else correct,
        "invalid": correct is None,
        "meta": orjson.dumps({"category": category, "direction": direction}).decode(),
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
    assert by["all"]["pct_more"] == pytest.approx(75.0) and math.isclose(by["gender"]["pct_more"], 100.0)
