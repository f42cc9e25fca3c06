"""Trait inference end to end: `mtpa-engine run` on a traits grid against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import orjson
import polars as pl

from engine.grid import load_grid
from engine.keys import cache_key
from engine.plan import Plan
from engine.runner import prepare
from tests.bench_adapters.traits_fixtures import write_personas, write_traits_grid
from tests.conftest import run_until_killed
from engine.testing.servers.openai_compat import OpenAICompatServer

TARGETS = 'targets = "all"\nshots = 1'


def _run(grid, *args):
    return subprocess.run([sys.executable, "-m", "engine.cli", "run", str(grid), "--no-progress", *args], capture_output=True, text=True, timeout=300)


def _distinct_keys(grid) -> int:
    plan, providers = prepare(load_grid(grid))
    model = plan.grid.models[0]
    return len({cache_key(model.provider, providers[model.id].identity(), plan.request(c)) for c in plan})


def test_run_writes_per_trait_tables_with_priors_and_reruns_from_the_cache(tmp_path, openai_server):
    grid = write_traits_grid(tmp_path, openai_server.base_url, TARGETS)
    first = _run(grid, "--summary-json", str(tmp_path / "s.json"))
    assert first.returncode == 0, first.stderr
    assert "Trait inference (traits_by_target)" in first.stdout and "prior:country_sex_age" in first.stdout
    out = tmp_path / "out" / "t"
    table = pl.read_csv(out / "analysis" / "traits_by_target.csv")
    assert set(table["model"]) == {"m", "prior:uniform", "prior:majority", "prior:country_sex_age"}
    assert set(table.filter(pl.col("model") == "m")["condition"]) == {"baseline", "prose", "demographic"}
    assert {"accuracy_lo", "ordinal_score", "lift", "alignment_hi", "best_prior"} <= set(table.columns)
    assert (out / "analysis" / "traits_by_target_x_country.csv").is_file()
    results = pl.read_parquet(out / "results" / "*.parquet")
    baseline = results.filter(pl.col("condition") == "baseline")
    assert baseline["persona_id"].null_count() == 0, "baseline rows say whose answer was predicted"
    assert results.height == len(Plan.from_grid(load_grid(grid)))
    calls = openai_server.state.requests
    assert calls == _distinct_keys(grid) < results.height, "identical prompts (baseline without shots' variety) are called once"

    again = _run(grid)
    assert again.returncode == 0 and openai_server.state.requests == calls, "a rerun makes no call"
    same = ["cell_id", "condition", "persona_id", "item_id", "key", "answer", "gold", "correct", "score", "meta"]
    rerun = pl.read_parquet(out / "results" / "*.parquet").select(same).sort("cell_id")
    assert rerun.equals(results.select(same).sort("cell_id")), "deterministic across runs"

    report = subprocess.run([sys.executable, "-m", "engine.cli", "report", str(out), "--bootstrap", "100"], capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stderr
    html = (out / "report" / "report.html").read_text()
    assert "alignment (1 = the real answer distribution), target × country" in html
    assert (out / "report" / "traits_by_target.parquet").is_file() and (out / "report" / "traits_by_target_x_sex.csv").is_file()


def test_sigkilled_traits_run_resumes_with_exactly_the_missing_calls(tmp_path):
    with OpenAICompatServer(latency=0.05) as server:
        grid = write_traits_grid(tmp_path, server.base_url, TARGETS)
        total = _distinct_keys(grid)
        run_until_killed(grid, lambda: server.state.requests >= 12)
        first = server.state.requests
        with sqlite3.connect(tmp_path / "cache.sqlite") as db:
            committed = db.execute("SELECT count(*) FROM responses").fetchone()[0]
        assert 0 < committed < total and first >= committed

        resumed = _run(grid, "--summary-json", str(tmp_path / "s.json"))
        assert resumed.returncode == 0, resumed.stderr
        assert server.state.requests - first == total - committed, "the rerun calls exactly what is not cached"
        with sqlite3.connect(tmp_path / "cache.sqlite") as db:
            assert db.execute("SELECT count(*) FROM responses").fetchone()[0] == total
        results = pl.read_parquet(tmp_path / "out" / "t" / "results" / "*.parquet")
        assert results.height == orjson.loads((tmp_path / "s.json").read_bytes())["cells_total"] == results["cell_id"].n_unique()


def test_persona_file_without_scales_fails_in_one_line_before_anything_is_written(tmp_path):
    grid = write_traits_grid(tmp_path, "http://127.0.0.1:1/v1")
    write_personas(tmp_path / "personas.jsonl", scales=False)
    proc = _run(grid)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    message = " ".join(proc.stderr.split())
    assert "grid.toml: benchmarks[0]: traits: the persona file has no answer scales" in message
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache.sqlite").exists()
