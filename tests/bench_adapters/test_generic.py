"""The generic adapter: any labelled dataset from field names alone, in every file format."""

from __future__ import annotations

import orjson
import polars as pl
import pytest

from bench_adapters import sources
from bench_adapters.generic import Dataset

RECORDS = [
    {"uid": "a1", "q": "2 + 2 = ?", "choices": ["3", "4", "5"], "answer": 1, "subject": "math"},
    {"uid": "a2", "q": "Capital of Italy?", "choices": ["Rome", "Milan"], "answer": 0, "subject": "geo"},
]
FIELDS = {"question_field": "q", "options_field": "choices", "gold_field": "answer", "category_field": "subject", "id_field": "uid"}


def _check(items):
    assert [(i.id, i.question, i.options, i.gold_letter, i.meta["category"]) for i in items] == [
        ("a1", "2 + 2 = ?", ("3", "4", "5"), "B", "math"),
        ("a2", "Capital of Italy?", ("Rome", "Milan"), "A", "geo"),
    ]


def test_jsonl_and_parquet_with_a_list_field(tmp_path):
    (tmp_path / "d.jsonl").write_bytes(b"\n".join(orjson.dumps(r) for r in RECORDS))
    pl.DataFrame(RECORDS).write_parquet(tmp_path / "d.parquet")
    for name in ("d.jsonl", "d.parquet"):
        _check(Dataset(path=tmp_path / name, **FIELDS).load())


def test_csv_with_one_column_per_option_and_letter_or_text_gold(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("uid,q,A,B,C,answer,subject\na1,2 + 2 = ?,3,4,5,B,math\na2,Capital of Italy?,Rome,Milan,Paris,Rome,geo\n")
    items = Dataset(path=path, question_field="q", option_fields=("A", "B", "C"), gold_field="answer", id_field="uid").load()
    assert [i.gold_letter for i in items] == ["B", "A"] and items[1].options == ("Rome", "Milan", "Paris")
    assert items[0].meta == {}


def test_csv_list_column_as_json(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('q,choices,answer\nPick one,"[""x"", ""y""]",1\n')
    (item,) = Dataset(path=path, question_field="q", options_field="choices", gold_field="answer").load()
    assert item.options == ("x", "y") and item.gold == 1 and item.id == "000000"


def test_bad_records_and_settings_say_what_is_wrong(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(orjson.dumps({"q": "?", "choices": ["x"], "answer": 3}))
    with pytest.raises(ValueError, match="d.jsonl: record 1: gold index 3 is out of range"):
        Dataset(path=path, question_field="q", options_field="choices", gold_field="answer").load()
    with pytest.raises(ValueError, match="missing field"):
        Dataset(path=path, question_field="question", options_field="choices", gold_field="answer").load()
    with pytest.raises(ValueError, match="one of options_field"):
        Dataset(path=path, question_field="q", gold_field="answer")
    with pytest.raises(ValueError, match="exactly one of `path`"):
        Dataset(question_field="q", options_field="choices", gold_field="answer")


def test_hub_dataset_goes_through_datasets(monkeypatch):
    calls = []
    monkeypatch.setattr("bench_adapters.generic.hub_records", lambda *a: calls.append(a) or RECORDS)
    _check(Dataset(hf_dataset="org/set", hf_config="main", split="validation", **FIELDS).load())
    assert calls == [("org/set", "main", "validation")]


def test_hub_without_datasets_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "datasets", None)
    with pytest.raises(ValueError, match="pip install datasets"):
        sources.hub_records("org/set", None, "test")


def test_judge_mode_needs_only_a_question_and_references(tmp_path):
    (tmp_path / "free.jsonl").write_bytes(
        b"\n".join(orjson.dumps(r) for r in [{"q": "Why is the sky blue?", "ref": "Rayleigh scattering", "topic": "physics"}])
    )
    items = Dataset(path=tmp_path / "free.jsonl", mode="judge", question_field="q", reference_fields=("ref",), category_field="topic").load()
    assert [(i.question, i.options, i.refs, i.meta) for i in items] == [("Why is the sky blue?", (), {"ref": "Rayleigh scattering"}, {"category": "physics"})]
    with pytest.raises(ValueError, match="needs question_field and reference_fields"):
        Dataset(path=tmp_path / "free.jsonl", mode="judge", question_field="q")
    with pytest.raises(ValueError, match=r"free.jsonl: record 1: missing field 'answer' \(the record has q, ref, topic\)"):
        Dataset(path=tmp_path / "free.jsonl", mode="judge", question_field="q", reference_fields=("answer",)).load()
