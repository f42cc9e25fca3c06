"""A cache written before issue 14's restructuring is answered whole after it: same keys, same results.

tests/engine/data/cache_compat/ holds a grid (five benchmarks in the letter, letter-logprob and judge modes,
cyclic option orders, three persona conditions), the cache.sqlite that main at 4ce1bf3 wrote for it and the
results.parquet of its fully cached rerun (generate.py there says how). Rerunning that grid now must make no
call, take every cell and verdict from the cache, and write the same rows in the same Parquet schema (plus
the columns added since, at the end).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from engine.results import SCHEMA
from tests.conftest import EXAMPLE_PERSONAS

DATA = Path(__file__).parent / "data" / "cache_compat"


def test_a_cache_written_before_the_change_is_fully_hit(tmp_path: Path) -> None:
    for name in ("grid.toml", "cache.sqlite"):
        shutil.copy(DATA / name, tmp_path / name)
    shutil.copy(EXAMPLE_PERSONAS, tmp_path / "personas.jsonl")
    env = {**os.environ, "OPENAI_API_KEY": "sk-test"}
    cmd = [sys.executable, "-m", "engine.cli", "run", str(tmp_path / "grid.toml"), "--no-progress", "--summary-json", str(tmp_path / "s.json")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    summary = orjson.loads((tmp_path / "s.json").read_bytes())
    # 115 cells (10 of them judged): every answer and every verdict from the cache, nothing called.
    assert (summary["cells_total"], summary["cells_done"]) == (115, 115)
    assert (summary["cache_hits"], summary["model_calls"], summary["errors_total"]) == (125, 0, 0)

    now = pl.read_parquet(tmp_path / "runs" / "compat" / "results" / "*.parquet").sort("cell")
    before = pl.read_parquet(DATA / "results.parquet").sort("cell")
    # main's columns (names, dtypes, order) come first, then only the ones added since at the end (ResultRow's
    # later fields), null throughout here: no reasoning or summary condition, no invalid answer.
    added = ["reasoning", "summary", "invalid_kind"]
    assert list(now.schema.items()) == list(SCHEMA.items()) == list(before.schema.items()) + [(c, pl.String()) for c in added]
    assert now.select(added).null_count().row(0) == (len(now),) * len(added)
    assert_frame_equal(now.select(before.columns), before)


def test_each_delta_carries_its_scores_direction(tmp_path: Path) -> None:
    """CrowS-Pairs' score is choosing the more stereotypical sentence: its Δ is marked lower-is-better beside
    TruthfulQA's and BBQ's higher-is-better, in the tables written and printed; its sign is never flipped."""
    for name in ("grid.toml", "cache.sqlite"):
        shutil.copy(DATA / name, tmp_path / name)
    shutil.copy(EXAMPLE_PERSONAS, tmp_path / "personas.jsonl")
    cmd = [sys.executable, "-m", "engine.cli", "run", str(tmp_path / "grid.toml"), "--no-progress"]
    proc = subprocess.run(cmd, env={**os.environ, "OPENAI_API_KEY": "sk-test"}, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    run_dir = tmp_path / "runs" / "compat"
    manifest = orjson.loads((run_dir / "manifest.json").read_bytes())
    expected = {"truthfulqa": True, "tqa_logprob": True, "crows_pairs": False, "bbq": True, "tqa_judged": True}
    assert manifest["higher_is_better"] == expected
    delta = pl.read_csv(run_dir / "analysis" / "delta_by_condition.csv")
    assert dict(delta.select("benchmark", "higher_is_better").unique().iter_rows()) == expected
    # Δ = persona − baseline as computed, for CrowS-Pairs too: recomputed here from the results.
    rows = pl.read_parquet(run_dir / "results" / "*.parquet").filter(pl.col("benchmark") == "crows_pairs")
    base = rows.filter(pl.col("condition") == "baseline").select("item_id", pl.col("correct").alias("b"))
    prose = rows.filter(pl.col("condition") == "prose").join(base, on="item_id")
    crows = delta.filter((pl.col("benchmark") == "crows_pairs") & (pl.col("condition") == "prose")).row(0, named=True)
    assert crows["delta"] == pytest.approx((prose["correct"] - prose["b"]).mean())
    assert "crows_pairs ↓" in proc.stdout and "lower is better" in proc.stdout
