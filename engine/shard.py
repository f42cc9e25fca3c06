"""Shards for job arrays: `mtpa-engine run GRID --shard I/N` runs one of N disjoint parts of a grid.

A cell belongs to shard `int(cell.id, 16) mod N`. `Cell.id` is already a sha256 prefix (80 bits) of the
cell's coordinates (model, benchmark, item, condition, persona, sample), so the partition is uniform,
independent of the cell's position in the plan, and the same on every machine and Python version: N processes
(SLURM array tasks, Kubernetes indexed jobs, several hosts) that each run one shard never overlap and together
cover the grid exactly. Each shard writes its own cache file and output folder (SQLite must never be shared
between hosts over a network file system); `mtpa-engine cache merge` joins the caches afterwards
(engine.cache_tools), and a run of the whole grid against the merged cache then rebuilds the full results with
no model call.

Indices are 0-based (0 <= I < N), as Kubernetes' JOB_COMPLETION_INDEX and `sbatch --array=0-(N-1)`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from engine.config import GridConfig


@dataclass(frozen=True, slots=True)
class Shard:
    index: int  # 0-based
    count: int  # N >= 1

    @classmethod
    def parse(cls, text: str) -> Shard:
        """`"I/N"` -> Shard. Raises ValueError (one line, naming the option) unless 0 <= I < N."""
        head, sep, tail = text.partition("/")
        try:
            index, count = int(head), int(tail)
        except ValueError:
            index, count = -1, 0
        if not sep or count < 1 or not 0 <= index < count:
            raise ValueError(f"--shard {text!r}: expected I/N with integers 0 <= I < N (e.g. 0/8 ... 7/8)")
        return cls(index, count)

    def holds(self, cell_id: str) -> bool:
        """Whether the cell with this id (a hex digest, `engine.plan.Cell.id`) is in this shard."""
        return int(cell_id, 16) % self.count == self.index

    @property
    def label(self) -> str:
        return f"{self.index}-of-{self.count}"

    def as_dict(self) -> dict[str, int]:
        """What the manifest records."""
        return {"index": self.index, "count": self.count}


def locate(grid: GridConfig, shard: Shard | None, cache: Path | None) -> GridConfig:
    """The grid with its cache and output folder moved for `--cache PATH` and `--shard I/N`.

    `--cache` replaces `[run] cache`. A shard, unless `--cache` names its file, uses `<cache stem>.shard-I-of-N
    <suffix>` beside the grid's cache, and writes its results to `<output_dir>/shards/I-of-N` (a folder the
    full run's `results/` never reads). Paths are made absolute, so they do not depend on the grid's folder.
    """
    run = grid.run
    if cache is not None:
        run = dataclasses.replace(run, cache=str(Path(cache).expanduser().resolve()))
    elif shard is not None:
        path = grid.cache_path
        run = dataclasses.replace(run, cache=str(path.with_name(f"{path.stem}.shard-{shard.label}{path.suffix}")))
    if shard is not None:
        run = dataclasses.replace(run, output_dir=str(grid.output_dir / "shards" / shard.label))
    return dataclasses.replace(grid, run=run)
