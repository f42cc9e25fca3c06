"""The `mtpa-engine` command line: a thin shell over the library face (engine._api).

It parses arguments, calls the face, prints (tables, the live bar, one-line errors) and owns what a library
must not: signal handling (Ctrl-C: exit 130, never a traceback) and exit codes (2 bad input, 74 a write failed
mid-run, 75 stopped on --budget, 130 interrupted).

`entry` is the `mtpa-engine` console script (and `python -m engine.cli`): the app, then a quick exit."""

from __future__ import annotations

import atexit
import errno
import gc
import math
import os
import signal
import sys
import threading
from typing import NoReturn


def _interrupted_at_start(signum: int, frame: object) -> None:
    raise SystemExit(130)  # SystemExit prints nothing: no traceback out of a half-done import


# Ctrl-C while the imports below load (~0.5 s) exits 130 quietly; `run` replaces this handler with its own.
if "pytest" not in sys.modules and threading.current_thread() is threading.main_thread():
    signal.signal(signal.SIGINT, _interrupted_at_start)

import importlib  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import TYPE_CHECKING  # noqa: E402

import click  # noqa: E402
from click.exceptions import Exit  # noqa: E402
import orjson  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.markup import escape  # noqa: E402
from rich.table import Table  # noqa: E402

from engine.cli_group import CommandGroup, Count, WholeNumber  # noqa: E402
from engine.cli_group import fail as _fail  # noqa: E402
from engine.console import CLIConsole, print_wide  # noqa: E402

if TYPE_CHECKING:
    import polars as pl  # imported where a table is built: `--help`, `cache` and `report` start without it

out = CLIConsole()
err = CLIConsole(stderr=True)

EXIT_INTERRUPTED = 130
EXIT_BUDGET = 75  # sysexits' EX_TEMPFAIL: stopped on --budget, resumable like an interrupt
EXIT_WRITE_FAILED = 74  # sysexits' EX_IOERR: a cache or results write failed mid-run (full disk, I/O error)


class _LazyGroup(CommandGroup):
    """The `mtpa-engine` group, whose subgroups are imported when named (click's "Lazily Loading Subcommands"
    pattern, https://click.palletsprojects.com/en/stable/complex/#lazily-loading-subcommands): `run` does not
    import the cache tools, the batch commands or the persona builder, whose survey readers (pyreadstat, numpy)
    took ~0.8 s.

    `lazy` maps a command name to ("module:attribute" of its click command, its one-line help in the command
    list), so `--help` lists every command without importing any of them, after the group's own. Its usage
    errors are printed as the engine's bad input is (engine.cli_group.fail)."""

    def __init__(self, *args, lazy: dict[str, tuple[str, str]] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy or {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*self.commands, *self.lazy]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy:
            module, _, attribute = self.lazy[cmd_name][0].partition(":")
            return getattr(importlib.import_module(module), attribute)
        return self.commands.get(cmd_name)

    def command_help(self, name: str) -> str | None:
        return self.lazy[name][1] if name in self.lazy else super().command_help(name)


def _print_version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from importlib.metadata import PackageNotFoundError, version

    try:
        out.print(f"mtpa-engine {version('mtpa-engine')}", highlight=False)
    except PackageNotFoundError:  # run from a source tree that was never installed
        out.print("mtpa-engine (not installed: run from a source tree)", highlight=False)
    ctx.exit()


@click.group(
    "mtpa-engine",
    cls=_LazyGroup,
    lazy={
        "personas": ("engine.personas_cli:app", "Build, inspect and summarise survey personas (mtpa-engine personas --help)."),
        "cache": ("engine.cache_cli:app", "Merge shard caches; stats, vacuum and export of a cache."),
        "batches": ("engine.batch.cli:app", "List and cancel provider batch jobs (transport = \"batch\")."),
    },
    help="Persona-effect evaluation engine.",
    context_settings={"show_default": True},  # defaults in every command's --help
)
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_version, help="Print the installed version and exit.")
@click.pass_context
def app(ctx: click.Context) -> None:
    """Every command's start: the collector back on (see _resume_gc), except for `run`, which resumes it once
    its calls start (_RunShell)."""
    if ctx.invoked_subcommand != "run":
        _resume_gc()


