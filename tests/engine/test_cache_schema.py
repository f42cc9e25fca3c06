"""Cache layout migrations (engine.cache_schema): an old cache opens, is migrated in place once, and keeps its answers."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import pytest

from engine.cache import CacheError, ResponseCache
from engine.cache_schema import SCHEMA_VERSION, migrate
from engine.request import Response

# The first cache layout, as commit 2fff608 created it (no schema_version, no option columns).
_V1 = """
CREATE TABLE meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE responses (key TEXT PRIMARY KEY, provider TEXT NOT NULL, model TEXT NOT NULL, text TEXT, letter_logprobs TEXT,
    prompt_tokens INTEGER, completion_tokens INTEGER, latency_s REAL, attempts INTEGER, created_at REAL NOT NULL) WITHOUT ROWID;
CREATE TABLE errors (key TEXT NOT NULL, provider TEXT NOT NULL, model TEXT NOT NULL, kind TEXT NOT NULL, message TEXT NOT NULL,
    attempts INTEGER, created_at REAL NOT NULL);
INSERT INTO meta VALUES ('schema', '1');
INSERT INTO responses VALUES ('k1', 'local', 'embedded', 'A', '{"A": -0.25, "B": -1.5}', 12, 1, 0.5, 1, 100.0);
"""


def _old_cache(path):
    with sqlite3.connect(path) as db:
        db.executescript(_V1)
    return path


def _columns(path) -> list[str]:
    with sqlite3.connect(path) as db:
        return [r[1] for r in db.execute("PRAGMA table_info(responses)")]


def _version(path) -> str | None:
    with sqlite3.connect(path) as db:
        row = db.execute("SELECT v FROM meta WHERE k='schema_version'").fetchone()
    return row and row[0]


def test_an_old_cache_opens_migrated_and_keeps_its_answers(tmp_path):
    path = _old_cache(tmp_path / "old.sqlite")
    cache = ResponseCache(path)
    old = cache.lookup(["k1"])["k1"]
    assert (old.text, old.letter_logprobs, old.option_logprobs, old.prompt_tokens) == ("A", {"A": -0.25, "B": -1.5}, None, 12)
    cache.write([("k2", "local", "embedded", Response(option_logprobs=(-1.0, -3.5), option_tokens=(2, 5), prompt_tokens=9))])
    assert cache.lookup(["k2"])["k2"].option_logprobs == (-1.0, -3.5) and cache.integrity_ok()
    cache.close()
    assert _columns(path)[-2:] == ["option_logprobs", "option_tokens"] and _version(path) == str(SCHEMA_VERSION) == "2"


def test_migrating_is_idempotent_and_reports_what_it_added(tmp_path):
    path = _old_cache(tmp_path / "old.sqlite")
    db = sqlite3.connect(path, isolation_level=None)
    assert migrate(db) == ["responses.option_logprobs", "responses.option_tokens"]
    assert migrate(db) == []  # schema_version now says 2
    db.execute("DELETE FROM meta WHERE k='schema_version'")  # a file that lost its version: checked column by column
    assert migrate(db) == [] and _version(path) == "2"
    db.close()
    assert list(ResponseCache(path).lookup(["k1"])) == ["k1"]


def test_a_cache_of_a_newer_layout_is_refused_untouched(tmp_path):
    path = tmp_path / "new.sqlite"
    ResponseCache(path).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET v='99' WHERE k='schema_version'")
    with pytest.raises(CacheError) as err:
        ResponseCache(path)
    assert str(err.value) == f"{path}: cache layout 99, this engine knows up to 2 (written by a newer engine? upgrade mtpa-engine)"
    assert _version(path) == "99"


def test_a_current_cache_opens_without_importing_sqlite_utils(tmp_path):
    """The run's hot path stays on sqlite3: sqlite-utils (0.4 s to import) only loads to migrate."""
    path = tmp_path / "c.sqlite"
    code = f"import sys; from engine.cache import ResponseCache; ResponseCache({str(path)!r}).close(); print('sqlite_utils' in sys.modules)"
    first = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    again = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert first.stdout.split() == again.stdout.split() == ["False"]
    old = _old_cache(tmp_path / "old.sqlite")
    code = code.replace(repr(str(path)), repr(str(old)))
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split() == ["True"]
