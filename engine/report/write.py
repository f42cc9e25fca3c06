"""A report on disk: every table as CSV + Parquet, a Markdown summary and one HTML file; and the closing
tables a finished run writes to RUN_DIR/analysis/.

The top of the report package: it imports build (the aggregates), and tables (text) and html where a report is
written (a run's closing tables need neither); none of them imports it, so the package's imports run one way (write -> html -> tables -> build -> effects, position,
aggregate -> load).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from engine.report.build import RUN_TABLES_BY, BenchmarkTables, Report, ReportOptions, build_report
from engine.report.load import ReportError, open_run


def write_tables(report: Report, out_dir: Path, parquet: bool = True) -> list[Path]:
    """Each table as OUT_DIR/NAME.csv (and NAME.parquet); returns the paths written. Raises OSError."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, table in report.tables.items():
        written.append(out_dir / f"{name}.csv")
        table.write_csv(written[-1])
        if parquet:
            written.append(out_dir / f"{name}.parquet")
            table.write_parquet(written[-1])
    return written


def write_report(report: Report, out_dir: Path) -> list[Path]:
    """The tables, OUT_DIR/summary.md and OUT_DIR/report.html; returns the paths written. Raises OSError."""
    # Imported here: a run's closing tables (run_tables) write neither page.
    from engine.report.html import render_html
    from engine.report.tables import render_markdown

    written = write_tables(report, out_dir)
    for name, text in (("summary.md", render_markdown(report)), ("report.html", render_html(report))):
        (out_dir / name).write_text(text, encoding="utf-8")
        written.append(out_dir / name)
    return written


def run_tables(run_dir: Path, baseline: str | None, score: str = "primary", benchmark_tables: tuple[BenchmarkTables, ...] = ()) -> Report | None:
    """The report a finished run writes to RUN_DIR/analysis/ (CSV) and prints: scores, Δ by condition (on
    `score` and, where the run has p_gold, on the other score), country and sex, with intervals, the
    position-bias diagnostic and the `benchmark_tables` handed in; None when no call succeeded.
    `mtpa-engine report` gives the rest. Raises ReportError (a run folder without results)."""
    try:
        run = open_run(run_dir, baseline, score)
    except ReportError:
        if score == "primary":
            raise
        run = open_run(run_dir, baseline, "primary")  # no p_gold anywhere in this run: the tables say which score they show
    if run.results.filter(pl.col("status") == "ok").select(pl.len()).collect().item() == 0:
        return None  # every call failed: nothing to score, and the run's error summary says why
    specs = tuple(s for s in RUN_TABLES_BY if set(s) <= set(run.traits))
    report = build_report(run, ReportOptions(by=specs, extras=False, benchmark_tables=benchmark_tables))
    write_tables(report, Path(run_dir) / "analysis", parquet=False)
    return report
