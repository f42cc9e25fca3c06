"""The dry run (engine.dryrun): one pass, a sampled estimate when nothing is cached, exact counts from a real cache."""

from __future__ import annotations

import random

import orjson

from engine.cache import ResponseCache
from engine.grid import load_grid
from engine.keys import Keys
from engine.dryrun import SAMPLE_PROMPTS, dry_run
from engine.limits import estimate_prompt_tokens
from engine.plan import Plan
from engine.request import Response
from engine.runner import prepare
from tests.bench_adapters.traits_fixtures import write_traits_grid
from tests.conftest import EXAMPLE_PERSONAS, write_grid

URL = "http://127.0.0.1:1/v1"


def _tokens(plan: Plan, cells) -> int:
    return round(sum(estimate_prompt_tokens(plan.request(c)) for c in cells))


def test_nothing_cached_counts_every_cell_without_a_key_and_renders_small_parts_whole(tmp_path):
    grid = load_grid(write_grid(tmp_path, base_url=URL, personas=3, questions=4))
    result = dry_run(grid)
    plan = Plan.from_grid(grid)
    (row,) = result.models
    # 4 baseline + 3 × 4 prose cells; every part has ≤ SAMPLE_PROMPTS cells, so all are rendered: exact tokens
    assert (row.cells, row.cached, row.to_call, row.calls) == (16, 0, 16, 16)
    assert row.input_tokens == _tokens(plan, plan) and row.max_output_tokens == 16 * 4
    assert result.sampled == SAMPLE_PROMPTS and result.power.height == 1
    assert not grid.cache_path.exists(), "a dry run writes nothing"
    assert result.counts_frame().rows() == [("m", 16, 0, 16)]
    assert result.estimate_frame()["model"].to_list() == ["m", "total"]


def test_sampled_cells_are_the_plans_own_cells_with_byte_identical_requests(tmp_path):
    plan = Plan.from_grid(load_grid(write_grid(tmp_path, base_url=URL, personas=6, questions=9)))
    model, bench, prose = plan.grid.models[0], plan.benchmarks[0], plan.grid.conditions[1]
    enumerated = {c.id: plan.request(c) for c in plan}
    drawn = plan.sample_cells(model, bench, prose, 7, random.Random("s"))
    assert len(drawn) == len({c.id for c in drawn}) == 7
    assert all(plan.request(c) == enumerated[c.id] for c in drawn)
    assert [c.id for c in drawn] == [c.id for c in plan.sample_cells(model, bench, prose, 7, random.Random("s"))], "seeded"
    assert len(plan.sample_cells(model, bench, plan.grid.conditions[0], 64, random.Random(0))) == 9, "a small part whole"


def test_trait_inference_samples_are_its_cells_too(tmp_path):
    plan = Plan.from_grid(load_grid(write_traits_grid(tmp_path, URL, 'targets = "all"\nshots = 1')))
    model, bench = plan.grid.models[0], plan.benchmarks[0]
    enumerated = {c.id: plan.request(c) for c in plan}
    for condition in plan.grid.conditions:
        drawn = plan.sample_cells(model, bench, condition, 5, random.Random(1))
        assert len(drawn) == 5 and all(plan.request(c) == enumerated[c.id] for c in drawn)


def test_a_cache_with_responses_is_keyed_once_and_counts_exactly(tmp_path):
    grid = load_grid(write_grid(tmp_path, base_url=URL, personas=3, questions=4))
    plan, providers = prepare(grid)
    model = grid.models[0]
    keys = Keys(providers)
    cells = list(plan)
    cache = ResponseCache(grid.cache_path)
    cache.write((keys.of(model, plan.request(c)), model.provider, model.id, Response(text="A")) for c in cells[:5])
    cache.close()
    (row,) = dry_run(grid).models
    assert (row.cells, row.cached, row.to_call, row.calls) == (16, 5, 11, 11)
    assert row.input_tokens == _tokens(plan, cells[5:]) and row.max_output_tokens == 11 * 4


