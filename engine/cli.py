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

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Persona-effect evaluation engine.")
out = Console()
err = Console(stderr=True)

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


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
) -> None:
    """Run a grid: every persona x question x model x condition cell, resumable through the cache."""
    from engine import runner
    from persona_builder import PersonaFileError

    try:
        config = load_grid(grid)
        if dry_run:
            counts = runner.dry_run(config)
            rows = [(mid, total, cached, total - cached) for mid, (total, cached) in counts.items()]
            frame = pl.DataFrame(rows, schema=["model", "cells", "cached", "to_call"], orient="row")
            print_frame(out, frame, f"dry run: {config.path.name}")
            return
        outcome = runner.run(config, err, show_progress=progress)
    except GridError as exc:
        raise _fail(str(exc)) from None
    except (PersonaFileError, FileNotFoundError, ValueError) as exc:
        raise _fail(f"{grid}: {exc}") from None
    summary = outcome.stats.summary()
    if summary_json is not None:
        summary_json.parent.mkdir(parents=True, exist_ok=True)
        summary_json.write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2))
    for name, frame in outcome.tables.items():
        if name != "scores_by_condition" or len(outcome.tables) == 1:
            shown = frame.drop("benchmark", "questions", strict=False) if frame["benchmark"].n_unique() == 1 else frame
            print_frame(out, shown, f"{name.replace('_', ' ')}  (full table: {outcome.run_dir / 'analysis' / name}.csv)")
    out.print(
        f"cells {summary['cells_done']:,}/{summary['cells_total']:,}  cache hits {summary['cache_hits']:,}  "
        f"model calls {summary['model_calls']:,}  errors {summary['errors_total']:,} {summary['errors'] or ''}  "
        f"wall {summary['wall_s']:.1f}s  -> {outcome.run_dir}",
        highlight=False,
    )
    if outcome.stats.interrupted:
        err.print("interrupted: completed cells are cached; rerun the same command to resume.")
        raise typer.Exit(EXIT_INTERRUPTED)


app.add_typer(personas_app, name="personas", help="Build, inspect and summarise survey personas.")

if __name__ == "__main__":
    app()
