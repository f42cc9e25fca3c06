"""`mtpa-engine cache merge|stats|vacuum|export` on real SQLite caches written by engine.cache."""

from __future__ import annotations

import csv
import sqlite3

import orjson
import pytest
from click.testing import CliRunner

from engine.cache import ResponseCache
from engine.cli import app
from engine.request import Response

cli = CliRunner()


def _invoke(*args: str, code: int = 0):
    result = cli.invoke(app, [str(a) for a in args])
    assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
    return result


def _cache(path, rows) -> None:
    cache = ResponseCache(path)
    try:
        cache.write(rows)
    finally:
        cache.close()


def _ok(text, **kw) -> Response:
    return Response(text=text, **kw)


@pytest.fixture
def two(tmp_path):
    """a: k1 'A', k2 'B' (m1), k3 likelihood (m2), failures logged for k2 (answered since) and k9.
    b: k1 'C' (a conflict with a), k2 'B' (the same), k4 new, a failure logged for k9."""
    a, b = tmp_path / "a.sqlite", tmp_path / "b.sqlite"
    _cache(a, [
        ("k1", "openai", "m1", _ok("A", letter_logprobs={"A": -0.1, "B": -2.5}, prompt_tokens=10, completion_tokens=1)),
        ("k2", "openai", "m1", _ok("B", prompt_tokens=12, completion_tokens=1)),
        ("k3", "local", "m2", _ok(None, option_logprobs=(-1.5, -2.0), option_tokens=(3, 4), prompt_tokens=20)),
        ("k2", "openai", "m1", Response.failed("rate_limit", "HTTP 429")),
        ("k9", "openai", "m1", Response.failed("timeout", "read timeout")),
    ])
    _cache(b, [
        ("k1", "openai", "m1", _ok("C", letter_logprobs={"A": -3.0, "C": -0.05})),
        ("k2", "openai", "m1", _ok("B", prompt_tokens=12, completion_tokens=1)),
        ("k4", "openai", "m1", _ok("D")),
        ("k9", "openai", "m1", Response.failed("timeout", "read timeout")),
    ])
    return a, b


def _texts(path) -> dict[str, str | None]:
    with sqlite3.connect(path) as db:
        return dict(db.execute("SELECT key, text FROM responses"))


def _errors(path) -> int:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT count(*) FROM errors").fetchone()[0]


def test_merge_keeps_the_first_answer_and_counts_conflicts(tmp_path, two):
    a, b = two
    out = tmp_path / "out.sqlite"
    report = orjson.loads(_invoke("cache", "merge", out, a, b, "--json").stdout)
    assert report["entries"] == 4 and report["integrity"] == "ok" and report["conflicts"] == 1
    ra, rb = report["inputs"]
    assert (ra["entries"], ra["added"], ra["same"], ra["conflicts"], ra["errors_added"]) == (3, 3, 0, 0, 2)
    assert (rb["entries"], rb["added"], rb["same"], rb["conflicts"], rb["conflict_keys"], rb["errors_added"]) == (3, 1, 1, 1, ["k1"], 1)
    assert _texts(out) == {"k1": "A", "k2": "B", "k3": None, "k4": "D"}
    with sqlite3.connect(out) as db:
        assert db.execute("SELECT option_logprobs, option_tokens, prompt_tokens FROM responses WHERE key='k3'").fetchone() == ("[-1.5,-2.0]", "[3,4]", 20)
    assert _errors(out) == 3  # k2's and k9's from a, k9's from b (logged at another time)

    again = orjson.loads(_invoke("cache", "merge", out, a, b, "--json").stdout)
    assert [(i["added"], i["errors_added"]) for i in again["inputs"]] == [(0, 0), (0, 0)]
    assert [i["same"] for i in again["inputs"]] == [3, 2] and again["conflicts"] == 1
    assert _texts(out) == {"k1": "A", "k2": "B", "k3": None, "k4": "D"} and _errors(out) == 3

    backwards = tmp_path / "backwards.sqlite"
    _invoke("cache", "merge", backwards, b, a)
    assert _texts(backwards) == {"k1": "C", "k2": "B", "k3": None, "k4": "D"}, "the first input's answer stands"

    text = _invoke("cache", "merge", out, a, b).stdout
    assert "1 keys answered differently, OUT's answer kept; first: k1" in text and "integrity_check: ok" in text


