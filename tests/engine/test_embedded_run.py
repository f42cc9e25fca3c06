"""The README's main job, end to end on the embedded model: `mtpa-engine run` on a small copy of the example grid."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import orjson
import polars as pl
import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def test_example_grid_runs_on_the_embedded_model_and_reports_delta(tmp_path):
    shutil.copy(REPO / "examples" / "personas.jsonl", tmp_path / "personas.jsonl")
    grid = (REPO / "examples" / "grid.toml").read_text()
    grid = grid.replace('"../runs/{name}"', '"runs/{name}"').replace('"../cache.sqlite"', '"cache.sqlite"')
    grid = grid.replace("limit = 8", "limit = 2").replace("limit = 12", "limit = 3")
    (tmp_path / "grid.toml").write_text(grid)
    cmd = [sys.executable, "-m", "engine.cli", "run", str(tmp_path / "grid.toml"), "--no-progress", "--summary-json", str(tmp_path / "s.json")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env={**os.environ, "COLUMNS": "200"})
    assert proc.returncode == 0, proc.stderr
    assert "delta by condition" in proc.stdout
    summary = orjson.loads((tmp_path / "s.json").read_bytes())
    assert summary["cells_total"] == 3 + 2 * 3 and summary["model_calls"] == 9 and summary["errors_total"] == 0
    results = pl.read_parquet(tmp_path / "runs" / "example" / "results" / "*.parquet")
    assert results["status"].to_list() == ["ok"] * 9
    assert results["p_gold"].is_not_null().all() and results["response"].str.len_chars().min() > 0
    delta = pl.read_csv(tmp_path / "runs" / "example" / "analysis" / "delta_by_condition.csv")
    assert delta["condition"].to_list() == ["prose"] and delta["n"].to_list() == [6]
    paired = results.filter(pl.col("condition") == "prose").join(
        results.filter(pl.col("condition") == "baseline").select("item_id", pl.col("correct").alias("b")), on="item_id"
    )
    assert delta["delta"][0] == pytest.approx((paired["correct"] - paired["b"]).mean())
    manifest = orjson.loads((tmp_path / "runs" / "example" / "manifest.json").read_bytes())
    assert manifest["models"]["smollm2"]["identity"]["sha256"] and manifest["packages"]["torch"]

    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0
    assert orjson.loads((tmp_path / "s.json").read_bytes())["model_calls"] == 0
