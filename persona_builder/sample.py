"""Seeded stratified sampling of respondents over region x age band x sex.

Each stratum gets a quota proportional to its share of the pooled data (survey-weighted if asked),
rounded by largest remainder so the quotas sum to exactly N and no share moves by more than 1/N.
Within a stratum respondents are drawn without replacement, with probability proportional to their
weight (Efraimidis-Spirakis keys), from a stdlib RNG seeded once and walked in id order, so a build
is reproducible from the files and the seed alone.
"""

from __future__ import annotations

import math
import random

import polars as pl

from persona_builder.catalog import Catalog, load_catalog
from persona_builder.harmonize import ID, WEIGHT

STRATA = ("region", "age_band", "sex")


def add_strata(frame: pl.DataFrame, catalog: Catalog) -> pl.DataFrame:
    edges = list(catalog.age_bands)
    labels = [catalog.age_band(edges[0] - 1)] + [catalog.age_band(e) for e in edges]
    age = pl.col("age").cast(pl.Int64)
    band = pl.lit(labels[-1])
    for edge, label in reversed(list(zip(edges, labels))):
        band = pl.when(age < edge).then(pl.lit(label)).otherwise(band)
    region = pl.col("country").replace_strict(catalog.regions, default="Other", return_dtype=pl.String)
    return frame.with_columns(region.alias("region"), band.alias("age_band"))


def allocate(shares: dict[tuple, float], sizes: dict[tuple, int], n: int) -> dict[tuple, int]:
    """Largest-remainder quotas summing to n, none above its stratum's size (the excess is re-spread)."""
    quotas = dict.fromkeys(shares, 0)
    open_strata = {k for k in shares if sizes[k] > 0}
    left = n
    while left > 0 and open_strata:
        total = sum(shares[k] for k in open_strata) or float(len(open_strata))
        exact = {k: left * (shares[k] / total if total else 1.0) for k in open_strata}
        add = {k: math.floor(v) for k, v in exact.items()}
        spare = left - sum(add.values())
        for k in sorted(open_strata, key=lambda k: (-(exact[k] - add[k]), k))[:spare]:
            add[k] += 1
        for k in open_strata:
            quotas[k] += add[k]
        over = {k: quotas[k] - sizes[k] for k in open_strata if quotas[k] > sizes[k]}
        for k, excess in over.items():
            quotas[k] = sizes[k]
        left = sum(over.values())
        open_strata -= {k for k in open_strata if quotas[k] >= sizes[k]}
    return quotas


def stratified_sample(frame: pl.DataFrame, n: int, seed: int, weighted: bool) -> tuple[pl.DataFrame, dict]:
    """Draw n personas; returns them (sorted by id) and the strata report."""
    frame = frame.sort(ID)
    weight = frame[WEIGHT] if weighted else pl.Series(WEIGHT, [1.0] * frame.height)
    rng = random.Random(seed)
    # log(u)/w is the Efraimidis-Spirakis key: the top-k keys are a weighted sample without replacement.
    keys = [math.log(1.0 - rng.random()) / w if w > 0 else -math.inf for w in weight.to_list()]
    frame = frame.with_columns(pl.Series("_key", keys), weight.alias("_w"))
    strata = frame.group_by(STRATA).agg(pl.len().alias("size"), pl.col("_w").sum().alias("mass")).sort(STRATA)
    total_mass = strata["mass"].sum()
    shares = {tuple(r[:3]): r[4] / total_mass for r in strata.iter_rows()}
    sizes = {tuple(r[:3]): r[3] for r in strata.iter_rows()}
    quotas = allocate(shares, sizes, min(n, frame.height))
    quota_frame = pl.DataFrame(
        [dict(zip(STRATA, k)) | {"_quota": q} for k, q in quotas.items()],
        schema={**{s: pl.String for s in STRATA}, "_quota": pl.Int64},
    )
    rank = pl.col("_key").rank("ordinal", descending=True).over(STRATA)
    sample = frame.join(quota_frame, on=list(STRATA)).filter(rank <= pl.col("_quota")).drop("_key", "_w", "_quota").sort(ID)
    drawn = sum(quotas.values())
    rows = [
        {**dict(zip(STRATA, k)), "population": sizes[k], "share_before": shares[k], "sampled": quotas[k],
         "share_after": quotas[k] / drawn if drawn else 0.0,
         "deviation": abs(quotas[k] / drawn - shares[k]) if drawn else 0.0}
        for k in sorted(shares)
    ]
    report = {
        "n_requested": n, "n_sampled": sample.height, "seed": seed, "weighted": weighted,
        "max_abs_deviation": max((r["deviation"] for r in rows), default=0.0), "strata": rows,
    }
    return sample, report


def derive_strata(frame: pl.DataFrame) -> pl.DataFrame:
    """`frame` (one row per persona, traits as string columns) with `age_band` from `age` and `region` from
    `country` added where the frame has the trait and not the stratum, by the build's own definitions (the
    catalog's age bands and world regions); an age that is not a number has no band. For personas from a file
    without strata (hand-made JSONL), so a run folder always carries them."""
    need_band = "age" in frame.columns and "age_band" not in frame.columns
    need_region = "country" in frame.columns and "region" not in frame.columns
    if not (need_band or need_region):
        return frame
    raw = frame.select(
        pl.col("age").cast(pl.Int64, strict=False) if need_band else pl.lit(0).alias("age"),
        pl.col("country") if "country" in frame.columns else pl.lit(None, pl.String).alias("country"),
    )
    strata = add_strata(raw, load_catalog()).select(
        # add_strata puts an age it cannot read in the top band; here it is missing
        pl.when(pl.col("age").is_null()).then(None).otherwise(pl.col("age_band")).alias("age_band"),
        "region",
    )
    return frame.hstack([strata[c] for c, needed in (("age_band", need_band), ("region", need_region)) if needed])
