"""Each benchmark's own aggregate metrics (BBQ bias scores, CrowS-Pairs preference, ...) from run results."""

from __future__ import annotations

import polars as pl

from bench_adapters.registry import ADAPTERS


def benchmark_metrics(results: pl.LazyFrame | pl.DataFrame) -> dict[str, pl.DataFrame]:
    """Benchmark name -> its metrics table, per model × condition (and the benchmark's slices)."""
    frame = results.lazy()
    names = frame.select(pl.col("benchmark").unique()).collect()["benchmark"].to_list()
    tables = {}
    for name in sorted(n for n in names if n in ADAPTERS):
        rows = frame.filter(pl.col("benchmark") == name).collect()
        tables[name] = ADAPTERS[name].metrics(rows)
    return tables
