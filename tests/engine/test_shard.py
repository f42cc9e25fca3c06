"""`run --shard I/N`: a partition of the plan by cell id; shards run against a counting server, merged, rebuilt."""

from __future__ import annotations

import itertools
import os
import sqlite3
import subprocess
import sys
import tracemalloc
from pathlib import Path

import orjson
import polars as pl
import pytest
from click.testing import CliRunner

from engine.cli import app
from engine.grid import load_grid
from engine.plan import Plan
from engine.shard import Shard, locate
from persona_builder import Persona, Trait
from tests.conftest import REPO, write_grid

cli = CliRunner()
# Columns that say how a row was obtained this time, not what the answer is.
_HOW = ("cached", "latency_s")


def _invoke(*args: str, code: int = 0):
    result = cli.invoke(app, list(args))
    assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
    return result


def _plan(tmp_path, shard=None, **kw) -> Plan:
    return Plan.from_grid(load_grid(write_grid(tmp_path, base_url="http://127.0.0.1:1/v1", **kw)), shard)


def test_shard_parse_accepts_0_based_i_of_n_and_rejects_the_rest():
    assert Shard.parse("0/1") == Shard(0, 1) and Shard.parse("6/7") == Shard(6, 7)
    for bad in ("7/7", "-1/3", "1/0", "a/3", "3", "1/2/3", ""):
        with pytest.raises(ValueError, match="expected I/N"):
            Shard.parse(bad)
    assert Shard(3, 7).holds("0" * 19 + "a")  # 10 mod 7 == 3
    assert not Shard(2, 7).holds("0" * 19 + "a")


@pytest.mark.parametrize("n", [1, 3, 7])
def test_shards_partition_the_plan_exactly(tmp_path, n):
    full = _plan(tmp_path, personas=5, questions=6)
    everything = {c.id: c.index for c in full}
    seen: dict[str, int] = {}
    for i in range(n):
        part = _plan(tmp_path, Shard(i, n), personas=5, questions=6)
        cells = list(part)
        assert len(part) == len(cells) == part.count(part.grid.models[0])
        assert all(int(c.id, 16) % n == i for c in cells)
        assert not seen.keys() & {c.id for c in cells}, "shards never overlap"
        seen |= {c.id: c.index for c in cells}
    assert seen == everything, "together the shards are the grid, each cell keeping its index in the whole grid"
    assert len(everything) == 6 + 5 * 6


def test_a_shard_of_a_ten_million_cell_grid_plans_lazily(tmp_path):
    plan = _plan(tmp_path, personas=1, questions=50)
    trait = {"country": Trait("Country", "X", "demographic")}
    many = [Persona(f"p{i}", "synthetic", trait) for i in range(200_000)]
    big = Plan(plan.grid, many, plan.benchmarks, Shard(2, 7))
    tracemalloc.start()
    cells = iter(big)
    taken = list(itertools.islice(cells, 20_000))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert all(int(c.id, 16) % 7 == 2 for c in taken)
    assert peak < 50 * 1024 * 1024, "a shard walks the plan, never materialises it"


def test_locate_gives_each_shard_its_own_cache_and_output_folder(tmp_path):
    grid = load_grid(write_grid(tmp_path, base_url="http://127.0.0.1:1/v1"))
    shard = locate(grid, Shard(2, 7), None)
    assert shard.cache_path == tmp_path / "cache.shard-2-of-7.sqlite"
    assert shard.output_dir == tmp_path / "out" / "t" / "shards" / "2-of-7"
    chosen = locate(grid, Shard(2, 7), tmp_path / "elsewhere" / "c.sqlite")
    assert chosen.cache_path == tmp_path / "elsewhere" / "c.sqlite" and chosen.output_dir == shard.output_dir
    assert locate(grid, None, tmp_path / "m.sqlite").output_dir == grid.output_dir


def test_bad_shard_is_one_line_and_exit_2(tmp_path):
    grid = write_grid(tmp_path, base_url="http://127.0.0.1:1/v1")
    result = _invoke("run", str(grid), "--no-progress", "--shard", "3/3", code=2)
    assert "--shard '3/3': expected I/N" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def _answers(path) -> list[tuple]:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT key, provider, model, text, letter_logprobs, option_logprobs, option_tokens FROM responses ORDER BY key").fetchall()


def _results(run_dir) -> pl.DataFrame:
    return pl.read_parquet(run_dir / "results" / "*.parquet").drop(_HOW).sort("cell_id")