def test_merge_into_an_existing_cache_keeps_its_answers(tmp_path, two):
    a, b = two
    _invoke("cache", "merge", b, a)
    assert _texts(b) == {"k1": "C", "k2": "B", "k3": None, "k4": "D"}


@pytest.mark.parametrize("problem", ["missing", "not_sqlite", "not_cache", "schema", "self"])
def test_merge_refuses_bad_inputs_in_one_line_and_writes_nothing(tmp_path, two, problem):
    a, _ = two
    out = tmp_path / "new.sqlite"
    bad = tmp_path / "bad.sqlite"
    expected = {
        "missing": "no such cache file",
        "not_sqlite": "not an SQLite cache",
        "not_cache": "not an mtpa-engine cache",
        "schema": "cache schema 0, this engine reads schema 1",
        "self": "an input cannot be the output of the merge",
    }[problem]
    if problem == "not_sqlite":
        bad.write_text("key,text\nk1,A\n")
    elif problem == "not_cache":
        with sqlite3.connect(bad) as db:
            db.execute("CREATE TABLE t (x)")
    elif problem == "schema":
        _cache(bad, [])
        with sqlite3.connect(bad) as db:
            db.execute("UPDATE meta SET v='0' WHERE k='schema'")
    elif problem == "self":
        bad = out = a
    result = _invoke("cache", "merge", out, a if problem != "self" else tmp_path / "b.sqlite", bad, code=2)
    assert result.stderr.startswith(f"error: {bad}: {expected}") and len(result.stderr.strip().splitlines()) == 1
    if problem != "self":
        assert not out.exists(), "nothing is written when an input is bad"


def test_stats_counts_entries_tokens_and_errors(tmp_path, two):
    a, _ = two
    s = orjson.loads(_invoke("cache", "stats", a, "--json").stdout)
    assert s["entries"] == 3 and s["schema"] == 1 and s["file_bytes"] > 0
    assert [(m["provider"], m["model"], m["entries"], m["prompt_tokens"], m["completion_tokens"]) for m in s["models"]] == [
        ("local", "m2", 1, 20, None),
        ("openai", "m1", 2, 22, 2),
    ]
    assert all(m["first_at"] <= m["last_at"] for m in s["models"])
    assert s["errors"] == {"rate_limit": 1, "timeout": 1} and s["errors_total"] == 2 and s["errors_answered_since"] == 1
    text = _invoke("cache", "stats", a).stdout
    assert "3 entries" in text and "errors logged 2 (rate_limit 1, timeout 1); of keys answered since: 1" in text


def test_vacuum_prunes_answered_errors_only_and_reclaims_space(tmp_path):
    path = tmp_path / "c.sqlite"
    rows = [(f"k{i}", "openai", "m", _ok("A")) for i in range(50)]
    failures = [(f"k{i % 50}", "openai", "m", Response.failed("server_error", "x" * 2000)) for i in range(1000)]
    _cache(path, [*rows, *failures, ("open", "openai", "m", Response.failed("timeout", "still unanswered"))])
    result = _invoke("cache", "vacuum", path, "--prune-errors").stdout
    assert "errors pruned 1,000" in result and "integrity_check: ok" in result
    s = orjson.loads(_invoke("cache", "stats", path, "--json").stdout)
    assert s["entries"] == 50 and s["errors"] == {"timeout": 1} and s["free_bytes"] == 0
    assert s["file_bytes"] < 1000 * 2000 / 4, "the pruned rows' pages are given back"
    assert "errors pruned 0" in _invoke("cache", "vacuum", path).stdout