# Set by `entry` while the start-up's imports run with the cyclic garbage collector off (see _resume_gc).
_gc_paused = False


def _resume_gc() -> None:
    """End the start-up: the collector back on, the objects made so far (modules, classes, the plan) frozen out
    of its passes. Its full passes over the ~850 modules a run imports took ~0.06 s of a small run's start
    (bench/startup.py); imports make little cyclic garbage, while a long run's retries and tasks do, so it is on
    from the first call (and for every other command from its start)."""
    global _gc_paused
    if _gc_paused:
        _gc_paused = False
        gc.freeze()
        gc.enable()


def _use_uvloop() -> None:
    """uvloop's event loop where the optional `uvloop` extra is installed: at 1,000 concurrent API calls on 2
    shared cores the engine made 1.1-1.9x the calls/s of asyncio's loop in three paired runs (bench/api_throughput.py --loop),
    and took 8-15% less CPU per call in three interleaved rounds (--vs)."""
    try:
        import uvloop
    except ImportError:
        return
    import asyncio

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def usd(x: float | None) -> str:
    """Dollars as a person reads them: cents from $0.10 up, three significant digits below (a $0.0008 budget or
    a $0.00054 estimate is never shown as $0.00)."""
    if x is None:
        return ""
    return f"${x:,.2f}" if abs(x) >= 0.1 or x == 0 else f"${x:.3g}"


def print_frame(console: Console, frame: pl.DataFrame, title: str) -> None:
    table = Table(title=escape(title), title_justify="left")
    for name in frame.columns:
        table.add_column(name, justify="right" if frame[name].dtype.is_numeric() else "left")
    money = [name.startswith("usd") for name in frame.columns]
    for row in frame.iter_rows():
        table.add_row(*("" if v is None else usd(v) if is_usd else f"{v:.3f}" if isinstance(v, float) else escape(str(v)) for v, is_usd in zip(row, money)))
    print_wide(console, table)



