"""Each benchmark's own tables for a report, handed to `build_report` by its callers (the CLI, the run's
closing tables, the library face): the report package itself imports no benchmark adapter.

`BENCHMARK_TABLES` is the full set: every adapter's published metrics (bench_adapters.metrics: BBQ bias scores,
CrowS-Pairs preference, NormAd, ...) as `metrics_<benchmark>`, and trait inference's priors and alignment
(bench_adapters.trait_metrics) as `traits_by_target[_x_<trait>]`.
"""

from __future__ import annotations

import polars as pl

from bench_adapters.metrics import benchmark_metrics
from bench_adapters.trait_metrics import trait_tables
from bench_adapters.traits import Traits
from engine.report.aggregate import Settings, Spec
from engine.report.build import BenchmarkTables
from engine.report.load import Run


def adapter_metrics(run: Run, rows: pl.LazyFrame, specs: tuple[Spec, ...], settings: Settings) -> dict[str, pl.DataFrame]:
    """`metrics_<benchmark>` per benchmark of the run whose adapter defines metrics, from the per-order rows
    (with several option orders each order's answer counts: letters match that order's meta)."""
    return {f"metrics_{name}": t for name, t in benchmark_metrics(rows, run.adapters).items() if not t.is_empty()}


def _traits_table_name(benchmark: str, spec: Spec, single: bool) -> str:
    stem = "traits" if single else f"traits_{benchmark}"
    return f"{stem}_by_target" + ("".join(f"_x_{t}" for t in spec) if spec else "")


def traits_tables(run: Run, rows: pl.LazyFrame, specs: tuple[Spec, ...], settings: Settings) -> dict[str, pl.DataFrame]:
    """name → table for every traits benchmark of the run: `traits_by_target` and `traits_by_target_x_<trait>`
    per spec (plus the heat map's subgroup); prefixed with the benchmark when a run has several. Reads the
    run's personas (priors and alignment need every persona's real answers)."""
    names = run.results.select(pl.col("benchmark").unique()).collect()["benchmark"].to_list()
    benchmarks = sorted(b for b in names if run.adapters.get(b, b) == Traits.name)
    if not benchmarks:
        return {}
    from engine.report.html import heat_spec  # the HTML page's module (and svg): only where trait inference ran

    heat = heat_spec(run)
    wanted = tuple(dict.fromkeys([*specs, *([heat] if heat else [])]))
    out: dict[str, pl.DataFrame] = {}
    for bench in benchmarks:
        frame = run.results.filter(pl.col("benchmark") == bench).collect()
        tables = trait_tables(frame, run.personas, wanted, settings.resamples, settings.seed, settings.min_size)
        for spec, table in tables.items():
            if not table.is_empty():
                out[_traits_table_name(bench, spec, len(benchmarks) == 1)] = table
    return out


BENCHMARK_TABLES: tuple[BenchmarkTables, ...] = (adapter_metrics, traits_tables)
