"""Hand-made persona files with answer scales, for the trait-inference tests (small enough to work by hand)."""

from __future__ import annotations

from pathlib import Path

import orjson

HAPPY = ["Very happy", "Pretty happy", "Not too happy"]  # ordinal
PENALTY = ["Favor", "Oppose"]  # nominal
FAITH = ["Protestant", "Catholic", "None"]  # nominal, demographic

# id, country, sex, age, happiness, death penalty, religion (None: not answered)
PEOPLE = [
    ("p01", "Aland", "Female", "23", "Very happy", "Favor", "Protestant"),
    ("p02", "Aland", "Female", "24", "Very happy", "Oppose", "Catholic"),
    ("p03", "Aland", "Female", "22", "Pretty happy", "Favor", "None"),
    ("p04", "Aland", "Male", "40", "Not too happy", "Favor", "Protestant"),
    ("p05", "Aland", "Male", "41", "Pretty happy", "Oppose", None),
    ("p06", "Aland", "Male", "70", "Pretty happy", None, "Catholic"),
    ("p07", "Borduria", "Female", "30", "Not too happy", "Oppose", "None"),
    ("p08", "Borduria", "Female", "31", "Not too happy", "Oppose", "None"),
    ("p09", "Borduria", "Male", "50", "Very happy", "Favor", "Catholic"),
    ("p10", "Borduria", "Male", "52", "Pretty happy", "Oppose", "Catholic"),
]


def _trait(question: str, answer: str, category: str, scale: list[str] | None = None, ordinal: bool | None = None) -> dict:
    record: dict = {"question": question, "answer": answer, "category": category}
    if scale is not None:
        record["scale"] = scale
        record["ordinal"] = ordinal
    return record


def persona_records(scales: bool = True) -> list[dict]:
    records = []
    for pid, country, sex, age, happy, penalty, faith in PEOPLE:
        s = (lambda scale: scale if scales else None)
        traits = {
            "country": _trait("In which country were you interviewed?", country, "demographic"),
            "sex": _trait("What is your sex?", sex, "demographic"),
            "age": _trait("How old are you?", age, "demographic"),
        }
        if faith is not None:
            traits["religion"] = _trait("What is your religious preference?", faith, "demographic", s(FAITH), False)
        traits["happiness"] = _trait("Taking all things together, how happy would you say you are?", happy, "values", s(HAPPY), True)
        if penalty is not None:
            traits["death_penalty"] = _trait("Do you favor or oppose the death penalty for persons convicted of murder?", penalty, "values", s(PENALTY), False)
        records.append({"id": pid, "source": "GSS", "traits": traits})
    return records


def write_personas(path: Path, scales: bool = True) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in persona_records(scales)))
    return path


def write_traits_grid(tmp_path: Path, base_url: str, benchmark: str = "", conditions: str | None = None, model: str = "") -> Path:
    """A traits grid over the fixture personas, against an OpenAI-compatible server."""
    write_personas(tmp_path / "personas.jsonl")
    conditions = conditions or (
        '[[conditions]]\nname = "baseline"\n\n[[conditions]]\nname = "prose"\nformat = "prose"\n\n'
        '[[conditions]]\nname = "demographic"\nformat = "prose"\ntraits = "demographic"\n'
    )
    grid = tmp_path / "grid.toml"
    grid.write_text(
        f'[run]\nname = "t"\noutput_dir = "out/{{name}}"\n\n[personas]\nsource = "personas.jsonl"\n\n'
        f'[[benchmarks]]\nname = "traits"\n{benchmark}\n\n'
        f'[[models]]\nid = "m"\nprovider = "openai"\nmodel = "test"\nbase_url = "{base_url}"\nmax_tokens = 4\n{model}\n'
        f'[models.limits]\nconcurrency = 4\nmax_retries = 1\ntimeout_s = 10\n\n{conditions}'
    )
    return grid
