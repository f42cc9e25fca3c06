from __future__ import annotations

import math
from collections import Counter

from bench_adapters import get_adapter
from bench_adapters.base import Item


def test_all_817_questions_with_one_true_option_each():
    items = list(get_adapter("truthfulqa").items())
    assert len(items) == 817
    assert all(0 <= it.gold < len(it.options) for it in items)
    assert len({it.id for it in items}) == 817


def test_shuffle_is_seeded_and_moves_the_true_answer_off_a():
    a = list(get_adapter("truthfulqa", seed=3).items())
    b = list(get_adapter("truthfulqa", seed=3).items())
    assert [(i.options, i.gold) for i in a] == [(i.options, i.gold) for i in b]
    positions = Counter(i.gold_letter for i in a)
    assert positions["A"] < 0.4 * len(a) and len(positions) >= 5  # upstream always lists the true answer first
    c = list(get_adapter("truthfulqa", seed=4).items())
    assert [i.gold for i in a] != [i.gold for i in c]


def test_limit_samples_a_seeded_subset():
    first = [i.id for i in get_adapter("truthfulqa", limit=10, seed=1).items()]
    assert len(first) == 10 and first == [i.id for i in get_adapter("truthfulqa", limit=10, seed=1).items()]
    assert first != [i.id for i in get_adapter("truthfulqa", limit=10, seed=2).items()]


def test_prompt_letters_every_option_and_asks_for_one_letter():
    item = next(get_adapter("truthfulqa", limit=1).items())
    prompt = get_adapter("truthfulqa").task_prompt(item)
    assert prompt.startswith(item.question)
    for letter, option in zip(item.letters, item.options):
        assert f"\n{letter}. {option}" in prompt
    assert "Respond with a single letter" in prompt


def test_scoring_correct_wrong_invalid_and_p_gold():
    adapter = get_adapter("truthfulqa")
    item = Item("q", "Q?", ("x", "y", "z"), gold=1)
    right = adapter.score(item, "B.", {"A": math.log(0.2), "B": math.log(0.6), "C": math.log(0.2)})
    assert (right.answer, right.correct, right.invalid) == ("B", 1.0, False)
    assert math.isclose(right.p_gold, 0.6)
    wrong = adapter.score(item, "(c)", None)
    assert (wrong.answer, wrong.correct, wrong.invalid, wrong.p_gold) == ("C", 0.0, False, None)
    invalid = adapter.score(item, "I am not sure", {"A": math.log(0.5), "B": math.log(0.25)})
    assert (invalid.answer, invalid.correct, invalid.invalid) == (None, 0.0, True)
    assert math.isclose(invalid.p_gold, 0.25 / 0.75)  # renormalised over the offered letters
