"""NormAd on a small fixture in the published CSV schema (the real file is not bundled)."""

from __future__ import annotations

import csv

import orjson
import polars as pl
import pytest

from bench_adapters.normad import NormAd
from tests.bench_adapters.helpers import letters, text

HEADER = ["ID", "Country", "Background", "Axis", "Subaxis", "Value", "Rule-of-Thumb", "Story", "Explanation", "Gold Label"]
ROWS = [
    ["1", "south_korea", "bg", "Etiquette", "eating", "Respect elders.", "Wait for the eldest to eat first.", "Minho started eating before his grandfather. Is what Minho did socially acceptable?", "e", "no"],
    ["2", "egypt", "bg", "Etiquette", "visiting", "Hospitality.", "Bring a gift when visiting.", "Sara brought sweets to her host. Is what Sara did socially acceptable?", "e", "yes"],
    ["3", "egypt", "bg", "Etiquette", "gift_giving", "Modesty.", "Do not open gifts at once.", "Tom wore a blue shirt. Is what Tom did socially acceptable?", "e", "neutral"],
]


def write_fixture(path):
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(HEADER)
        writer.writerows(ROWS)
    return path


@pytest.fixture
def normad_csv(tmp_path):
    return write_fixture(tmp_path / "normad_etiquette_final_data.csv")


def test_labels_map_to_yes_no_neither(normad_csv):
    items = NormAd(path=normad_csv).load()
    assert [i.gold_letter for i in items] == ["B", "A", "C"]
    assert all(i.options == ("Yes", "No", "Neither") for i in items)
    assert [i.meta["category"] for i in items] == ["south_korea", "egypt", "egypt"]


@pytest.mark.parametrize(
    ("context", "present", "absent"),
    [
        ("none", [], ["Country:", "Value:", "Rule of thumb:"]),
        ("country", ["Country: South Korea"], ["Value:", "Rule of thumb:"]),
        ("value", ["Value: Respect elders."], ["Country:", "Rule of thumb:"]),
        ("cval", ["Country: South Korea", "Value: Respect elders."], ["Rule of thumb:"]),
        ("rot", ["Rule of thumb: Wait for the eldest to eat first."], ["Country:", "Value:"]),
    ],
)
def test_prompt_conditions(normad_csv, context, present, absent):
    adapter = NormAd(path=normad_csv, context=context)
    prompt = adapter.task_prompt(adapter.load()[0])
    assert "Story: Minho started eating" in prompt and "A. Yes\nB. No\nC. Neither" in prompt
    assert all(p in prompt for p in present) and not any(a in prompt for a in absent)


def test_answers_as_letters_or_words_and_nothing_defaulted(normad_csv):
    adapter = NormAd(path=normad_csv)
    no_item = adapter.load()[0]
    assert adapter.score(no_item, text("B")).correct == 1.0
    assert adapter.score(no_item, text("No, because elders eat first.")).correct == 1.0
    assert adapter.score(no_item, text("yes")).answer == "A"
    unclear = adapter.score(no_item, text("It depends on the family."))
    assert (unclear.answer, unclear.invalid) == (None, True)  # upstream would have said neutral
    logprob = NormAd(path=normad_csv, mode="letter-logprob").score(no_item, letters(A=0.2, B=0.7, C=0.1))
    assert logprob.correct == 1.0 and logprob.p_gold == pytest.approx(0.7)


def test_accuracy_by_country(normad_csv):
    adapter = NormAd(path=normad_csv)
    items = adapter.load()
    answers = ["B", "B", None]  # right, wrong, invalid
    rows = []
    for item, answer in zip(items, answers):
        s = adapter.score(item, text(answer))
        rows.append({"model": "m", "condition": "c", "status": "ok", "correct": s.correct, "invalid": s.invalid, "score": s.score, "p_gold": s.p_gold, "meta": orjson.dumps(item.meta).decode()})
    by = {r["category"]: r for r in NormAd.metrics(pl.DataFrame(rows)).iter_rows(named=True)}
    assert by["all"]["accuracy"] == pytest.approx(1 / 3) and by["egypt"]["accuracy"] == 0.0 and by["south_korea"]["accuracy"] == 1.0
    assert by["egypt"]["invalid"] == 0.5


def test_schema_and_options_are_checked(tmp_path, normad_csv):
    with pytest.raises(ValueError, match="not bundled"):
        NormAd()
    with pytest.raises(ValueError, match="context 'bgd'"):
        NormAd(path=normad_csv, context="bgd")
    bad = tmp_path / "bad.csv"
    bad.write_text("ID,Story\n1,x\n")
    with pytest.raises(ValueError, match="missing columns Country"):
        NormAd(path=bad).load()
