"""engine.results.ResultsWriter: parts written in order by its background thread, errors raised to the caller."""

from __future__ import annotations

import shutil

import polars as pl
import pytest

from engine.results import COLUMNS, ResultsWriter, ResultsWriteError, read_results


def _row(i: int) -> tuple:
    values = dict.fromkeys(COLUMNS)
    values |= {"cell": i, "cell_id": f"c{i}", "model": "m", "status": "ok", "cached": False, "correct": i / 4, "sample": 0, "order": 0}
    return tuple(values[c] for c in COLUMNS)


def test_full_parts_are_written_in_order_and_close_swaps_them_in(tmp_path):
    writer = ResultsWriter(tmp_path, rows_per_part=2)
    for i in range(5):
        writer.add(_row(i))
    writer.close()
    parts = sorted(p.name for p in (tmp_path / "results").iterdir())
    assert parts == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    assert [pl.read_parquet(tmp_path / "results" / p)["cell"].to_list() for p in parts] == [[0, 1], [2, 3], [4]]
    frame = read_results(tmp_path).collect()
    assert frame.columns == list(COLUMNS) and frame["correct"].to_list() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert not any(p.name.startswith(".results-") for p in tmp_path.iterdir())


def test_a_background_write_failure_is_raised_by_the_next_flush_naming_the_part(tmp_path):
    writer = ResultsWriter(tmp_path, rows_per_part=2)
    writer.add(_row(0))
    writer._wait()
    shutil.rmtree(writer.dir)  # the private folder vanishes: the next part cannot be written
    writer.add(_row(1))  # starts part 0 in the background
    writer.add(_row(2))
    with pytest.raises(ResultsWriteError, match=r"part-00000\.parquet: cannot write results"):
        writer.add(_row(3))  # the next flush waits for part 0 and raises its error
    writer.discard()
    assert not (tmp_path / "results").exists()
