"""The CLI's terminal output (rich): consoles that survive a reader going away, tables whole when piped."""

from __future__ import annotations

import os

from rich.console import Console
from rich.table import Table


class CLIConsole(Console):
    def on_broken_pipe(self) -> None:
        """A reader that went away (`| head -1`) silences this stream, not the command: rich's own handler exits 1
        on the spot, which lost the exit code (75 budget, 130 interrupt) and the other stream's last line."""
        self.quiet = True
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, self.file.fileno())


def print_wide(console: Console, table: Table) -> None:
    """Piped (no terminal), a table is printed at its natural width: rich would squeeze it into 80 columns
    (ids and numbers cut to `…`)."""
    if console.is_terminal:
        console.print(table)
        return
    from rich.measure import Measurement

    natural = Measurement.get(console, console.options.update_width(10_000), table).maximum
    width = console.width
    console.width = max(width, natural)  # print(width=) is capped at the console's width
    try:
        console.print(table)
    finally:
        console.width = width
