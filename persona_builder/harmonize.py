"""Turn one survey file into harmonized rows: one row per respondent, every trait as its answer label.

A trait's catalog source may list layouts (the columns different releases use); the first whose first
column the file has and whose codes fit the file's values is read, its columns coalesced row by row, each
with its own codes. When another layout fits the same columns with other codes the file cannot tell them
apart: the first is used and a warning says so (a GSS `region` with codes 1-4 only).

Missing codes become nulls; codes the catalog does not know also become nulls and are collected into the
report (never guessed, never crashed on). A cell that is not a number at all, a missing required column
or a file of the wrong type raise PersonaFileError naming file, column and value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from persona_builder.catalog import Catalog, Part, Source, Survey
from persona_builder.persona import PersonaFileError
from persona_builder.readers import file_format, header, read_columns, resolve

# Columns every harmonized table carries besides the traits.
ID, SOURCE, SURVEY, WEIGHT, OVERLAP, SUBREGION = "id", "source", "survey", "weight", "overlap", "subregion"


@dataclass
class SurveyTable:
    survey: Survey
    path: Path
    frame: pl.DataFrame
    unknown_codes: list[dict] = field(default_factory=list)
    absent_traits: list[str] = field(default_factory=list)  # the catalog has a source, the file lacks its column
    column_rows: dict[str, dict[str, int]] = field(default_factory=dict)  # trait -> {column: rows it gave}
    warnings: list[str] = field(default_factory=list)  # codings that fit more than one layout
    weight_column: str | None = None  # the first of the survey's weight columns the file has


def _numeric(frame: pl.DataFrame, column: str, path: Path) -> pl.Series:
    series = frame[column]
    if series.dtype != pl.String:
        return series.cast(pl.Float64)
    text = pl.col(column).str.strip_chars()
    values = _apply(series, pl.when(text == "").then(None).otherwise(text))
    numbers = values.cast(pl.Float64, strict=False)
    bad = values.is_not_null() & numbers.is_null()
    if bad.any():
        row = int(bad.arg_true()[0])
        raise PersonaFileError(
            f"{path}: column '{column}', data row {row + 1}: value {values[row]!r} is not a numeric code "
            "(export the file with numeric codes, not value labels)"
        )
    return numbers


def _id_text(series: pl.Series) -> pl.Series:
    if series.dtype == pl.String:
        # Re-saved CSVs write integer ids as "804070364.0".
        return series.str.strip_chars().str.replace(r"^(-?\d+)\.0+$", "${1}")
    col = pl.col(series.name)
    whole = col.cast(pl.Int64, strict=False).cast(pl.String)
    return _apply(series, pl.when(col == col.floor()).then(whole).otherwise(col.cast(pl.String)))


def _apply(series: pl.Series, expr: pl.Expr) -> pl.Series:
    return series.to_frame().select(expr.alias(series.name)).to_series()


def _without(values: pl.Series, codes: frozenset[int]) -> pl.Series:
    col = pl.col(values.name)
    return _apply(values, pl.when(col.is_in([float(c) for c in codes])).then(None).otherwise(col))


def _code_value(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


class _Harmonizer:
    def __init__(self, path: Path, survey: Survey):
        self.path, self.survey = path, survey
        fmt = file_format(path)
        if fmt not in survey.formats:
            raise PersonaFileError(
                f"{path}: a .{fmt} file, but {survey.name} is read from {', '.join(survey.formats)} files"
            )
        self.columns = header(path)
        self.unknown: list[dict] = []
        self.column_rows: dict[str, dict[str, int]] = {}
        self.warnings: list[str] = []

    def require(self, ref: str, purpose: str) -> str:
        found = resolve(ref, self.columns)
        if found is None:
            hint = " (the header looks semicolon-delimited: an older survey wave?)" if ";" in "".join(self.columns[:1]) else ""
            raise PersonaFileError(
                f"{self.path}: required column '{ref}' ({purpose}) not found; is this a {self.survey.name} file?{hint}"
            )
        return found

    def candidates(self, source: Source) -> list[list[tuple[str, Part]]]:
        """Each layout whose first column the file has, as its (file column, part) pairs present in the file."""
        found = []
        for layout in source.layouts:
            present = [(c, part) for part in layout.parts if (c := resolve(part.column, self.columns)) is not None]
            if present and present[0][1] is layout.parts[0]:
                found.append(present)
        return found

    def choose(self, raw: pl.DataFrame, source: Source, trait: str) -> list[tuple[str, Part]]:
        """The first layout whose codes fit the file's values; warns when another fits the same columns."""
        candidates = self.candidates(source)
        fitting = [c for c in candidates if all(self._fits(raw[col], part, source) for col, part in c)]
        if not candidates:
            return []
        chosen = fitting[0] if fitting else candidates[0]
        columns = [col for col, _ in chosen]
        for other in fitting[1:]:
            if [col for col, _ in other] == columns and [p.labels for _, p in other] != [p.labels for _, p in chosen]:
                values = sorted({_code_value(v) for col in columns for v in _without(raw[col], source.missing).drop_nulls()})
                self.warnings.append(
                    f"{self.path}: trait '{trait}': column {', '.join(repr(c) for c in columns)} holds codes {values}, "
                    f"which fit both labels '{'+'.join(p.labels for _, p in chosen)}' and "
                    f"'{'+'.join(p.labels for _, p in other)}'; read as '{'+'.join(p.labels for _, p in chosen)}' "
                    "(check the file's release and codebook)"
                )
        return chosen

    @staticmethod
    def _fits(values: pl.Series, part: Part, source: Source) -> bool:
        if part.codes is None:
            return True
        present = _without(values, source.missing).drop_nulls()
        return bool(present.is_in([float(c) for c in part.codes]).all())

    def labels(self, raw: pl.DataFrame, source: Source, parts: list[tuple[str, Part]], trait: str,
               number_range: tuple[int, int] | None) -> pl.Series:
        """The answer labels for one trait (or the subregion), recording codes the catalog does not know.

        Columns are coalesced row by row, each read with its own codes; how many rows each column gave is
        kept in `column_rows` when there is more than one.
        """
        if source.constant is not None:
            return pl.Series(trait, [source.codes[source.constant].label] * raw.height, dtype=pl.String)
        series = []
        for column, part in parts:
            values = _without(raw[column], source.missing)
            if part.codes is None:
                lo, hi = number_range or (float("-inf"), float("inf"))
                col = pl.col(column)
                whole = (col == col.floor()) & (col >= lo) & (col <= hi)
                labels = _apply(values, pl.when(whole).then(col.cast(pl.Int64, strict=False).cast(pl.String)))
            else:
                codes = [float(c) for c in part.codes]
                labels = values.replace_strict(codes, [a.label for a in part.codes.values()], default=None,
                                               return_dtype=pl.String)
            stray = values.filter(values.is_not_null() & labels.is_null())
            for value, count in sorted(stray.value_counts().iter_rows()):
                self.unknown.append(
                    {"survey": self.survey.key, "file": str(self.path), "column": column, "trait": trait,
                     "value": _code_value(value), "count": count}
                )
            series.append(labels)
        if not series:
            return pl.Series(trait, [None] * raw.height, dtype=pl.String)
        if len(series) > 1:
            taken = pl.Series([False] * raw.height)
            rows = {}
            for (column, _), labels in zip(parts, series):
                given = labels.is_not_null() & ~taken
                rows[column] = int(given.sum())
                taken = taken | given
            self.column_rows[trait] = rows
        return pl.select(pl.coalesce(series).alias(trait))[trait]


