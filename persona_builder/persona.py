"""The persona record: one survey respondent, its traits as (question, answer label, category).

On disk a persona file is JSONL (one record a line) or Parquet. Record shape:

    {"id": "wvs7-156070594", "source": "WVS-7",
     "strata": {"region": "Southern Asia", "age_band": "35-44"},
     "traits": {"country": {"question": "...", "answer": "India", "category": "demographic"}, ...}}

`strata` (optional) holds the build's sampling and reporting strata (STRATA_COLUMNS: world region, the survey's own
subregion such as the GSS census region, age band): not traits, never shown to a model, but written into a run
folder so the analysis can group by them (`report --by subregion`). Files written before it lack it.

A trait may also carry `scale` (every answer label of its question, in the survey's order) and `ordinal`
(whether that order is meaningful, e.g. an agree-disagree scale, or nominal, e.g. a religion): trait inference
(predicting a held-out answer) needs both. Files written before these existed simply lack them.

Parquet comes in two layouts: the build's (one column per trait holding the answer label; questions,
categories, scales and ordinal flags in the file metadata under TRAITS_METADATA, as
{trait: {"category", "question", "questions": {source: text}, "scales": {source: [labels]},
"ordinal": {source: bool}}}) or a `traits` column holding the JSON text of the traits mapping.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import orjson


TRAITS_METADATA = "mtpa.traits"
STRATA_COLUMNS = ("region", "subregion", "age_band")  # the build's strata columns, in its Parquet's order


class PersonaFileError(ValueError):
    """A persona file that cannot be read; the message names file, line and what was expected."""


@dataclass(frozen=True, slots=True)
class Trait:
    question: str
    answer: str
    category: str
    scale: tuple[str, ...] = ()  # every answer label in the survey's order; () when the file does not say
    ordinal: bool | None = None  # whether `scale` is ordered; None when the file does not say


@dataclass(frozen=True, slots=True)
class Persona:
    id: str
    source: str
    traits: Mapping[str, Trait]
    strata: Mapping[str, str] = field(default_factory=dict)  # of STRATA_COLUMNS, those known; {} for hand-made files

    def answer(self, key: str) -> str | None:
        trait = self.traits.get(key)
        return trait.answer if trait else None

    def to_record(self) -> dict:
        return {
            "id": self.id,
            "source": self.source,
            **({"strata": dict(self.strata)} if self.strata else {}),
            "traits": {k: _trait_record(t) for k, t in self.traits.items()},
        }


def _trait_record(t: Trait) -> dict:
    record: dict = {"question": t.question, "answer": t.answer, "category": t.category}
    if t.scale:
        record["scale"] = list(t.scale)
    if t.ordinal is not None:
        record["ordinal"] = t.ordinal
    return record


def _parse_record(raw: object, where: str) -> Persona:
    if not isinstance(raw, dict):
        raise PersonaFileError(f"{where}: expected a JSON object with id, source, traits")
    for key in ("id", "source", "traits"):
        if key not in raw:
            raise PersonaFileError(f"{where}: missing key '{key}' (a persona needs id, source, traits)")
    traits_raw = raw["traits"]
    if isinstance(traits_raw, str):
        try:
            traits_raw = orjson.loads(traits_raw)
        except orjson.JSONDecodeError as exc:
            raise PersonaFileError(f"{where}: 'traits' is a string but not valid JSON ({exc})") from None
    if not isinstance(traits_raw, dict):
        raise PersonaFileError(f"{where}: 'traits' must be an object of trait -> {{question, answer, category}}")
    traits: dict[str, Trait] = {}
    for name, t in traits_raw.items():
        if not isinstance(t, dict) or not {"question", "answer", "category"} <= t.keys():
            raise PersonaFileError(f"{where}: trait '{name}' must have question, answer and category")
        if t["answer"] is None:
            continue  # missing answers are simply absent from the persona
        scale = t.get("scale") or ()
        if not isinstance(scale, (list, tuple)) or not all(isinstance(x, str) for x in scale):
            raise PersonaFileError(f"{where}: trait '{name}': 'scale' must be a list of answer labels")
        ordinal = t.get("ordinal")
        if ordinal is not None and not isinstance(ordinal, bool):
            raise PersonaFileError(f"{where}: trait '{name}': 'ordinal' must be true or false")
        traits[name] = Trait(str(t["question"]), str(t["answer"]), str(t["category"]), tuple(scale), ordinal)
    strata = raw.get("strata") or {}
    if not isinstance(strata, dict) or not all(k in STRATA_COLUMNS and (v is None or isinstance(v, str)) for k, v in strata.items()):
        raise PersonaFileError(f"{where}: 'strata' must be an object of {', '.join(STRATA_COLUMNS)} -> label")
    return Persona(id=str(raw["id"]), source=str(raw["source"]), traits=traits, strata={k: v for k, v in strata.items() if v is not None})


def iter_personas(path: Path) -> Iterator[Persona]:
    """Yield personas from a JSONL or Parquet file, raising PersonaFileError with file and line on bad input."""
    path = Path(path)
    if not path.is_file():
        raise PersonaFileError(f"{path}: persona file not found")
    if path.suffix == ".parquet":
        yield from _iter_parquet(path)
        return
    with path.open("rb") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                raw = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise PersonaFileError(f"{path}:{lineno}: not valid JSON ({exc})") from None
            yield _parse_record(raw, f"{path}:{lineno}")


def _iter_parquet(path: Path) -> Iterator[Persona]:
    import polars as pl

    try:
        frame = pl.read_parquet(path)
        meta = pl.read_parquet_metadata(path)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise PersonaFileError(f"{path}: not a readable Parquet file ({exc})") from None
    if "traits" in frame.columns or TRAITS_METADATA not in meta:
        for i, row in enumerate(frame.iter_rows(named=True)):
            yield _parse_record(row, f"{path}: row {i + 1}")
        return
    schema = orjson.loads(meta[TRAITS_METADATA])
    keys = [k for k in schema if k in frame.columns]
    strata = [k for k in STRATA_COLUMNS if k in frame.columns]
    for i, row in enumerate(frame.select("id", "source", *keys, *strata).iter_rows(named=True)):
        traits = {
            k: {"question": schema[k]["questions"].get(row["source"], schema[k]["question"]),
                "answer": row[k], "category": schema[k]["category"],
                "scale": schema[k].get("scales", {}).get(row["source"], ()),
                "ordinal": _per_source(schema[k].get("ordinal"), row["source"])}
            for k in keys
        }
        record = {"id": row["id"], "source": row["source"], "strata": {k: row[k] for k in strata}, "traits": traits}
        yield _parse_record(record, f"{path}: row {i + 1}")


def _per_source(value: object, source: str) -> object:
    """The build writes `ordinal` per source ({"GSS": true}); a plain true/false applies to every source."""
    return value.get(source) if isinstance(value, dict) else value


def load_personas(path: Path) -> list[Persona]:
    personas = list(iter_personas(path))
    seen: set[str] = set()
    for p in personas:
        if p.id in seen:
            raise PersonaFileError(f"{path}: duplicate persona id '{p.id}'")
        seen.add(p.id)
    if not personas:
        raise PersonaFileError(f"{path}: no personas in file")
    return personas
