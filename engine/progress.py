"""Live progress: cells done, cache hits, calls/s, errors, ETA; redrawn a few times a second, not per cell.

The CLI's display, driven by the run's progress callback (engine.runner.ProgressCallback): the engine itself
never prints."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from rich.console import Console

if TYPE_CHECKING:
    from rich.progress import Progress

    from engine.batch import BatchStats
    from engine.scheduler import RunStats


def batch_line(b: BatchStats, now: float | None = None) -> str:
    """Batch jobs submitted (and resumed from an earlier run) / in progress / done, requests done of those in
    the jobs, seconds to the next poll."""
    wait = "" if b.next_poll_at is None else f", next poll in {max(0.0, b.next_poll_at - (now or time.time())):.0f}s"
    resumed = f" + {b.jobs_resumed:,} resumed" if b.jobs_resumed else ""
    return (f"batch jobs {b.jobs_submitted:,} submitted{resumed} / {b.jobs_in_progress:,} in progress / {b.jobs_done:,} done, "
            f"requests {b.requests_done:,}/{b.requests_submitted + b.requests_resumed:,} done{wait}")


class LiveProgress:
    """Call it as the run's progress callback: the first call starts the bar, the `done` call draws the last state."""

    def __init__(self, console: Console, enabled: bool = True) -> None:
        self.console = console
        self.enabled = enabled
        self._progress: Progress | None = None
        self._task = None
        self._started = time.perf_counter()

    def __call__(self, stats: RunStats, done: bool) -> None:
        if not self.enabled:
            return
        if self._progress is None:
            # Imported here: rich's live display (~5 ms) is for a bar that shows, not `--no-progress`.
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("[bold]cells"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"),
                TimeRemainingColumn(),
                console=self.console,
                transient=False,
            )
            self._task = self._progress.add_task("run", total=stats.cells_total, info="")
            self._started = time.perf_counter()
            self._progress.start()
        elapsed = max(time.perf_counter() - self._started, 1e-9)
        info = f"hits {stats.cache_hits:,}  calls {stats.calls_made:,} ({stats.calls_made / elapsed:,.1f}/s)  errors {sum(stats.errors.values()):,}"
        if (b := stats.batch) is not None and b.active:  # a fully cached rerun has no job to show
            info += f"  {batch_line(b)}"
        if stats.executor:
            info += f"  {stats.executor}"
        self._progress.update(self._task, completed=stats.cells_done, info=info)
        if done:
            self._progress.stop()
