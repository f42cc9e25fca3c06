"""Trait-inference tables of a run (benchmarks of the `traits` adapter): per model and prior × condition × target
trait, overall and per subgroup (bench_adapters.trait_metrics). engine.report.tables shows the per-trait
table; engine.report.html draws the trait × country alignment heat map."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from bench_adapters.trait_metrics import trait_tables
from bench_adapters.traits import Traits
from engine.report.aggregate import Settings, Spec
from engine.report.load import Run

ADAPTER = Traits.name
# The heat map's subgroup: the first of these with more than one level (a one-country survey such as the GSS
# has one country, and one world region).
HEAT_TRAITS = ("country", "region", "age_band")


def table_name(benchmark: str, spec: Spec, single: bool) -> str:
    stem = "traits" if single else f"traits_{benchmark}"
    return f"{stem}_by_target" + ("".join(f"_x_{t}" for t in spec) if spec else "")


def heat_spec(run: Run) -> Spec | None:
    """The first of HEAT_TRAITS on which the personas differ."""
    for trait in HEAT_TRAITS:
        if trait in run.personas.columns and run.personas[trait].drop_nulls().n_unique() > 1:
            return (trait,)
    return None


def traits_tables(run: Run, specs: Sequence[Spec], settings: Settings) -> dict[str, pl.DataFrame]:
    """name → table for every traits benchmark of the run: `traits_by_target` and `traits_by_target_x_<trait>`
    per spec (plus the heat map's subgroup); prefixed with the benchmark when a run has several."""
    names = run.results.select(pl.col("benchmark").unique()).collect()["benchmark"].to_list()
    benchmarks = sorted(b for b in names if run.adapters.get(b, b) == ADAPTER)
    heat = heat_spec(run)
    wanted = tuple(dict.fromkeys([*specs, *([heat] if heat else [])]))
    out: dict[str, pl.DataFrame] = {}
    for bench in benchmarks:
        rows = run.results.filter(pl.col("benchmark") == bench).collect()
        tables = trait_tables(rows, run.personas, wanted, settings.resamples, settings.seed, settings.min_size)
        for spec, table in tables.items():
            if not table.is_empty():
                out[table_name(bench, spec, len(benchmarks) == 1)] = table
    return out
