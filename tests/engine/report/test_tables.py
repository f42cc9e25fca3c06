"""engine/report/tables.py: the closing and report tables as printed."""

from __future__ import annotations

import io

import polars as pl
from rich.console import Console

from engine.report.tables import print_tables


def test_values_titles_and_headers_print_verbatim_never_read_as_console_markup():
    frame = pl.DataFrame({"country": ["[bold]Atlantis[/bold]", "Brazil"], "[i]Δ": ["+0.250 [-1.000, +1.000]", None]})
    buffer = io.StringIO()
    print_tables(Console(file=buffer, width=120), [("score, condition [red]prose", frame)])
    lines = buffer.getvalue().splitlines()
    assert lines[0].rstrip() == "score, condition [red]prose"
    assert "[bold]Atlantis[/bold]" in buffer.getvalue()
    assert "[i]Δ" in buffer.getvalue() and "+0.250 [-1.000, +1.000]" in buffer.getvalue()
    brazil = next(line for line in lines if "Brazil" in line)
    assert brazil.replace("│", "").split() == ["Brazil"]  # a null prints as an empty cell
