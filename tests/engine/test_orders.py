"""Option-order permutations as a plan axis (grid key `orders`): ids and cache keys of `orders = 1` grids are
main's, cyclic shifts put every option once at every position, and each order is scored by the same rule."""

from __future__ import annotations

import hashlib
import json
import textwrap
from collections import Counter

import pytest

from bench_adapters.choice import option_orders, reorder
from engine.grid import GridError, load_grid
from engine.keys import cache_key
from engine.plan import Plan

PERSONAS = [
    {"id": f"p{i}", "source": "GSS", "traits": {"country": {"question": "Country?", "answer": "United States", "category": "demographic"},
                                             "sex": {"question": "Sex?", "answer": sex, "category": "demographic"}}}
    for i, sex in enumerate(["Male", "Female"])
]
# `orders = 1` (and no `orders` key) must keep every cell id and cache key main computed before the axis
# existed: sha256 over "cell_id key\n" of this grid's 24 cells, computed with main @ 5cb90c5.
MAIN_DIGEST = "498b0f6d8863ad88d31e797698e3640c0bcd4e4c0e912cdb7286dbf4a4e2bba1"
MAIN_FIRST = ("94a0f8d51d5c715583f9", "084bafd57952d9e438727ab6eb8c17bf2b50bd8c6399e475b178001333472ab4")


def _grid(tmp_path, orders: str = "", tqa: str = "", bbq: str = 'mode = "letter-logprob"') -> Plan:
    (tmp_path / "personas.jsonl").write_text("".join(json.dumps(p) + "\n" for p in PERSONAS))
    (tmp_path / "grid.toml").write_text(textwrap.dedent(f'''
        [run]
        name = "golden"
        [personas]
        source = "personas.jsonl"
        [[benchmarks]]
        name = "truthfulqa"
        limit = 3
        {orders}
        {tqa}
        [[benchmarks]]
        name = "bbq"
        limit = 3
        {bbq}
        categories = ["Age"]
        {orders}
        [[benchmarks]]
        name = "crows_pairs"
        limit = 2
        mode = "likelihood"
        [[models]]
        id = "m"
        provider = "local"
        model = "embedded"
        [[conditions]]
        name = "baseline"
        [[conditions]]
        name = "prose"
        format = "prose"
        '''))
    return Plan.from_grid(load_grid(tmp_path / "grid.toml"))


def _digest(plan: Plan) -> tuple[int, str, tuple[str, str]]:
    h, rows = hashlib.sha256(), []
    for cell in plan:
        rows.append((cell.id, cache_key("openai", {"model": "test"}, plan.request(cell))))
        h.update(f"{rows[-1][0]} {rows[-1][1]}\n".encode())
    return len(rows), h.hexdigest(), rows[0]


@pytest.mark.parametrize("orders", ["", "orders = 1"])
def test_orders_one_keeps_mains_cell_ids_and_cache_keys(tmp_path, orders):
    assert _digest(_grid(tmp_path, orders)) == (24, MAIN_DIGEST, MAIN_FIRST)


def test_cyclic_shows_every_option_once_at_every_position(tmp_path):
    plan = _grid(tmp_path, 'orders = "cyclic"')
    (tmp_path / "one").mkdir()
    base = {c.id for c in _grid(tmp_path / "one")}
    cells = [c for c in plan if c.benchmark in ("truthfulqa", "bbq") and c.persona is None]
    by_item: dict[tuple[str, str], list] = {}
    for c in cells:
        by_item.setdefault((c.benchmark, c.item.id), []).append(c)
    assert len(by_item) == 6
    for variants in by_item.values():
        n = len(variants[0].item.options)
        assert [c.order for c in variants] == list(range(n))  # one order per cyclic shift
        first = variants[0].item
        for position in range(n):
            shown = Counter(c.item.options[position] for c in variants)
            assert shown == Counter(first.options)  # each option exactly once at this position
        golds = [c.item.options[c.item.gold] for c in variants]
        assert set(golds) == {first.options[first.gold]}  # the gold follows its text
        assert sorted(c.item.gold for c in variants) == list(range(n))  # ... to every position once
        assert variants[0].id in base  # order 0 is the cell every grid has, same id
        assert len({c.id for c in variants}) == n and not any(c.id in base for c in variants[1:])
        requests = {plan.request(c).messages for c in variants}
        assert len(requests) == n  # each order is its own prompt, so its own cache entry
    likelihood = [c for c in plan if c.benchmark == "crows_pairs"]
    assert {c.order for c in likelihood} == {0} and len(plan) == len(list(plan))


