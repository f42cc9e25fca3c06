"""A run directory as the report sees it: lazy results with one `value` column to score, the personas'
trait columns (plus age band and region derived when the file lacks them), and the grid's conditions."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import orjson
import polars as pl

from engine.results import read_results, results_glob

MISSING = "(missing)"  # a persona without a trait is its own subgroup, never dropped


class ReportError(ValueError):
    """A run directory or option the report cannot use; the message says which and why."""


@dataclass(frozen=True)
class Condition:
    name: str
    format: str | None  # None: the baseline (no persona)
    traits: str = "all"
    placement: str = "system"


@dataclass(frozen=True)
class Run:
    dir: Path
    name: str
    results: pl.LazyFrame  # the results plus `value`: `score` where the row has one, else `correct`
    personas: pl.DataFrame  # persona_id + one String column per trait
    conditions: dict[str, Condition]
    baseline: str | None
    adapters: dict[str, str]  # benchmark as results name it (its grid id) -> the adapter that scored it

    @property
    def traits(self) -> list[str]:
        return [c for c in self.personas.columns if c != "persona_id"]

    @property
    def persona_conditions(self) -> list[Condition]:
        return [c for c in self.conditions.values() if c.name != self.baseline]


def open_run(run_dir: Path, baseline: str | None = None) -> Run:
    run_dir = Path(run_dir)
    if not list((run_dir / "results").glob("*.parquet")):
        raise ReportError(f"{run_dir}: no results ({results_glob(run_dir)} matches nothing); is this a run directory?")
    manifest = _manifest(run_dir)
    results = read_results(run_dir)
    value = pl.coalesce("score", "correct")
    results = results.with_columns(value.cast(pl.Float64).alias("value"))
    present = results.select(pl.col("condition").unique()).collect()["condition"].to_list()
    conditions = _conditions(manifest, present)
    return Run(
        dir=run_dir,
        name=str(manifest.get("run") or run_dir.name),
        results=results,
        personas=_personas(run_dir),
        conditions=conditions,
        baseline=_baseline(conditions, baseline, run_dir),
        adapters={b.get("id") or b["name"]: b["name"] for b in manifest.get("config", {}).get("benchmarks", [])},
    )


def _manifest(run_dir: Path) -> dict:
    path = run_dir / "manifest.json"
    return orjson.loads(path.read_bytes()) if path.is_file() else {}


def _conditions(manifest: dict, present: list[str]) -> dict[str, Condition]:
    """The grid's conditions in grid order; results from conditions the manifest lacks are still reported.
    Without a manifest a condition named `baseline` is taken as the no-persona one."""
    configured = manifest.get("config", {}).get("conditions", [])
    out = {
        c["name"]: Condition(c["name"], c.get("format"), c.get("traits", "all"), c.get("placement", "system"))
        for c in configured
        if c["name"] in present
    }
    for name in sorted(set(present) - out.keys()):
        out[name] = Condition(name, None if name == "baseline" and not configured else "unknown")
    return out


def _baseline(conditions: dict[str, Condition], chosen: str | None, run_dir: Path) -> str | None:
    if chosen is not None:
        if chosen not in conditions:
            raise ReportError(f"{run_dir}: --baseline {chosen}: no such condition in the results (have: {', '.join(conditions)})")
        return chosen
    return next((c.name for c in conditions.values() if c.format is None), None)


def _personas(run_dir: Path) -> pl.DataFrame:
    path = run_dir / "personas.parquet"
    if not path.is_file():
        return pl.DataFrame({"persona_id": []}, schema={"persona_id": pl.String})
    frame = pl.read_parquet(path)
    if "id" in frame.columns and "persona_id" not in frame.columns:  # a `personas build` file copied in
        frame = frame.rename({"id": "persona_id"})
    frame = frame.select("persona_id", *(pl.col(c).cast(pl.String) for c in frame.columns if c not in ("persona_id", "source", "weight")))
    return _derive_strata(frame)


def _derive_strata(frame: pl.DataFrame) -> pl.DataFrame:
    """Age band and world region with the persona builder's own definitions, for runs whose persona file
    kept only the raw traits (the run writes each persona's traits, not the build's strata columns)."""
    need_band = "age" in frame.columns and "age_band" not in frame.columns
    need_region = "country" in frame.columns and "region" not in frame.columns
    if not (need_band or need_region):
        return frame
    from persona_builder.catalog import load_catalog
    from persona_builder.sample import add_strata

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