def harmonize(path: Path, survey: Survey, catalog: Catalog) -> SurveyTable:
    h = _Harmonizer(Path(path), survey)
    id_cols = [h.require(ref, "respondent id") for ref in survey.id_columns]
    sources: dict[str, Source] = {}
    absent = []
    for key, spec in catalog.traits.items():
        source = spec.sources.get(survey.key)
        if source is None:
            continue
        if source.constant is None and not h.candidates(source):
            if spec.required:
                h.require(source.layouts[0].parts[0].column, f"trait '{key}'")
            absent.append(key)
            continue
        sources[key] = source
    if survey.subregion:
        sources[SUBREGION] = survey.subregion
    weight = next((c for ref in survey.weights if (c := resolve(ref, h.columns)) is not None), None)
    overlap = resolve(survey.overlap.column, h.columns) if survey.overlap else None
    numeric = {col for s in sources.values() for c in h.candidates(s) for col, _ in c} | {c for c in (weight, overlap) if c}
    raw_all = read_columns(h.path, list(dict.fromkeys([*id_cols, *sorted(numeric)])))
    raw = pl.DataFrame([_numeric(raw_all, c, h.path) for c in sorted(numeric)]) if numeric else pl.DataFrame()

    ids = [_id_text(raw_all[c]) for c in id_cols]
    for c, series in zip(id_cols, ids):
        if series.null_count():
            row = int(series.is_null().arg_true()[0])
            raise PersonaFileError(f"{h.path}: column '{c}', data row {row + 1}: empty respondent id")
    id_series = pl.select(pl.concat_str(ids, separator="-").alias(ID))[ID]
    out = [
        (f"{survey.key}-" + id_series).alias(ID),
        pl.Series(SOURCE, [survey.name] * raw_all.height, dtype=pl.String),
        pl.Series(SURVEY, [survey.key] * raw_all.height, dtype=pl.String),
    ]
    # A missing weight stays missing: a weighted build drops and counts those rows (build.py).
    out.append(_without(raw[weight], survey.missing).alias(WEIGHT) if weight
               else pl.Series(WEIGHT, [None] * raw_all.height, dtype=pl.Float64))
    out.append((raw[overlap] == survey.overlap.equals).fill_null(False).alias(OVERLAP) if overlap
               else pl.Series(OVERLAP, [False] * raw_all.height))
    if SUBREGION not in sources:
        out.append(pl.Series(SUBREGION, [None] * raw_all.height, dtype=pl.String))
    for key, source in sources.items():
        spec = catalog.traits.get(key)
        out.append(h.labels(raw, source, h.choose(raw, source, key), key, spec.number_range if spec else None))
    return SurveyTable(survey, h.path, pl.DataFrame(out), h.unknown, absent, h.column_rows, h.warnings, weight)
