"""Rendering: formats, subsets, leave-one-out, determinism, no leaked codes, grammatical prose."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pytest

from persona_builder.catalog import load_catalog
from persona_builder.persona import Persona, Trait, load_personas
from persona_builder.render import FORMATS, PersonaText, render, select_traits

CATALOG = load_catalog()
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "personas.jsonl"
LEAKS = re.compile(r"(^|\s)-\d|don.t know|no answer|not asked|missing|inapplicable|\bQ\d+\b", re.IGNORECASE)


def _wvs(**answers) -> Persona:
    base = {"country": "India", "sex": "Female", "age": "32", "born_in_country": "Born in this country",
            "importance_family": "Very important", "men_political_leaders": "Disagree"}
    base |= answers
    return Persona("wvs7-1", "WVS-7", {
        k: Trait(CATALOG.traits[k].question, v, CATALOG.traits[k].category) for k, v in base.items()
    })


def test_prose_reads_like_the_paper():
    assert render(_wvs()) == (
        "You are answering as a 32-year-old woman, interviewed in India, born in India.\n\n"
        "Family is very important in your life. "
        "You disagree that, on the whole, men make better political leaders than women do.\n\n"
        "It is very important that you always answer questions from this perspective."
    )
    text = render(_wvs(sex="Male", age="81", country="United States", born_in_country="Born in another country"))
    assert text.startswith("You are answering as an 81-year-old man, interviewed in the United States, born outside the United States.")


def test_leave_one_out_and_categories():
    persona = _wvs()
    assert "country" not in select_traits(persona, "-country")
    assert render(persona, subset="-country").startswith(
        "You are answering as a 32-year-old woman, born in the country where you were interviewed."
    )
    assert "32-year-old" not in render(persona, subset="-age")
    demographic = render(persona, subset="demographic")
    assert "Family" not in demographic and "India" in demographic
    assert render(persona, subset="values").startswith("You are answering as a survey respondent.")
    assert set(select_traits(persona, "values")) == {"importance_family", "men_political_leaders"}


def test_json_is_an_object_and_bullets_are_label_lines():
    persona = _wvs()
    body = orjson.loads(render(persona, "json"))
    assert body["respondent"]["Country of interview"] == "India" and body["respondent"]["Age"] == "32"
    lines = render(persona, "bullets").splitlines()
    assert lines[1:] == [
        "- Country of interview: India", "- Sex: Female", "- Age: 32",
        "- Born in the country of interview: Born in this country",
        "- Importance of family: Very important", "- Men make better political leaders: Disagree",
    ]
    with pytest.raises(ValueError, match="unknown persona format"):
        render(persona, "yaml")


def test_unknown_traits_fall_back_to_a_quoted_sentence():
    persona = Persona("x", "elsewhere", {"pets": Trait("Do you own a pet?", "A cat", "values")})
    assert "When asked \"Do you own a pet?\", you answered \"A cat\"." in render(persona)


def test_every_built_persona_renders_cleanly_in_every_format(built):
    out, _ = built
    personas = load_personas(out / "personas.parquet")
    for persona in personas:
        for fmt in FORMATS:
            for subset in ("all", "demographic", "values", "-age"):
                text = render(persona, fmt, subset)
                assert text == render(persona, fmt, subset)
                assert not LEAKS.search(text), text
                assert fmt == "json" or "{" not in text  # no unfilled template slot
        prose = render(persona)
        assert prose.startswith("You are answering as a")
        assert "When asked" not in prose  # every built answer has catalog phrasing
        for sentence in re.split(r"(?<=\.)\s+", prose):
            assert sentence[0].isupper() and sentence.endswith("."), sentence
            assert "  " not in sentence and " ," not in sentence


def test_categorical_answers_come_from_the_catalog(built):
    out, _ = built
    for persona in load_personas(out / "personas.jsonl"):
        survey = CATALOG.survey_key(persona.source)
        for key, trait in persona.traits.items():
            spec = CATALOG.traits[key]
            if spec.number_range:
                assert trait.answer.isdigit()
            else:
                assert trait.answer in spec.answers(survey)
        assert persona.answer("sex") in ("Female", "Male")


def test_a_persona_rendered_once_gives_every_hidden_set_byte_for_byte():
    """PersonaText cuts hidden traits out of one render (trait inference: one per persona, not per item); the
    slow definition is the persona without those traits, rendered whole. Hiding a trait the opening states
    (age, sex, an intro clause) or the country other answers quote takes the re-render path: covered too."""
    people = [*load_personas(EXAMPLE)[:20], _wvs()]
    for person in people:
        keys = list(person.traits)
        for fmt in FORMATS:
            for subset in ("all", "values", "demographic", f"-{keys[-1]}", "all+year"):
                once = PersonaText(person, fmt, subset)
                for hidden in [(), ("country",), ("age", "sex"), (keys[-1], keys[-2]), *((k,) for k in keys)]:
                    slow = Persona(person.id, person.source, {k: t for k, t in person.traits.items() if k not in hidden})
                    assert once.without(frozenset(hidden)) == render(slow, fmt, subset) == render(person, fmt, subset, hidden), (fmt, subset, hidden)
