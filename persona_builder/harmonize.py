"""Turn one survey file into harmonized rows: one row per respondent, every trait as its answer label.

Missing codes become nulls; codes the catalog does not know also become nulls and are collected into the
report (never guessed, never crashed on). A cell that is not a number at all, a missing required column
or a file of the wrong type raise PersonaFileError naming file, column and value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from persona_builder.catalog import Catalog, Source, Survey
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
    absent_traits: list[str] = field(default_factory=list)


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

    def require(self, ref: str, purpose: str) -> str:
        found = resolve(ref, self.columns)
        if found is None:
            hint = " (the header looks semicolon-delimited: an older survey wave?)" if ";" in "".join(self.columns[:1]) else ""
            raise PersonaFileError(
                f"{self.path}: required column '{ref}' ({purpose}) not found; is this a {self.survey.name} file?{hint}"
            )
        return found

    def source_columns(self, source: Source) -> list[str]:
        return [c for ref in source.columns if (c := resolve(ref, self.columns)) is not None]

    def labels(self, raw: pl.DataFrame, source: Source, columns: list[str], trait: str,
               number_range: tuple[int, int] | None) -> pl.Series:
        """The answer labels for one trait (or the subregion), recording codes the catalog does not know."""
        if source.constant is not None:
            return pl.Series(trait, [source.codes[source.constant].label] * raw.height, dtype=pl.String)
        parts = []
        for column in columns:
            values = _without(raw[column], source.missing)
            if source.codes is None:
                lo, hi = number_range or (float("-inf"), float("inf"))
                col = pl.col(column)
                whole = (col == col.floor()) & (col >= lo) & (col <= hi)
                labels = _apply(values, pl.when(whole).then(col.cast(pl.Int64, strict=False).cast(pl.String)))
            else:
                codes = [float(c) for c in source.codes]
                labels = values.replace_strict(codes, [a.label for a in source.codes.values()], default=None,
                                               return_dtype=pl.String)
            stray = values.filter(values.is_not_null() & labels.is_null())
            for value, count in sorted(stray.value_counts().iter_rows()):
                self.unknown.append(
                    {"survey": self.survey.key, "file": str(self.path), "column": column, "trait": trait,
                     "value": _code_value(value), "count": count}
                )
            parts.append(labels)
        if not parts:
            return pl.Series(trait, [None] * raw.height, dtype=pl.String)
        return pl.select(pl.coalesce(parts).alias(trait))[trait]


def harmonize(path: Path, survey: Survey, catalog: Catalog) -> SurveyTable:
    h = _Harmonizer(Path(path), survey)
    id_cols = [h.require(ref, "respondent id") for ref in survey.id_columns]
    needed: dict[str, list[str]] = {}
    absent = []
    for key, spec in catalog.traits.items():
        source = spec.sources.get(survey.key)
        if source is None:
            continue
        found = h.source_columns(source)
        if source.constant is None and not found:
            if spec.required:
                h.require(source.columns[0], f"trait '{key}'")
            absent.append(key)
        needed[key] = found
    weight = resolve(survey.weight, h.columns) if survey.weight else None
    overlap = resolve(survey.overlap.column, h.columns) if survey.overlap else None
    sub_cols = h.source_columns(survey.subregion) if survey.subregion else []
    numeric = {c for cols in needed.values() for c in cols} | {c for c in (weight, overlap) if c} | set(sub_cols)
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
    if weight:
        out.append(_without(raw[weight], survey.missing).fill_null(1.0).alias(WEIGHT))
    else:
        out.append(pl.Series(WEIGHT, [1.0] * raw_all.height))
    out.append((raw[overlap] == survey.overlap.equals).fill_null(False).alias(OVERLAP) if overlap
               else pl.Series(OVERLAP, [False] * raw_all.height))
    out.append(h.labels(raw, survey.subregion, sub_cols, SUBREGION, None) if survey.subregion
               else pl.Series(SUBREGION, [None] * raw_all.height, dtype=pl.String))
    for key, cols in needed.items():
        spec = catalog.traits[key]
        out.append(h.labels(raw, spec.sources[survey.key], cols, key, spec.number_range))
    return SurveyTable(survey, h.path, pl.DataFrame(out), h.unknown, absent)
