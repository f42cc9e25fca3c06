from __future__ import annotations

import itertools
import tracemalloc

import pytest

from engine.grid import GridError, load_grid
from engine.plan import Plan
from persona_builder import Persona, Trait
from tests.conftest import write_grid


def _plan(tmp_path, **kw) -> Plan:
    return Plan.from_grid(load_grid(write_grid(tmp_path, base_url="http://127.0.0.1:1/v1", **kw)))


def test_count_matches_enumeration_and_order_is_deterministic(tmp_path):
    plan = _plan(tmp_path, personas=3, questions=4)
    cells = list(plan)
    assert len(cells) == len(plan) == 4 + 3 * 4  # baseline has no persona axis
    assert [c.index for c in cells] == list(range(len(cells)))
    again = [c.id for c in _plan(tmp_path, personas=3, questions=4)]
    assert [c.id for c in cells] == again
    assert len(set(again)) == len(again)


def test_baseline_prompt_has_no_persona_and_persona_goes_in_system(tmp_path):
    plan = _plan(tmp_path, personas=1, questions=1)
    base, persona = list(plan)
    assert [role for role, _ in plan.request(base).messages] == ["user"]
    req = plan.request(persona)
    assert req.messages[0][0] == "system" and "You are answering as" in req.messages[0][1]
    assert req.messages[1] == plan.request(base).messages[0]


def test_ten_million_cell_grid_plans_lazily(tmp_path):
    plan = _plan(tmp_path, personas=1, questions=50)
    trait = {"country": Trait("Country", "X", "demographic")}
    many = [Persona(f"p{i}", "synthetic", trait) for i in range(200_000)]
    big = Plan(plan.grid, many, plan.benchmarks)
    assert len(big) == 50 + 200_000 * 50  # ten million cells, counted arithmetically
    tracemalloc.start()
    cells = iter(big)
    consumed = sum(1 for _ in itertools.islice(cells, 200_000))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert consumed == 200_000
    assert next(cells).index == 200_000
    assert peak < 50 * 1024 * 1024, "planning must not materialise the grid"


def test_a_condition_naming_a_trait_no_persona_has_is_a_grid_error(tmp_path):
    conditions = '[[conditions]]\nname = "baseline"\n\n[[conditions]]\nname = "minus"\nformat = "prose"\ntraits = "-nosuch"\n'
    with pytest.raises(GridError) as err:
        _plan(tmp_path, conditions=conditions)
    assert str(err.value).count("\n") == 0 and "conditions[1].traits: no persona has trait 'nosuch' (traits: " in str(err.value)
