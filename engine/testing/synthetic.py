"""Synthetic run directories for the report's tests and bench: the layout a run writes (results part files
in the results schema, personas.parquet, manifest.json with the grid's conditions), with known effects."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import orjson
import polars as pl

from engine.results import SCHEMA
from persona_builder.sample import derive_strata

BASELINE = {"name": "baseline", "format": None, "traits": "all", "placement": "system"}


def condition(name: str, fmt: str = "prose", traits: str = "all") -> dict:
    return {"name": name, "format": fmt, "traits": traits, "placement": "system"}


def write_run(run_dir: Path, results: pl.DataFrame | Iterable[pl.DataFrame], personas: pl.DataFrame, conditions: list[dict]) -> Path:
    """Write result chunks as part files with every schema column (absent ones null), plus personas and manifest."""
    (run_dir / "results").mkdir(parents=True, exist_ok=True)
    chunks = [results] if isinstance(results, pl.DataFrame) else results
    for i, chunk in enumerate(chunks):
        defaults = {"status": pl.lit("ok"), "sample": pl.lit(0), "invalid": pl.lit(False)}
        full = chunk.with_columns(**{c: pl.col(c).fill_null(v) if c in chunk.columns else v for c, v in defaults.items()})
        full = full.select(pl.col(c).cast(t) if c in full.columns else pl.lit(None, t).alias(c) for c, t in SCHEMA.items())
        full.write_parquet(run_dir / "results" / f"part-{i:05d}.parquet")
    derive_strata(personas).write_parquet(run_dir / "personas.parquet")  # the strata a run writes beside the traits
    (run_dir / "manifest.json").write_bytes(orjson.dumps({"run": run_dir.name, "config": {"conditions": conditions}}))
    return run_dir


def personas_frame(n: int, countries: list[str], seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return pl.DataFrame(
        {
            "persona_id": [f"p{i:06d}" for i in range(n)],
            "country": [countries[i % len(countries)] for i in range(n)],
            "sex": rng.choice(["Female", "Male"], n),
            "age": rng.integers(18, 90, n).astype(str),
        }
    )


def random_results(
    *,
    models: list[str],
    benchmarks: list[str],
    effects: dict[str, float],  # persona condition -> true Δ in probability of a correct answer
    questions: int,
    personas: pl.DataFrame,
    seed: int = 0,
) -> Iterator[pl.DataFrame]:
    """One chunk per model × benchmark × condition (the baseline first): question q is answered correctly with
    probability base[q] under the baseline and base[q] + Δ under a persona, so the expected Δ is exactly Δ
    whenever base + Δ stays inside [0, 1] (base is drawn from [0.3, 0.6])."""
    rng = np.random.default_rng(seed)
    ids = personas["persona_id"]
    n_p = ids.len()
    for model in models:
        for bench in benchmarks:
            base = rng.uniform(0.3, 0.6, questions)
            items = pl.Series("item_id", [f"{bench}-{q:05d}" for q in range(questions)])
            correct = (rng.random(questions) < base).astype(np.float64)
            yield pl.DataFrame({"model": model, "benchmark": bench, "condition": "baseline", "item_id": items, "correct": correct})
            for name, effect in effects.items():
                prob = np.repeat(base + effect, n_p)
                correct = (rng.random(questions * n_p) < prob).astype(np.float64)
                yield pl.DataFrame(
                    {
                        "model": model,
                        "benchmark": bench,
                        "condition": name,
                        "item_id": items.gather(np.repeat(np.arange(questions), n_p)),
                        "persona_id": ids.gather(np.tile(np.arange(n_p), questions)),
                        "correct": correct,
                    }
                )
