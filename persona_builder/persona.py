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

Reading shares Trait objects: respondents of one file mostly give the same few (question, answer, scale)
triples, so each is built and checked once (50,000 personas × 26 traits: a few hundred objects, not 1.3 M);
a build-layout Parquet file is read column by column.

Parquet comes in two layouts: the build's (one column per trait holding the answer label; questions,
categories, scales and ordinal flags in the file metadata under TRAITS_METADATA, as
{trait: {"category", "question", "questions": {source: text}, "scales": {source: [labels]},
"ordinal": {source: bool}}}) or a `traits` column holding the JSON text of the traits mapping.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from itertools import repeat
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


def _parse_record(raw: object, where: str, known: dict[tuple, Trait] | None = None) -> Persona:
    """One persona from its record. `known` interns traits across the records of one file: respondents share
    most (question, answer, scale) triples, so a 50,000-persona file holds a few thousand Trait objects rather
    than 1.3 M, and a trait seen before is neither checked nor built again."""
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
    known = {} if known is None else known
    traits: dict[str, Trait] = {}
    for name, t in traits_raw.items():
        try:
            scale, ordinal = t.get("scale"), t.get("ordinal")
            # type(ordinal): 1 == True would otherwise find a checked `true` and skip the check that rejects 1
            seen = (name, t["question"], t["answer"], t["category"], tuple(scale) if type(scale) is list else scale, ordinal, type(ordinal))
            trait = known.get(seen)
        except (AttributeError, KeyError, TypeError):  # not a mapping, a key missing, an unhashable value: checked below
            seen, trait = None, None
        if trait is None:
            trait = _parse_trait(name, t, where)
            if trait is None:
                continue  # missing answers are simply absent from the persona
            if seen is not None:
                known[seen] = trait
        traits[name] = trait
    strata = raw.get("strata") or {}
    if not isinstance(strata, dict) or not all(k in STRATA_COLUMNS and (v is None or isinstance(v, str)) for k, v in strata.items()):
        raise PersonaFileError(f"{where}: 'strata' must be an object of {', '.join(STRATA_COLUMNS)} -> label")
    return Persona(id=str(raw["id"]), source=str(raw["source"]), traits=traits, strata={k: v for k, v in strata.items() if v is not None})


def _parse_trait(name: str, t: object, where: str) -> Trait | None:
    """One trait record, checked; None for a missing answer."""
    if not isinstance(t, dict) or not {"question", "answer", "category"} <= t.keys():
        raise PersonaFileError(f"{where}: trait '{name}' must have question, answer and category")
    if t["answer"] is None:
        return None
    scale = t.get("scale") or ()
    if not isinstance(scale, (list, tuple)) or not all(isinstance(x, str) for x in scale):
        raise PersonaFileError(f"{where}: trait '{name}': 'scale' must be a list of answer labels")
    ordinal = t.get("ordinal")
    if ordinal is not None and not isinstance(ordinal, bool):
        raise PersonaFileError(f"{where}: trait '{name}': 'ordinal' must be true or false")
    return Trait(str(t["question"]), str(t["answer"]), str(t["category"]), tuple(scale), ordinal)


def iter_personas(path: Path) -> Iterator[Persona]:
    """Yield personas from a JSONL or Parquet file, raising PersonaFileError with file and line on bad input."""
    path = Path(path)
    if not path.is_file():
        raise PersonaFileError(f"{path}: persona file not found")
    if path.suffix == ".parquet":
        yield from _iter_parquet(path)
        return
    known: dict[tuple, Trait] = {}
    with path.open("rb") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                raw = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise PersonaFileError(f"{path}:{lineno}: not valid JSON ({exc})") from None
            yield _parse_record(raw, f"{path}:{lineno}", known)


def _iter_parquet(path: Path) -> Iterator[Persona]:
    import polars as pl

    try:
        frame = pl.read_parquet(path)
        meta = pl.read_parquet_metadata(path)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise PersonaFileError(f"{path}: not a readable Parquet file ({exc})") from None
    known: dict[tuple, Trait] = {}
    if "traits" in frame.columns or TRAITS_METADATA not in meta:
        for i, row in enumerate(frame.iter_rows(named=True)):
            yield _parse_record(row, f"{path}: row {i + 1}", known)
        return
    # Columnar: a trait is built and checked once per (key, source, answer), then shared by every row that has it.
    schema = orjson.loads(meta[TRAITS_METADATA])
    keys = [k for k in schema if k in frame.columns]
    sources = frame["source"].to_list()
    traits_by_key = [_column_traits(path, k, schema[k], sources, frame[k].to_list()) for k in keys]
    gaps = frame.select(pl.any_horizontal(pl.col(keys).is_null()) if keys else pl.lit(False))[:, 0].to_list()  # rows missing an answer
    strata_cols = [k for k in STRATA_COLUMNS if k in frame.columns]
    for k in strata_cols:  # labels or nulls, as _parse_record checks them per record
        if frame.schema[k] not in (pl.String, pl.Null) and frame[k].null_count() < frame.height:
            row = frame[k].is_not_null().arg_true()[0] + 1
            raise PersonaFileError(f"{path}: row {row}: 'strata' must be an object of {', '.join(STRATA_COLUMNS)} -> label")
    strata_rows = frame.select(strata_cols).iter_rows() if strata_cols else repeat(())
    for pid, source, gap, strata, *row in zip(frame["id"].to_list(), sources, gaps, strata_rows, *traits_by_key):
        traits = {k: t for k, t in zip(keys, row) if t is not None} if gap else dict(zip(keys, row))
        yield Persona(id=str(pid), source=str(source), traits=traits, strata={k: v for k, v in zip(strata_cols, strata) if v is not None})


def _column_traits(path: Path, key: str, spec: dict, sources: list, answers: list) -> list[Trait | None]:
    """One trait column as Trait objects (None for a missing answer), each distinct (source, answer) checked once."""
    made: dict[tuple[object, object], Trait | None] = dict.fromkeys(zip(sources, answers))  # distinct, in row order
    for source, answer in made:
        record = {"question": spec["questions"].get(source, spec["question"]), "answer": answer, "category": spec["category"],
                  "scale": spec.get("scales", {}).get(source, ()), "ordinal": _per_source(spec.get("ordinal"), source)}
        try:
            made[source, answer] = _parse_trait(key, record, "")
        except PersonaFileError as exc:  # name the first row holding it
            row = next(i for i, pair in enumerate(zip(sources, answers), 1) if pair == (source, answer))
            raise PersonaFileError(f"{path}: row {row}{exc}") from None
    return list(map(made.__getitem__, zip(sources, answers)))


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