@pytest.mark.parametrize("n", [1, 3, 7])
def test_shards_merged_rebuild_the_unsharded_results_with_no_call(tmp_path, openai_server, n):
    personas, questions = 4, 5
    cells = questions + personas * questions
    (tmp_path / "alone").mkdir()
    alone = write_grid(tmp_path / "alone", base_url=openai_server.base_url, personas=personas, questions=questions)
    _invoke("run", str(alone), "--no-progress")
    assert openai_server.state.requests == cells
    reference = _results(tmp_path / "alone" / "out" / "t")

    (tmp_path / "sharded").mkdir()
    grid = write_grid(tmp_path / "sharded", base_url=openai_server.base_url, personas=personas, questions=questions)
    before = openai_server.state.requests
    shard_caches = []
    for i in range(n):
        _invoke("run", str(grid), "--no-progress", "--shard", f"{i}/{n}", "--summary-json", str(tmp_path / f"s{i}.json"))
        shard_caches.append(str(tmp_path / "sharded" / f"cache.shard-{i}-of-{n}.sqlite"))
        manifest = orjson.loads((tmp_path / "sharded" / "out" / "t" / "shards" / f"{i}-of-{n}" / "manifest.json").read_bytes())
        assert manifest["shard"] == {"index": i, "count": n} and manifest["status"] == "complete"
        summary = orjson.loads((tmp_path / f"s{i}.json").read_bytes())
        assert manifest["cells"]["m"] == summary["cells_total"] == summary["model_calls"]
    assert openai_server.state.requests - before == cells, "the shards together call every cell exactly once"
    assert not (tmp_path / "sharded" / "cache.sqlite").exists()

    merged = tmp_path / "merged.sqlite"
    report = orjson.loads(_invoke("cache", "merge", str(merged), *shard_caches, "--json").stdout)
    assert report["entries"] == cells and report["integrity"] == "ok" and report["conflicts"] == 0
    assert sum(i["added"] for i in report["inputs"]) == cells
    first = _answers(merged)
    again = orjson.loads(_invoke("cache", "merge", str(merged), *shard_caches, "--json").stdout)
    assert [i["added"] for i in again["inputs"]] == [0] * n and [i["same"] for i in again["inputs"]] == [i["entries"] for i in report["inputs"]]
    assert _answers(merged) == first, "merging again changes nothing"
    backwards = tmp_path / "backwards.sqlite"
    _invoke("cache", "merge", str(backwards), *reversed(shard_caches))
    assert _answers(backwards) == first, "deterministic entries merge the same in any order"

    before = openai_server.state.requests
    _invoke("run", str(grid), "--no-progress", "--cache", str(merged), "--summary-json", str(tmp_path / "full.json"))
    summary = orjson.loads((tmp_path / "full.json").read_bytes())
    assert openai_server.state.requests == before and summary["model_calls"] == 0 and summary["cache_hits"] == cells
    rebuilt = tmp_path / "sharded" / "out" / "t"
    assert orjson.loads((rebuilt / "manifest.json").read_bytes())["shard"] is None
    assert _results(rebuilt).equals(reference), "the merged shards give the unsharded run's results"
    _invoke("report", str(rebuilt), "--bootstrap", "50")
    assert (rebuilt / "report" / "report.html").is_file()


_SBATCH = """#!/usr/bin/env bash
# Stand-in for SLURM's sbatch: runs the job now (array tasks one after another) and prints a job id.
array=""
while [[ $1 == --* ]]; do case $1 in --array=*) array=${1#--array=} ;; esac; shift; done
if [[ -n $array ]]; then
    for ((i = ${array%-*}; i <= ${array#*-}; i++)); do SLURM_ARRAY_TASK_ID=$i bash "$@" >>"$SBATCH_LOG" 2>&1 || exit 1; done
else
    bash "$@" >>"$SBATCH_LOG" 2>&1 || exit 1
fi
echo 4242
"""


def test_slurm_array_example_runs_shards_then_merges(tmp_path, openai_server):
    """examples/slurm_array.sh with a stand-in sbatch (no SLURM here): every cell called once, full results."""
    grid = write_grid(tmp_path, base_url=openai_server.base_url, personas=2, questions=3)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(_SBATCH)
    (bin_dir / "sbatch").chmod(0o755)
    env = os.environ | {"PATH": f"{bin_dir}:{os.environ['PATH']}", "MTPA_VENV": str(Path(sys.executable).parent.parent), "SBATCH_LOG": str(tmp_path / "log")}
    proc = subprocess.run(["bash", str(REPO / "examples" / "slurm_array.sh"), str(grid), "2", "work"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stderr, (tmp_path / "log").read_text())
    cells = 3 + 2 * 3
    assert openai_server.state.requests == cells
    with sqlite3.connect(tmp_path / "work" / "cache.sqlite") as db:
        assert db.execute("SELECT count(*) FROM responses").fetchone()[0] == cells
    results = pl.read_parquet(tmp_path / "out" / "t" / "results" / "*.parquet")
    assert results.height == cells and results["cached"].all()
