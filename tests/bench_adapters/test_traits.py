"""Trait inference: items from the persona file, the hidden target, shots, the limit sample, scoring."""

from __future__ import annotations

import math
from collections import Counter

import orjson
import pytest

from bench_adapters.traits import Traits, expected_position
from engine.grid import GridError, load_grid
from engine.plan import Plan
from persona_builder.persona import load_personas
from tests.bench_adapters.helpers import letters, text
from tests.bench_adapters.traits_fixtures import write_personas, write_traits_grid

URL = "http://127.0.0.1:1/v1"


def _plan(tmp_path, benchmark: str = "", **kw) -> Plan:
    return Plan.from_grid(load_grid(write_traits_grid(tmp_path, URL, benchmark, **kw)))


def _shown(plan: Plan, cell) -> str:
    """What the model is told about the respondent: the system message (persona) in a persona condition."""
    return "\n".join(content for role, content in plan.request(cell).messages if role == "system")


def test_items_are_persona_times_target_and_pair_only_with_their_persona(tmp_path):
    plan = _plan(tmp_path)  # targets = "values": happiness (10 answers) and death_penalty (9)
    cells = list(plan)
    assert len(cells) == len(plan) == 3 * (10 + 9)
    assert all(c.item.id.split(":")[0] == c.persona.id for c in cells), "never a persona × item cross product"
    base = [c for c in cells if c.condition.name == "baseline"]
    assert [role for role, _ in plan.request(base[0]).messages] == ["user"], "the baseline shows no persona"
    # persona-major: one persona's items are adjacent in every condition
    order = [c.persona.id for c in cells if c.condition.name == "prose"]
    assert order == sorted(order)
    gold = {(c.persona.id, c.item.meta["target"]): c.item.options[c.item.gold] for c in cells}
    assert gold["p04", "happiness"] == "Not too happy" and gold["p07", "death_penalty"] == "Oppose"
    assert ("p06", "death_penalty") not in gold, "an unanswered target is no item"
    item = base[0].item
    assert item.options == ("Very happy", "Pretty happy", "Not too happy"), "the scale in the survey's order"
    assert plan.request(base[0]).messages[0][1].endswith("Respond with a single letter (A, B, C) only.")


def test_the_withheld_answer_and_its_question_never_reach_the_persona(tmp_path):
    plan = _plan(tmp_path, 'targets = "all"\nwithhold = ["death_penalty"]\nshots = 2')
    personas = {p.id: p for p in plan.personas}
    checked = 0
    for cell in plan:
        target = cell.item.meta["target"]
        assert target != "death_penalty", "a withheld trait is no target"
        shown = _shown(plan, cell).lower()
        user = plan.request(cell).messages[-1][1].lower()
        for key in (target, "death_penalty"):
            trait = personas[cell.persona.id].traits.get(key)
            if trait is None:
                continue
            assert trait.question.lower() not in shown
            assert trait.answer.lower() not in shown
        # the task states the question once; the shots are other respondents, never this one's traits
        assert user.count(cell.item.question.lower()) == 1 + 2
        checked += 1
    assert checked == len(plan) > 0


def _shots(plan: Plan, cell) -> list[str]:
    """The respondents a cell's shots show, recognised by their trait lines (age and country together)."""
    user = plan.request(cell).messages[-1][1]
    blocks = [b for b in user.split("\n\n") if b.startswith("Respondent ")]
    by_lines = {(p.answer("country"), p.answer("age")): p.id for p in plan.personas}
    found = []
    for block in blocks:
        lines = dict(line[2:].split(": ", 1) for line in block.splitlines() if line.startswith("- "))
        found.append(by_lines[lines["Country of interview"], lines["Age"]])
    return found


def test_shots_come_from_a_disjoint_country_stratified_train_split(tmp_path):
    plan = _plan(tmp_path, 'targets = "all"\nshots = 1')
    adapter = plan.benchmarks[0].adapter
    train = {plan.personas[i].id for i in adapter._train}
    test = {c.persona.id for c in plan}
    assert train and not train & test, "no respondent in both splits"
    # 20% of each country × sex stratum, rounded: Aland women 3 → 1, Aland men 3 → 1, Borduria 2 + 2 → none
    assert Counter((plan.personas[i].answer("country"), plan.personas[i].answer("sex")) for i in adapter._train) == {("Aland", "Female"): 1, ("Aland", "Male"): 1}
    for cell in plan:
        shots = _shots(plan, cell)
        assert len(shots) == 1 and set(shots) <= train and cell.persona.id not in shots
        # the shot's real answer is revealed, lettered on this item's scale
        shot = next(p for p in plan.personas if p.id == shots[0])
        answer = shot.traits[cell.item.meta["target"]].answer
        assert f"Answer: {cell.item.letters[cell.item.options.index(answer)]}. {answer}" in plan.request(cell).messages[-1][1]


