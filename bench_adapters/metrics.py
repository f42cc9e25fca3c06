"""Each benchmark's own aggregate metrics (BBQ bias scores, CrowS-Pairs preference, ...) from run results."""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl

from bench_adapters.registry import ADAPTERS


def benchmark_metrics(results: pl.LazyFrame | pl.DataFrame, adapters: Mapping[str, str] | None = None) -> dict[str, pl.DataFrame]:
    """Benchmark -> its metrics table, per model × condition (and the benchmark's slices).

    `adapters` maps a benchmark as the results name it (a grid `id`) to its adapter; a name that is itself
    an adapter's needs no entry."""
    frame = results.lazy()
    names = frame.select(pl.col("benchmark").unique()).collect()["benchmark"].to_list()
    kinds = {n: (adapters or {}).get(n, n) for n in names}
    tables = {}
    for name in sorted(n for n in names if kinds[n] in ADAPTERS):
        rows = frame.filter(pl.col("benchmark") == name).collect()
        tables[name] = ADAPTERS[kinds[name]].metrics(rows)
    return tables
