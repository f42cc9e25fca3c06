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
    grid = grid.replace("limit = 4", "limit = 2")  # 2 personas, 2 questions
    (tmp_path / "grid.toml").write_text(grid)
    cmd = [sys.executable, "-m", "engine.cli", "run", str(tmp_path / "grid.toml"), "--no-progress", "--summary-json", str(tmp_path / "s.json")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env={**os.environ, "COLUMNS": "200"})
    assert proc.returncode == 0, proc.stderr
    assert "Table 2 · persona effect per model on p_gold" in proc.stdout and "Table 2b · the same on the primary score" in proc.stdout
    results = pl.read_parquet(tmp_path / "runs" / "example" / "results" / "*.parquet")
    options = results.filter(pl.col("condition") == "baseline").group_by("item_id").agg(pl.len())["len"].sort().to_list()
    assert options == [3, 8]  # every cyclic order of a 3- and an 8-option question
    summary = orjson.loads((tmp_path / "s.json").read_bytes())
    assert summary["cells_total"] == 11 + 2 * 11 and summary["model_calls"] == 33 and summary["errors_total"] == 0
    assert results["status"].to_list() == ["ok"] * 33 and results["p_gold"].is_not_null().all()
    for (_, _, _, _), orders in results.group_by("condition", "persona_id", "item_id", "sample"):
        assert sorted(orders["order"].to_list()) == list(range(orders.height))
    # Δ on debiased item scores: each question's orders averaged first, then paired on question and persona
    delta = pl.read_csv(tmp_path / "runs" / "example" / "analysis" / "delta_by_condition.csv")
    assert delta["condition"].to_list() == ["prose"] and delta["n"].to_list() == [4]
    items = results.group_by("condition", "persona_id", "item_id").agg(pl.col("correct").mean(), pl.col("p_gold").mean())
    paired = items.filter(pl.col("condition") == "prose").join(
        items.filter(pl.col("condition") == "baseline").select("item_id", pl.col("correct").alias("b"), pl.col("p_gold").alias("bp")), on="item_id"
    )
    assert delta["delta"][0] == pytest.approx((paired["p_gold"] - paired["bp"]).mean())  # [run] score = "p_gold"
    accuracy = pl.read_csv(tmp_path / "runs" / "example" / "analysis" / "delta_by_condition_primary.csv")
    assert accuracy["delta"][0] == pytest.approx((paired["correct"] - paired["b"]).mean())
    # a model that prefers a letter is named in the warning, which says the debiased scores do not reward it
    for warning in summary["warnings"]:
        assert warning.startswith("model smollm2 ") and "the scores average each question over its 3–8 option orders" in warning
    assert all(" ".join(w.split()) in " ".join(proc.stdout.split()) for w in summary["warnings"])
    manifest = orjson.loads((tmp_path / "runs" / "example" / "manifest.json").read_bytes())
    assert manifest["models"]["smollm2"]["identity"]["sha256"] and manifest["packages"]["torch"]

    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0
    assert orjson.loads((tmp_path / "s.json").read_bytes())["model_calls"] == 0
