from __future__ import annotations

import dataclasses
import sqlite3
import subprocess
import sys
import textwrap

from engine.cache import ResponseCache
from engine.config import LimitsConfig
from engine.grid import load_grid
from engine.keys import cache_key
from engine.plan import Plan
from engine.providers import create_provider
from engine.request import Decoding, Request, Response
from tests.conftest import write_grid


def _request(**decoding) -> Request:
    d = {"temperature": 0.0, "max_tokens": 8, "top_p": 1.0, "seed": None} | decoding
    return Request((("user", "Q?\nA. x\nB. y"),), Decoding(**d), 0, "letter", ("A", "B"), True)


def test_key_is_stable_across_processes():
    here = cache_key("openai", {"model": "m"}, _request())
    code = textwrap.dedent(
        """
        from engine.keys import cache_key
        from engine.request import Decoding, Request
        r = Request((("user", "Q?\\nA. x\\nB. y"),), Decoding(0.0, 8, 1.0, None), 0, "letter", ("A", "B"), True)
        print(cache_key("openai", {"model": "m"}, r))
        """
    )
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert here == there and len(here) == 64


def test_key_changes_with_everything_that_changes_output():
    base = cache_key("openai", {"model": "m"}, _request())
    assert cache_key("openai", {"model": "m"}, _request(temperature=0.7)) != base
    assert cache_key("openai", {"model": "m"}, _request(max_tokens=9)) != base
    assert cache_key("openai", {"model": "other"}, _request()) != base
    assert cache_key("local", {"model": "m"}, _request()) != base
    assert cache_key("openai", {"model": "m"}, dataclasses.replace(_request(), sample=1)) != base


def test_key_ignores_transport_settings(tmp_path):
    """Concurrency, rate limits, timeouts and the transport never enter the key; temperature and the endpoint of
    a compatible server (normalised: a trailing slash or upper-case host is the same server) do."""
    grid = load_grid(write_grid(tmp_path, base_url="http://127.0.0.1:1/v1"))
    plan = Plan.from_grid(grid)
    cell = next(iter(plan))

    def key_for(model):
        provider = create_provider(model)
        c = dataclasses.replace(cell, model=model)
        return cache_key(model.provider, provider.identity(), Plan(dataclasses.replace(grid, models=(model,)), plan.personas, plan.benchmarks).request(c))

    m = grid.models[0]
    base = key_for(m)
    transport = dataclasses.replace(m, transport="sdk", base_url="HTTP://127.0.0.1:1/v1/", limits=LimitsConfig(concurrency=999, requests_per_minute=5, timeout_s=1))
    assert key_for(transport) == base
    assert key_for(dataclasses.replace(m, temperature=0.5)) != base
    assert key_for(dataclasses.replace(m, base_url="http://other:2/v1")) != base


def test_write_then_lookup_round_trip_and_first_answer_wins(tmp_path):
    cache = ResponseCache(tmp_path / "c.sqlite")
    cache.write([("k1", "openai", "m", Response(text="A", letter_logprobs={"A": -0.1}, prompt_tokens=3, completion_tokens=1))])
    cache.write([("k1", "openai", "m", Response(text="B"))])  # a late duplicate never replaces the answer
    cache.write([("k2", "openai", "m", Response.failed("server_error", "HTTP 500"))])
    found = cache.lookup(["k1", "k2", "k3"])
    assert set(found) == {"k1"}  # errors are recorded, but are not answers: a rerun retries them
    assert found["k1"].text == "A" and found["k1"].letter_logprobs == {"A": -0.1}
    errors = cache._db.execute("SELECT key, kind, message FROM errors").fetchall()
    assert errors == [("k2", "server_error", "HTTP 500")]
    assert cache._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert cache.integrity_ok()
    cache.close()


def test_a_cache_from_before_new_columns_is_upgraded_in_place(tmp_path):
    db = sqlite3.connect(tmp_path / "old.sqlite")
    db.executescript(
        "CREATE TABLE meta (k TEXT PRIMARY KEY, v TEXT NOT NULL); INSERT INTO meta VALUES ('schema', '1');"
        "CREATE TABLE responses (key TEXT PRIMARY KEY, provider TEXT NOT NULL, model TEXT NOT NULL, text TEXT,"
        " letter_logprobs TEXT, prompt_tokens INTEGER, completion_tokens INTEGER, latency_s REAL, attempts INTEGER,"
        " created_at REAL NOT NULL) WITHOUT ROWID;"
        "INSERT INTO responses VALUES ('old', 'openai', 'm', 'A', NULL, 5, 1, 0.1, 1, 0);"
    )
    db.commit()
    db.close()
    cache = ResponseCache(tmp_path / "old.sqlite")
    cache.write([("new", "local", "m", Response(text="B", option_logprobs=(-1.0, -2.0), option_tokens=(3, 4), prompt_tokens=7))])
    found = cache.lookup(["old", "new"])
    assert found["old"].text == "A" and found["old"].prompt_tokens == 5
    assert found["new"].text == "B" and found["new"].option_logprobs == (-1.0, -2.0) and found["new"].prompt_tokens == 7
    cache.close()


def test_written_elsewhere_counts_only_another_connections_commits(tmp_path):
    """The scheduler skips its re-check before each call while this is False: it must turn True on another
    process's commit (here a second connection) and stay True; this connection's own commits never count."""
    path = tmp_path / "cache.sqlite"
    cache = ResponseCache(path)
    assert cache.written_elsewhere() is False
    cache.write([("k1", "openai", "m", Response(text="A"))])
    assert cache.written_elsewhere() is False
    other = sqlite3.connect(path)
    assert other.execute("SELECT key FROM responses").fetchall() == [("k1",)]  # reading is not writing
    assert cache.written_elsewhere() is False
    with other:
        other.execute("INSERT INTO responses (key, provider, model, text, created_at) VALUES ('k2', 'openai', 'm', 'B', 0)")
    other.close()
    assert cache.written_elsewhere() is True
    cache.write([("k3", "openai", "m", Response(text="C"))])
    assert cache.written_elsewhere() is True  # once True, always True
    assert set(cache.lookup(["k1", "k2", "k3"])) == {"k1", "k2", "k3"}
    cache.close()
