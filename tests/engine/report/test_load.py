"""engine/report/load.py: a run folder as the report reads it."""

from __future__ import annotations

import pytest
from polars.testing import assert_frame_equal

import engine
from engine.report import load
from engine.testing.synthetic import BASELINE, condition, personas_frame, random_results, write_run


@pytest.mark.parametrize("limit", ["IN_MEMORY_ROWS", "IN_MEMORY_BYTES"])
def test_a_small_run_read_and_queried_in_memory_reports_exactly_what_streaming_its_files_reports(tmp_path, monkeypatch, limit):
    people = personas_frame(12, ["Germany", "India", "Brazil"], seed=3)
    chunks = random_results(models=["m"], benchmarks=["truthfulqa", "bbq"], effects={"prose": 0.1}, questions=20, personas=people, seed=4)
    run_dir = write_run(tmp_path / "run", list(chunks), people, [BASELINE, condition("prose")])
    in_memory = engine.build_report(run_dir, by="country", bootstrap=200, out_dir=tmp_path / "a")
    small = load.open_run(run_dir)
    assert small.in_memory and small.rows.explain().startswith("DF")  # read once, into memory; queried in memory
    monkeypatch.setattr(load, limit, 10)  # more rows, or more bytes: every query streams the Parquet parts
    large = load.open_run(run_dir)
    assert not large.in_memory and "Parquet SCAN" in large.rows.explain()
    streamed = engine.build_report(run_dir, by="country", bootstrap=200, out_dir=tmp_path / "b")
    assert in_memory.report.tables.keys() == streamed.report.tables.keys() and len(in_memory.report.tables) >= 4
    for name, table in in_memory.report.tables.items():
        assert_frame_equal(table, streamed.report.tables[name], check_exact=True)
