"""The `mtpa-engine` command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import orjson
import polars as pl
import typer
from rich.console import Console
from rich.table import Table

from engine.config import GridError, load_grid
from persona_builder.cli import app as personas_app

# No locals in tracebacks: provider frames hold API keys.
app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_show_locals=False, help="Persona-effect evaluation engine.")
out = Console()
err = Console(stderr=True)

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
EXIT_BUDGET = 75  # sysexits' EX_TEMPFAIL: stopped on --budget, resumable like an interrupt


@app.callback()
def main() -> None:
    """Persona-effect evaluation engine: survey personas x benchmarks x LLMs, cached and resumable."""


def _fail(message: str) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(EXIT_BAD_INPUT)


def print_frame(console: Console, frame: pl.DataFrame, title: str) -> None:
    table = Table(title=title, title_justify="left")
    for name in frame.columns:
        table.add_column(name, justify="right" if frame[name].dtype.is_numeric() else "left")
    for row in frame.iter_rows():
        table.add_row(*("" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v) for v in row))
    console.print(table)


@app.command()
def run(
    grid: Annotated[Path, typer.Argument(help="The grid.toml to run.")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print cells per model and how many are cached; call nothing.")] = False,
    summary_json: Annotated[Path | None, typer.Option(help="Also write the run summary as JSON here.")] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Live progress bar.")] = True,
    budget: Annotated[float | None, typer.Option("--budget", metavar="USD", help="Stop making new calls once this run has spent USD (resumable).")] = None,
) -> None:
    """Run a grid: every persona x question x model x condition cell, resumable through the cache."""
    from engine import runner
    from engine.providers.base import PreflightError
    from persona_builder import PersonaFileError

    try:
        config = load_grid(grid)
        if dry_run:
            counts = runner.dry_run(config)
            rows = [(mid, total, cached, total - cached) for mid, (total, cached) in counts.items()]
            frame = pl.DataFrame(rows, schema=["model", "cells", "cached", "to_call"], orient="row")
            print_frame(out, frame, f"dry run: {config.path.name}")
            print_frame(out, _estimate_frame(config), "estimate for the calls to make (tokens ~4 characters each; output at most max_tokens)")
            return
        if budget is not None and budget <= 0:
            raise _fail("--budget: expected a positive number of USD")
        outcome = runner.run(config, err, show_progress=progress, budget_usd=budget)
    except PreflightError as exc:
        raise _fail(f"preflight: {exc}") from None
    except GridError as exc:
        raise _fail(str(exc)) from None
    except (PersonaFileError, FileNotFoundError, ValueError) as exc:
        raise _fail(f"{grid}: {exc}") from None
    summary = outcome.stats.summary()
    summary["warnings"] = outcome.warnings
    if summary_json is not None:
        summary_json.parent.mkdir(parents=True, exist_ok=True)
        summary_json.write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2))
    if outcome.tables:
        from engine.report.tables import display_tables, print_tables

        print_tables(out, display_tables(outcome.tables, score=outcome.score))
        out.print(f"full tables: {outcome.run_dir / 'analysis'}/*.csv; all analyses: mtpa-engine report {outcome.run_dir}", highlight=False)
    for warning in outcome.warnings:
        out.print(f"[bold yellow]warning:[/] position bias: {warning}", highlight=False, soft_wrap=True)
    if summary["errors"]:
        print_frame(out, _errors_frame(summary["errors"]), "errors by kind")
    unpriced = f" (+{summary['unpriced_calls']:,} calls without a price)" if summary["unpriced_calls"] else ""
    out.print(
        f"cells {summary['cells_done']:,}/{summary['cells_total']:,}  cache hits {summary['cache_hits']:,}  "
        f"model calls {summary['model_calls']:,}  errors {summary['errors_total']:,} {summary['errors'] or ''}  "
        f"cost ${summary['cost_usd']:.4f}{unpriced}  wall {summary['wall_s']:.1f}s  -> {outcome.run_dir}",
        highlight=False,
    )
    if outcome.stats.interrupted:
        err.print("interrupted: completed cells are cached; rerun the same command to resume.")
        raise typer.Exit(EXIT_INTERRUPTED)
    if outcome.stats.budget_exhausted:
        err.print(f"budget of ${budget:.2f} reached: no new calls were made; rerun (with a new --budget) to resume.")
        raise typer.Exit(EXIT_BUDGET)


def _estimate_frame(config) -> pl.DataFrame:
    from engine import runner
    from engine.cache import ResponseCache
    from engine.pricing import estimate

    plan, providers = runner.prepare(config)
    cache = ResponseCache(config.cache_path) if config.cache_path.exists() else None
    try:
        est = estimate(plan, providers, cache)
    finally:
        if cache is not None:
            cache.close()
    rows = [(mid, e.calls, e.input_tokens, e.output_tokens, e.usd) for mid, e in est.items()]
    known = [e.usd for e in est.values() if e.usd is not None]
    rows.append(("total", sum(e.calls for e in est.values()), sum(e.input_tokens for e in est.values()), sum(e.output_tokens for e in est.values()), sum(known) if known else None))
    return pl.DataFrame(rows, schema=["model", "calls", "input_tokens", "max_output_tokens", "usd"], orient="row")


def _errors_frame(errors: dict[str, int]) -> pl.DataFrame:
    from engine.providers.errors import TRANSIENT

    retried = {"bad_response": "if not JSON"} | dict.fromkeys(TRANSIENT, "yes, gave up")
    rows = [(kind, n, retried.get(kind, "no, permanent")) for kind, n in sorted(errors.items(), key=lambda kv: -kv[1])]
    return pl.DataFrame(rows, schema=["kind", "calls", "retried"], orient="row")


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="A run directory (results/, personas.parquet, manifest.json).")],
    by: Annotated[list[str] | None, typer.Option("--by", help="Subgroup trait, repeatable; join traits with + for an intersection (sex+age_band). Default: country, region, sex, age_band.")] = None,
    baseline: Annotated[str | None, typer.Option(help="Condition to pair against. Default: the grid's no-persona condition.")] = None,
    bootstrap: Annotated[int, typer.Option(min=0, help="Paired bootstrap resamples (0: point estimates only).")] = 1000,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
    min_size: Annotated[int, typer.Option(min=1, help="Subgroups with fewer personas are flagged (never hidden).")] = 30,
    score: Annotated[str | None, typer.Option("--score", help="What Δ is computed on: primary (the benchmark's score) or p_gold (probability on the correct option). Default: the grid's [run] score, else primary.")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Output folder. Default: RUN_DIR/report.")] = None,
) -> None:
    """Persona-effect report: Δ with paired-bootstrap CIs by subgroup, trait ablation, pass@k; CSV, Parquet, Markdown, HTML."""
    from engine.report.aggregate import Settings
    from engine.report.build import ReportOptions, build_report, parse_by, write_report
    from engine.report.load import ReportError, open_run
    from engine.report.tables import print_tables, report_tables

    try:
        options = ReportOptions(by=parse_by(by) if by else None, settings=Settings(resamples=bootstrap, seed=seed, min_size=min_size))
        result = build_report(open_run(run_dir, baseline, score), options)
    except ReportError as exc:
        raise _fail(str(exc)) from None
    target = out_dir or run_dir / "report"
    written = write_report(result, target)
    print_tables(out, report_tables(result))
    for line in (*(f"position bias: {w}" for w in result.warnings), *result.run.notes):
        out.print(f"[bold yellow]warning:[/] {line}", highlight=False, soft_wrap=True)
    out.print(f"{len(written)} files -> {target}  (open {target / 'report.html'})", highlight=False)


app.add_typer(personas_app, name="personas", help="Build, inspect and summarise survey personas.")

if __name__ == "__main__":
    app()
