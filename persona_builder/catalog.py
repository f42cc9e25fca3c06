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
class Part:
    """One column of a layout and the codes it is read with."""

    column: str  # a column ref ("A|B")
    codes: Mapping[int, Answer] | None  # None: a plain number (age)
    labels: str | None  # the labelset or scale name, for messages


@dataclass(frozen=True, slots=True)
class Layout:
    """One way a file may carry a trait: parts (a column and its codes), coalesced row by row in order.

    A later part fills only the rows where the earlier ones are missing, each read with its own codes (the
    GSS 1972-2024 release has the 9 census divisions in `region_7222`, missing for 2024, and 4 census
    regions in `region`).
    """

    parts: tuple[Part, ...]


@dataclass(frozen=True, slots=True)
class Source:
    """Where one survey keeps a trait and how its codes read."""

    survey: str
    layouts: tuple[Layout, ...]  # tried in order (harmonize.py picks one per file); empty when `constant` is set
    constant: int | None
    codes: Mapping[int, Answer] | None  # every code of every layout; None: a plain number (age)
    question: str
    prose: str | None
    missing: frozenset[int]
    label: str | None = None  # this survey's short label for bullets/JSON, when its question differs
    ordinal: bool | None = None  # whether the answer labels are ordered; None for numbers
    top_code: tuple[int, str] | None = None  # (code, label): the file's top code, e.g. GSS age 89 = "89 or older"
    # Every answer label in the survey's order (declaration order of the labelset), no repeats; () for
    # numbers, constants and lookup tables (a persona file would carry 90 country names per persona).
    scale: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TraitSpec:
    key: str
    category: str
    label: str
    question: str
    prose: str | None
    intro: bool
    required: bool
    on_request: bool  # rendered only when a subset names it ("all+year"), so existing prompts stay the same
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

    def label_for(self, survey: str | None) -> str:
        """The short label bullets and JSON print: the survey's own when its question differs."""
        source = self.sources.get(survey) if survey else None
        return source.label if source and source.label else self.label


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
    weights: tuple[str, ...]  # weight columns in order of preference; the first one the file has is used
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


@dataclass(frozen=True, slots=True)
class LabelSet:
    codes: Mapping[int, Answer]
    ordinal: bool  # declared in the catalog: agree, frequency, income, left-right, education are ordered
    closed: bool = True  # False for the country table: a code list, not the answer scale of a question


def _ordinal(name: str, raw: Mapping, where: str) -> bool:
    if not isinstance(raw.get("ordinal"), bool):
        raise CatalogError(f"{where}.{name}.ordinal: expected true (ordered answers) or false (nominal), got {raw.get('ordinal')!r}")
    return raw["ordinal"]


def _answers(name: str, raw: Mapping, where: str) -> LabelSet:
    answers: dict[int, Answer] = {}
    for code, entry in raw.items():
        if code == "ordinal":
            continue
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
    return LabelSet(answers, _ordinal(name, raw, where))


def _scale(name: str, raw: Mapping, where: str) -> LabelSet:
    lo, hi = (_need(raw, k, int, f"{where}.{name}") for k in ("min", "max"))
    low, high = (_need(raw, k, str, f"{where}.{name}") for k in ("low", "high"))
    text = {v: f"{v} on a scale from {lo} ({low}) to {hi} ({high})" for v in range(lo, hi + 1)}
    return LabelSet({v: Answer(t, t) for v, t in text.items()}, _ordinal(name, raw, where))


def _labelsets(doc: Mapping, where: str) -> dict[str, LabelSet]:
    sets = {name: _answers(name, raw, f"{where}: labelsets") for name, raw in doc.get("labelsets", {}).items()}
    sets |= {name: _scale(name, raw, f"{where}: scales") for name, raw in doc.get("scales", {}).items()}
    countries = doc.get("countries", {})
    sets["countries"] = LabelSet({
        int(code): Answer(_need(c, "name", str, f"{where}: countries.{code}"), c.get("prose", c["name"]))
        for code, c in countries.items()
    }, ordinal=False, closed=False)
    return sets


def _label_set(name: object, sets: Mapping[str, LabelSet], where: str) -> LabelSet:
    if name not in sets:
        raise CatalogError(f"{where}: unknown labels '{name}' (define [labelsets.{name}] or [scales.{name}])")
    return sets[name]


