"""The three scoring modes on hand-worked cases: ties, invalid answers, missing letters, several true options."""

from __future__ import annotations

import math

import pytest

from bench_adapters.base import Item
from bench_adapters.choice import choice_score, letter_logps, letter_score

ITEM = Item("q", "Q?", ("x", "y", "z"), gold=1)
MULTI = Item("m", "Q?", ("t1", "f1", "t2", "f2"), gold=0, true=(0, 2))


def test_likelihood_argmax_mass_and_strict_win():
    s = choice_score(ITEM, [math.log(0.2), math.log(0.5), math.log(0.3)])
    assert (s.answer, s.correct, s.invalid) == ("B", 1.0, False)
    assert s.p_gold == pytest.approx(0.5)


def test_tie_between_true_and_false_scores_zero_and_has_no_answer():
    s = choice_score(ITEM, [-1.0, -1.0, -3.0])
    assert (s.answer, s.correct, s.invalid) == (None, 0.0, False)
    e = math.exp(-1.0)
    assert s.p_gold == pytest.approx(e / (2 * e + math.exp(-3.0)))


def test_mass_is_normalised_over_all_options_and_uses_every_true_option():
    # p = (0.4, 0.1, 0.3, 0.2) unnormalised ×2: MC2 = (0.4 + 0.3) / 1.0 regardless of the scale
    s = choice_score(MULTI, [math.log(0.8), math.log(0.2), math.log(0.6), math.log(0.4)])
    assert s.p_gold == pytest.approx(0.7) and s.correct == 1.0 and s.answer == "A"
    # The best option is false: MC1-style correctness fails while the mass still counts the true options.
    s = choice_score(MULTI, [math.log(0.1), math.log(0.5), math.log(0.2), math.log(0.2)])
    assert s.correct == 0.0 and s.answer == "B" and s.p_gold == pytest.approx(0.3)


def test_missing_scores_are_invalid_not_an_option():
    for logps in (None, [], [-1.0, -2.0], [-math.inf] * 3):
        s = choice_score(ITEM, logps)
        assert (s.answer, s.correct, s.invalid, s.p_gold) == (None, 0.0, True, None)


def test_letter_logprob_unlisted_letters_have_zero_probability():
    logps = letter_logps(ITEM, {"A": math.log(0.3), "C": math.log(0.1)})
    assert logps[1] == -math.inf
    s = choice_score(ITEM, logps)
    assert (s.answer, s.correct, s.p_gold) == ("A", 0.0, 0.0)
    assert letter_logps(ITEM, None) is None and letter_logps(ITEM, {}) is None


def test_letter_mode_counts_any_true_option_and_reports_mass():
    s = letter_score(MULTI, "C", {"A": math.log(0.1), "B": math.log(0.2), "C": math.log(0.3), "D": math.log(0.4)})
    assert (s.answer, s.correct, s.invalid) == ("C", 1.0, False)
    assert s.p_gold == pytest.approx(0.4)
    bad = letter_score(MULTI, "maybe t1", None)
    assert (bad.answer, bad.correct, bad.invalid, bad.p_gold) == (None, 0.0, True, None)
