"""Content-addressed SQLite response cache.

Plain sqlite3 rather than sqlite-utils: the cache needs exact control of pragmas, transactions and
batched `IN` lookups on a hot path, which sqlite-utils' conveniences would only wrap.

The key is the sha256 of the canonical encoding of everything that determines a model's output. Transport
settings and secrets never enter the key or the row. WAL mode with synchronous=NORMAL: a committed row
survives a SIGKILL of the process, and readers never block the single writer.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from engine.request import Request, Response

CACHE_SCHEMA = 1
_LOOKUP_CHUNK = 500

_DDL = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    text TEXT,
    letter_logprobs TEXT,
    option_logprobs TEXT,
    option_tokens TEXT,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    latency_s REAL,
    attempts INTEGER,
    created_at REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS errors (
    key TEXT NOT NULL,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    kind TEXT NOT NULL,
    message TEXT NOT NULL,
    attempts INTEGER,
    created_at REAL NOT NULL
);
"""


def cache_key(provider: str, identity: Mapping[str, Any], request: Request) -> str:
    payload = {"schema": CACHE_SCHEMA, "provider": provider, "model": identity, **request.key_fields()}
    return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass(frozen=True, slots=True)
class Cached:
    text: str | None
    letter_logprobs: dict[str, float] | None
    option_logprobs: tuple[float, ...] | None
    option_tokens: tuple[int, ...] | None
    prompt_tokens: int | None
    completion_tokens: int | None
    latency_s: float | None

    def as_response(self) -> Response:
        return Response(
            text=self.text,
            letter_logprobs=self.letter_logprobs,
            option_logprobs=self.option_logprobs,
            option_tokens=self.option_tokens,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            latency_s=self.latency_s or 0.0,
        )


def _dump(value: object) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def _load(text: str | None) -> dict | None:
    return orjson.loads(text) if text else None


def _tuple(text: str | None) -> tuple | None:
    return tuple(orjson.loads(text)) if text else None


class CacheError(RuntimeError):
    pass


class ResponseCache:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=10000")
        self._db.executescript(_DDL)
        self._add_missing_columns()
        row = self._db.execute("SELECT v FROM meta WHERE k='schema'").fetchone()
        if row is None:
            self._db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(CACHE_SCHEMA),))
        elif int(row[0]) != CACHE_SCHEMA:
            raise CacheError(f"{self.path}: cache schema {row[0]}, this engine reads schema {CACHE_SCHEMA}")

    def _add_missing_columns(self) -> None:
        """Columns added since a cache file was created (all nullable) are added in place: the stored
        answers stay valid, since the key does not depend on which columns the row has."""
        have = {row[1] for row in self._db.execute("PRAGMA table_info(responses)")}
        declared = [line.split()[:2] for line in _DDL.split("CREATE TABLE IF NOT EXISTS responses (")[1].split(")")[0].splitlines()]
        for name, kind in (d for d in declared if len(d) == 2):
            if name not in have:
                self._db.execute(f"ALTER TABLE responses ADD COLUMN {name} {kind.rstrip(',')}")

    def lookup(self, keys: Sequence[str]) -> dict[str, Cached]:
        found: dict[str, Cached] = {}
        for start in range(0, len(keys), _LOOKUP_CHUNK):
            chunk = keys[start : start + _LOOKUP_CHUNK]
            marks = ",".join("?" * len(chunk))
            for key, text, lp, olp, otok, pt, ct, lat in self._db.execute(
                "SELECT key, text, letter_logprobs, option_logprobs, option_tokens, prompt_tokens, completion_tokens, "
                f"latency_s FROM responses WHERE key IN ({marks})",
                chunk,
            ):
                found[key] = Cached(text, _load(lp), _tuple(olp), _tuple(otok), pt, ct, lat)
        return found

    def contains_keys(self, keys: Sequence[str]) -> set[str]:
        found: set[str] = set()
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), _LOOKUP_CHUNK):
            chunk = unique[start : start + _LOOKUP_CHUNK]
            marks = ",".join("?" * len(chunk))
            found.update(k for (k,) in self._db.execute(f"SELECT key FROM responses WHERE key IN ({marks})", chunk))
        return found

    def write(self, rows: Iterable[tuple[str, str, str, Response]]) -> None:
        """Commit (key, provider, model_id, response) rows in one transaction: successes and errors apart."""
        now = time.time()
        ok, failed = [], []
        for key, provider, model, r in rows:
            if r.ok:
                lp, olp, otok = _dump(r.letter_logprobs), _dump(r.option_logprobs), _dump(r.option_tokens)
                ok.append((key, provider, model, r.text, lp, olp, otok, r.prompt_tokens, r.completion_tokens, r.latency_s, r.attempts, now))
            else:
                failed.append((key, provider, model, r.error_kind, r.error or "", r.attempts, now))
        if not ok and not failed:
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            # OR IGNORE: the first committed answer for a key is the answer; a late duplicate never replaces it.
            self._db.executemany("INSERT OR IGNORE INTO responses (key, provider, model, text, letter_logprobs, option_logprobs, option_tokens, "
                "prompt_tokens, completion_tokens, latency_s, attempts, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", ok)
            self._db.executemany("INSERT INTO errors VALUES (?,?,?,?,?,?,?)", failed)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def count(self) -> int:
        return self._db.execute("SELECT count(*) FROM responses").fetchone()[0]

    def integrity_ok(self) -> bool:
        return self._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    def close(self) -> None:
        self._db.close()
