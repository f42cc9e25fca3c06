"""Live progress: cells done, cache hits, calls/s, errors, ETA; redrawn a few times a second, not per cell."""

from __future__ import annotations

import asyncio
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from engine.batch import BatchStats
from engine.scheduler import RunStats


def batch_line(b: BatchStats, now: float | None = None) -> str:
    """Batch jobs submitted / in progress / done, requests done of submitted, seconds to the next poll."""
    wait = "" if b.next_poll_at is None else f", next poll in {max(0.0, b.next_poll_at - (now or time.time())):.0f}s"
    return (f"batch jobs {b.jobs_submitted:,} submitted / {b.jobs_in_progress:,} in progress / {b.jobs_done:,} done, "
            f"requests {b.requests_done:,}/{b.requests_submitted:,} done{wait}")


class LiveProgress:
    def __init__(self, stats: RunStats, console: Console, enabled: bool = True) -> None:
        self.stats = stats
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
        if (b := s.batch) is not None:
            info += f"  {batch_line(b)}"
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
