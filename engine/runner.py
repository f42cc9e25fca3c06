"""One run of a grid: plan, call, cache, write results, manifest and Δ tables."""

from __future__ import annotations

import asyncio
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
from rich.console import Console

from engine.report.build import run_tables
from engine.cache import ResponseCache
from engine.config import GridConfig
from engine.manifest import build_manifest, write_json
from engine.plan import Plan
from engine.progress import LiveProgress
from engine.providers import Provider, create_provider
from engine.results import ResultsWriter
from engine.scheduler import RunStats, Scheduler, count_cached


@dataclass
class RunOutcome:
    run_dir: Path
    stats: RunStats
    tables: dict[str, pl.DataFrame]
    warnings: list[str] = field(default_factory=list)  # position bias (engine.report.position), for the summary
    score: str = "primary"  # what the tables' Δ is on (the grid's [run] score, or primary when the run has no p_gold)


def prepare(grid: GridConfig) -> tuple[Plan, dict[str, Provider]]:
    plan = Plan.from_grid(grid)
    judge = (grid.judge.model,) if grid.judge is not None else ()
    providers = {m.id: create_provider(m) for m in (*grid.models, *judge)}
    return plan, providers


def dry_run(grid: GridConfig) -> dict[str, tuple[int, int]]:
    """Per model (cells, already cached). Reads the cache if it exists; writes nothing."""
    plan, providers = prepare(grid)
    if not grid.cache_path.exists():
        return {m.id: (plan.count(m), 0) for m in grid.models}
    cache = ResponseCache(grid.cache_path)
    try:
        return count_cached(plan, providers, cache)
    finally:
        cache.close()


def _write_personas(plan: Plan, run_dir: Path) -> None:
    rows = [{"persona_id": p.id, "source": p.source, **{k: t.answer for k, t in p.traits.items()}} for p in plan.personas]
    frame = pl.DataFrame(rows, infer_schema_length=None) if rows else pl.DataFrame({"persona_id": [], "source": []}, schema={"persona_id": pl.String, "source": pl.String})
    frame.write_parquet(run_dir / "personas.parquet")


async def _execute(scheduler: Scheduler, console: Console, show_progress: bool) -> RunStats:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    progress = LiveProgress(scheduler.stats, console, show_progress)
    ticker = asyncio.create_task(progress.run())
    try:
        return await scheduler.run(stop)
    finally:
        ticker.cancel()
        await asyncio.gather(ticker, return_exceptions=True)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _preflight(providers: dict[str, Provider]) -> None:
    """One cheap lookup per model, concurrently, before anything is written: PreflightError names the first failure."""
    results = await asyncio.gather(*(p.preflight() for p in providers.values()), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


def run(grid: GridConfig, console: Console, show_progress: bool = True, budget_usd: float | None = None) -> RunOutcome:
    plan, providers = prepare(grid)
    asyncio.run(_preflight(providers))
    run_dir = grid.output_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    identities = {mid: p.identity() for mid, p in providers.items()}
    manifest = build_manifest(grid, identities, {m.id: plan.count(m) for m in grid.models}, plan.rubrics)
    write_json(run_dir / "manifest.json", manifest)
    _write_personas(plan, run_dir)
    cache = ResponseCache(grid.cache_path)
    try:
        scheduler = Scheduler(plan, providers, cache, ResultsWriter(run_dir), budget_usd)
        stats = asyncio.run(_execute(scheduler, console, show_progress))
    finally:
        cache.close()
    manifest.update(
        status="interrupted" if stats.interrupted else "budget_exhausted" if stats.budget_exhausted else "complete",
        finished_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        summary=stats.summary(),
    )
    write_json(run_dir / "manifest.json", manifest)
    report = None if stats.interrupted or stats.budget_exhausted else run_tables(run_dir, grid.baseline.name if grid.baseline else None, grid.run.score)
    if report is None:
        return RunOutcome(run_dir, stats, {})
    return RunOutcome(run_dir, stats, report.tables, report.warnings, report.run.score)
