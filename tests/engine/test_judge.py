"""LLM-as-judge through the engine: answers and verdicts are both ordinary cached, limited, resumable calls.

The model under test and the judge are two real OpenAI-wire servers on 127.0.0.1, so every call each of them
receives is counted apart.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import textwrap

import orjson
import polars as pl
import pytest

from bench_adapters.rubric import load_rubric
from tests.conftest import EXAMPLE_PERSONAS, run_until_killed
from engine.testing.servers.openai_compat import OpenAICompatServer

QUESTIONS = 3
CELLS = QUESTIONS + 2 * QUESTIONS  # baseline + 2 personas in prose


@pytest.fixture
def servers():
    with OpenAICompatServer(latency=0.002) as model, OpenAICompatServer(latency=0.002) as judge:
        yield model, judge


def _grid(tmp_path, model_url: str, judge_url: str, benchmarks: str | None = None, judge_mode: str = "letter", questions: int = QUESTIONS) -> object:
    shutil.copy(EXAMPLE_PERSONAS, tmp_path / "personas.jsonl")
    benchmarks = benchmarks or f'[[benchmarks]]\nname = "truthfulqa"\nmode = "judge"\nlimit = {questions}\nmax_tokens = 32\n'
    grid = tmp_path / "grid.toml"
    grid.write_text(
        textwrap.dedent(
            f"""
            [run]
            name = "j"
            output_dir = "out/{{name}}"

            [personas]
            source = "personas.jsonl"
            limit = 2

            [[models]]
            id = "m"
            provider = "openai"
            model = "test"
            base_url = "{model_url}"
            [models.limits]
            max_retries = 0

            [judge]
            mode = "{judge_mode}"
            [judge.model]
            id = "grader"
            provider = "openai"
            model = "test"
            base_url = "{judge_url}"
            [judge.model.limits]
            max_retries = 0
            concurrency = 2

            [[conditions]]
            name = "baseline"

            [[conditions]]
            name = "prose"
            format = "prose"
            """
        )
        + "\n"
        + benchmarks
    )
    return grid


def _run(grid, *args):
    cmd = [sys.executable, "-m", "engine.cli", "run", str(grid), "--no-progress", "--summary-json", str(grid.parent / "s.json"), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return orjson.loads((grid.parent / "s.json").read_bytes())


def _results(grid) -> pl.DataFrame:
    return pl.read_parquet(grid.parent / "out" / "j" / "results" / "*.parquet").sort("cell")


def test_every_answer_is_judged_through_the_cache_and_a_rerun_calls_nobody(tmp_path, servers):
    model, judge = servers
    grid = _grid(tmp_path, model.base_url, judge.base_url)
    summary = _run(grid)
    assert model.state.requests == CELLS
    # The wire server answers every free-text question "A": one distinct (question, answer) pair per question,
    # so the judge is asked once per question and its verdict serves the baseline and both personas.
    assert judge.state.requests == QUESTIONS
    assert summary["model_calls"] == CELLS + QUESTIONS and summary["errors_total"] == 0 and summary["cells_done"] == CELLS

    results = _results(grid)
    assert results.height == CELLS and (results["status"] == "ok").all()
    assert (results["response"] == "A").all() and results["gold"].is_null().all()
    assert results["verdict"].is_in(["A", "B"]).all() and (results["answer"] == results["verdict"]).all()
    assert results["score"].to_list() == [1.0 if v == "A" else 0.0 for v in results["verdict"]]
    assert (results["correct"] == results["score"]).all() and results["judge_key"].n_unique() == QUESTIONS
    # The judge saw each question, the model's answer and the references, and was asked for one letter.
    assert results["item_id"].n_unique() == QUESTIONS
    for prompt in judge.state.prompts:
        assert "Answer to grade: A" in prompt and "Reference answers known to be true:" in prompt
        assert prompt.endswith("Respond with a single letter (A, B) only.")
    # The judge got the rubric's letters' logprobs, and the manifest names the judge and the rubric it used.
    assert judge.state.last_body["logprobs"] is True and results["p_gold"].is_not_null().all()
    manifest = orjson.loads((grid.parent / "out" / "j" / "manifest.json").read_bytes())
    assert manifest["judge"]["id"] == "grader" and manifest["judge"]["mode"] == "letter"
    assert manifest["rubrics"]["truthfulqa"]["sha256"] == load_rubric("truthful").digest

    rerun = _run(grid)
    assert (model.state.requests, judge.state.requests) == (CELLS, QUESTIONS), "a cache hit never makes a call"
    assert rerun["model_calls"] == 0 and rerun["cache_hits"] == CELLS + CELLS
    again = _results(grid)
    assert again["cached"].all() and again.select("cell_id", "score", "verdict").equals(results.select("cell_id", "score", "verdict"))


def test_a_failed_verdict_is_the_cells_error_and_a_rerun_asks_only_the_judge(tmp_path, servers):
    model, judge = servers
    judge.state.fail_every, judge.state.fail_status = 1, 503
    grid = _grid(tmp_path, model.base_url, judge.base_url)
    summary = _run(grid)
    assert summary["errors"] == {"server_error": QUESTIONS} and summary["cells_done"] == CELLS
    results = _results(grid)
    assert (results["status"] == "error").all() and (results["error_kind"] == "judge_server_error").all()
    assert results["error"].str.contains("injected failure").all()  # the cause, as the judge's server gave it
    assert results["response"].is_not_null().all() and results["score"].is_null().all()

    judge.state.fail_every = 0
    summary = _run(grid)
    # Nothing lost, nothing repeated: the answers came from the cache, only the missing verdicts were asked for.
    assert model.state.requests == CELLS and judge.state.requests == 2 * QUESTIONS
    assert summary["model_calls"] == QUESTIONS and summary["errors_total"] == 0
    assert (_results(grid)["status"] == "ok").all()


def test_one_answer_set_judged_by_two_rubrics_is_generated_once(tmp_path, servers):
    model, judge = servers
    benchmarks = "".join(
        f'[[benchmarks]]\nname = "truthfulqa"\nid = "{label}"\nmode = "judge"\nrubric = "{rubric}"\nlimit = {QUESTIONS}\nmax_tokens = 32\n\n'
        for label, rubric in (("truthful", "truthful"), ("informative", "informative"))
    )
    grid = _grid(tmp_path, model.base_url, judge.base_url, benchmarks, judge_mode="letter-logprob")
    summary = _run(grid)
    assert summary["cells_done"] == 2 * CELLS
    assert model.state.requests == CELLS, "the second benchmark's answers are the first one's (same requests)"
    assert judge.state.requests == 2 * QUESTIONS
    results = _results(grid)
    assert sorted(results["benchmark"].unique()) == ["informative", "truthful"]
    # letter-logprob: the score is the expected rubric value, which for a 1/0 rubric is the mass on "pass".
    assert results["verdict"].is_not_null().all() and (results["score"] - results["p_gold"]).abs().max() < 1e-12
    assert any("for informativeness" in p for p in judge.state.prompts) and any("for truthfulness" in p for p in judge.state.prompts)
    report = subprocess.run(
        [sys.executable, "-m", "engine.cli", "report", str(grid.parent / "out" / "j"), "--out", str(tmp_path / "rep")],
        capture_output=True, text=True, timeout=300,
    )
    assert report.returncode == 0, report.stderr
    for label in ("truthful", "informative"):  # each id is scored by its adapter's own metrics
        metrics = pl.read_csv(tmp_path / "rep" / f"metrics_{label}.csv")
        assert "all" in metrics["category"].to_list() and metrics["accuracy"].is_between(0, 1).all()


def test_dry_run_estimates_the_judges_calls_before_and_after(tmp_path, servers):
    model, judge = servers
    grid = _grid(tmp_path, model.base_url, judge.base_url)

    def estimate() -> dict[str, int]:
        proc = subprocess.run([sys.executable, "-m", "engine.cli", "run", str(grid), "--dry-run"], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        table = proc.stdout.split("estimate for the calls to make", 1)[1]
        rows = [line.replace("│", " ").split() for line in table.splitlines()]
        return {row[0]: int(row[1].replace(",", "")) for row in rows if row and row[0] in ("m", "grader")}

    # Before: every answer is still to come, so each may need its own verdict (an upper bound).
    assert estimate() == {"m": CELLS, "grader": CELLS}
    assert (model.state.requests, judge.state.requests) == (0, 0)
    _run(grid)
    assert estimate() == {"m": 0, "grader": 0}


@pytest.mark.slow
def test_a_run_killed_while_judging_resumes_with_exactly_the_missing_calls(tmp_path):
    questions = 20
    answers, verdicts = 3 * questions, questions  # each persona's answer is its own call; identical answers share a verdict
    with OpenAICompatServer(latency=0.002) as model, OpenAICompatServer(latency=0.05) as judge:
        grid = _grid(tmp_path, model.base_url, judge.base_url, questions=questions)
        run_until_killed(grid, lambda: judge.state.requests >= 6, poll_s=0.005)
        asked = model.state.requests + judge.state.requests
        with sqlite3.connect(tmp_path / "cache.sqlite") as db:
            committed = db.execute("SELECT count(*) FROM responses").fetchone()[0]
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert 0 < committed < answers + verdicts and asked >= committed

        summary = _run(grid)
        assert model.state.requests + judge.state.requests - asked == answers + verdicts - committed, "exactly the missing calls"
        assert summary["model_calls"] == answers + verdicts - committed and summary["errors_total"] == 0
        with sqlite3.connect(tmp_path / "cache.sqlite") as db:
            assert db.execute("SELECT count(*) FROM responses").fetchone()[0] == answers + verdicts
        results = _results(grid)
        assert results.height == answers and (results["status"] == "ok").all() and results["verdict"].is_not_null().all()
