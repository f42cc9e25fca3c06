"""Load the declarative trait catalog (catalog.toml): surveys, traits, answer labels and phrasing.

Everything survey-specific lives in the data file; this module only validates it and resolves the
named labelsets and scales into per-survey code -> answer maps, so adding a survey or a trait never
needs code.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

from persona_builder.persona import PersonaFileError

DEFAULT_CATALOG = Path(__file__).with_name("catalog.toml")
_DEFAULT_RESOLVED = DEFAULT_CATALOG.resolve()
FORMATS = ("csv", "dta", "sav")


class CatalogError(PersonaFileError):
    """The catalog file is malformed; the message names the file and the offending key."""


@dataclass(frozen=True, slots=True)
class Answer:
    label: str  # what the persona record stores
    prose: str  # the words a sentence uses for it


@dataclass(frozen=True, slots=True)
class Source:
    """Where one survey keeps a trait and how its codes read."""

    survey: str
    columns: tuple[str, ...]  # column refs, coalesced in order; empty when `constant` is set
    constant: int | None
    codes: Mapping[int, Answer] | None  # None: a plain number (age)
    question: str
    prose: str | None
    missing: frozenset[int]


@dataclass(frozen=True, slots=True)
class TraitSpec:
    key: str
    category: str
    label: str
    question: str
    prose: str | None
    intro: bool
    required: bool
    number_range: tuple[int, int] | None
    sources: Mapping[str, Source]

    def answers(self, survey: str | None) -> Mapping[str, Answer]:
        """Answer label -> Answer for one survey, or over all surveys when the survey is unknown."""
        sources = [self.sources[survey]] if survey in self.sources else list(self.sources.values())
        return {a.label: a for s in sources if s.codes for a in s.codes.values()}

    def phrasing(self, survey: str | None) -> str | None:
        source = self.sources.get(survey) if survey else None
        return source.prose if source and source.prose else self.prose

    def question_for(self, survey: str | None) -> str:
        source = self.sources.get(survey) if survey else None
        return source.question if source else self.question


@dataclass(frozen=True, slots=True)
class Overlap:
    """Rows of one survey's file (column == equals) that are the same respondents as `survey`'s file."""

    survey: str
    column: str
    equals: int


@dataclass(frozen=True, slots=True)
class Survey:
    key: str
    name: str
    formats: tuple[str, ...]
    id_columns: tuple[str, ...]
    weight: str | None
    missing: frozenset[int]
    overlap: Overlap | None
    subregion: Source | None


@dataclass(frozen=True, slots=True)
class Catalog:
    path: Path
    surveys: Mapping[str, Survey]
    traits: Mapping[str, TraitSpec]
    regions: Mapping[str, str]  # country answer label -> world region
    age_bands: tuple[int, ...]

    def survey_key(self, source_name: str) -> str | None:
        """The survey key for a persona's `source` (e.g. 'WVS-7' -> 'wvs7'), None if not in the catalog."""
        return next((k for k, s in self.surveys.items() if s.name == source_name), None)

    def age_band(self, age: int) -> str:
        edges = self.age_bands
        if age < edges[0]:
            return f"<{edges[0]}"
        for lo, hi in zip(edges, edges[1:]):
            if age < hi:
                return f"{lo}-{hi - 1}"
        return f"{edges[-1]}+"


def _need(table: Mapping, key: str, kind: type, where: str):
    if key not in table:
        raise CatalogError(f"{where}: missing '{key}'")
    value = table[key]
    if not isinstance(value, kind):
        raise CatalogError(f"{where}.{key}: expected {kind.__name__}, got {value!r}")
    return value


def _answers(name: str, raw: Mapping, where: str) -> dict[int, Answer]:
    answers: dict[int, Answer] = {}
    for code, entry in raw.items():
        try:
            num = int(code)
        except ValueError:
            raise CatalogError(f"{where}.{name}: code '{code}' is not an integer") from None
        if isinstance(entry, str):
            label, prose = entry, entry[:1].lower() + entry[1:]
        else:
            label = _need(entry, "label", str, f"{where}.{name}.{code}")
            prose = entry.get("prose", label[:1].lower() + label[1:])
        answers[num] = Answer(label, prose)
    return answers


def _scale(name: str, raw: Mapping, where: str) -> dict[int, Answer]:
    lo, hi = (_need(raw, k, int, f"{where}.{name}") for k in ("min", "max"))
    low, high = (_need(raw, k, str, f"{where}.{name}") for k in ("low", "high"))
    text = {v: f"{v} on a scale from {lo} ({low}) to {hi} ({high})" for v in range(lo, hi + 1)}
    return {v: Answer(t, t) for v, t in text.items()}


