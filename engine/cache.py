"""Content-addressed SQLite response cache.

Plain sqlite3 rather than sqlite-utils: the cache needs exact control of pragmas, transactions and
batched `IN` lookups on a hot path, which sqlite-utils' conveniences would only wrap. (An older file's layout
migration, engine.cache_schema, does use sqlite-utils' table API.)

Rows are addressed by the key engine.keys computes (the sha256 of everything that determines a model's
output); this module stores and finds them, and never computes one. Secrets never enter a row. WAL mode with synchronous=NORMAL: a committed row
survives a SIGKILL of the process, and readers never block the single writer.
"""

from __future__ import annotations

import os
import random
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import orjson

from engine.cache_schema import migrate
from engine.errors import CacheError, CacheWriteError
from engine.request import Response

CACHE_SCHEMA = 1  # the file's generation (meta.schema): another is refused; compatible layout changes migrate (engine.cache_schema); keys have their own version (engine.keys)
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


def _dump(value: object) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def _load(text: str | None) -> dict | None:
    return orjson.loads(text) if text else None


def _tuple(text: str | None) -> tuple | None:
    return tuple(orjson.loads(text)) if text else None


_SQLITE_MAGIC = b"SQLite format 3\x00"
_OPEN_RETRY_S = 30.0


def _header_problem(path: Path) -> str | None:
    """What is wrong with an existing cache file's 100-byte SQLite header, or None (O(1), no SQLite call).

    A truncated file is caught from the header's page count (offset 28) times page size (offset 16), valid only
    when the change counter (offset 24) equals the version-valid-for number (offset 92): sqlite.org/fileformat.html
    §1.3, and only without a WAL beside it: a checkpoint cut short (a full disk) may have written page 1 and not
    the pages after it, which the WAL still holds and SQLite replays.
    """
    if path.is_dir():
        return "is a directory, expected an SQLite cache file"
    size = path.stat().st_size
    if size == 0:
        return None  # SQLite's own empty database
    with path.open("rb") as f:
        head = f.read(100)
    if not head.startswith(_SQLITE_MAGIC):
        return "not an SQLite database (no 'SQLite format 3' header); move it away or point run.cache elsewhere"
    if len(head) < 100:
        return f"truncated ({size} bytes, shorter than the 100-byte SQLite header)"
    page_size = int.from_bytes(head[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(head[28:32], "big")
    wal = path.with_name(path.name + "-wal")
    if pages and head[24:28] == head[92:96] and size < pages * page_size and not (wal.exists() and wal.stat().st_size):
        return f"truncated ({size:,} bytes, its header says {pages * page_size:,})"
    return None


def _busy(exc: sqlite3.Error) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc))


