"""The scheduler in process, driven by engine.testing's FakeProvider: real plan, real SQLite cache, real
Parquet results, no HTTP and no subprocess, so each test runs in well under a second.

The grid asks a `dataset` benchmark of 12 questions with no persona; some questions carry the fake's fault
markers (engine/testing/fake.py): `<<fail:KIND>>` fails every attempt, `<<flaky:N>>` fails the first N
attempts, `<<raise>>` makes the provider raise for its whole batch.
"""

from __future__ import annotations

import asyncio
import gc
import textwrap
from pathlib import Path

import orjson
import polars as pl
import pytest

from engine.cache import ResponseCache
from engine.grid import load_grid
from engine.plan import Plan
from engine.errors import ResultsWriteError
from engine.results import ResultsWriter, read_results
from engine.scheduler import RunStats, Scheduler
from engine.testing import FakeProvider

QUESTIONS = 12


def _grid(tmp_path: Path, questions: list[str], concurrency: int = 3, max_retries: int = 2) -> Path:
    with (tmp_path / "items.jsonl").open("wb") as f:
        for i, q in enumerate(questions):
            f.write(orjson.dumps({"uid": f"q{i:02d}", "q": q, "opts": ["yes", "no", "maybe"], "gold": 0}) + b"\n")
    grid = tmp_path / "grid.toml"
    grid.write_text(
        textwrap.dedent(
            f"""
            [run]
            name = "s"
            output_dir = "out"

            [[benchmarks]]
            name = "dataset"
            path = "items.jsonl"
            question_field = "q"
            options_field = "opts"
            gold_field = "gold"
            id_field = "uid"

            [[models]]
            id = "m"
            provider = "openai"
            model = "test"

            [models.limits]
            concurrency = {concurrency}
            max_retries = {max_retries}

            [[conditions]]
            name = "baseline"
            """
        )
    )
    return grid


class Run:
    """One grid's plan, cache and fake provider; `go()` runs the scheduler once over it and returns its stats."""

    def __init__(self, grid: Path, latency_s: float = 0.0, batch_size: int = 1) -> None:
        self.grid = load_grid(grid)
        self.plan = Plan.from_grid(self.grid)
        self.model = self.grid.models[0]
        self.fake = FakeProvider(self.model, latency_s=latency_s, batch_size=batch_size)

    def go(self, stop: asyncio.Event | None = None, stop_after_calls: int | None = None) -> RunStats:
        cache = ResponseCache(self.grid.cache_path)
        self.scheduler = Scheduler(self.plan, {self.model.id: self.fake}, cache, ResultsWriter(self.grid.output_dir))

        async def main() -> RunStats:
            event = stop or asyncio.Event()
            if stop_after_calls is not None:
                async def watch() -> None:
                    while self.fake.calls < stop_after_calls:
                        await asyncio.sleep(0.001)
                    event.set()
                watcher = asyncio.create_task(watch())
            stats = await self.scheduler.run(event)
            if stop_after_calls is not None:
                watcher.cancel()
            return stats

        try:
            return asyncio.run(main())
        finally:
            cache.close()

    def results(self) -> pl.DataFrame:
        return read_results(self.grid.output_dir).collect().sort("cell")

    def cached_rows(self) -> int:
        cache = ResponseCache(self.grid.cache_path)
        try:
            return len(cache.lookup([self.scheduler.keys.of(self.model, self.plan.request(c)) for c in self.plan]))
        finally:
            cache.close()


def test_concurrency_is_bounded_by_the_models_limit(tmp_path):
    run = Run(_grid(tmp_path, [f"Question {i}?" for i in range(QUESTIONS)], concurrency=3), latency_s=0.02)
    stats = run.go()
    # 12 calls of 20 ms each, 3 at a time: the bound is reached and never passed.
    assert run.fake.max_in_flight == 3
    assert (stats.cells_done, stats.calls_made, run.fake.calls, stats.cache_hits) == (QUESTIONS, QUESTIONS, QUESTIONS, 0)
    assert run.results()["status"].to_list() == ["ok"] * QUESTIONS


def test_batches_go_to_a_batching_provider_whole(tmp_path):
    run = Run(_grid(tmp_path, [f"Question {i}?" for i in range(QUESTIONS)], concurrency=1), batch_size=5)
    stats = run.go()
    assert stats.cells_done == QUESTIONS and run.fake.calls == QUESTIONS
    assert run.fake.batches < QUESTIONS  # the worker gathered queued requests into batches of up to 5


