"""The engine as a library: load a grid, dry-run it, run it, open a finished run, write its report.

    import engine
    grid = engine.load_grid("examples/grid.toml")
    outcome = engine.run(grid)                     # or: await engine.run_async(grid) inside a running loop
    run = engine.open_run(outcome.run_dir)         # run.results: a polars LazyFrame, one row per item
    engine.build_report(outcome.run_dir)           # RUN_DIR/report/: CSV, Parquet, summary.md, report.html

Every function works on the caller's event loop or one asyncio.run, prints nothing, takes no console and
installs no signal handler: display, signals and exit codes belong to the caller (engine.cli is one). Errors
are engine.errors' (EngineError and its subclasses, re-exported by `engine`), plus the survey reader's
persona_builder.PersonaFileError (a ValueError) for an unreadable personas file.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from engine.config import GridConfig
from engine.grid import load_grid
from engine.report.build import Report
from engine.report.load import Run
from engine.runner import ProgressCallback, RunOutcome
from engine.shard import Shard

if TYPE_CHECKING:
    from engine.dryrun import DryRun  # the face re-exports it from engine.dryrun, imported by dry_run only

__all__ = ["ReportOutcome", "build_report", "dry_run", "load_grid", "open_run", "run", "run_async"]


def _grid(grid: GridConfig | str | Path) -> GridConfig:
    return grid if isinstance(grid, GridConfig) else load_grid(grid)


def run(
    grid: GridConfig | str | Path,
    *,
    budget_usd: float | None = None,
    shard: Shard | str | None = None,
    progress: ProgressCallback | None = None,
    progress_interval_s: float = 0.25,
) -> RunOutcome:
    """Run a grid (a GridConfig, or a grid.toml path) to the end on a new event loop; see run_async.

    Returns RunOutcome: run_dir, results_path (RUN_DIR/results/*.parquet), stats (cells, cache hits, calls,
    errors by kind, cost in USD, wall s) and the Δ tables. Raises what run_async raises, and RuntimeError when
    called from a running event loop (in Jupyter: `await engine.run_async(grid)`). Ctrl-C cancels the run: the
    manifest says `interrupted` and KeyboardInterrupt is raised; a rerun resumes from the cache."""
    import engine.runner as runner

    return runner.run(_grid(grid), budget_usd=_budget(budget_usd), shard=_shard(shard), progress=progress, progress_interval_s=progress_interval_s)


async def run_async(
    grid: GridConfig | str | Path,
    *,
    budget_usd: float | None = None,
    shard: Shard | str | None = None,
    progress: ProgressCallback | None = None,
    progress_interval_s: float = 0.25,
    stop: asyncio.Event | None = None,
) -> RunOutcome:
    """Run every persona x item x model x condition cell of a grid not already cached, on the running loop.

    Answers go to the grid's cache (SQLite, content-addressed: a rerun calls only what is missing), result rows
    to RUN_DIR/results/*.parquet, then RUN_DIR/manifest.json, personas.parquet and analysis/*.csv (the Δ tables).
    `budget_usd`: no new calls once this run spent that many USD (a positive finite number; ValueError
    otherwise). `shard`: run only Shard(i, n) (or "I/N", 0-based) of the cells,
    into the grid's cache and output folder as given (engine.shard.locate moves them per shard, as the CLI does).
    `progress(stats, done)`: called when the calls start, every `progress_interval_s` s while they run, and once
    with done=True. `stop`: an asyncio.Event; set it to end the run gracefully (calls in flight finish and are
    kept; the outcome and manifest say interrupted).

    Raises GridError (a path given and invalid), RunDirError / CacheError (an unusable path, another run holds
    the folder; nothing written), PreflightError (a model with calls to make cannot be called; nothing
    written), WriteError (CacheWriteError, ResultsWriteError: a write failed mid-run; the manifest says
    `failed`, every committed answer is kept), PersonaFileError; KeyboardInterrupt and asyncio.CancelledError
    are re-raised after the manifest says `interrupted`. A model call's own failure is no exception: it is a
    result row's `error` and counted in stats.errors."""
    import engine.runner as runner

    return await runner.run_async(
        _grid(grid), budget_usd=_budget(budget_usd), shard=_shard(shard), progress=progress, progress_interval_s=progress_interval_s, stop=stop
    )


def _budget(usd: float | None) -> float | None:
    if usd is not None and not (math.isfinite(usd) and usd > 0):
        raise ValueError(f"budget_usd: expected a positive finite number of USD, got {usd!r}")
    return usd


def _shard(shard: Shard | str | None) -> Shard | None:
    """A Shard, or "I/N" parsed (ValueError when malformed)."""
    return Shard.parse(shard) if isinstance(shard, str) else shard


def dry_run(grid: GridConfig | str | Path, shard: Shard | str | None = None) -> DryRun:
    """Count a grid's cells per model and how many are cached, the power of its comparisons and the calls,
    tokens (about 4 characters each; output at most max_tokens) and USD still to spend, in one pass over the
    plan (engine.dryrun: a sampled token estimate when nothing is cached). Reads the cache when it exists;
    calls no model and writes nothing. `shard`: as in `run` (Shard(i, n) or "I/N"). Raises GridError (a path
    given and invalid), CacheError (a cache file that is not one), PersonaFileError, ValueError (a bad shard)."""
    import engine.dryrun as dryrun

    return dryrun.dry_run(_grid(grid), _shard(shard))


def open_run(run_dir: str | Path, baseline: str | None = None, score: str | None = None) -> Run:
    """A finished (or interrupted) run's folder, read for analysis: `results` (polars LazyFrame, one row per
    persona x item x model x condition x sample, `value` = the score Δ is computed on, option orders collapsed),
    `personas` (persona_id + one column per trait), `conditions`, `baseline`, `manifest` (manifest.json).

    `baseline`: the condition Δ pairs against (default: the grid's no-persona condition). `score`: primary
    (each benchmark's own score) or p_gold (probability on the correct option); default the grid's [run] score.
    Raises ReportError: no results in the folder, an unknown baseline, p_gold on a run without any."""
    from engine.report.load import open_run as open_folder

    return open_folder(Path(run_dir), baseline, score)


@dataclass(frozen=True)
class ReportOutcome:
    """The report built from a run folder and the files written."""

    report: Report  # report.tables: name -> frame (Δ with 95% CI and p by subgroup, ablation, pass@k, ...)
    out_dir: Path
    files: list[Path]  # CSV and Parquet per table, summary.md, report.html


def build_report(
    run_dir: str | Path,
    *,
    by: list[str] | str | None = None,
    baseline: str | None = None,
    score: str | None = None,
    bootstrap: int = 1000,
    seed: int = 0,
    min_size: int = 30,
    out_dir: str | Path | None = None,
) -> ReportOutcome:
    """Build the persona-effect report of a run folder and write it to `out_dir` (default RUN_DIR/report).

    `by`: subgroup traits (a list, or one string), `+` joins an intersection ("sex+age_band"); default country, region, sex, age_band
    where the personas have them. `bootstrap`: paired bootstrap resamples for the 95% intervals (0: point
    estimates only), seeded by `seed`. `min_size`: groups with fewer personas are flagged, and tested by
    cluster-robust t. Statistics: engine.report (sources cited there). Raises ReportError (see open_run; an
    unknown --by trait), OSError when out_dir cannot be written."""
    from engine.benchmark_tables import BENCHMARK_TABLES
    from engine.report.aggregate import Settings
    from engine.report.build import ReportOptions, parse_by
    from engine.report.build import build_report as build
    from engine.report.write import write_report

    settings = Settings(resamples=bootstrap, seed=seed, min_size=min_size)
    by = [by] if isinstance(by, str) else by  # by="sex" is one trait, never the letters s, e, x
    options = ReportOptions(by=parse_by(by) if by else None, settings=settings, benchmark_tables=BENCHMARK_TABLES)
    report = build(open_run(run_dir, baseline, score), options)
    target = Path(out_dir) if out_dir is not None else Path(run_dir) / "report"
    return ReportOutcome(report, target, write_report(report, target))
