"""The persona build: survey files -> harmonized, cleaned, stratified personas in DIR.

DIR/personas.parquet  one row per persona: id, source, region, subregion, age_band, weight, then every trait
                      as a column of answer labels; trait questions and categories in the file metadata
DIR/personas.jsonl    the same personas as {"id", "source", "traits"} records (persona.py)
DIR/report.json       what cleaning removed (and why), the year range and weight column used, unknown codes,
                      codings that fit more than one layout, strata shares before/after
All three are written to a temporary folder inside DIR and moved into place only once all are complete.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson
import polars as pl

from persona_builder.catalog import Catalog, TraitSpec, load_catalog
from persona_builder.clean import deduplicate, drop_incomplete, drop_overlap, drop_sparse_traits
from persona_builder.harmonize import ID, SOURCE, SUBREGION, SURVEY, WEIGHT, SurveyTable, harmonize
from persona_builder.persona import STRATA_COLUMNS, TRAITS_METADATA, Persona, PersonaFileError, Trait
from persona_builder.sample import add_strata, stratified_sample

PARQUET, JSONL, REPORT = "personas.parquet", "personas.jsonl", "report.json"
DEFAULT_N, DEFAULT_MAX_MISSING = 50_000, 0.15
YEAR = "year"  # the interview-year trait (catalog.toml) that --years filters on


def parse_years(text: str) -> tuple[int, int]:
    """'2016-2022' -> (2016, 2022); '2018' -> (2018, 2018). Raises PersonaFileError on anything else."""
    lo, sep, hi = text.strip().partition("-")
    try:
        first, last = int(lo), int(hi if sep else lo)
    except ValueError:
        raise PersonaFileError(f"--years: expected a year (2018) or a range (2016-2022), got {text!r}") from None
    if first > last:
        raise PersonaFileError(f"--years: the range {text!r} ends before it starts")
    return first, last


def _read_all(inputs: Mapping[str, Path], catalog: Catalog) -> list[SurveyTable]:
    unknown = sorted(set(inputs) - set(catalog.surveys))
    if unknown:
        raise PersonaFileError(f"{catalog.path}: no survey '{unknown[0]}' in the catalog (known: {', '.join(catalog.surveys)})")
    if not inputs:
        raise PersonaFileError("no survey file given: pass at least one of the survey inputs")
    # Files are independent; Polars and pyreadstat release the GIL while parsing.
    with ThreadPoolExecutor(max_workers=len(inputs)) as pool:
        jobs = [pool.submit(harmonize, Path(path), catalog.surveys[key], catalog) for key, path in inputs.items()]
        return [job.result() for job in jobs]


def personas_from_frame(frame: pl.DataFrame, catalog: Catalog) -> list[Persona]:
    traits = [k for k in catalog.traits if k in frame.columns]
    # Question, category, scale and ordinal per (survey, trait), resolved once, not per persona.
    fixed = {(s, k): _trait_fields(catalog.traits[k], s) for s in catalog.surveys for k in traits}
    strata = [k for k in STRATA_COLUMNS if k in frame.columns]
    personas = []
    for row in frame.select(ID, SOURCE, SURVEY, *traits, *strata).iter_rows(named=True):
        survey = row[SURVEY]
        personas.append(Persona(row[ID], row[SOURCE], {
            k: Trait(**fixed[survey, k], answer=row[k]) for k in traits if row[k] is not None
        }, {k: row[k] for k in strata if row[k] is not None}))
    return personas


def _trait_fields(spec: TraitSpec, survey: str) -> dict:
    """A trait's fields but the answer: its question and (for categorical traits) the survey's answer scale."""
    source = spec.sources.get(survey)
    return {"question": spec.question_for(survey), "category": spec.category,
            "scale": source.scale if source else (), "ordinal": source.ordinal if source else None}


def _check_weights(tables: list[SurveyTable], weighted: bool) -> dict:
    """{survey: {column, rows_missing_weight, dropped}}; a weighted build drops rows without a weight and
    fails when a file has none of its survey's weight columns (weighting them all 1.0 would be silent)."""
    report = {}
    for t in tables:
        if weighted and t.weight_column is None:
            known = ", ".join(t.survey.weights) or "none declared in the catalog"
            raise PersonaFileError(f"{t.path}: --weights: no weight column in this file (looked for {known})")
        missing = int(t.frame[WEIGHT].null_count()) if t.weight_column else t.frame.height
        if weighted:
            t.frame = t.frame.filter(pl.col(WEIGHT).is_not_null())
        report[t.survey.key] = {"column": t.weight_column, "rows_missing_weight": missing, "dropped": missing if weighted else 0}
    return report


def _filter_years(tables: list[SurveyTable], years: tuple[int, int] | None) -> dict | None:
    """Keep the respondents interviewed in [first, last]; {first, last, kept, dropped: {survey: rows}}."""
    if years is None:
        return None
    kept, dropped = {}, {}
    for t in tables:
        if YEAR in t.absent_traits or YEAR not in t.frame.columns:
            raise PersonaFileError(f"{t.path}: --years: this file has no interview-year column for {t.survey.name}")
        year = pl.col(YEAR).cast(pl.Int64, strict=False)
        before = t.frame.height
        t.frame = t.frame.filter(year.is_between(*years))
        kept[t.survey.key], dropped[t.survey.key] = t.frame.height, before - t.frame.height
    return {"first": years[0], "last": years[1], "kept": kept, "dropped": dropped}