def test_one_bad_cell_does_not_kill_the_run_and_its_error_is_recorded_with_the_cause(tmp_path):
    questions = [f"Question {i}?" for i in range(QUESTIONS)]
    questions[3] = "Broken <<fail:bad_request>>?"
    run = Run(_grid(tmp_path, questions, concurrency=2, max_retries=2))
    stats = run.go()
    rows = run.results()
    assert stats.cells_done == QUESTIONS and stats.errors == {"bad_request": 1}
    bad = rows.filter(pl.col("item_id") == "q03").row(0, named=True)
    assert (bad["status"], bad["error_kind"], bad["error"]) == ("error", "bad_request", "injected failure <<fail:bad_request>>")
    assert (bad["answer"], bad["correct"], bad["score"], bad["option"]) == (None, None, None, None)
    assert rows.filter(pl.col("item_id") != "q03")["status"].to_list() == ["ok"] * (QUESTIONS - 1)
    # A non-transient kind is not retried: one attempt.
    assert run.fake.attempts == QUESTIONS


def test_a_provider_that_raises_fails_only_its_batch(tmp_path):
    questions = [f"Question {i}?" for i in range(QUESTIONS)]
    questions[5] = "Crash <<raise>>?"
    run = Run(_grid(tmp_path, questions, concurrency=1))
    stats = run.go()
    rows = run.results()
    bad = rows.filter(pl.col("item_id") == "q05").row(0, named=True)
    assert (bad["status"], bad["error_kind"]) == ("error", "exception")
    assert bad["error"] == "RuntimeError: fake provider bug on a batch of 1"
    assert stats.errors == {"exception": 1} and stats.cells_done == QUESTIONS
    assert rows["status"].value_counts().sort("status").rows() == [("error", 1), ("ok", QUESTIONS - 1)]


def test_retried_calls_count_once_with_every_attempt_and_an_error_is_retried_by_the_next_run(tmp_path):
    questions = [f"Question {i}?" for i in range(QUESTIONS)]
    questions[0] = "Flaky <<flaky:2>>?"  # succeeds on the 3rd attempt: within max_retries = 2
    questions[1] = "Flakier <<flaky:7>>?"  # still failing after 3 attempts
    run = Run(_grid(tmp_path, questions, max_retries=2))
    stats = run.go()
    assert (stats.calls_made, stats.attempts) == (QUESTIONS, QUESTIONS - 2 + 3 + 3)
    rows = run.results()
    assert rows["status"].to_list()[:2] == ["ok", "error"]
    assert stats.errors == {"server_error": 1}
    # The error is logged, never cached as an answer: the rerun calls only that cell (attempts 4 to 6 fail
    # too), and a third run answers it on its 2nd attempt (the 8th).
    second = run.go()
    assert (second.cache_hits, second.calls_made, second.errors) == (QUESTIONS - 1, 1, {"server_error": 1})
    third = run.go()
    assert (third.cache_hits, third.calls_made, third.errors) == (QUESTIONS - 1, 1, {})
    assert run.results()["status"].to_list() == ["ok"] * QUESTIONS


def test_a_cache_hit_never_calls_and_the_rerun_writes_the_same_results(tmp_path):
    run = Run(_grid(tmp_path, [f"Question {i}?" for i in range(QUESTIONS)]))
    run.go()
    first = run.results()
    calls = run.fake.calls
    stats = run.go()
    assert run.fake.calls == calls == QUESTIONS
    assert (stats.cache_hits, stats.calls_made, stats.cells_done) == (QUESTIONS, 0, QUESTIONS)
    again = run.results()
    assert again["cached"].to_list() == [True] * QUESTIONS
    assert again.drop("cached").equals(first.drop("cached"))


def test_identical_requests_in_one_run_are_called_once(tmp_path):
    run = Run(_grid(tmp_path, ["Same?"] * 4 + [f"Question {i}?" for i in range(4)]))
    stats = run.go()
    # Four items ask the same prompt: one call, fanned out to four cells.
    assert (run.fake.calls, stats.cells_done) == (5, 8)
    rows = run.results()
    assert rows.filter(pl.col("response").is_not_null()).height == 8
    assert rows["key"].n_unique() == 5


