"""One run of a grid: plan, call, cache, write results, manifest and Δ tables, on one event loop.

Order: every path is checked before anything is written (output folder, cache file and folder), then the
models with calls to make are preflighted, then the run folder is held (engine.rundir.hold) for the manifest,
personas, the calls and the results. The manifest ends `complete`, `interrupted` (the caller's `stop` event
set, or KeyboardInterrupt / cancellation in any phase after it is written: both re-raised), `budget_exhausted`
or `failed` (a write error, named in `error`).

Nothing here prints, installs a signal handler or starts an event loop of its own (besides `run`'s one
asyncio.run): the caller (engine.cli, a notebook, another program) owns display, signals and exit codes.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from engine.benchmark_tables import BENCHMARK_TABLES
from engine.cache import ResponseCache
from engine.rundir import check_folder, hold
from engine.config import GridConfig
from engine.manifest import build_manifest, write_json
from engine.plan import Cell, Plan
from engine.errors import PreflightError, ResultsWriteError
from engine.providers import Provider, create_provider
from engine.report.write import run_tables
from engine.results import ResultsWriter, write_cause
from engine.shard import Shard
from persona_builder.sample import derive_strata
from engine.scheduler import RunStats, Scheduler, models_to_call


# progress(stats, done): done=False when the calls start and every `progress_interval_s` while they run, then
# once done=True when they stop. It runs on the event loop: keep it quick (read stats, redraw).
ProgressCallback = Callable[[RunStats, bool], None]


@dataclass
class RunOutcome:
    """What a run did: its folder, counters and the Δ tables it printed.

    `stats`: cells done/total, cache hits, model calls, errors by kind, cost (USD), wall time (s), whether it
    was interrupted or stopped on the budget. `tables`: name -> frame (scores and Δ by condition, country, sex;
    also written as RUN_DIR/analysis/*.csv); empty when the run stopped early, is a shard, or no call succeeded."""

    run_dir: Path
    stats: RunStats
    tables: dict[str, pl.DataFrame]
    warnings: list[str] = field(default_factory=list)  # position bias (engine.report.position), for the summary
    score: str = "primary"  # what the tables' Δ is on (the grid's [run] score, or primary when the run has no p_gold)

    @property
    def results_path(self) -> Path:
        """The results folder: Parquet part files, one row per cell x sample (engine.results.SCHEMA)."""
        return self.run_dir / "results"

    @property
    def complete(self) -> bool:
        """Every cell was done (neither interrupted nor stopped on the budget); some may have failed (stats.errors)."""
        return not (self.stats.interrupted or self.stats.budget_exhausted)


def prepare(grid: GridConfig, shard: Shard | None = None) -> tuple[Plan, dict[str, Provider]]:
    plan = Plan.from_grid(grid, shard)
    judge = (grid.judge.model,) if grid.judge is not None else ()
    providers = {m.id: create_provider(m) for m in (*grid.models, *judge)}
    if grid.run.executor == "ray":  # in-process models on Ray actors; nothing starts before the preflight
        import engine.ray_pool as ray_pool

        providers = ray_pool.wrap(providers, grid.run.ray)
    return plan, providers


def _write_personas(plan: Plan, run_dir: Path) -> None:
    # The strata go in beside the traits (derived from age and country where the file has none), so the analysis
    # reads only the run folder.
    rows = [{"persona_id": p.id, "source": p.source, **p.strata, **{k: t.answer for k, t in p.traits.items()}} for p in plan.personas]
    frame = derive_strata(pl.DataFrame(rows, infer_schema_length=None)) if rows else pl.DataFrame({"persona_id": [], "source": []}, schema={"persona_id": pl.String, "source": pl.String})
    tmp = run_dir / f".personas.{os.getpid()}.tmp"
    try:
        frame.write_parquet(tmp)
        os.replace(tmp, run_dir / "personas.parquet")
    except Exception as exc:  # polars reports ENOSPC as OSError or ComputeError, by version
        cause = write_cause(exc, tmp)  # before the unlink frees the space
        tmp.unlink(missing_ok=True)
        raise ResultsWriteError(f"{run_dir / 'personas.parquet'}: cannot write the personas: {cause}") from exc


async def _execute(scheduler: Scheduler, stop: asyncio.Event, progress: ProgressCallback | None, interval_s: float) -> RunStats:
    status = _pool_status(scheduler.providers)

    async def tick(report: ProgressCallback) -> None:
        while True:
            if status is not None:
                scheduler.stats.executor = status()
            report(scheduler.stats, False)
            await asyncio.sleep(interval_s)

    ticker = asyncio.create_task(tick(progress)) if progress is not None else None
    try:
        return await scheduler.run(stop)
    finally:
        if ticker is not None:
            ticker.cancel()
            await asyncio.gather(ticker, return_exceptions=True)
            progress(scheduler.stats, True)


def _pool_status(providers: dict[str, Provider]) -> Callable[[], str] | None:
    """The progress line's Ray part (workers alive, batches in flight), or None when no model runs on Ray."""
    from engine.ray_pool import pools

    found = pools(providers)
    return (lambda: "  ".join(p.status() for p in found)) if found else None


async def _preflight(providers: dict[str, Provider]) -> dict[str, BaseException]:
    """One cheap lookup per model, concurrently: the failures by model id (PreflightError names the cause)."""
    results = await asyncio.gather(*(p.preflight() for p in providers.values()), return_exceptions=True)
    return {mid: r for mid, r in zip(providers, results) if isinstance(r, BaseException)}


def _check_prompts(plan: Plan, providers: dict[str, Provider]) -> None:
    """One request per model x condition through the provider's prompt check, before anything is written:
    a chat template refusing the system role names the model and the condition's placement (issue 12 item 14)."""
    persona = plan.personas[0] if plan.personas else None
    for model in plan.grid.models:
        for bench in plan.benchmarks[:1]:
            for condition in plan.grid.conditions:
                if not bench.items or (condition.format is not None and persona is None):
                    continue
                cell = Cell(0, model, bench.config.label, bench.items[0], condition, persona if condition.format else None, 0)
                if condition.summary and condition.format:  # the answer's roles, whatever the summary will say
                    cell = cell.with_summary("")
                try:
                    providers[model.id].check_request(plan.request(cell))
                except PreflightError as exc:
                    hint = ' (set placement = "user" on it to put the persona in the user turn)' if condition.placement == "system" and condition.format else ""
                    raise PreflightError(
                        f"model '{model.id}', condition '{condition.name}' (placement = \"{condition.placement}\"): {exc}{hint}"
                    ) from None


async def _check_models(plan: Plan, providers: dict[str, Provider], cache: ResponseCache | None) -> None:
    """Raise the first preflight failure of a model that has calls to make. Which models have is only worked
    out when one fails (a pass over every cell's key): a fully cached rerun then works offline or with an
    expired key, and a healthy run pays nothing for it."""
    if not (failures := await _preflight(providers)):
        return
    needed = models_to_call(plan, providers, cache) if cache is not None else set(providers)
    for mid, exc in failures.items():
        if mid in needed:
            raise exc


def run(
    grid: GridConfig,
    *,
    budget_usd: float | None = None,
    shard: Shard | None = None,
    progress: ProgressCallback | None = None,
    progress_interval_s: float = 0.25,
) -> RunOutcome:
    """run_async on a new event loop (asyncio.run); from inside a running loop (Jupyter), await run_async.
    Raises RuntimeError when called from a running event loop, before anything is read or written."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError("engine.run: called from a running event loop (e.g. Jupyter); use `await engine.run_async(...)`")
    return asyncio.run(run_async(grid, budget_usd=budget_usd, shard=shard, progress=progress, progress_interval_s=progress_interval_s))


async def run_async(
    grid: GridConfig,
    *,
    budget_usd: float | None = None,
    shard: Shard | None = None,
    progress: ProgressCallback | None = None,
    progress_interval_s: float = 0.25,
    stop: asyncio.Event | None = None,
) -> RunOutcome:
    """Run every cell of `grid` (of `shard`, when given) not already cached, on the running event loop.

    `stop`: set it to end the run gracefully: no new calls, calls in flight finish and are kept, the outcome
    says interrupted. `budget_usd`: no new calls once this run spent that many USD (resumable).
    Raises RunDirError / CacheError (unusable path, another run holds the folder; nothing written),
    PreflightError (a model with calls to make cannot be called; nothing written), CacheWriteError /
    ResultsWriteError (both WriteError: a write failed mid-run; the manifest says `failed`), PersonaFileError
    (the personas file), and re-raises KeyboardInterrupt / asyncio.CancelledError (the manifest, when
    written, says `interrupted`)."""
    plan, providers = prepare(grid, shard)
    run_dir = grid.output_dir
    check_folder(run_dir, "output folder")
    check_folder(grid.cache_path.parent, "cache folder")
    # An existing cache is opened (and so validated) now; a new one is created only once the preflight passed.
    cache = ResponseCache(grid.cache_path) if grid.cache_path.exists() else None
    try:
        _check_prompts(plan, providers)
        await _check_models(plan, providers, cache)
        with hold(run_dir):
            cache = cache or ResponseCache(grid.cache_path)
            return await _run_held(grid, plan, providers, cache, budget_usd, stop or asyncio.Event(), progress, progress_interval_s)
    finally:
        # The preflight's channels serve the calls (APIProvider.preflight); the scheduler closes them after its
        # calls, this wherever the run stopped before (a held folder, a failed preflight). aclose is idempotent.
        for provider in providers.values():
            await provider.aclose()
        if cache is not None:
            cache.close()


async def _run_held(
    grid: GridConfig,
    plan: Plan,
    providers: dict[str, Provider],
    cache: ResponseCache,
    budget_usd: float | None,
    stop: asyncio.Event,
    progress: ProgressCallback | None,
    progress_interval_s: float,
) -> RunOutcome:
    run_dir = grid.output_dir
    identities = {mid: p.identity() for mid, p in providers.items()}
    directions = {b.config.label: plan.adapter(b.config.label).higher_is_better for b in plan.benchmarks}
    manifest = build_manifest(grid, identities, {m.id: plan.count(m) for m in grid.models}, plan.rubrics, directions)
    manifest["shard"] = plan.shard.as_dict() if plan.shard is not None else None  # `cells` above are this shard's
    if grid.run.executor == "ray":
        from engine.ray_pool import cluster

        manifest["cluster"] = cluster(providers)  # null when every call was cached (no worker started)
    write_json(run_dir / "manifest.json", manifest)
    scheduler: Scheduler | None = None
    try:
        _write_personas(plan, run_dir)
        scheduler = Scheduler(plan, providers, cache, ResultsWriter(run_dir), budget_usd)
        stats = await _execute(scheduler, stop, progress, progress_interval_s)
        # A shard holds a hash-chosen part of the cells: Δ pairs persona and baseline cells that other shards may hold,
        # so its tables come from the full run on the merged cache.
        stopped = stats.interrupted or stats.budget_exhausted or plan.shard is not None
        report = None if stopped else run_tables(run_dir, grid.baseline.name if grid.baseline else None, grid.run.score, BENCHMARK_TABLES)
    except (KeyboardInterrupt, asyncio.CancelledError):  # Ctrl-C, or the task cancelled (asyncio.run's Ctrl-C, Jupyter)
        _finish(run_dir, manifest, "interrupted", scheduler)
        raise
    except BaseException as exc:
        _finish(run_dir, manifest, "failed", scheduler, error=str(exc))
        raise
    _finish(run_dir, manifest, "interrupted" if stats.interrupted else "budget_exhausted" if stats.budget_exhausted else "complete", scheduler)
    if report is None:
        return RunOutcome(run_dir, stats, {})
    return RunOutcome(run_dir, stats, report.tables, report.warnings, report.run.score)


def _finish(run_dir: Path, manifest: dict, status: str, scheduler: Scheduler | None, error: str | None = None) -> None:
    """The manifest's last word. After a failure it may itself fail to write (a full disk): the first error is
    the one reported, so this one is dropped."""
    manifest.update(status=status, finished_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    if scheduler is not None:
        manifest["summary"] = scheduler.stats.summary()
        if manifest.get("cluster") is not None:  # workers replaced during the run: the record at its end
            from engine.ray_pool import cluster

            manifest["cluster"] = cluster(scheduler.providers)
    if error is not None:
        manifest["error"] = error
    try:
        write_json(run_dir / "manifest.json", manifest)
    except OSError:
        if status == "complete":
            raise