def _traits_metadata(catalog: Catalog) -> str:
    return orjson.dumps({
        k: {"category": t.category, "question": t.question,
            "questions": {catalog.surveys[s].name: src.question for s, src in t.sources.items()},
            # Per source, as questions are: one trait can be ordered in one survey (GSS rank of five) and
            # not in another (WVS chosen / not chosen). Number traits have neither.
            "scales": {catalog.surveys[s].name: list(src.scale) for s, src in t.sources.items() if src.scale},
            "ordinal": {catalog.surveys[s].name: src.ordinal for s, src in t.sources.items() if src.ordinal is not None}}
        for k, t in catalog.traits.items()
    }).decode()


def _write(out: Path, frame: pl.DataFrame, personas: list[Persona], report: dict, catalog: Catalog) -> None:
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".build-", dir=out))
    try:
        columns = [ID, SOURCE, "region", SUBREGION, "age_band", WEIGHT, *[k for k in catalog.traits if k in frame.columns]]
        frame.select(columns).write_parquet(staging / PARQUET, metadata={TRAITS_METADATA: _traits_metadata(catalog)})
        with (staging / JSONL).open("wb") as fh:
            fh.writelines(orjson.dumps(p.to_record()) + b"\n" for p in personas)
        (staging / REPORT).write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
        for name in (PARQUET, JSONL, REPORT):
            os.replace(staging / name, out / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def build(
    inputs: Mapping[str, Path],
    out: Path,
    *,
    n: int = DEFAULT_N,
    seed: int = 0,
    max_missing: float = DEFAULT_MAX_MISSING,
    weighted: bool = False,
    years: tuple[int, int] | None = None,
    catalog: Catalog | None = None,
) -> dict:
    """Build personas from {survey key: file} into `out`; returns the report (also written to out/report.json).

    `years` (first, last) keeps respondents interviewed in those years, inclusive. `weighted` needs a weight
    column the catalog knows in every file; rows whose weight is missing are dropped and counted.
    Raises PersonaFileError (nothing written) on any bad input.
    """
    catalog = catalog or load_catalog()
    if not 0.0 <= max_missing <= 1.0:
        raise PersonaFileError(f"max-missing must be between 0 and 1, got {max_missing}")
    if n < 1:
        raise PersonaFileError(f"n must be at least 1, got {n}")
    tables = _read_all(inputs, catalog)
    read_rows = {t.survey.key: t.frame.height for t in tables}
    tables, overlap = drop_overlap(tables)
    weights = _check_weights(tables, weighted)
    year_report = _filter_years(tables, years)
    pooled = pl.concat([t.frame for t in tables], how="diagonal_relaxed")
    pooled = pooled.with_columns(pl.lit(None, pl.String).alias(k) for k in catalog.traits if k not in pooled.columns)
    pooled, duplicates, collisions = deduplicate(pooled)
    pooled, incomplete = drop_incomplete(pooled, catalog)
    absent = {t.survey.key: t.absent_traits for t in tables}
    pooled, rates, dropped = drop_sparse_traits(pooled, catalog, max_missing, absent)
    if pooled.is_empty():
        within = f" interviewed in {years[0]}-{years[1]}" if years else ""
        raise PersonaFileError(f"{', '.join(map(str, inputs.values()))}: no respondent{within} with country, sex and age")
    sample, sampling = stratified_sample(add_strata(pooled, catalog), n, seed, weighted)
    report = {
        "inputs": {t.survey.key: {"file": str(t.path), "survey": t.survey.name, "rows": read_rows[t.survey.key]} for t in tables},
        "overlap_dropped": overlap,
        "duplicates_dropped": duplicates,
        "id_collisions_renamed": collisions,
        "incomplete_dropped": incomplete,
        "pool_size": pooled.height,
        "years": year_report,
        "weights": weights,
        "max_missing": max_missing,
        # Three reasons a trait is missing from a survey's personas, kept apart:
        "dropped_traits": dropped,  # carried, but missing for more than max_missing of the survey's rows
        "missing_rates": rates,
        "absent_traits": {t.survey.key: t.absent_traits for t in tables if t.absent_traits},  # column not in file
        "no_source_traits": {t.survey.key: [k for k, spec in catalog.traits.items() if t.survey.key not in spec.sources]
                             for t in tables},  # the catalog has no question of this survey for it
        "trait_rows": {t.survey.key: {k: t.frame.height - t.frame[k].null_count() for k in t.frame.columns if k in catalog.traits}
                       for t in tables},
        "columns_used": {t.survey.key: t.column_rows for t in tables if t.column_rows},
        "warnings": [w for t in tables for w in t.warnings],
        "unknown_codes": [u for t in tables for u in t.unknown_codes],
        "sampling": sampling,
    }
    _write(Path(out), sample, personas_from_frame(sample, catalog), report, catalog)
    return report
