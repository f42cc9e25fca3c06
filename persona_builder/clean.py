"""Clean the harmonized survey tables into one pool of whole respondents.

Surveys are pooled row-wise, never joined: a persona is always one respondent of one survey file. Each
step returns what it removed so the build report can show it.
"""

from __future__ import annotations

import polars as pl

from persona_builder.catalog import Catalog
from persona_builder.harmonize import ID, OVERLAP, SURVEY, SurveyTable


def drop_overlap(tables: list[SurveyTable]) -> tuple[list[SurveyTable], dict[str, int]]:
    """Drop rows that re-publish respondents of another survey file that is also being built."""
    given = {t.survey.key for t in tables}
    dropped: dict[str, int] = {}
    for t in tables:
        overlap = t.survey.overlap
        if overlap and overlap.survey in given:
            dropped[t.survey.key] = int(t.frame[OVERLAP].sum())
            t.frame = t.frame.filter(~pl.col(OVERLAP))
    return tables, dropped


def deduplicate(frame: pl.DataFrame) -> tuple[pl.DataFrame, int, int]:
    """Drop repeated respondents (same id, same answers); give colliding ids of different respondents a suffix.

    WVS-7's D_INTERVIEW is not unique: two different people can share one, and they both stay ("#2").
    Returns the frame, rows dropped and ids renamed.
    """
    content = [c for c in frame.columns if c != OVERLAP]
    unique = frame.unique(subset=content, keep="first", maintain_order=True)
    occurrence = pl.int_range(pl.len()).over(ID) + 1
    renamed = unique.with_columns(
        pl.when(occurrence > 1).then(pl.col(ID) + "#" + occurrence.cast(pl.String)).otherwise(pl.col(ID)).alias(ID)
    )
    collisions = int((renamed[ID] != unique[ID]).sum())
    return renamed, frame.height - unique.height, collisions


def drop_incomplete(frame: pl.DataFrame, catalog: Catalog) -> tuple[pl.DataFrame, dict[str, int]]:
    """Drop respondents without a required trait (country, sex, age): they cannot be stratified or grouped."""
    required = [k for k, spec in catalog.traits.items() if spec.required]
    counts = {k: int(frame[k].null_count()) for k in required}
    return frame.drop_nulls(subset=required), {k: v for k, v in counts.items() if v}


def drop_sparse_traits(
    frame: pl.DataFrame, catalog: Catalog, max_missing: float, absent: dict[str, list[str]]
) -> tuple[pl.DataFrame, dict, dict]:
    """Blank, per survey, every optional trait the survey's file carries but leaves missing for more than
    `max_missing` of its respondents.

    Rates are per survey because a trait's coverage is a property of the questionnaire (the GSS asks
    `trust` on one ballot in three). Traits the catalog gives the survey no source for, and traits whose
    column the file lacks (`absent`: {survey: [trait]}), are not rated: the build reports them apart.
    Returns the frame, {survey: {trait: rate}} and {survey: [dropped traits]}.
    """
    optional = [k for k, spec in catalog.traits.items() if not spec.required]
    rates: dict[str, dict[str, float]] = {}
    dropped: dict[str, list[str]] = {}
    for survey in frame[SURVEY].unique(maintain_order=True).to_list():
        part = frame.filter(pl.col(SURVEY) == survey)
        carried = [k for k in optional if survey in catalog.traits[k].sources and k not in absent.get(survey, ())]
        rates[survey] = {k: round(part[k].null_count() / part.height, 4) for k in carried}
        dropped[survey] = [k for k, r in rates[survey].items() if r > max_missing]
    blank = [
        pl.when(pl.col(SURVEY).is_in([s for s, keys in dropped.items() if k in keys])).then(None).otherwise(pl.col(k)).alias(k)
        for k in optional
        if k in frame.columns
    ]
    return frame.with_columns(blank), rates, dropped