class ResponseCache:
    """The cache file at `path`, opened read-write (created if missing).

    Raises CacheError (naming the file) when the folder cannot hold it, the file is not an SQLite database, is
    truncated, or was written by a newer engine (its schema is read before anything is changed in it).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        if self.path.exists() and (problem := _header_problem(self.path)):
            raise CacheError(f"{self.path}: {problem}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CacheError(f"{self.path}: cannot create its folder: {exc.strerror or exc}") from None
        if not os.access(self.path.parent, os.W_OK):
            raise CacheError(f"{self.path}: its folder is not writable (SQLite needs to create the -wal and -shm files beside it)")
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=_OPEN_RETRY_S)
        except sqlite3.Error as exc:
            raise CacheError(f"{self.path}: cannot open: {exc}") from None
        try:
            self._open()
        except sqlite3.Error as exc:
            self._db.close()
            raise CacheError(f"{self.path}: cannot open: {exc}") from None
        except CacheError:
            self._db.close()
            raise
        self._version = self._data_version()
        self._elsewhere = False

    def _open(self) -> None:
        """Pragmas, schema check and DDL, retried while another process holds the file.

        The busy timeout comes first; even so, switching a new file to WAL (it needs an exclusive lock) and the
        first read of a schema another process is creating return SQLITE_BUSY at once, without the busy handler
        (sqlite.org/wal.html §"Sometimes Queries Return SQLITE_BUSY In WAL Mode"): hence the retry loop.
        """
        deadline = time.monotonic() + _OPEN_RETRY_S
        while True:
            try:
                self._db.execute(f"PRAGMA busy_timeout={int(_OPEN_RETRY_S * 1000)}")
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    self._check_schema()
                    for statement in filter(str.strip, _DDL.split(";")):
                        self._db.execute(statement)
                    migrate(self._db)  # an older file's missing columns (engine.cache_schema)
                    self._db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(CACHE_SCHEMA),))
                    self._db.execute("COMMIT")
                except ValueError as exc:  # a layout newer than this engine's
                    self._rollback()
                    raise CacheError(f"{self.path}: {exc}") from None
                except BaseException:
                    self._rollback()
                    raise
                return
            except sqlite3.OperationalError as exc:
                if not _busy(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.005 + random.random() * 0.02)

    def _check_schema(self) -> None:
        if self._db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone() is None:
            return
        row = self._db.execute("SELECT v FROM meta WHERE k='schema'").fetchone()
        if row is not None and row[0] != str(CACHE_SCHEMA):
            raise CacheError(f"{self.path}: cache schema {row[0]}, this engine reads schema {CACHE_SCHEMA} (written by a newer engine? upgrade mtpa-engine)")

    def _rollback(self) -> None:
        """ROLLBACK that never replaces the error being handled: its own failure (e.g. no transaction left after
        SQLite rolled back on a full disk) is not the cause."""
        try:
            self._db.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    def _data_version(self) -> int:
        return self._db.execute("PRAGMA data_version").fetchone()[0]

    def written_elsewhere(self) -> bool:
        """Whether another connection (another process) has committed to the file since this one opened it;
        once True, always True.

        SQLite's `PRAGMA data_version` changes when, and only when, another connection commits
        (sqlite.org/pragma.html#pragma_data_version): ~3 µs, half a one-key `lookup`, so a run alone on its
        cache can skip the re-check before each call."""
        if not self._elsewhere:
            self._elsewhere = self._data_version() != self._version
        return self._elsewhere

    def lookup(self, keys: Sequence[str]) -> dict[str, Response]:
        """The stored answer of each key that has one (keys without an answer are absent). An answer's
        `latency_s` is its original call's; `attempts` is 1 (the run that reads it made no call)."""
        found: dict[str, Response] = {}
        for start in range(0, len(keys), _LOOKUP_CHUNK):
            chunk = keys[start : start + _LOOKUP_CHUNK]
            marks = ",".join("?" * len(chunk))
            for key, text, lp, olp, otok, pt, ct, lat in self._db.execute(
                "SELECT key, text, letter_logprobs, option_logprobs, option_tokens, prompt_tokens, completion_tokens, "
                f"latency_s FROM responses WHERE key IN ({marks})",
                chunk,
            ):
                found[key] = Response(
                    text=text, letter_logprobs=_load(lp), option_logprobs=_tuple(olp), option_tokens=_tuple(otok),
                    prompt_tokens=pt, completion_tokens=ct, latency_s=lat or 0.0,
                )
        return found

    def contains_keys(self, keys: Sequence[str]) -> set[str]:
        found: set[str] = set()
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), _LOOKUP_CHUNK):
            chunk = unique[start : start + _LOOKUP_CHUNK]
            marks = ",".join("?" * len(chunk))
            found.update(k for (k,) in self._db.execute(f"SELECT key FROM responses WHERE key IN ({marks})", chunk))
        return found

    def write(self, rows: Iterable[tuple[str, str, str, Response]], also: Callable[[sqlite3.Connection], None] | None = None) -> None:
        """Commit (key, provider, model_id, response) rows in one transaction: successes and errors apart.
        `also` runs inside that transaction (engine.batch.store: a job's bookkeeping commits with its answers).

        Raises CacheError (file and SQLite's cause, e.g. "database or disk is full"); the rows are then not
        committed, every earlier commit stays."""
        now = time.time()
        ok, failed = [], []
        for key, provider, model, r in rows:
            if r.ok:
                lp, olp, otok = _dump(r.letter_logprobs), _dump(r.option_logprobs), _dump(r.option_tokens)
                ok.append((key, provider, model, r.text, lp, olp, otok, r.prompt_tokens, r.completion_tokens, r.latency_s, r.attempts, now))
            else:
                failed.append((key, provider, model, r.error_kind, r.error or "", r.attempts, now))
        if not ok and not failed and also is None:
            return
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                # OR IGNORE: the first committed answer for a key is the answer; a late duplicate never replaces it.
                self._db.executemany("INSERT OR IGNORE INTO responses (key, provider, model, text, letter_logprobs, option_logprobs, option_tokens, "
                    "prompt_tokens, completion_tokens, latency_s, attempts, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", ok)
                self._db.executemany("INSERT INTO errors VALUES (?,?,?,?,?,?,?)", failed)
                if also is not None:
                    also(self._db)
                self._db.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
        except sqlite3.Error as exc:
            raise CacheWriteError(f"{self.path}: cannot write {len(ok) + len(failed)} responses: {exc}") from exc

    def empty(self) -> bool:
        """Whether no response is stored (the dry run then computes no key)."""
        return self._db.execute("SELECT 1 FROM responses LIMIT 1").fetchone() is None
    @property
    def connection(self) -> sqlite3.Connection:
        """The open connection, for tables kept beside the responses (engine.batch.store); autocommit mode."""
        return self._db

    def integrity_ok(self) -> bool:
        return self._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    def close(self) -> None:
        self._db.close()