def _layout(table: Mapping, default_labels: object, number: bool, sets: Mapping[str, LabelSet], where: str) -> tuple[Layout, list[LabelSet]]:
    """`column = "A"` or `coalesce = ["A", "B"]` or `coalesce = [{ column = "A", labels = "x" }, ...]`."""
    picks = [k for k in ("column", "coalesce") if k in table]
    if len(picks) != 1:
        raise CatalogError(f"{where}: give exactly one of column, coalesce")
    entries = [table["column"]] if "column" in table else _need(table, "coalesce", list, where)
    parts, used = [], []
    for entry in entries:
        entry = {"column": entry} if isinstance(entry, str) else entry
        column = _need(entry, "column", str, where)
        if number:
            parts.append(Part(column, None, None))
            continue
        name = entry.get("labels", table.get("labels", default_labels))
        labels = _label_set(name, sets, where)
        parts.append(Part(column, labels.codes, name))
        used.append(labels)
    return Layout(tuple(parts)), used


def _source(survey: Survey, raw: str | Mapping, trait: Mapping, sets: Mapping[str, LabelSet], where: str) -> Source:
    table = {"column": raw} if isinstance(raw, str) else raw
    picks = [k for k in ("column", "coalesce", "constant", "layouts") if k in table]
    if len(picks) != 1:
        raise CatalogError(f"{where}: give exactly one of column, coalesce, constant, layouts")
    number = trait.get("kind") == "number"
    default_labels = table.get("labels", trait.get("labels"))
    layouts: list[Layout] = []
    used: list[LabelSet] = []
    if "layouts" in table:
        for i, entry in enumerate(_need(table, "layouts", list, where)):
            layout, sets_used = _layout(entry, default_labels, number, sets, f"{where}.layouts[{i}]")
            layouts.append(layout)
            used += sets_used
    elif "constant" not in table:
        layout, used = _layout(table, default_labels, number, sets, where)
        layouts.append(layout)
    else:
        used = [_label_set(default_labels, sets, where)]
    codes = None if number else {c: a for s in used for c, a in s.codes.items()}
    constant = table.get("constant")
    if constant is not None and (codes is None or constant not in codes):
        raise CatalogError(f"{where}: constant {constant!r} is not a code of labels '{default_labels}'")
    top = table.get("top_code")
    if top is not None and not (number and isinstance(top, dict) and isinstance(top.get("code"), int) and isinstance(top.get("label"), str)):
        raise CatalogError(f"{where}.top_code: expected {{ code = N, label = \"N or older\" }} on a number trait")
    return Source(
        survey=survey.key,
        layouts=tuple(layouts),
        constant=constant,
        codes=codes,
        question=table.get("question", trait.get("question", "")),
        prose=table.get("prose"),
        missing=survey.missing | frozenset(table.get("missing", ())),
        label=table.get("label"),
        ordinal=None if number or constant is not None else all(s.ordinal for s in used),
        top_code=(top["code"], top["label"]) if top else None,
        scale=tuple(dict.fromkeys(a.label for a in codes.values()))
        if codes and constant is None and all(s.closed for s in used) else (),
    )


def _survey(key: str, raw: Mapping, sets: Mapping[str, LabelSet], where: str) -> Survey:
    formats = tuple(_need(raw, "formats", list, where))
    if bad := [f for f in formats if f not in FORMATS]:
        raise CatalogError(f"{where}.formats: unsupported {bad}, expected some of {FORMATS}")
    overlap = raw.get("overlap")
    if "weight" in raw:
        raise CatalogError(f"{where}.weight: now `weights`, a list of weight columns in order of preference")
    weights = raw.get("weights", [])
    if not isinstance(weights, list) or not all(isinstance(w, str) for w in weights):
        raise CatalogError(f"{where}.weights: expected a list of weight columns in order of preference, got {weights!r}")
    survey = Survey(
        key=key,
        name=_need(raw, "name", str, where),
        formats=formats,
        id_columns=tuple(_need(raw, "id", list, where)),
        weights=tuple(weights),
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
            on_request=bool(raw.get("on_request", False)),
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