def test_export_jsonl_and_csv_by_key(tmp_path, two):
    a, _ = two
    _invoke("cache", "export", a, tmp_path / "all.jsonl")
    rows = [orjson.loads(line) for line in (tmp_path / "all.jsonl").read_text().splitlines()]
    assert [r["key"] for r in rows] == ["k1", "k2", "k3"]
    assert rows[0]["letter_logprobs"] == {"A": -0.1, "B": -2.5} and rows[0]["text"] == "A" and rows[0]["model"] == "m1"
    assert rows[2]["option_logprobs"] == [-1.5, -2.0] and rows[2]["option_tokens"] == [3, 4] and rows[2]["text"] is None
    assert "1 entries" in _invoke("cache", "export", a, tmp_path / "m2.jsonl", "--model", "m2").stdout
    assert [orjson.loads(x)["key"] for x in (tmp_path / "m2.jsonl").read_text().splitlines()] == ["k3"]
    _invoke("cache", "export", a, tmp_path / "all.csv")
    with (tmp_path / "all.csv").open() as fh:
        table = list(csv.DictReader(fh))
    assert [r["key"] for r in table] == ["k1", "k2", "k3"] and orjson.loads(table[0]["letter_logprobs"]) == {"A": -0.1, "B": -2.5}
    result = _invoke("cache", "export", a, tmp_path / "all.txt", code=2)
    assert "all.txt: expected a .jsonl or .csv file" in result.stderr and not (tmp_path / "all.txt").exists()


def test_export_of_an_unknown_model_names_the_models_there_and_writes_nothing(tmp_path, two):
    result = _invoke("cache", "export", two[0], tmp_path / "x.csv", "--model", "nosuch", code=2)
    assert "no entries of model 'nosuch'" in result.stderr and "have: m1, m2" in result.stderr
    assert not (tmp_path / "x.csv").exists()


def test_outputs_that_cannot_be_files_are_one_line_exit_2(tmp_path, two):
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir.jsonl").mkdir()
    for args in (("export", two[0], tmp_path / "afile" / "o.jsonl"), ("export", two[0], tmp_path / "adir.jsonl"), ("merge", tmp_path / "afile" / "m.sqlite", two[0])):
        result = _invoke("cache", *args, code=2)
        assert "Traceback" not in result.stderr and ("is a file, expected a folder" in result.stderr or "is a folder, expected a file" in result.stderr)


def test_a_cache_of_a_newer_layout_is_refused_by_every_tool(tmp_path, two):
    with sqlite3.connect(two[0]) as db:
        db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', '99')")
    for args in (("stats", two[0]), ("export", two[0], tmp_path / "o.jsonl"), ("merge", tmp_path / "m.sqlite", two[0]), ("vacuum", two[0])):
        assert "cache layout 99, this engine knows up to" in _invoke("cache", *args, code=2).stderr


def test_file_names_are_printed_as_they_are_and_whole_when_piped(tmp_path, two):
    """A name with brackets was read as console markup ('[b]x.sqlite' printed 'x.sqlite'), ':x:' as an emoji, and
    a long input's name was cut to '…' in the merge table when piped."""
    a, b = two
    odd = tmp_path / "[b]shard:x:.sqlite"
    long = tmp_path / ("shard-" + "0" * 90 + ".sqlite")
    a.rename(odd)
    b.rename(long)
    merged = tmp_path / "[red]merged.sqlite"
    rows = [line for line in _invoke("cache", "merge", merged, odd, long).stdout.splitlines() if line.startswith("│")]
    assert [line.strip("│ ").split(" │")[0].strip() for line in rows] == [str(odd), str(long)]
    assert _invoke("cache", "stats", odd).stdout.startswith(f"{odd}: 3 entries,")
    assert _invoke("cache", "vacuum", merged).stdout.startswith(f"{merged}: ")
    assert _invoke("cache", "export", odd, tmp_path / "[i]all.jsonl").stdout == f"3 entries -> {tmp_path / '[i]all.jsonl'}\n"