def test_plan_is_deterministic_and_the_limit_is_a_stratified_sample(tmp_path):
    grid = write_traits_grid(tmp_path, URL, 'targets = "all"\nlimit = 14\nseed = 3\nshots = 1')
    first, second = Plan.from_grid(load_grid(grid)), Plan.from_grid(load_grid(grid))
    a, b = list(first), list(second)
    assert [c.id for c in a] == [c.id for c in b]
    assert [first.request(c) for c in a] == [second.request(c) for c in b]
    items = [c.item for c in a if c.condition.name == "baseline"]
    assert len(items) == first.benchmarks[0].adapter.count == 14
    # strata target × country × sex, proportional with largest remainders: every stratum keeps its share ±1
    adapter = first.benchmarks[0].adapter
    full = Counter()
    for i, p in enumerate(first.personas):
        if i not in adapter._train:
            for key in adapter.targets:
                if key in p.traits:
                    full[key, p.answer("country"), p.answer("sex")] += 1
    by_id = {p.id: p for p in first.personas}
    kept = Counter((it.meta["target"], by_id[it.id.split(":")[0]].answer("country"), by_id[it.id.split(":")[0]].answer("sex")) for it in items)
    total = sum(full.values())
    for stratum, n in full.items():
        assert abs(kept[stratum] - 14 * n / total) < 1, stratum
    other = Plan.from_grid(load_grid(write_traits_grid(tmp_path, URL, 'targets = "all"\nlimit = 14\nseed = 4\nshots = 1')))
    assert {c.item.id for c in other} != {c.item.id for c in a}, "the seed draws the sample"


def test_existing_benchmarks_render_the_persona_as_before(tmp_path):
    from persona_builder import render

    person = load_personas(write_personas(tmp_path / "p.jsonl"))[0]
    assert render(person, "prose", "all", ()) == render(person, "prose", "all")
    assert "happy" not in render(person, "bullets", "all", {"happiness"}).lower()
    assert "happy" in render(person, "bullets", "all").lower()


@pytest.mark.parametrize(
    ("benchmark", "expected"),
    [
        ('targets = ["happiness", "trust"]', "no answer scale for 'trust' in the persona file (available: religion, happiness, death_penalty)"),
        ('withhold = ["shoe_size"]', "withhold: no persona has trait 'shoe_size'"),
        ("shots = 9", "shots = 9 but the train split has fewer respondents for:"),
        ('targets = ["happiness"]\nwithhold = ["happiness"]', "'happiness' is both a target and withheld"),
    ],
)
def test_bad_targets_are_grid_errors_listing_what_is_available(tmp_path, benchmark, expected):
    with pytest.raises(GridError) as err:
        _plan(tmp_path, benchmark)
    assert str(err.value).count("\n") == 0 and "benchmarks[0]: traits: " in str(err.value) and expected in str(err.value)


def test_a_persona_file_without_scales_is_a_grid_error(tmp_path):
    grid = write_traits_grid(tmp_path, URL)
    write_personas(tmp_path / "personas.jsonl", scales=False)
    with pytest.raises(GridError, match="has no answer scales .* rebuild it with `mtpa-engine personas build`"):
        Plan.from_grid(load_grid(grid))


def _item(tmp_path, ordinal: bool = True):
    """The adapter and p01's happiness (ordinal) or death-penalty (nominal) item."""
    adapter = Traits(mode="letter")
    adapter.bind(load_personas(write_personas(tmp_path / "p.jsonl")))
    return adapter, next(i for p in adapter._personas for i in adapter.items_for(p) if i.meta["target"] == ("happiness" if ordinal else "death_penalty"))


def test_letter_scores_accuracy_and_the_ordinal_score(tmp_path):
    adapter, item = _item(tmp_path)  # p01 happiness: real answer A (Very happy) on a 3-point scale
    assert item.gold == 0 and json_scale(item) == ["Very happy", "Pretty happy", "Not too happy"]
    exact, near, far, bad = (adapter.score(item, text(x)) for x in ("A", "B", "C", "maybe"))
    assert (exact.correct, exact.score) == (1.0, 1.0)
    assert (near.correct, near.score) == (0.0, 0.5)  # 1 − |1 − 0| / (3 − 1)
    assert (far.correct, far.score) == (0.0, 0.0)
    assert bad.invalid and bad.answer is None and (bad.correct, bad.score) == (0.0, 0.0), "invalid is never an option"
    adapter, nominal = _item(tmp_path, ordinal=False)  # p01 death penalty: Favor (A); a nominal scale scores exact matches only
    assert adapter.score(nominal, text("B")).score == 0.0 and adapter.score(nominal, text("A")).score == 1.0


def test_letter_logprob_scores_the_expected_position(tmp_path):
    adapter, item = _item(tmp_path)
    adapter.mode = "letter-logprob"
    scored = adapter.score(item, letters(A=0.2, B=0.5, C=0.3))
    # E[position] = 0.5 × 1 + 0.3 × 2 = 1.1 → 1 − 1.1 / 2 = 0.45; the argmax B is not the real answer
    assert scored.answer == "B" and scored.correct == 0.0
    assert math.isclose(scored.score, 0.45) and math.isclose(scored.p_gold, 0.2)
    assert math.isclose(expected_position([math.log(0.25), math.log(0.25), math.log(0.5)]), 1.25)
    assert adapter.score(item, letters()).invalid


def json_scale(item) -> list[str]:
    return orjson.loads(item.meta["scale"])


def test_a_persona_placed_in_the_user_turn_hides_the_target_too(tmp_path):
    conditions = '[[conditions]]\nname = "bullets-user"\nformat = "bullets"\nplacement = "user"\n'
    plan = _plan(tmp_path, 'targets = ["happiness"]', conditions=conditions)
    for cell in plan:
        (role, content), = plan.request(cell).messages
        persona_text, task = content.split("\n\n", 1)
        assert role == "user" and task.startswith(cell.item.question)
        assert "happ" not in persona_text.lower(), "neither the question nor the answer (Very/Pretty/Not too happy)"
        assert persona_text.count("\n- ") >= 3, "the rest of the persona is shown"
