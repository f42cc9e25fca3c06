"""Live progress: cells done, cache hits, calls/s, errors, ETA; redrawn a few times a second, not per cell."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from engine.scheduler import RunStats


class LiveProgress:
    def __init__(self, stats: RunStats, console: Console, enabled: bool = True, notes: Callable[[], str] | None = None) -> None:
        self.stats = stats
        self.notes = notes  # more of the line: Ray workers alive and batches in flight (engine.runner)
        self.enabled = enabled
        self._progress = Progress(
            TextColumn("[bold]cells"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
            disable=not enabled,
        )
        self._task = self._progress.add_task("run", total=stats.cells_total, info="")
        self._started = time.perf_counter()

    def refresh(self) -> None:
        s = self.stats
        elapsed = max(time.perf_counter() - self._started, 1e-9)
        info = f"hits {s.cache_hits:,}  calls {s.calls_made:,} ({s.calls_made / elapsed:,.1f}/s)  errors {sum(s.errors.values()):,}"
        if self.notes is not None:
            info += f"  {self.notes()}"
        self._progress.update(self._task, completed=s.cells_done, info=info)

    async def run(self) -> None:
        if not self.enabled:
            return
        with self._progress:
            try:
                while True:
                    self.refresh()
                    await asyncio.sleep(0.25)
            finally:
                self.refresh()
