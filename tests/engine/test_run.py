"""End to end runs of `mtpa-engine run` against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time

import orjson
import polars as pl
import pytest

from tests.conftest import run_until_killed, write_grid
from engine.testing.servers.openai_compat import OpenAICompatServer


def _run(grid, *args, check=True):
    cmd = [sys.executable, "-m", "engine.cli", "run", str(grid), "--no-progress", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def _results(grid) -> pl.DataFrame:
    return pl.read_parquet(grid.parent / "out" / "t" / "results" / "*.parquet")


def test_run_then_rerun_makes_no_calls(tmp_path, openai_server):
    grid = write_grid(tmp_path, base_url=openai_server.base_url, personas=3, questions=4)
    _run(grid, "--summary-json", str(tmp_path / "s1.json"))
    cells = 4 + 3 * 4
    assert openai_server.state.requests == cells
    s1 = orjson.loads((tmp_path / "s1.json").read_bytes())
    assert s1["cells_total"] == cells and s1["model_calls"] == cells and s1["cache_hits"] == 0 and s1["errors_total"] == 0

    _run(grid, "--summary-json", str(tmp_path / "s2.json"))
    assert openai_server.state.requests == cells, "a cache hit never makes a call"
    s2 = orjson.loads((tmp_path / "s2.json").read_bytes())
    assert s2["cache_hits"] == cells and s2["model_calls"] == 0

    results = _results(grid)
    assert results.height == cells and results["cell_id"].n_unique() == cells
    assert results["cached"].all()
    assert set(results["answer"].drop_nulls()) <= set("ABCDEFGHIJKLM")
    # The answer letters are spread over positions: the seeded shuffle keeps the true answer off a fixed slot.
    assert results["gold"].n_unique() > 1
    assert results["p_gold"].is_not_null().all()
    manifest = orjson.loads((grid.parent / "out" / "t" / "manifest.json").read_bytes())
    assert manifest["status"] == "complete" and len(manifest["config_hash"]) == 64
    assert manifest["models"]["m"]["identity"] == {"model": "test", "endpoint": openai_server.base_url}
    for name in ("delta_by_condition", "delta_by_country", "delta_by_sex"):
        assert (grid.parent / "out" / "t" / "analysis" / f"{name}.csv").is_file()


def test_dry_run_counts_cached_cells_and_calls_nothing(tmp_path, openai_server):
    grid = write_grid(tmp_path, base_url=openai_server.base_url, personas=2, questions=3)
    out = _run(grid, "--dry-run").stdout
    assert "9" in out and openai_server.state.requests == 0
    assert not (tmp_path / "cache.sqlite").exists() and not (tmp_path / "out").exists()
    _run(grid)
    out = _run(grid, "--dry-run").stdout
    row = next(line for line in out.splitlines() if line.strip().strip("│").strip().startswith("m "))
    assert [int(x) for x in row.replace("│", " ").split()[1:]] == [9, 9, 0]


def test_one_bad_cell_is_recorded_and_never_stops_the_run(tmp_path, openai_server):
    grid = write_grid(tmp_path, base_url=openai_server.base_url, personas=2, questions=3)
    personas = (tmp_path / "personas.jsonl").read_text().splitlines()
    bad = orjson.loads(personas[0])
    bad["traits"]["country"]["answer"] = "Atlantis <<fail:400>>"
    (tmp_path / "personas.jsonl").write_text("\n".join([orjson.dumps(bad).decode(), personas[1]]) + "\n")
    proc = _run(grid, "--summary-json", str(tmp_path / "s.json"))
    summary = orjson.loads((tmp_path / "s.json").read_bytes())
    assert summary["errors"] == {"bad_request": 3} and summary["cells_done"] == 3 + 2 * 3
    results = _results(grid)
    errors = results.filter(pl.col("status") == "error")
    assert errors.height == 3 and errors["error"].str.contains("HTTP 400").all()
    assert results.filter(pl.col("status") == "ok").height == 6
    assert openai_server.state.statuses[400] == 3, "permanent errors are not retried"
    with sqlite3.connect(tmp_path / "cache.sqlite") as db:
        assert db.execute("SELECT count(*) FROM errors WHERE kind='bad_request'").fetchone()[0] == 3
    assert "bad_request" in proc.stdout


def test_transient_failures_are_retried_until_every_cell_completes(tmp_path):
    with OpenAICompatServer(fail_every=3, fail_status=503) as server:
        # One call at a time: every third request fails, so each cell's retry (the next request) succeeds.
        grid = write_grid(tmp_path, base_url=server.base_url, personas=2, questions=5, concurrency=1)
        _run(grid, "--summary-json", str(tmp_path / "s.json"))
        summary = orjson.loads((tmp_path / "s.json").read_bytes())
        assert summary["errors_total"] == 0 and summary["model_calls"] == 15
        assert summary["attempts"] == server.state.requests > 15
        assert server.state.statuses[503] == server.state.requests - 15


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_makes_exactly_the_missing_calls(tmp_path):
    with OpenAICompatServer(latency=0.03) as server:
        grid = write_grid(tmp_path, base_url=server.base_url, personas=8, questions=30, concurrency=4)
        total = 30 + 8 * 30
        run_until_killed(grid, lambda: server.state.requests >= 60)
        first_requests = server.state.requests
        with sqlite3.connect(tmp_path / "cache.sqlite") as db:
            committed = db.execute("SELECT count(*) FROM responses").fetchone()[0]
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert 0 < committed < total and first_requests >= committed

        _run(grid, "--summary-json", str(tmp_path / "s.json"))
        second_requests = server.state.requests - first_requests
        assert second_requests == total - committed, "the rerun calls exactly the cells not yet cached"
        summary = orjson.loads((tmp_path / "s.json").read_bytes())
        assert summary["cache_hits"] == committed and summary["model_calls"] == total - committed
        with sqlite3.connect(tmp_path / "cache.sqlite") as db:
            assert db.execute("SELECT count(*) FROM responses").fetchone()[0] == total
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        # Every distinct prompt was answered; none was asked of the server twice after being committed.
        assert len(set(server.state.digests)) == total
        results = _results(grid)
        assert results.height == total and results["cell_id"].n_unique() == total


@pytest.mark.slow
def test_sigint_stops_cleanly_and_keeps_what_finished(tmp_path):
    with OpenAICompatServer(latency=0.05) as server:
        grid = write_grid(tmp_path, base_url=server.base_url, personas=8, questions=30, concurrency=2)
        proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "run", str(grid), "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while server.state.requests < 20 and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 130, stderr
        assert "rerun the same command to resume" in stderr
        manifest = orjson.loads((tmp_path / "out" / "t" / "manifest.json").read_bytes())
        assert manifest["status"] == "interrupted"
        with sqlite3.connect(tmp_path / "cache.sqlite") as db:
            committed = db.execute("SELECT count(*) FROM responses").fetchone()[0]
        assert committed >= 15  # flushed on the way out, not lost


def test_the_run_folder_carries_the_personas_strata_and_the_report_reads_only_it(tmp_path, openai_server):
    grid = write_grid(tmp_path, base_url=openai_server.base_url, personas=4, questions=2)
    _run(grid)
    run_dir = grid.parent / "out" / "t"
    personas = pl.read_parquet(run_dir / "personas.parquet")
    # examples/personas.jsonl records carry the build's strata; the run writes them beside the traits.
    assert personas.columns[:5] == ["persona_id", "source", "region", "subregion", "age_band"]
    assert set(personas["subregion"]) <= {"Northeast", "Midwest", "South", "West"} and personas["region"].to_list() == ["Northern America"] * 4
    # Only the run folder is read: the grid and its persona file can be gone.
    grid.unlink()
    (tmp_path / "personas.jsonl").unlink()
    report = subprocess.run([sys.executable, "-m", "engine.cli", "report", str(run_dir), "--by", "subregion", "--bootstrap", "0"], capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stderr
    table = pl.read_csv(run_dir / "report" / "delta_by_subregion.csv")
    assert set(table["subregion"]) == set(personas["subregion"])
