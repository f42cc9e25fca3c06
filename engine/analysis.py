"""The persona effect: Δ = score(persona) − score(baseline), paired on model × benchmark × question × sample.

Works lazily on a run directory's results and persona traits, so it scales with the data, not memory.
Invalid answers score 0 and are reported as their own rate beside every score; errored calls (no answer
at all) are left out of scores and counted separately.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from engine.results import read_results

PAIR = ["model", "benchmark", "item_id", "sample"]
GROUP = ["model", "benchmark", "condition"]
DEFAULT_SUBGROUPS = ("country", "sex")


def personas_frame(run_dir: Path) -> pl.LazyFrame | None:
    path = Path(run_dir) / "personas.parquet"
    return pl.scan_parquet(path) if path.is_file() else None


def paired(run_dir: Path, baseline: str) -> pl.LazyFrame:
    """One row per persona cell, with its baseline twin's score alongside."""
    ok = read_results(run_dir).filter(pl.col("status") == "ok")
    base = ok.filter(pl.col("condition") == baseline).select(
        *PAIR,
        pl.col("correct").alias("base_correct"),
        pl.col("invalid").alias("base_invalid"),
        pl.col("p_gold").alias("base_p_gold"),
    )
    cells = ok.filter(pl.col("condition") != baseline).join(base, on=PAIR, how="inner")
    return cells.with_columns((pl.col("correct") - pl.col("base_correct")).alias("delta"))


def persona_effect(run_dir: Path, baseline: str, by: tuple[str, ...] = ()) -> pl.DataFrame:
    cells = paired(run_dir, baseline)
    if by:
        traits = personas_frame(run_dir)
        if traits is None:
            raise FileNotFoundError(f"{run_dir}: personas.parquet missing, cannot group by {', '.join(by)}")
        cells = cells.join(traits.select("persona_id", *by), on="persona_id", how="left")
    keys = [*GROUP, *by]
    return (
        cells.group_by(keys)
        .agg(
            pl.len().alias("n"),
            pl.col("item_id").n_unique().alias("questions"),
            pl.col("persona_id").n_unique().alias("personas"),
            pl.col("base_correct").mean().alias("baseline"),
            pl.col("correct").mean().alias("persona"),
            pl.col("delta").mean().alias("delta"),
            pl.col("base_invalid").mean().alias("inv_base"),
            pl.col("invalid").mean().alias("inv_persona"),
            (pl.col("p_gold") - pl.col("base_p_gold")).mean().alias("delta_p"),
        )
        .sort(keys, nulls_last=True)
        .collect()
    )


def scores_by_condition(run_dir: Path) -> pl.DataFrame:
    """Plain scores per condition: what a grid without a baseline can still report."""
    results = read_results(run_dir)
    return (
        results.group_by(GROUP)
        .agg(
            pl.len().alias("cells"),
            (pl.col("status") == "error").sum().alias("errors"),
            pl.col("correct").mean().alias("accuracy"),
            pl.col("invalid").mean().alias("invalid"),
            pl.col("p_gold").mean().alias("p_gold"),
        )
        .sort(GROUP)
        .collect()
    )


def write_tables(run_dir: Path, baseline: str | None, subgroups: tuple[str, ...] = DEFAULT_SUBGROUPS) -> dict[str, pl.DataFrame]:
    """Compute the standard tables and write each as CSV under RUN_DIR/analysis/."""
    out_dir = Path(run_dir) / "analysis"
    out_dir.mkdir(parents=True, exist_ok=True)
    tables = {"scores_by_condition": scores_by_condition(run_dir)}
    if baseline is not None:
        tables["delta_by_condition"] = persona_effect(run_dir, baseline)
        available = set(personas_frame(run_dir).collect_schema().names()) if personas_frame(run_dir) is not None else set()
        for trait in subgroups:
            if trait in available:
                tables[f"delta_by_{trait}"] = persona_effect(run_dir, baseline, by=(trait,))
    for name, frame in tables.items():
        frame.write_csv(out_dir / f"{name}.csv")
    return tables
