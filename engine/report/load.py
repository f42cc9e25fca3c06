"""A run directory as the report sees it: lazy results with one `value` column to score, the personas'
trait and strata columns (region, subregion, age band: written by the run, engine.runner), and the grid's
conditions. It reads only the run folder: a run written before the strata were (issue 14) has only its traits.

`value` is the benchmark's primary score (`score` where a row has one, else `correct`) or, with
`--score p_gold`, the probability on the correct option(s). When a grid showed questions in several option
orders (`orders`), `results` holds one row per model × benchmark × condition × persona × question × sample:
the orders collapsed into the position-debiased score (their mean), so every analysis, Δ included, is paired on
debiased item scores; `rows` keeps the per-order rows for the position diagnostic and the benchmarks' metrics.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import polars as pl

from engine.errors import ReportError
from engine.results import read_results, results_glob

MISSING = "(missing)"  # a persona without a trait is its own subgroup, never dropped
SCORES = ("primary", "p_gold")  # what `value` is: the benchmark's primary score, or the probability of the gold
UNIT = ("model", "benchmark", "condition", "item_id", "persona_id", "sample")  # one question as one persona saw it
# Results of at most this many rows, whose Parquet parts take at most this many bytes on disk, are read into
# memory once (~0.5 KB a row, more with long responses) and queried by polars' in-memory engine (query_engine):
# the report asks ~20 queries of them, each of which re-read every part and paid the streaming engine's set-up;
# a 10-call run's closing tables took ~0.125 s, now ~0.08 s (bench/startup.py). Larger runs are streamed by
# every query, so the report's memory stays flat in the run's size (bench/report_scale.py: 10 M rows in 5 MB).
IN_MEMORY_ROWS = 100_000
IN_MEMORY_BYTES = 16 * 2**20


@dataclass(frozen=True)
class Condition:
    name: str
    format: str | None  # None: the baseline (no persona)
    traits: str = "all"
    placement: str = "system"
    reasoning: bool = False  # PERSONA Bench's chain_of_thought mode (engine.config.ConditionConfig)
    summary: bool = False  # its demographic_summary mode


@dataclass(frozen=True)
class Run:
    dir: Path
    name: str
    results: pl.LazyFrame  # the results plus `value`, option orders collapsed into item rows (see above)
    personas: pl.DataFrame  # persona_id + one String column per trait
    conditions: dict[str, Condition]
    baseline: str | None
    adapters: dict[str, str]  # benchmark as results name it (its grid id) -> the adapter that scored it
    # benchmark -> whether a higher score is better (the manifest's, from each adapter); absent in runs
    # written before issue 14: their tables say "unknown" (null), never a guess
    higher_is_better: dict[str, bool] = dataclasses.field(default_factory=dict)
    rows: pl.LazyFrame | None = None  # the per-order result rows (== results when no question had two orders)
    score: str = "primary"  # what `value` holds: one of SCORES
    notes: tuple[str, ...] = ()  # what the chosen score left out, for the report's text
    manifest: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)  # manifest.json ({} if none)
    in_memory: bool = False  # the results were read into memory (IN_MEMORY_ROWS, IN_MEMORY_BYTES): see query_engine

    def rescored(self, score: str) -> Run:
        """The same run with `value` on another score (e.g. p_gold beside the primary score)."""
        results, notes = scored(self.rows if self.rows is not None else self.results, score, self.dir)
        return dataclasses.replace(self, results=results, score=score, notes=notes)

    @property
    def traits(self) -> list[str]:
        return [c for c in self.personas.columns if c != "persona_id"]

    @property
    def unpositioned(self) -> list[str]:
        """Benchmarks (as results name them) scored in likelihood mode: each option's text is scored on its own,
        no letter or position is ever shown, so position bias does not apply (from the manifest's grid)."""
        benchmarks = self.manifest.get("config", {}).get("benchmarks", [])
        return [b.get("id") or b.get("name") for b in benchmarks if b.get("mode") == "likelihood"]

    @property
    def persona_conditions(self) -> list[Condition]:
        return [c for c in self.conditions.values() if c.name != self.baseline]


def open_run(run_dir: Path, baseline: str | None = None, score: str | None = None) -> Run:
    """`score` None: the grid's `[run] score` (from the manifest), else primary. Raises ReportError for a
    directory without results, an unknown baseline, or `score = "p_gold"` on a run without any p_gold."""
    run_dir = Path(run_dir)
    parts = list((run_dir / "results").glob("*.parquet"))
    if not parts:
        raise ReportError(f"{run_dir}: no results ({results_glob(run_dir)} matches nothing); is this a run directory?")
    manifest = _manifest(run_dir)
    score = score or manifest.get("config", {}).get("run", {}).get("score") or "primary"
    rows = read_results(run_dir)
    # bytes first (a stat per part); rows from the parts' footers: synthetic results compress 1,000-fold
    in_memory = sum(part.stat().st_size for part in parts) <= IN_MEMORY_BYTES and rows.select(pl.len()).collect().item() <= IN_MEMORY_ROWS
    with query_engine(in_memory):
        if in_memory:
            rows = rows.collect().lazy()
        results, notes = scored(rows, score, run_dir)
        present = rows.select(pl.col("condition").unique()).collect()["condition"].to_list()
    conditions = _conditions(manifest, present)
    return Run(
        dir=run_dir,
        name=str(manifest.get("run") or run_dir.name),
        results=results,
        personas=_personas(run_dir),
        conditions=conditions,
        baseline=_baseline(conditions, baseline, run_dir),
        adapters={b.get("id") or b["name"]: b["name"] for b in manifest.get("config", {}).get("benchmarks", [])},
        higher_is_better={str(k): v for k, v in (manifest.get("higher_is_better") or {}).items() if isinstance(v, bool)},
        rows=rows,
        score=score,
        notes=notes,
        manifest=manifest,
        in_memory=in_memory,
    )


@contextlib.contextmanager
def query_engine(in_memory: bool) -> Iterator[None]:
    """Polars' in-memory engine for the queries of results read into memory (IN_MEMORY_ROWS), its default
    (streaming) engine otherwise. Streaming cost ~1 ms of set-up a query, ~18% of a 10-call run's closing
    tables (bench/startup.py); a large run's queries stream its files. Polars' engine setting is the process's:
    it is restored on leaving, and meanwhile another thread's queries run on the same engine (same results)."""
    if not in_memory:
        yield
        return
    with pl.Config(engine_affinity="in-memory"):
        yield


def scored(rows: pl.LazyFrame, score: str, run_dir: Path) -> tuple[pl.LazyFrame, tuple[str, ...]]:
    """Per-order rows → (rows with `value`, orders collapsed when there are several; notes on what was left out).

    p_gold: scored rows without a p_gold (a backend that gave no letter logprobs) are left out (status
    "no_p_gold", so a question missing one order's p_gold is left out whole) and counted in a note, never read as 0."""
    if score not in SCORES:
        raise ReportError(f"--score {score}: expected one of {', '.join(SCORES)}")
    notes: tuple[str, ...] = ()
    if score == "p_gold":
        counts = rows.filter(pl.col("status") == "ok").select(pl.len().alias("ok"), pl.col("p_gold").null_count().alias("missing")).collect().row(0, named=True)
        if counts["ok"] and counts["missing"] == counts["ok"]:
            raise ReportError(
                f"{run_dir}: --score p_gold: no result has a p_gold (it needs letter logprobs: mode letter-logprob, or letter mode "
                "with a backend that returns logprobs)"
            )
        if counts["missing"]:
            notes = (f"--score p_gold: {counts['missing']:,} of {counts['ok']:,} scored rows have no p_gold and are left out",)
        lacking = (pl.col("status") == "ok") & pl.col("p_gold").is_null()
        rows = rows.with_columns(pl.when(lacking).then(pl.lit("no_p_gold")).otherwise(pl.col("status")).alias("status"))
    value = pl.coalesce("score", "correct") if score == "primary" else pl.col("p_gold")
    rows = rows.with_columns(value.cast(pl.Float64).alias("value"))
    several = rows.select(pl.col("order").max()).collect().item()
    return (_debiased(rows) if several else rows), notes


def _debiased(rows: pl.LazyFrame) -> pl.LazyFrame:
    """One row per question as one persona saw it, its option orders collapsed: value, correct, score, p_gold
    and invalid (a share) are the means over the orders (the position-debiased score); `answer` lists the chosen
    options in order-0 terms, order by order ("-" for none), so answers agree only if every order agrees. The
    unit is `ok` only when every order is: a missing order would let position back into the mean."""
    ok = pl.col("status") == "ok"
    return rows.group_by(UNIT, maintain_order=True).agg(
        pl.col("cell").min(),
        pl.col("cell_id").first(),
        pl.when(ok.all()).then(pl.lit("ok")).otherwise(pl.lit("error")).alias("status"),
        pl.col("value", "correct", "score", "p_gold").mean(),
        pl.col("invalid").cast(pl.Float64).mean(),
        pl.col("option").sort_by("order").cast(pl.String).fill_null("-").str.join(",").alias("answer"),
        pl.col("error_kind", "error").drop_nulls().first(),
        pl.col("gold", "meta").first(),
        pl.len().alias("orders"),
    )


def _manifest(run_dir: Path) -> dict:
    path = run_dir / "manifest.json"
    return orjson.loads(path.read_bytes()) if path.is_file() else {}


def _conditions(manifest: dict, present: list[str]) -> dict[str, Condition]:
    """The grid's conditions in grid order; results from conditions the manifest lacks are still reported.
    Without a manifest a condition named `baseline` is taken as the no-persona one."""
    configured = manifest.get("config", {}).get("conditions", [])
    out = {
        c["name"]: Condition(c["name"], c.get("format"), c.get("traits", "all"), c.get("placement", "system"), bool(c.get("reasoning")), bool(c.get("summary")))
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
    return frame.select("persona_id", *(pl.col(c).cast(pl.String) for c in frame.columns if c not in ("persona_id", "source", "weight")))