def test_identical_requests_are_one_call_once_the_cache_is_read(tmp_path):
    """Two personas that render alike (the same record under two ids) ask each question with the same request."""
    grid = load_grid(write_grid(tmp_path, base_url=URL, personas=2, questions=3))
    record = orjson.loads(EXAMPLE_PERSONAS.read_bytes().splitlines()[0])
    (tmp_path / "personas.jsonl").write_bytes(b"".join(orjson.dumps({**record, "id": pid}) + b"\n" for pid in ("a", "b")))
    (before,) = dry_run(grid).models
    assert (before.to_call, before.calls) == (9, 9), "nothing cached: no key computed, every cell counted (an upper bound)"
    cache = ResponseCache(grid.cache_path)
    cache.write([("0" * 64, "openai", "other", Response(text="A"))])  # a response of no cell of this grid
    cache.close()
    (after,) = dry_run(grid).models
    assert (after.cells, after.cached, after.to_call, after.calls) == (9, 0, 9, 3 + 3)


def test_cached_answers_need_one_verdict_per_distinct_judge_request(tmp_path):
    """Judge mode, every answer cached and no verdict: the model has nothing to call; the judge has a verdict to
    give per cell, but cells asking the same question with the same answer share one verdict request."""
    from tests.engine.test_judge import CELLS, QUESTIONS, _grid

    grid = load_grid(_grid(tmp_path, URL, URL))
    plan, providers = prepare(grid)
    model = grid.models[0]
    keys = Keys(providers)
    cache = ResponseCache(grid.cache_path)
    cache.write((keys.of(model, plan.request(c)), model.provider, model.id, Response(text="Paris.")) for c in plan)
    cache.close()
    result = dry_run(grid)
    by_model = {m.model: m for m in result.models}
    assert (by_model["m"].cells, by_model["m"].cached, by_model["m"].calls) == (CELLS, CELLS, 0)
    judge = by_model["grader"]
    assert (judge.cells, judge.to_call, judge.calls) == (None, CELLS, QUESTIONS)
    verdicts = {c.item.id: plan.judge_request(c, "Paris.") for c in plan}
    assert judge.input_tokens == round(sum(estimate_prompt_tokens(r) for r in verdicts.values()))


def test_summary_cells_count_their_summary_calls_with_and_without_a_cache(tmp_path):
    """Baseline (3 questions) + two summary conditions sharing one rendering (6 cells each, 2 personas): 15 cells;
    a summary per persona (shared by both conditions), then every answer: 2 + 3 + 12 calls."""
    from tests.engine.test_modes import SUMMARY, _grid

    grid = load_grid(_grid(tmp_path, SUMMARY, base_url=URL))
    (before,) = dry_run(grid).models
    assert (before.cells, before.cached, before.to_call, before.calls) == (15, 0, 15, 2 + 3 + 12)
    plan, providers = prepare(grid)
    model = grid.models[0]
    first = next(c for c in plan if c.condition.summary)
    cache = ResponseCache(grid.cache_path)
    cache.write([(Keys(providers).of(model, plan.summary_request(first)), model.provider, model.id, Response(text="A voter."))])
    cache.close()
    (after,) = dry_run(grid).models
    # one summary cached: its persona's 6 answers have keys now (none cached); the other's 6 wait on 1 summary call
    assert (after.cells, after.cached, after.to_call, after.calls) == (15, 0, 15, 1 + 3 + 6 + 6)


def test_persona_fit_counts_a_verdict_per_persona_on_the_shared_baseline_answer(tmp_path):
    """persona_fit shows the judge the persona: the baseline's one answer per question is judged once for each of
    the 2 personas. 3 questions × (baseline + prose) × 2 personas = 12 verdicts, with or without a cache file."""
    from tests.engine.test_modes import _dataset, _grid

    conditions = '[[conditions]]\nname = "baseline"\n\n[[conditions]]\nname = "plain"\nformat = "prose"\n'
    grid = load_grid(_grid(tmp_path, conditions, base_url=URL, benchmark=_dataset('rubric = "persona_fit"', mode="judge"), judge_url=URL))
    before = {m.model: m for m in dry_run(grid).models}
    cache = ResponseCache(grid.cache_path)
    cache.write([("0" * 64, "openai", "other", Response(text="A"))])  # a response of no cell of this grid
    cache.close()
    after = {m.model: m for m in dry_run(grid).models}
    assert (before["m"].calls, after["m"].calls) == (12, 3 + 6)  # keyed: the baseline asks each question once
    assert (before["grader"].calls, after["grader"].calls) == (12, 12)