def _labelsets(doc: Mapping, where: str) -> dict[str, dict[int, Answer]]:
    sets = {name: _answers(name, raw, f"{where}: labelsets") for name, raw in doc.get("labelsets", {}).items()}
    sets |= {name: _scale(name, raw, f"{where}: scales") for name, raw in doc.get("scales", {}).items()}
    countries = doc.get("countries", {})
    sets["countries"] = {
        int(code): Answer(_need(c, "name", str, f"{where}: countries.{code}"), c.get("prose", c["name"]))
        for code, c in countries.items()
    }
    return sets


def _source(survey: Survey, raw: str | Mapping, trait: Mapping, sets: Mapping, where: str) -> Source:
    table = {"column": raw} if isinstance(raw, str) else raw
    picks = [k for k in ("column", "coalesce", "constant") if k in table]
    if len(picks) != 1:
        raise CatalogError(f"{where}: give exactly one of column, coalesce, constant")
    columns: tuple[str, ...] = ()
    if "column" in table:
        columns = (_need(table, "column", str, where),)
    elif "coalesce" in table:
        columns = tuple(_need(table, "coalesce", list, where))
    set_name = table.get("labels", trait.get("labels"))
    if trait.get("kind") == "number":
        codes = None
    elif set_name in sets:
        codes = sets[set_name]
    else:
        raise CatalogError(f"{where}: unknown labels '{set_name}' (define [labelsets.{set_name}] or [scales.{set_name}])")
    constant = table.get("constant")
    if constant is not None and (codes is None or constant not in codes):
        raise CatalogError(f"{where}: constant {constant!r} is not a code of labels '{set_name}'")
    return Source(
        survey=survey.key,
        columns=columns,
        constant=constant,
        codes=codes,
        question=table.get("question", trait.get("question", "")),
        prose=table.get("prose"),
        missing=survey.missing | frozenset(table.get("missing", ())),
    )


def _survey(key: str, raw: Mapping, sets: Mapping, where: str) -> Survey:
    formats = tuple(_need(raw, "formats", list, where))
    if bad := [f for f in formats if f not in FORMATS]:
        raise CatalogError(f"{where}.formats: unsupported {bad}, expected some of {FORMATS}")
    overlap = raw.get("overlap")
    survey = Survey(
        key=key,
        name=_need(raw, "name", str, where),
        formats=formats,
        id_columns=tuple(_need(raw, "id", list, where)),
        weight=raw.get("weight"),
        missing=frozenset(raw.get("missing", ())),
        overlap=Overlap(overlap["survey"], overlap["column"], int(overlap["equals"])) if overlap else None,
        subregion=None,
    )
    if "subregion" in raw:
        sub = _source(survey, raw["subregion"], {}, sets, f"{where}.subregion")
        survey = replace(survey, subregion=sub)
    return survey


def parse_catalog(doc: Mapping, path: Path) -> Catalog:
    where = str(path)
    sets = _labelsets(doc, where)
    surveys = {k: _survey(k, raw, sets, f"{where}: surveys.{k}") for k, raw in _need(doc, "surveys", dict, where).items()}
    traits: dict[str, TraitSpec] = {}
    for key, raw in _need(doc, "traits", dict, where).items():
        at = f"{where}: traits.{key}"
        sources = {}
        for survey_key, src in _need(raw, "sources", dict, at).items():
            if survey_key not in surveys:
                raise CatalogError(f"{at}.sources: unknown survey '{survey_key}' (declare [surveys.{survey_key}])")
            sources[survey_key] = _source(surveys[survey_key], src, raw, sets, f"{at}.sources.{survey_key}")
        rng = raw.get("range")
        traits[key] = TraitSpec(
            key=key,
            category=_need(raw, "category", str, at),
            label=_need(raw, "label", str, at),
            question=_need(raw, "question", str, at),
            prose=raw.get("prose"),
            intro=bool(raw.get("intro", False)),
            required=bool(raw.get("required", False)),
            number_range=(int(rng[0]), int(rng[1])) if rng else None,
            sources=sources,
        )
    for key in ("country", "sex", "age"):
        if key not in traits or not traits[key].required:
            raise CatalogError(f"{where}: trait '{key}' must exist and be required (stratification and analysis use it)")
    regions = {c["name"]: c.get("region", "Other") for c in doc.get("countries", {}).values()}
    bands = tuple(doc.get("strata", {}).get("age_bands", (25, 35, 45, 55, 65)))
    return Catalog(path=path, surveys=surveys, traits=traits, regions=regions, age_bands=bands)


def load_catalog(path: Path | None = None) -> Catalog:
    # The default path is resolved once: renderers call this per persona (trait inference: per item), and
    # resolving a path costs a realpath per call.
    path = Path(path).resolve() if path else _DEFAULT_RESOLVED
    if not path.is_file():
        raise CatalogError(f"{path}: catalog file not found")
    return _load(path, path.stat().st_mtime_ns)


@cache
def _load(path: Path, mtime_ns: int) -> Catalog:  # mtime in the key: an edited catalog is re-read
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(f"{path}: not valid TOML ({exc})") from None
    return parse_catalog(doc, path)