@app.command()
@click.argument("grid", type=click.Path(path_type=Path), help="The grid.toml to run.")
@click.option("--dry-run", is_flag=True, help="Print cells per model and how many are cached; call nothing.")
@click.option("--summary-json", type=click.Path(path_type=Path), help="Also write the run summary as JSON here.")
@click.option("--progress/--no-progress", default=True, help="Live progress bar.")
@click.option("--budget", type=float, metavar="USD", help="Stop making new calls once this run has spent USD (resumable).")
@click.option("--shard", metavar="I/N", help="Run only shard I of N (0 <= I < N) of the cells, with its own cache and output folder; join the caches with `cache merge`.")
@click.option("--cache", type=click.Path(path_type=Path), help="Use this cache file instead of the grid's run.cache.")
@click.option("--ray", metavar="auto|ADDRESS", help="Run local/vllm models on Ray actors (executor = \"ray\") of the cluster at ADDRESS (auto: the running one).")
@click.option("--show-prompts", type=WholeNumber(), metavar="N", help="Print the first N rendered prompts of each benchmark x condition; call nothing.")
def run(grid: Path, dry_run: bool, summary_json: Path | None, progress: bool, budget: float | None, shard: str | None,
        cache: Path | None, ray: str | None, show_prompts: int | None) -> None:
    """Run a grid: every persona x question x model x condition cell, resumable through the cache."""
    if dry_run or show_prompts is not None:  # no calls: a dry run walks every cell of what may be a 10 M-cell plan
        _resume_gc()
    _use_uvloop()  # only `run` has an event loop; imported while Ctrl-C still exits 130 quietly (start-up handler)
    if summary_json is not None:  # checked before any call: a bad path found after the run would waste it
        from engine.errors import RunDirError
        from engine.rundir import check_file

        try:
            check_file(summary_json, "--summary-json")
        except RunDirError as exc:
            raise _fail(str(exc)) from None
    signal.signal(signal.SIGINT, _interrupt)  # from here Ctrl-C is a KeyboardInterrupt, handled below
    try:
        outcome = _run_or_dry_run(grid, dry_run, progress, budget, shard, cache, ray, show_prompts)
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut this message short
        err.print("interrupted: completed cells are cached; rerun the same command to resume.", highlight=False)
        raise Exit(EXIT_INTERRUPTED) from None
    if outcome is None:
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the manifest has its last word: printing it takes milliseconds
    summary = outcome.stats.summary()
    summary["warnings"] = outcome.warnings
    if summary_json is not None:
        try:
            summary_json.parent.mkdir(parents=True, exist_ok=True)
            summary_json.write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2))
        except OSError as exc:
            raise _write_failed(f"{summary_json}: cannot write the summary: {exc.strerror or exc}") from None
    if outcome.tables:
        from engine.report.tables import display_tables, print_tables

        print_tables(out, display_tables(outcome.tables, score=outcome.score))
        out.print(f"full tables: {outcome.run_dir / 'analysis'}/*.csv; all analyses: mtpa-engine report {outcome.run_dir}", highlight=False)
    if shard is not None:
        out.print(
            f"shard {shard}: once every shard is complete, "
            "mtpa-engine cache merge MERGED.sqlite SHARD.sqlite..., then mtpa-engine run GRID --cache MERGED.sqlite (no calls) for the results and tables.",
            highlight=False,
        )
    for warning in outcome.warnings:
        out.print(f"[bold yellow]warning:[/] position bias: {escape(warning)}", highlight=False, soft_wrap=True)
    if summary["errors"]:
        print_frame(out, _errors_frame(summary["errors"]), "errors by kind")
    if summary.get("invalid"):  # answers that were given but name nothing usable, by kind (bench_adapters.base)
        out.print("invalid answers by kind: " + ", ".join(f"{k} {n:,}" for k, n in sorted(summary["invalid"].items(), key=lambda kv: -kv[1])), highlight=False)
    if summary["errors"].get("quota"):
        err.print("quota: an API account is out of quota or credit (billing); that model's remaining calls were not made. "
                  "Top it up, then rerun the same command to call exactly those cells.", highlight=False, soft_wrap=True)
    unpriced = f" (+{summary['unpriced_calls']:,} calls without a price)" if summary["unpriced_calls"] else ""
    by_kind = f" ({', '.join(f'{k} {n:,}' for k, n in sorted(summary['errors'].items(), key=lambda kv: -kv[1]))})" if summary["errors"] else ""
    out.print(
        f"cells {summary['cells_done']:,}/{summary['cells_total']:,}  cache hits {summary['cache_hits']:,}  "
        f"model calls {summary['model_calls']:,}  errors {summary['errors_total']:,}{by_kind}  "
        f"cost ${summary['cost_usd']:.4f}{unpriced}  wall {summary['wall_s']:.1f}s  -> {outcome.run_dir}",
        highlight=False, soft_wrap=True,  # one line in a log: the run folder is copied from it
    )
    if outcome.stats.batch is not None:
        from engine.progress import batch_line

        batch = outcome.stats.batch
        batch.next_poll_at = None
        if batch.active:  # a fully cached rerun had no job to show
            out.print(batch_line(batch), highlight=False)
        for failed in batch.failed_jobs:
            err.print(f"[bold yellow]warning:[/] batch job {escape(failed)}; its unanswered cells are errors, submitted again by the next run", highlight=False, soft_wrap=True)
    if outcome.stats.interrupted:
        err.print("interrupted: completed cells are cached; rerun the same command to resume.")
        raise Exit(EXIT_INTERRUPTED)
    if outcome.stats.budget_exhausted:
        err.print(f"budget of {usd(budget)} reached (spent {usd(outcome.stats.cost_usd)}; calls in flight finish): no new call was started after it; rerun (with a new --budget) to resume.")
        raise Exit(EXIT_BUDGET)


def _interrupt(signum: int, frame: object) -> None:
    """Ctrl-C outside the calls: a KeyboardInterrupt where the program is, at once. Not signal.default_int_handler,
    which asyncio.run would swap for its own (cancel the task at its next await, however far that is)."""
    raise KeyboardInterrupt


