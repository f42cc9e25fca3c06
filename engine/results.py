"""Per-cell results, streamed to Parquet part files as they complete.

Results are a view of the cache: every run rewrites them from scratch (cache hits cost microseconds), so a
resumed run always ends with complete results and no duplicate rows.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import polars as pl

SCHEMA: dict[str, pl.DataType] = {
    "cell": pl.Int64(),
    "cell_id": pl.String(),
    "model": pl.String(),
    "benchmark": pl.String(),
    "item_id": pl.String(),
    "condition": pl.String(),
    "persona_id": pl.String(),
    "sample": pl.Int32(),
    "key": pl.String(),
    "cached": pl.Boolean(),
    "status": pl.String(),  # ok | error
    "response": pl.String(),
    "answer": pl.String(),  # parsed letter; null when invalid or errored
    "gold": pl.String(),
    "correct": pl.Float64(),  # null when the call errored (no answer to score)
    "invalid": pl.Boolean(),
    "p_gold": pl.Float64(),
    "prompt_tokens": pl.Int64(),
    "completion_tokens": pl.Int64(),
    "latency_s": pl.Float64(),
    "error_kind": pl.String(),
    "error": pl.String(),
    "score": pl.Float64(),  # the benchmark's primary per-item metric (e.g. TruthfulQA MC2 mass); null when errored
    "meta": pl.String(),  # JSON of the item's slicing metadata (category, BBQ context and biased letter, ...)
    "judge_key": pl.String(),  # judge mode: the cache key of the judge's verdict on `response`
    "verdict": pl.String(),  # judge mode: the judge's raw text (its level letter is `answer`)
    "order": pl.Int32(),  # the item's option order (grid key `orders`); 0: the seeded shuffle
    "option": pl.Int32(),  # the chosen option as its index in order 0, comparable across orders; null without an answer
}
COLUMNS = tuple(SCHEMA)


def results_glob(run_dir: Path) -> str:
    return str(Path(run_dir) / "results" / "*.parquet")


class ResultsWriter:
    def __init__(self, run_dir: Path, rows_per_part: int = 100_000) -> None:
        self.dir = Path(run_dir) / "results"
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        self.rows_per_part = rows_per_part
        self._cols: list[list] = [[] for _ in COLUMNS]
        self._parts = 0
        self.rows = 0

    def add(self, row: tuple) -> None:
        for col, value in zip(self._cols, row):
            col.append(value)
        self.rows += 1
        if len(self._cols[0]) >= self.rows_per_part:
            self.flush()

    def flush(self) -> None:
        if not self._cols[0]:
            return
        frame = pl.DataFrame(dict(zip(COLUMNS, self._cols)), schema=SCHEMA)
        final = self.dir / f"part-{self._parts:05d}.parquet"
        tmp = final.with_suffix(".tmp")
        frame.write_parquet(tmp)
        os.replace(tmp, final)  # a reader never sees half a part
        self._parts += 1
        self._cols = [[] for _ in COLUMNS]

    def close(self) -> None:
        self.flush()


def read_results(run_dir: Path) -> pl.LazyFrame:
    # Tolerant of the schema's age: a run written before a column existed reads it as null.
    return pl.scan_parquet(results_glob(run_dir), schema=SCHEMA, missing_columns="insert", extra_columns="ignore")
