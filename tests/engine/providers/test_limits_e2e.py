"""`mtpa-engine run` with the API providers end to end: preflight exit 2, keys kept out of every file,
--budget stop and resume, the dry-run estimate."""

from __future__ import annotations

import subprocess
import sys
import time

import orjson
import polars as pl
import pytest

from tests.conftest import write_grid
from tests.engine.providers.test_limits_and_faults import KEY, SERVERS

OUT = ("out", "t")


def _grid(tmp_path, provider: str, server, extra: str = "", **kw):
    grid = write_grid(tmp_path, base_url=server.base_url, extra_model=f'api_key_env = "MTPA_TEST_KEY"\n{extra}', **kw)
    grid.write_text(grid.read_text().replace('provider = "openai"', f'provider = "{provider}"'))
    return grid


def _run(grid, *args):
    return subprocess.run([sys.executable, "-m", "engine.cli", "run", str(grid), "--no-progress", *args], capture_output=True, text=True, timeout=120)


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv("MTPA_TEST_KEY", KEY)


@pytest.mark.parametrize("provider", list(SERVERS))
def test_wrong_key_or_model_exits_2_in_seconds_and_writes_nothing(tmp_path, provider, monkeypatch):
    with SERVERS[provider](api_key=KEY) as server:
        grid = _grid(tmp_path, provider, server)
        monkeypatch.setenv("MTPA_TEST_KEY", "sk-wrong-000000000")
        started = time.monotonic()
        proc = _run(grid)
        assert proc.returncode == 2 and time.monotonic() - started < 30
        assert "preflight" in proc.stderr and "MTPA_TEST_KEY was rejected" in proc.stderr
        assert "sk-wrong-000000000" not in proc.stderr + proc.stdout
        monkeypatch.setenv("MTPA_TEST_KEY", KEY)
        grid.write_text(grid.read_text().replace('model = "test"', 'model = "nope"'))
        proc = _run(grid)
        assert proc.returncode == 2 and "'nope' not found" in proc.stderr
        assert server.state.requests == 0 and not (tmp_path / "out").exists()


def test_the_key_never_reaches_cache_results_manifest_or_logs(tmp_path):
    with SERVERS["openai"](api_key=KEY) as server:
        grid = _grid(tmp_path, "openai", server, personas=2, questions=3)
        personas = (tmp_path / "personas.jsonl").read_text().splitlines()
        bad = orjson.loads(personas[0])
        bad["traits"]["country"]["answer"] = "Atlantis <<fail:400>>"  # the server's error echoes the key
        (tmp_path / "personas.jsonl").write_text("\n".join([orjson.dumps(bad).decode(), personas[1]]) + "\n")
        proc = _run(grid, "--summary-json", str(tmp_path / "s.json"))
        assert orjson.loads((tmp_path / "s.json").read_bytes())["errors"] == {"bad_request": 3}
        assert "errors by kind" in proc.stdout
        assert KEY not in proc.stdout + proc.stderr
        assert KEY.encode() not in (tmp_path / "cache.sqlite").read_bytes()
        for path in (tmp_path.joinpath(*OUT)).rglob("*"):
            if path.is_file():
                assert KEY.encode() not in path.read_bytes(), path
        results = pl.read_parquet(tmp_path.joinpath(*OUT, "results", "*.parquet"))
        texts = results.select(pl.col(pl.String)).to_dicts()
        assert not any(KEY in v for row in texts for v in row.values() if v), "not even inside compressed pages"
        assert results["error"].drop_nulls().str.contains(r"\[redacted\]").all()


@pytest.mark.parametrize("provider", list(SERVERS))
def test_budget_stops_new_calls_with_exit_75_and_the_run_resumes(tmp_path, provider):
    with SERVERS[provider](api_key=KEY) as server:
        # ~100 prompt tokens per call at $100 per million input tokens: ~1 cent a call.
        grid = _grid(tmp_path, provider, server, "input_price = 100.0\noutput_price = 100.0", personas=3, questions=5, concurrency=1)
        total = 5 + 3 * 5
        proc = _run(grid, "--budget", "0.04", "--summary-json", str(tmp_path / "s1.json"))
        assert proc.returncode == 75, proc.stderr
        assert "budget" in proc.stderr and "resume" in proc.stderr
        s1 = orjson.loads((tmp_path / "s1.json").read_bytes())
        assert s1["budget_exhausted"] and s1["cost_usd"] >= 0.04 and 0 < s1["model_calls"] < total
        manifest = orjson.loads(tmp_path.joinpath(*OUT, "manifest.json").read_bytes())
        assert manifest["status"] == "budget_exhausted" and manifest["summary"]["cost_usd"] == s1["cost_usd"]

        out = _run(grid, "--dry-run").stdout
        assert "estimate" in out and "usd" in out
        proc = _run(grid, "--summary-json", str(tmp_path / "s2.json"))
        s2 = orjson.loads((tmp_path / "s2.json").read_bytes())
        assert s2["model_calls"] == total - s1["model_calls"] and not s2["budget_exhausted"]
        assert server.state.requests == total, "every cell called exactly once over both runs"


def test_a_reader_gone_from_stdout_keeps_exit_75_and_the_budget_line(tmp_path):
    """stdout's reader went away (`| head -1`, a closed pipe): the tables are lost, never the exit code or the
    stderr line saying how to resume (rich's own broken-pipe handler exited 1 on the spot)."""
    import os

    with SERVERS["openai"](api_key=KEY) as server:
        grid = _grid(tmp_path, "openai", server, "input_price = 100.0\noutput_price = 100.0", personas=3, questions=5, concurrency=1)
        read, write = os.pipe()
        os.close(read)  # nobody will ever read what the run prints
        try:
            proc = subprocess.run([sys.executable, "-m", "engine.cli", "run", str(grid), "--no-progress", "--budget", "0.04"],
                                  stdout=write, stderr=subprocess.PIPE, text=True, timeout=120)
        finally:
            os.close(write)
    assert proc.returncode == 75, proc.stderr
    assert "budget of $0.04 reached" in proc.stderr and "rerun (with a new --budget) to resume" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_reader_gone_from_stdout_leaves_a_complete_run_and_its_report_exit_0(tmp_path):
    """`mtpa-engine run GRID | head -1` and `report RUN | head -1`: the closing tables go nowhere, the command
    still succeeds (the tables' piped console was rich's own, whose broken-pipe handler exited 1)."""
    import os

    with SERVERS["openai"](api_key=KEY) as server:
        grid = _grid(tmp_path, "openai", server, "", personas=2, questions=3)
        for command in (["run", str(grid), "--no-progress"], ["report", str(tmp_path / "out" / "t")]):
            read, write = os.pipe()
            os.close(read)
            try:
                proc = subprocess.run([sys.executable, "-m", "engine.cli", *command], stdout=write, stderr=subprocess.PIPE, text=True, timeout=120)
            finally:
                os.close(write)
            assert (proc.returncode, proc.stderr) == (0, ""), command


def test_piped_dry_run_tables_are_printed_whole(tmp_path):
    """Not a terminal: every table at its natural width, no cell cut to `…` (rich squeezes to 80 columns)."""
    import os

    with SERVERS["openai"](api_key=KEY) as server:
        grid = _grid(tmp_path, "openai", server, "input_price = 100.0\noutput_price = 100.0", personas=3, questions=5)
        env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
        proc = subprocess.run([sys.executable, "-m", "engine.cli", "run", str(grid), "--dry-run"], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "…" not in proc.stdout and "max_output_tokens" in proc.stdout and "usd_online" in proc.stdout