class _RunShell:
    """The run's progress callback: draws the live bar and, while the calls run, makes Ctrl-C (and SIGTERM) a
    graceful stop (no new calls; calls in flight finish, are cached and summarised) instead of an interrupt."""

    def __init__(self, show_progress: bool) -> None:
        from engine.progress import LiveProgress

        self.bar = LiveProgress(err, show_progress)
        self.stop = None  # the run's asyncio.Event, made on its loop
        self.calling = False

    async def run(self, config, budget: float | None, part):
        import asyncio

        import engine

        self.stop = asyncio.Event()
        return await engine.run_async(config, budget_usd=budget, shard=part, progress=self, stop=self.stop)

    def __call__(self, stats, done: bool) -> None:
        import asyncio

        loop = asyncio.get_running_loop()
        if not done and not self.calling:
            _resume_gc()
            self.calling = True
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self.stop.set)
        self.bar(stats, done)
        if done and self.calling:
            self.calling = False
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)  # SIGINT back to a KeyboardInterrupt, SIGTERM to its default


def _run_or_dry_run(grid: Path, dry_run: bool, progress: bool, budget: float | None, shard: str | None = None, cache: Path | None = None, ray: str | None = None, show_prompts: int | None = None):
    """The run (its RunOutcome), or the dry run's tables (None). Every known failure is one line: bad input or an
    unusable path exit 2, a write failing mid-run EXIT_WRITE_FAILED."""
    import asyncio

    import engine
    from engine.errors import CacheError, GridError, PreflightError, RunDirError, WriteError
    from engine.shard import Shard, locate
    from persona_builder import PersonaFileError

    try:
        if grid.is_dir():
            raise _fail(f"{grid}: is a folder, expected a grid .toml file")
        part = Shard.parse(shard) if shard is not None else None
        config = locate(engine.load_grid(grid), part, cache)
        if ray is not None:
            from engine.ray_pool import on_ray

            config = on_ray(config, ray)
        if show_prompts is not None:
            from engine.plan import Plan
            from engine.show_prompts import preview

            if show_prompts < 1:
                raise _fail("--show-prompts: expected a positive number of prompts")
            for block in preview(Plan.from_grid(config), show_prompts):
                out.print(block + "\n", markup=False, highlight=False, soft_wrap=True, emoji=False)  # byte for byte: ":x:" stays ":x:"
            return None
        if dry_run:
            title = config.path.name + (f" (shard {part.index}/{part.count})" if part else "")
            for heading, frame in engine.dry_run(config, part).tables(title):
                print_frame(out, frame, heading)
            return None
        if budget is not None and not (math.isfinite(budget) and budget > 0):
            raise _fail("--budget: expected a positive number of USD")
        return asyncio.run(_RunShell(progress).run(config, budget, part))
    except WriteError as exc:
        raise _write_failed(str(exc)) from None
    except (RunDirError, CacheError) as exc:
        raise _fail(str(exc)) from None
    except PreflightError as exc:
        raise _fail(f"preflight: {exc}") from None
    except GridError as exc:
        raise _fail(str(exc)) from None
    except (PersonaFileError, FileNotFoundError, ValueError) as exc:
        raise _fail(f"{grid}: {exc}") from None
    except OSError as exc:  # any other file the run could not read or write
        message = f"{exc.filename or grid}: {exc.strerror or exc}"
        raise (_write_failed(message) if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO) else _fail(message)) from None


def _write_failed(message: str) -> Exit:
    err.print(f"[bold red]error:[/] {escape(message)}; the run stopped, every answer committed before is kept: fix that (e.g. free space) and rerun to resume.", highlight=False, soft_wrap=True)
    return Exit(EXIT_WRITE_FAILED)