def test_reordered_bbq_item_moves_biased_and_unknown_letters_with_their_options(tmp_path):
    plan = _grid(tmp_path, 'orders = "cyclic"')
    for c in (c for c in plan if c.benchmark == "bbq" and c.persona is None):
        first = plan.benchmarks[1].variants[[v[0][0].id for v in plan.benchmarks[1].variants].index(c.item.id)][0][0]
        for field in ("biased", "unknown"):
            if first.meta[field]:
                old = first.options["ABC".index(first.meta[field])]
                assert c.item.options["ABC".index(c.item.meta[field])] == old
        assert c.option(c.item.letters[c.item.gold]) == first.gold  # the chosen content maps back to order 0


def test_integer_orders_are_distinct_seeded_permutations_capped_at_n_factorial():
    four = option_orders(4, 5, 0, "q1")
    assert four[0] == (0, 1, 2, 3) and len(set(four)) == 5 and all(sorted(p) == [0, 1, 2, 3] for p in four)
    assert four == option_orders(4, 5, 0, "q1") and four != option_orders(4, 5, 0, "q2")
    assert option_orders(2, 4, 0, "q") == ((0, 1), (1, 0))  # only 2! = 2 distinct orders exist
    assert option_orders(3, "cyclic", 0, "q") == ((0, 1, 2), (1, 2, 0), (2, 0, 1))


def test_reorder_moves_gold_and_true_options():
    from bench_adapters.base import Item

    item = Item("x", "q?", ("a", "b", "c", "d"), gold=1, true=(1, 3), meta={"biased": "D"})
    moved = reorder(item, (3, 0, 1, 2), ("biased",))
    assert moved.options == ("d", "a", "b", "c")
    assert (moved.gold, moved.true, moved.meta["biased"]) == (2, (0, 2), "A")


@pytest.mark.parametrize(
    ("orders", "extra", "message"),
    [
        ('orders = "cyclic"', 'mode = "likelihood"', "benchmarks[1].orders: likelihood mode scores each option's text on its own, so option order never enters it; leave orders at 1"),
        ('orders = "shuffle"', "", "benchmarks[1].orders: expected a positive integer or \"cyclic\", got 'shuffle'"),
        ("orders = 0", "", 'benchmarks[1].orders: expected a positive integer or "cyclic", got 0'),
        ("orders = 1.5", "", "benchmarks[1].orders: expected an integer or a string, got 1.5"),
    ],
)
def test_bad_orders_are_one_clear_grid_error(tmp_path, orders, extra, message):
    with pytest.raises(GridError) as exc:
        _grid(tmp_path, orders, bbq=extra or 'mode = "letter"')
    assert any(p.endswith(message) for p in exc.value.problems), exc.value.problems


def test_every_order_of_a_normad_item_is_scored_by_its_own_positions(tmp_path):
    from bench_adapters.normad import NormAd
    from tests.bench_adapters.helpers import text
    from tests.bench_adapters.test_normad import write_fixture

    adapter = NormAd(path=write_fixture(tmp_path / "normad.csv"), mode="letter")
    sara = next(i for i in adapter.load() if i.meta["label"] == "yes")
    for item, perm in adapter.ordered(sara, "cyclic"):
        yes = item.letters[item.options.index("Yes")]
        assert item.letters[item.gold] == yes and "Answer Yes, No or Neither." in adapter.task_prompt(item)
        for reply in (yes, "Yes, it is polite."):  # the letter, or the word wherever the order put it
            scored = adapter.score(item, text(reply))
            assert (scored.answer, scored.correct) == (yes, 1.0)
        assert perm[item.options.index("Yes")] == 0  # "Yes" is option 0 of the first order


def test_dataset_adapter_keeps_its_order_first_and_permutes_after(tmp_path):
    from bench_adapters.generic import Dataset

    data = tmp_path / "d.jsonl"
    data.write_text('{"q": "2+2?", "opts": ["3", "4", "5", "6"], "a": 1}\n')
    adapter = Dataset(path=data, mode="letter-logprob", question_field="q", options_field="opts", gold_field="a")
    (item,) = adapter.load()
    variants = adapter.ordered(item, 3)
    assert variants[0] == (item, (0, 1, 2, 3)) and len(variants) == 3
    for shown, perm in variants:
        assert shown.options == tuple(item.options[i] for i in perm) and shown.options[shown.gold] == "4"
