"""`executor = "ray"` (engine.ray_pool) on a real two-node local Ray cluster, the embedded model in each worker.

Skipped without Ray (`pip install -e '.[test,ray]'`; .ci/ray_tier runs them). One cluster for the module: each
node has one CPU, so the pool has two workers, one per node.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import orjson
import polars as pl
import pytest

from tests.conftest import REPO, run_until_killed

pytest.importorskip("ray")
from engine.testing.ray_cluster import local_cluster  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.ray]

_CELLS = 11 + 2 * 11  # 2 questions in all their cyclic orders (3 + 8), baseline + 2 personas
# Columns that say how a row was obtained this time, not what the answer is.
_HOW = ("cached", "latency_s", "p_gold")


@pytest.fixture(scope="module")
def cluster():
    with local_cluster(nodes=2, cpus=1) as c:
        yield c


def _grid(folder: Path, ray_table: str = "") -> Path:
    """The README's example grid, made small (2 personas, 2 questions: 33 cells, batches of 4)."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "examples" / "personas.jsonl", folder / "personas.jsonl")
    text = (REPO / "examples" / "grid.toml").read_text()
    text = text.replace('"../runs/{name}"', '"runs/{name}"').replace('"../cache.sqlite"', '"cache.sqlite"')
    text = text.replace("limit = 4", "limit = 2").replace("batch_size = 16", "batch_size = 4")
    text = text.replace('score = "p_gold"', f'score = "p_gold"\n{ray_table}')
    (folder / "grid.toml").write_text(text)
    return folder / "grid.toml"


def _on(cluster) -> str:
    return f'executor = "ray"\n\n[run.ray]\naddress = "{cluster.address}"\n'


def _run(grid: Path, *args: str) -> dict:
    summary = grid.parent / "summary.json"
    cmd = [sys.executable, "-m", "engine.cli", "run", str(grid), "--no-progress", "--summary-json", str(summary), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return orjson.loads(summary.read_bytes())


def _results(grid: Path) -> pl.DataFrame:
    return pl.read_parquet(grid.parent / "runs" / "example" / "results" / "*.parquet").sort("cell")


def _cache_count(grid: Path) -> int:
    path = grid.parent / "cache.sqlite"
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
            return db.execute("SELECT count(*) FROM responses").fetchone()[0]
    except sqlite3.OperationalError:  # the schema is being created
        return 0


def _integrity(grid: Path) -> tuple[str, int, int]:
    with sqlite3.connect(grid.parent / "cache.sqlite") as db:
        return (
            db.execute("PRAGMA integrity_check").fetchone()[0],
            db.execute("SELECT count(*) FROM responses").fetchone()[0],
            db.execute("SELECT count(*) FROM errors").fetchone()[0],
        )


def _same_results(ray_run: pl.DataFrame, single: pl.DataFrame) -> None:
    """Every column equal but how a row was obtained; p_gold to 1e-5 (float sums run in another order when a
    worker has 1 thread and other batch-mates: measured differences ~1e-6)."""
    assert ray_run.height == single.height == _CELLS
    assert ray_run.drop(_HOW).equals(single.drop(_HOW))
    assert (ray_run["p_gold"] - single["p_gold"]).abs().max() < 1e-5


@pytest.fixture(scope="module")
def single_process(tmp_path_factory) -> pl.DataFrame:
    grid = _grid(tmp_path_factory.mktemp("single"))
    assert _run(grid)["model_calls"] == _CELLS
    return _results(grid)


def test_ray_run_matches_the_single_process_run_and_records_the_cluster(cluster, single_process, tmp_path):
    grid = _grid(tmp_path)
    summary = _run(grid, "--ray", cluster.address)  # the CLI flag; the grid says nothing of Ray
    assert summary["model_calls"] == _CELLS and summary["errors_total"] == 0
    _same_results(_results(grid), single_process)
    manifest = orjson.loads((tmp_path / "runs" / "example" / "manifest.json").read_bytes())
    ray_info = manifest["cluster"]
    assert manifest["config"]["run"]["executor"] == "ray" and ray_info["address"] == cluster.address
    assert ray_info["ray_version"] and sorted(n["cpus"] for n in ray_info["nodes"]) == [1.0, 1.0]
    workers = ray_info["models"]["smollm2"]["workers"]
    # one worker per node: each holds the one CPU of its node
    assert len(workers) == 2 and len({w["node_id"] for w in workers}) == 2
    assert all(w["resources"] == {"CPU": 1.0} for w in workers)
    assert ray_info["models"]["smollm2"]["batches_requeued"] == 0
    assert _integrity(grid) == ("ok", _CELLS, 0)
    assert _run(grid, "--ray", cluster.address)["model_calls"] == 0  # a rerun is answered by the cache
    assert _run(grid, "--ray", f"127.0.0.1:{_closed_port()}")["model_calls"] == 0  # ... with no cluster at all


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again on return: nothing listens there


def test_a_cluster_address_where_nothing_listens_fails_the_preflight_in_seconds(tmp_path):
    grid = _grid(tmp_path)
    port = _closed_port()
    cmd = [sys.executable, "-m", "engine.cli", "run", str(grid), "--no-progress", "--ray", f"127.0.0.1:{port}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "300"})
    assert proc.returncode == 2
    assert f"preflight: model 'smollm2': cannot connect to Ray at 127.0.0.1:{port}: nothing answers there (Connection refused)" in proc.stderr
    assert not (tmp_path / "runs").exists() and not (tmp_path / "cache.sqlite").exists()


def test_a_worker_killed_mid_run_has_its_batch_requeued_and_every_cell_answered_once(cluster, single_process, tmp_path):
    grid = _grid(tmp_path, _on(cluster))
    summary_path = tmp_path / "summary.json"
    cmd = [sys.executable, "-m", "engine.cli", "run", str(grid), "--no-progress", "--summary-json", str(summary_path)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while _cache_count(grid) == 0 and proc.poll() is None and time.monotonic() < deadline:  # both workers are up
        time.sleep(0.05)
    victims = cluster.worker_pids()
    assert victims and proc.poll() is None
    os.kill(victims[0], signal.SIGKILL)
    _, stderr = proc.communicate(timeout=900)
    assert proc.returncode == 0, stderr[-3000:]
    summary = orjson.loads(summary_path.read_bytes())
    assert summary["model_calls"] == _CELLS and summary["errors_total"] == 0 and summary["cells_done"] == _CELLS
    results = _results(grid)
    assert results["cell_id"].n_unique() == _CELLS  # every cell once
    _same_results(results, single_process)
    ray_info = orjson.loads((tmp_path / "runs" / "example" / "manifest.json").read_bytes())["cluster"]["models"]["smollm2"]
    assert ray_info["workers_replaced"] >= 1 and ray_info["batches_requeued"] >= 1
    assert _integrity(grid) == ("ok", _CELLS, 0)


def test_driver_killed_then_rerun_makes_exactly_the_missing_calls(cluster, single_process, tmp_path):
    grid = _grid(tmp_path, _on(cluster))
    run_until_killed(grid, lambda: _cache_count(grid) >= 8)
    before = _cache_count(grid)
    assert 8 <= before < _CELLS
    summary = _run(grid)
    assert summary["model_calls"] == _CELLS - before and summary["cache_hits"] == before
    assert _integrity(grid) == ("ok", _CELLS, 0)
    _same_results(_results(grid), single_process)
