"""`batches` commands: list the provider batch jobs recorded in a cache, and cancel them.

Mounted into the main CLI as `mtpa-engine batches ...`. Bad input (no grid, no cache, an unknown job) is one line
on stderr, exit 2. Cancelling asks the provider; the next `mtpa-engine run` of the grid collects what the job
finished, and its unfinished requests become `cancelled` errors, submitted again by the run after.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import click
import orjson
from rich.table import Table

from engine.cli_group import CommandGroup
from engine.cli_group import fail as _fail
from engine.console import CLIConsole, print_wide

app = CommandGroup("batches", help="List and cancel provider batch jobs (transport = \"batch\").")
out = CLIConsole(soft_wrap=True, markup=False, emoji=False, highlight=False)  # ids, paths and provider messages as they are

_COLUMNS = ("id", "remote_id", "grid", "model", "status", "provider_status", "requests", "done", "submitted", "finished", "message")


def _open(grid: Path | None, cache: Path | None):
    """(grid config or None, BatchStore) of the grid's cache, or of --cache."""
    from engine.batch.store import BatchStore
    from engine.cache import ResponseCache
    from engine.errors import CacheError, GridError
    from engine.grid import load_grid

    config = None
    if grid is not None:
        try:
            config = load_grid(grid)
        except GridError as exc:
            raise _fail(str(exc)) from None
        cache = cache or config.cache_path
    if cache is None:
        raise _fail("name a GRID or --cache PATH")
    if not cache.is_file():
        raise _fail(f"{cache}: no cache file here")
    try:
        return config, BatchStore(ResponseCache(cache))
    except CacheError as exc:
        raise _fail(str(exc)) from None


def _when(t: float | None) -> str:
    return "" if t is None else time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t))


@app.command("list")
@click.argument("grid", required=False, type=click.Path(path_type=Path), help="The grid whose jobs to list (default: ./grid.toml when there is one; with --cache alone, every grid's).")
@click.option("--cache", type=click.Path(path_type=Path), help="The cache file (default: the grid's run.cache).")
@click.option("--live", is_flag=True, help="Only jobs not closed yet, as the cache records them (the provider is asked by a run, not here).")
@click.option("--json", "as_json", is_flag=True, help="Print the jobs as JSON.")
def list_jobs(grid: Path | None, cache: Path | None, live: bool, as_json: bool) -> None:
    """The batch jobs in the cache: local and provider ids, grid, model, status, requests and done, times."""
    if grid is None and cache is None and Path("grid.toml").is_file():
        grid = Path("grid.toml")  # as `batches cancel` does
    config, store = _open(grid, cache)
    jobs = store.jobs(config.run.name if config else None, live=live)
    if as_json:
        sys.stdout.write(orjson.dumps([j.as_dict() for j in jobs], option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    table = Table(title=f"batch jobs in {store.cache.path}", title_justify="left")
    for name in _COLUMNS:
        table.add_column(name, justify="right" if name in ("requests", "done") else "left")
    for j in jobs:
        table.add_row(j.id, j.remote_id or "", j.grid, j.model, j.status, j.provider_status or "", f"{j.requests:,}", f"{j.done:,}", _when(j.submitted_at), _when(j.finished_at), j.message or "")
    print_wide(out, table)  # whole ids, to copy into `batches cancel JOB`


@app.command()
@click.argument("job", required=False, help="A job's local or provider id (see `batches list`).")
@click.option("--all", "all_jobs", is_flag=True, help="Cancel every live job of the grid.")
@click.option("--grid", type=click.Path(path_type=Path), default=Path("grid.toml"), help="The grid the jobs belong to (its models name the provider and key).")
def cancel(job: str | None, all_jobs: bool, grid: Path) -> None:
    """Ask the provider to cancel a job (or --all of the grid's); the next run collects what they finished."""
    from engine.batch import open_transport
    from engine.batch.store import SUBMITTED
    from engine.providers import create_provider

    if (job is None) == (not all_jobs):
        raise _fail("name one JOB or --all")
    if not grid.is_file():
        raise _fail(f"{grid}: no grid file here (pass --grid GRID)")
    config, store = _open(grid, None)
    assert config is not None
    if all_jobs:
        jobs = [j for j in store.jobs(config.run.name, live=True) if j.status == SUBMITTED]
    else:
        found = store.job(job)  # type: ignore[arg-type]
        if found is None or found.grid != config.run.name:
            raise _fail(f"no batch job '{job}' of grid '{config.run.name}' in {store.cache.path}")
        if found.status != SUBMITTED:
            raise _fail(f"batch job '{job}' is {found.status}: only a submitted job can be cancelled")
        jobs = [found]
    models = {m.id: m for m in config.models}

    async def cancel_all() -> list[str]:
        lines = []
        for j in jobs:
            if j.model not in models:
                lines.append(f"{j.id}: model '{j.model}' is no longer in {grid}; not cancelled")
                continue
            transport = open_transport(create_provider(models[j.model]))  # type: ignore[arg-type]
            try:
                await transport.cancel(j.remote_id)  # type: ignore[arg-type]
                lines.append(f"{j.id} ({j.remote_id}): cancelling; the next run collects what it finished")
            except Exception as exc:  # noqa: BLE001 - reported per job, the others are still cancelled
                from engine.providers.errors import describe

                lines.append(f"{j.id} ({j.remote_id}): cancel failed: {transport.provider._redact(describe(exc))}")
            finally:
                await transport.aclose()
        return lines

    if not jobs:
        out.print(f"no submitted batch job of grid '{config.run.name}' in {store.cache.path}")
    for line in asyncio.run(cancel_all()):
        out.print(line)