def test_stop_ends_the_run_as_interrupted_keeping_every_answer_received(tmp_path):
    run = Run(_grid(tmp_path, [f"Question {i}?" for i in range(200)], concurrency=2), latency_s=0.005)
    stats = run.go(stop_after_calls=10)
    assert stats.interrupted and stats.cells_done < 200
    # Nothing lost: every answer the scheduler received is in the cache (a call cancelled in flight is not
    # received), and the results hold the cells done, each once.
    before = run.cached_rows()
    assert before == stats.calls_made >= 10
    assert run.results()["cell"].n_unique() == run.results().height == stats.cells_done
    # The resumed run calls only what is missing.
    rest = run.go()
    assert not rest.interrupted and rest.cache_hits == before and rest.calls_made == 200 - before
    assert run.results().height == 200


@pytest.mark.parametrize("batch_size", [1, 4])
def test_a_stop_before_the_start_calls_nothing(tmp_path, batch_size):
    run = Run(_grid(tmp_path, [f"Question {i}?" for i in range(QUESTIONS)]), batch_size=batch_size)
    stop = asyncio.Event()
    stop.set()
    stats = run.go(stop=stop)
    assert stats.interrupted and run.fake.calls == 0 and stats.cells_done == 0


def test_a_row_holds_each_value_in_its_own_column(tmp_path):
    # The scheduler builds each row positionally (engine.scheduler._emit): every column is checked by name.
    run = Run(_grid(tmp_path, ["Question 0?", "Broken <<fail:bad_request>>?"]))
    run.go()
    ok, failed = run.results().iter_rows(named=True)
    same = {"model": "m", "benchmark": "dataset", "condition": "baseline", "persona_id": None, "sample": 0, "cached": False, "gold": "A"}
    none = dict.fromkeys(("meta", "judge_key", "verdict", "reasoning", "summary", "invalid_kind"))
    # The fake answers C with logprobs A -3.0, B -4.0, C -0.1: p_gold = e^-3 / (e^-3 + e^-4 + e^-0.1) = 0.0511718;
    # the prompt "Question 0?\nA. yes\nB. no\nC. maybe\nRespond with a single letter (A, B, C) only." is 78 characters: 19 tokens.
    assert ok == {
        **same, **none, "cell": 0, "cell_id": "9fc2f297e4c2e2455789", "item_id": "q00",
        "key": "7eb9fbdbf88c986e9ffd50b0d4aabef270a9bd12fcdf39368b03e49a4d75bd81", "status": "ok", "response": "C",
        "answer": "C", "correct": 0.0, "invalid": False, "p_gold": pytest.approx(0.0511718, abs=1e-7), "prompt_tokens": 19,
        "completion_tokens": 1, "latency_s": 0.0, "error_kind": None, "error": None, "score": 0.0, "order": 0, "option": 2,
    }
    assert failed == {
        **same, **none, "cell": 1, "cell_id": "cc4275e4038f67b123c3", "item_id": "q01",
        "key": "943a021599d937ce44448183bac74f9b3e231efbff330a07d2bda75d35ad78aa", "status": "error", "response": None,
        "answer": None, "correct": None, "invalid": None, "p_gold": None, "prompt_tokens": None, "completion_tokens": None,
        "latency_s": 0.0, "error_kind": "bad_request", "error": "injected failure <<fail:bad_request>>", "score": None,
        "order": 0, "option": None,
    }


def test_a_run_collects_garbage_leanly_and_restores_the_collector_after(tmp_path):
    # engine.scheduler._lean_gc: during the run the start-up objects are frozen and the young generation waits
    # for 50,000 allocations; after it, ended well or by a write failure, the process's settings are back.
    run = Run(_grid(tmp_path, [f"Question {i}?" for i in range(4)]))
    seen = []
    complete = run.fake.complete

    async def watching(batch):
        seen.append((gc.get_threshold()[0], gc.get_freeze_count() > 0))
        return await complete(batch)

    run.fake.complete = watching
    before = gc.get_threshold()
    run.go()
    assert seen == [(50_000, True)] * 4
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0

    class Failing(ResultsWriter):
        def add(self, row):
            raise ResultsWriteError("results/part-00000.parquet: cannot write results: disk full")

    cache = ResponseCache(run.grid.cache_path)
    try:
        scheduler = Scheduler(run.plan, {run.model.id: run.fake}, cache, Failing(run.grid.output_dir))
        with pytest.raises(ResultsWriteError, match="disk full"):
            asyncio.run(scheduler.run(asyncio.Event()))
    finally:
        cache.close()
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