def _errors_frame(errors: dict[str, int]) -> pl.DataFrame:
    import polars as pl

    from engine.batch import UNANSWERED_KINDS
    from engine.providers.errors import QUOTA, TRANSIENT

    retried = {"bad_response": "if not JSON", QUOTA: "no: the model's other calls were skipped"} | dict.fromkeys(TRANSIENT, "yes, gave up")
    retried |= dict.fromkeys(UNANSWERED_KINDS, "no: the next run submits it again")
    rows = [(kind, n, retried.get(kind, "no, permanent")) for kind, n in sorted(errors.items(), key=lambda kv: -kv[1])]
    return pl.DataFrame(rows, schema=["kind", "calls", "retried"], orient="row")


@app.command()
@click.argument("run_dir", type=click.Path(path_type=Path), help="A run directory (results/, personas.parquet, manifest.json).")
@click.option("--by", multiple=True, help="Subgroup trait, repeatable; join traits with + for an intersection (sex+age_band). Default: country, region, sex, age_band.")
@click.option("--baseline", help="Condition to pair against. Default: the grid's no-persona condition.")
@click.option("--bootstrap", type=Count(min=0), default=1000, help="Paired bootstrap resamples (0: point estimates only).")
@click.option("--seed", type=Count(min=0), default=0, help="Bootstrap seed.")
@click.option("--min-size", type=Count(min=1), default=30, help="Groups with fewer personas are flagged (never hidden); with fewer personas or questions, Δ is tested by cluster-robust t.")
@click.option("--score", help="What Δ is computed on: primary (the benchmark's score) or p_gold (probability on the correct option). Default: the grid's [run] score, else primary.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), help="Output folder. Default: RUN_DIR/report.")
def report(run_dir: Path, by: tuple[str, ...], baseline: str | None, bootstrap: int, seed: int, min_size: int, score: str | None, out_dir: Path | None) -> None:
    """Persona-effect report: Δ with 95% CIs and p by subgroup, trait ablation, pass@k; CSV, Parquet, Markdown, HTML."""
    import engine
    from engine.errors import ReportError, RunDirError
    from engine.report.tables import print_tables, report_tables

    try:
        if out_dir is not None:
            from engine.rundir import check_folder

            check_folder(out_dir, "--out")
        written = engine.build_report(run_dir, by=list(by) or None, baseline=baseline, score=score, bootstrap=bootstrap, seed=seed, min_size=min_size, out_dir=out_dir)
    except (ReportError, RunDirError) as exc:
        raise _fail(str(exc)) from None
    result, target = written.report, written.out_dir
    print_tables(out, report_tables(result))
    for line in (*(f"position bias: {w}" for w in result.warnings), *result.run.notes):
        out.print(f"[bold yellow]warning:[/] {line}", highlight=False, soft_wrap=True)
    out.print(f"{len(written.files)} files -> {target}  (open {target / 'report.html'})", highlight=False)


def entry() -> NoReturn:
    """The `mtpa-engine` command: run the app, then leave without the interpreter's teardown.

    Tearing down the ~850 modules a run imports (polars, numpy, aiohttp) took ~0.18 s of CPU after
    the last line was printed, a fifth of a 10-call API run (bench/startup.py). Once the command has
    returned, with no thread but this one left, nothing remains to do but what atexit holds (logging's flush,
    coverage's save) and the standard streams' buffers: both are run and flushed, then the process ends with
    the command's exit code. Anything else (a thread still running, a stream that cannot be flushed, such as
    a closed pipe, or a non-integer exit) takes the ordinary exit, which reports it as Python always has."""
    global _gc_paused
    gc.disable()  # until the start-up's imports are done: _resume_gc
    _gc_paused = True
    try:
        app()
        code: object = 0
    except SystemExit as exc:
        code = exc.code
    finally:
        _resume_gc()  # a run that stopped before its calls (bad input, a failed preflight)
    code = 0 if code is None else code
    if isinstance(code, int) and threading.active_count() == 1:
        atexit._run_exitfuncs()  # CPython clears them once run: the fallback below cannot run them twice
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except (OSError, ValueError, AttributeError):  # a closed pipe or stream, or none (stdout None)
            pass
        else:
            os._exit(code)
    raise SystemExit(code)


if __name__ == "__main__":
    entry()
