"""Power before spending: the dry run's minimum detectable Δ, by hand and from a real cache."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import polars as pl
import pytest

from engine.grid import load_grid
from engine.power import DEFAULT_VARIANCE, dry_run_power, minimum_detectable, power, standard_error
from tests.conftest import write_grid


def test_forty_questions_one_baseline_answer_find_a_delta_of_005_about_11_percent_of_the_time():
    """σ² = 0.25 · 0.75 (4 options at chance), Q = 40, S = O = 1, personas many: SE = √(0.1875/40) = 0.068465;
    power = Φ(0.05/SE − 1.96) + Φ(−0.05/SE − 1.96) = Φ(−1.2297) + Φ(−2.6903) = 0.10941 + 0.00357 = 0.11298;
    MDE = (1.95996 + 0.84162) · SE = 0.19181."""
    se = standard_error(0.1875, questions=40, personas=10**12)
    assert se == pytest.approx(math.sqrt(0.1875 / 40), rel=1e-9)
    assert power(0.05, se) == pytest.approx(0.10941 + 0.00357, abs=2e-5)
    assert minimum_detectable(se) == pytest.approx(2.80158 * 0.068465, abs=1e-4)
    assert power(0.0, se) == pytest.approx(0.05, abs=1e-12), "at Δ = 0 the power is the test's size"


def test_personas_samples_and_orders_enter_the_standard_error():
    # Q = 12, P = 8, default σ²: SE² = 0.25/12 · (1 + 1/8) = 0.0234375
    assert standard_error(DEFAULT_VARIANCE, 12, 8) == pytest.approx(math.sqrt(0.0234375), rel=1e-12)
    # 3 samples × 2 orders per cell: six answers per question on each side
    assert standard_error(DEFAULT_VARIANCE, 12, 8, samples=3, orders=2) == pytest.approx(math.sqrt(0.0234375 / 6), rel=1e-12)


def test_dry_run_uses_the_default_then_the_variance_of_cached_answers(tmp_path, openai_server):
    grid = write_grid(tmp_path, base_url=openai_server.base_url, personas=8, questions=6)
    before = dry_run_power(load_grid(grid)).row(0, named=True)
    assert (before["questions"], before["personas"], before["samples"], before["orders"]) == (6, 8, 1, 1)
    assert before["σ²"] == DEFAULT_VARIANCE and before["σ² from"] == "default"
    assert before["MDE"] == pytest.approx(minimum_detectable(math.sqrt(0.25 / 6 * (1 + 1 / 8))))
    assert openai_server.state.requests == 0 and not (tmp_path / "cache.sqlite").exists()

    proc = subprocess.run([sys.executable, "-m", "engine.cli", "run", str(grid), "--no-progress"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    scores = pl.read_parquet(tmp_path / "out" / "t" / "results" / "*.parquet")["correct"]
    after = dry_run_power(load_grid(grid)).row(0, named=True)
    assert after["σ² from"] == f"cache n={scores.len()}" and scores.len() == 6 + 8 * 6
    assert after["σ²"] == pytest.approx(scores.var(ddof=0), abs=1e-12)

    shown = subprocess.run([sys.executable, "-m", "engine.cli", "run", str(grid), "--dry-run"], capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "200"})
    assert shown.returncode == 0, shown.stderr
    assert "MDE" in shown.stdout and f"cache n={scores.len()}" in shown.stdout
