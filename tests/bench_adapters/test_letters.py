from __future__ import annotations

import string

from hypothesis import given
from hypothesis import strategies as st

from bench_adapters.letters import format_options, letters_for, parse_letter

DECORATIONS = ["{}", "{}.", "({})", "{})", "[{}]", "**{}**", "Answer: {}", "answer: ({})", "The answer is {}.", "{}. because reasons", " {} ", "{}:"]


@given(n=st.integers(2, 26), pick=st.integers(0, 25), decoration=st.sampled_from(DECORATIONS), lower=st.booleans())
def test_decorated_letters_parse_to_the_letter(n, pick, decoration, lower):
    valid = letters_for(n)
    letter = valid[pick % n]
    text = decoration.format(letter.lower() if lower and decoration not in ("The answer is {}.",) else letter)
    assert parse_letter(text, valid) == letter


@given(text=st.text(max_size=40), n=st.integers(1, 26))
def test_parse_never_returns_a_letter_outside_the_options(text, n):
    valid = letters_for(n)
    result = parse_letter(text, valid)
    assert result is None or result in valid


@given(words=st.lists(st.sampled_from(["paris", "the", "dog", "is", "a", "maybe", "I", "think"]), min_size=2, max_size=6))
def test_prose_without_an_answer_form_is_invalid(words):
    text = " ".join(words)
    assert parse_letter(text, letters_for(4)) is None


def test_invalid_is_never_mapped_to_a():
    valid = letters_for(4)
    for text in ["", None, "Paris", "A dog barks", "the answer is a dog", "E", "Answer: E", "I don't know"]:
        assert parse_letter(text, valid) is None, text


def test_format_options_letters_in_order():
    assert format_options(("x", "y", "z")) == "A. x\nB. y\nC. z"
    assert letters_for(26) == tuple(string.ascii_uppercase)
