"""The persona build: survey files -> harmonized, cleaned, stratified personas in DIR.

DIR/personas.parquet  one row per persona: id, source, region, subregion, age_band, weight, then every trait
                      as a column of answer labels; trait questions and categories in the file metadata
DIR/personas.jsonl    the same personas as {"id", "source", "traits"} records (persona.py)
DIR/report.json       what cleaning removed, unknown codes, strata shares before/after
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

from persona_builder.catalog import Catalog, load_catalog
from persona_builder.clean import deduplicate, drop_incomplete, drop_overlap, drop_sparse_traits
from persona_builder.harmonize import ID, SOURCE, SUBREGION, SURVEY, WEIGHT, SurveyTable, harmonize
from persona_builder.persona import TRAITS_METADATA, Persona, PersonaFileError, Trait
from persona_builder.sample import add_strata, stratified_sample

PARQUET, JSONL, REPORT = "personas.parquet", "personas.jsonl", "report.json"
DEFAULT_N, DEFAULT_MAX_MISSING = 50_000, 0.15


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
    personas = []
    for row in frame.select(ID, SOURCE, SURVEY, *traits).iter_rows(named=True):
        survey = row[SURVEY]
        personas.append(Persona(row[ID], row[SOURCE], {
            k: Trait(catalog.traits[k].question_for(survey), row[k], catalog.traits[k].category)
            for k in traits if row[k] is not None
        }))
    return personas


def _traits_metadata(catalog: Catalog) -> str:
    return orjson.dumps({
        k: {"category": t.category, "question": t.question,
            "questions": {catalog.surveys[s].name: src.question for s, src in t.sources.items()}}
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
    catalog: Catalog | None = None,
) -> dict:
    """Build personas from {survey key: file} into `out`; returns the report (also written to out/report.json)."""
    catalog = catalog or load_catalog()
    if not 0.0 <= max_missing <= 1.0:
        raise PersonaFileError(f"max-missing must be between 0 and 1, got {max_missing}")
    if n < 1:
        raise PersonaFileError(f"n must be at least 1, got {n}")
    tables = _read_all(inputs, catalog)
    read_rows = {t.survey.key: t.frame.height for t in tables}
    tables, overlap = drop_overlap(tables)
    pooled = pl.concat([t.frame for t in tables], how="diagonal_relaxed")
    pooled = pooled.with_columns(pl.lit(None, pl.String).alias(k) for k in catalog.traits if k not in pooled.columns)
    pooled, duplicates, collisions = deduplicate(pooled)
    pooled, incomplete = drop_incomplete(pooled, catalog)
    pooled, rates, dropped = drop_sparse_traits(pooled, catalog, max_missing)
    if pooled.is_empty():
        raise PersonaFileError(f"{', '.join(map(str, inputs.values()))}: no respondent with country, sex and age")
    sample, sampling = stratified_sample(add_strata(pooled, catalog), n, seed, weighted)
    report = {
        "inputs": {t.survey.key: {"file": str(t.path), "survey": t.survey.name, "rows": read_rows[t.survey.key]} for t in tables},
        "overlap_dropped": overlap,
        "duplicates_dropped": duplicates,
        "id_collisions_renamed": collisions,
        "incomplete_dropped": incomplete,
        "pool_size": pooled.height,
        "max_missing": max_missing,
        "dropped_traits": dropped,
        "missing_rates": rates,
        "absent_traits": {t.survey.key: t.absent_traits for t in tables if t.absent_traits},
        "unknown_codes": [u for t in tables for u in t.unknown_codes],
        "sampling": sampling,
    }
    _write(Path(out), sample, personas_from_frame(sample, catalog), report, catalog)
    return report
