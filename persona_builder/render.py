"""Render a persona as the text a model is conditioned on: prose, JSON or bullets, over a chosen trait subset.

Rendering is pure and deterministic: the same persona, format and subset always give the same text, which
is what makes the response cache content-addressed on the rendered prompt. Traits in the catalog are
phrased with its sentences ("Family is very important in your life."); any other trait, or an answer the
catalog does not know, falls back to a quoted question-and-answer sentence.
"""

from __future__ import annotations

from collections.abc import Collection

import orjson

from persona_builder.catalog import TraitSpec, load_catalog
from persona_builder.persona import Persona, Trait

FORMATS = ("prose", "json", "bullets")
# "all", one category ("demographic", "values"), or "-<trait>" for leave-one-trait-out ablations; any of them
# followed by "+<trait>" adds a trait the catalog keeps out of prompts unless asked (on_request, e.g. "all+year").
TRAIT_SUBSETS = ("all", "demographic", "values")

_PREAMBLE = "It is very important that you always answer questions from this perspective."
_NOUNS = {"female": "woman", "male": "man"}


def subset_problem(subset: str) -> str | None:
    """What is wrong with a trait subset's spelling (one line), or None: all, demographic, values or -TRAIT,
    optionally +TRAIT... for traits shown only on request."""
    base, *asked = subset.split("+")
    if (base not in TRAIT_SUBSETS and not (base.startswith("-") and len(base) > 1)) or not all(asked):
        return f"expected all, demographic, values or -<trait> (leave one out), optionally +<trait> (all+year), got '{subset}'"
    return None


def select_traits(persona: Persona, subset: str) -> dict[str, Trait]:
    """The traits a subset renders, in the persona's order; on-request traits only when named ("+year")."""
    base, *asked = subset.split("+")
    hidden = {k for k, spec in load_catalog().traits.items() if spec.on_request and k not in asked}
    shown = {k: t for k, t in persona.traits.items() if k not in hidden}
    if base == "all":
        return shown
    if base.startswith("-"):
        return {k: t for k, t in shown.items() if k != base[1:]}
    return {k: t for k, t in shown.items() if t.category == base or k in asked}


class _Phraser:
    """Catalog phrasing for one persona's traits, resolved against the survey the persona came from."""

    def __init__(self, persona: Persona, traits: dict[str, Trait]):
        self.catalog = load_catalog()
        self.survey = self.catalog.survey_key(persona.source)
        self.traits = traits
        self.country = "the country where you were interviewed"
        if country := traits.get("country"):
            self.country = self.fragment("country", country.answer) or country.answer

    def spec(self, key: str) -> TraitSpec | None:
        return self.catalog.traits.get(key)

    def shown(self, key: str, answer: str) -> str:
        """The answer as stated: a survey's top code reads as its label (GSS age 89 is "89 or older")."""
        spec = self.spec(key)
        source = spec.sources.get(self.survey) if spec and self.survey else None
        top = source.top_code if source else None
        return top[1] if top and answer == str(top[0]) else answer

    def fragment(self, key: str, answer: str) -> str | None:
        spec = self.spec(key)
        if spec is None:
            return None
        if spec.number_range is not None:
            return self.shown(key, answer) if answer.isdigit() else None
        known = spec.answers(self.survey).get(answer)
        return known.prose.replace("{country}", self.country) if known else None

    def clause(self, key: str, trait: Trait) -> str | None:
        """The catalog's wording for this answer, or None when the catalog cannot phrase it."""
        spec, fragment = self.spec(key), self.fragment(key, trait.answer)
        template = spec.phrasing(self.survey) if spec else None
        return template.replace("{answer}", fragment) if template and fragment is not None else None

    def is_intro(self, key: str, trait: Trait) -> bool:
        spec = self.spec(key)
        return bool(spec and spec.intro and self.clause(key, trait) is not None)

    def label(self, key: str, trait: Trait) -> str:
        spec = self.spec(key)
        return spec.label_for(self.survey) if spec else trait.question.rstrip("?:. ")


def _sentence(phraser: _Phraser, key: str, trait: Trait) -> str:
    clause = phraser.clause(key, trait)
    if clause is None:
        return f'When asked "{trait.question}", you answered "{trait.answer}".'
    return clause[:1].upper() + clause[1:]


def _who_keys(traits: dict[str, Trait]) -> set[str]:
    """The traits the opening "a 32-year-old woman" states; others get their own sentence."""
    keys = {"age"} if "age" in traits and traits["age"].answer.isdigit() else set()
    return keys | ({"sex"} if "sex" in traits and traits["sex"].answer.lower() in _NOUNS else set())


def _who(phraser: _Phraser, traits: dict[str, Trait], keys: set[str]) -> str:
    noun = _NOUNS[traits["sex"].answer.lower()] if "sex" in keys else "person"
    if "age" not in keys:
        return f"a {noun}" if keys else "a survey respondent"
    age = traits["age"].answer
    if (shown := phraser.shown("age", age)) != age:
        return f"a {noun} aged {shown}"
    article = "an" if age.startswith("8") or age in ("11", "18") else "a"
    return f"{article} {age}-year-old {noun}"


def _prose(persona: Persona, traits: dict[str, Trait]) -> str:
    phraser = _Phraser(persona, traits)
    intro = [phraser.clause(k, t) for k, t in traits.items() if phraser.is_intro(k, t)]
    told = _who_keys(traits)
    opening = f"You are answering as {', '.join([_who(phraser, traits, told), *intro])}."
    rest = [(k, t) for k, t in traits.items() if k not in told and not phraser.is_intro(k, t)]
    paragraphs: list[list[str]] = [[opening]]
    for i, category in enumerate(dict.fromkeys(t.category for _, t in rest)):
        sentences = [_sentence(phraser, k, t) for k, t in rest if t.category == category]
        if i == 0 and category == "demographic":
            paragraphs[0] += sentences
        else:
            paragraphs.append(sentences)
    paragraphs.append([_PREAMBLE])
    return "\n\n".join(" ".join(p) for p in paragraphs)


def _bullets(persona: Persona, traits: dict[str, Trait]) -> str:
    phraser = _Phraser(persona, traits)
    return "\n".join(
        [f"You are answering as the survey respondent described below. {_PREAMBLE}"]
        + [f"- {phraser.label(k, t)}: {phraser.shown(k, t.answer)}" for k, t in traits.items()]
    )


def _json(persona: Persona, traits: dict[str, Trait]) -> str:
    phraser = _Phraser(persona, traits)
    body = {
        "instruction": f"You are answering as the survey respondent described in 'respondent'. {_PREAMBLE}",
        "respondent": {phraser.label(k, t): phraser.shown(k, t.answer) for k, t in traits.items()},
    }
    return orjson.dumps(body).decode()


_RENDERERS = {"prose": _prose, "bullets": _bullets, "json": _json}


def render(persona: Persona, fmt: str = "prose", subset: str = "all", exclude: Collection[str] = ()) -> str:
    """The persona as text; `exclude` names traits never shown whatever the subset (trait inference hides its target)."""
    if fmt not in _RENDERERS:
        raise ValueError(f"unknown persona format '{fmt}', expected one of {', '.join(FORMATS)}")
    traits = select_traits(persona, subset)
    return _RENDERERS[fmt](persona, {k: t for k, t in traits.items() if k not in exclude} if exclude else traits)


def trait_lines(persona: Persona, exclude: Collection[str] = ()) -> list[str]:
    """The bullets format's "- Label: answer" lines without its instruction line: another respondent as an
    example (trait inference's shots)."""
    return render(persona, "bullets", "all", exclude).split("\n")[1:]
