"""Batch job state in the cache database: a table of jobs and one of membership (cache key -> job).

Written in the responses' transaction discipline (BEGIN IMMEDIATE ... COMMIT, WAL): a job is claimed (its row
and its members, one transaction) before anything is sent, its upload and its provider id are each committed
before the next step, and a result's answer commits together with the removal of its membership row. So:

- a key has a membership row exactly while it sits in a job whose result for it is not committed: a key with
  one is never packed again, by this run or another process on the cache (the claim is one IMMEDIATE
  transaction, and `key` is the membership table's primary key);
- a result committed twice (a kill while collecting, then a rerun) is skipped: its membership row is gone.

No key, file content or prompt is stored here: ids, counts, statuses and the provider's messages only
(scrubbed of the API key by the transport, like every error).
"""

from __future__ import annotations

import os
import socket
import sqlite3
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import orjson

from engine.cache import ResponseCache
from engine.errors import CacheWriteError
from engine.request import Response

_DDL = """
CREATE TABLE IF NOT EXISTS batch_jobs (
    id TEXT PRIMARY KEY,
    grid TEXT NOT NULL,
    model TEXT NOT NULL,
    provider TEXT NOT NULL,
    account TEXT NOT NULL,
    remote_id TEXT,
    input_ref TEXT,
    status TEXT NOT NULL,
    provider_status TEXT,
    message TEXT,
    requests INTEGER NOT NULL,
    done INTEGER NOT NULL DEFAULT 0,
    owner TEXT NOT NULL,
    created_at REAL NOT NULL,
    submitted_at REAL,
    finished_at REAL
);
CREATE TABLE IF NOT EXISTS batch_members (
    key TEXT PRIMARY KEY,
    job TEXT NOT NULL,
    letters TEXT
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS batch_members_job ON batch_members (job);
"""
_CHUNK = 500

# Our life cycle of a job (`status`); the provider's own word is in `provider_status`.
NEW = "new"  # claimed: members recorded, nothing known to be at the provider yet
UPLOADED = "uploaded"  # input uploaded (input_ref), job not known to be created
SUBMITTED = "submitted"  # the provider holds the job (remote_id); polled until it ends
CLOSED = "closed"  # ended, results committed, leftovers turned into errors, input deleted
LIVE = (NEW, UPLOADED, SUBMITTED)


@dataclass(frozen=True)
class Job:
    id: str
    grid: str
    model: str
    provider: str
    account: str
    remote_id: str | None
    input_ref: str | None
    status: str
    provider_status: str | None
    message: str | None
    requests: int
    done: int
    owner: str
    created_at: float
    submitted_at: float | None
    finished_at: float | None

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


ANSWERED = ""  # claim's holder of a key already answered in the cache (by another run since this one looked)


def owner_tag() -> str:
    """host:pid of this process: a NEW job of a live owner is another run mid-submission, never recovered."""
    return f"{socket.gethostname()}:{os.getpid()}"


def owner_alive(owner: str) -> bool:
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname():
        return True  # another machine's process cannot be checked: assume it lives
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError):
        return True
    return True


class BatchStore:
    """The batch tables of one open cache. Raises CacheWriteError on a failed write."""

    def __init__(self, cache: ResponseCache) -> None:
        self.cache = cache
        self._db = cache.connection
        self._transaction(lambda db: [db.execute(s) for s in filter(str.strip, _DDL.split(";"))])

    def _transaction(self, work) -> object:
        """`work(db)` in one IMMEDIATE transaction. Raises CacheWriteError naming the file (e.g. a full disk)."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                out = work(self._db)
                self._db.execute("COMMIT")
                return out
            except BaseException:
                try:
                    self._db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                raise
        except sqlite3.Error as exc:
            raise CacheWriteError(f"{self.cache.path}: cannot write the batch job tables: {exc}") from exc

    def claim(
        self, job: Job | None, grid: str, model: str, provider: str, account: str, members: Sequence[tuple[str, tuple[str, ...] | None]]
    ) -> tuple[Job | None, dict[str, str]]:
        """Add the `members` (key, logprob letters) that no live job holds to `job`, or to a NEW job recorded now
        when `job` is None, in one transaction.

        Returns (the job, None when it was None and every key is held; {key: job id} of the keys already held,
        ANSWERED for those the cache has an answer for)."""

        def work(db: sqlite3.Connection) -> tuple[Job | None, dict[str, str]]:
            held = self._holders(db, [k for k, _ in members])
            # A key another run answered since this run's lookup is not submitted again: checked in the
            # transaction that claims, so no commit can fall between the check and the claim.
            held.update(dict.fromkeys(self._answered(db, [k for k, _ in members if k not in held]), ANSWERED))
            free = [(k, letters) for k, letters in members if k not in held]
            if not free:
                return job, held
            out = job
            if out is None:
                out = Job(uuid.uuid4().hex[:16], grid, model, provider, account, None, None, NEW, None, None, 0, 0, owner_tag(), time.time(), None, None)
                db.execute("INSERT INTO batch_jobs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", tuple(out.as_dict().values()))
            db.executemany(
                "INSERT INTO batch_members VALUES (?,?,?)", ((k, out.id, None if l is None else orjson.dumps(l).decode()) for k, l in free)
            )
            db.execute("UPDATE batch_jobs SET requests = requests + ? WHERE id = ?", (len(free), out.id))
            return out, held

        return self._transaction(work)  # type: ignore[return-value]

    @staticmethod
    def _holders(db: sqlite3.Connection, keys: Sequence[str]) -> dict[str, str]:
        held: dict[str, str] = {}
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start : start + _CHUNK]
            held.update(db.execute(f"SELECT key, job FROM batch_members WHERE key IN ({','.join('?' * len(chunk))})", chunk).fetchall())
        return held

    @staticmethod
    def _answered(db: sqlite3.Connection, keys: Sequence[str]) -> list[str]:
        found: list[str] = []
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start : start + _CHUNK]
            found.extend(k for (k,) in db.execute(f"SELECT key FROM responses WHERE key IN ({','.join('?' * len(chunk))})", chunk))
        return found

    def answered_since(self, keys: Sequence[str], since: float) -> set[str]:
        """The `keys` whose answer was committed at or after `since` (time.time()): a run's own batch answers,
        told from the cache hits it found (engine.scheduler counts those alone as hits)."""
        found: set[str] = set()
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            found.update(k for (k,) in self._db.execute(f"SELECT key FROM responses WHERE key IN ({marks}) AND created_at >= ?", (*chunk, since)))
        return found

    def holders(self, keys: Sequence[str]) -> dict[str, str]:
        """{key: job id} of the keys a live job holds."""
        return self._holders(self._db, keys)

    def update(self, job_id: str, **fields: object) -> None:
        """Set columns of a job (status, remote_id, input_ref, provider_status, message, done, times), committed now."""
        names = ", ".join(f"{k} = ?" for k in fields)
        self._transaction(lambda db: db.execute(f"UPDATE batch_jobs SET {names} WHERE id = ?", (*fields.values(), job_id)))

    def drop(self, job_id: str) -> None:
        """Forget a NEW job the provider never received: its keys become free to pack again."""
        self._transaction(lambda db: (db.execute("DELETE FROM batch_members WHERE job = ?", (job_id,)), db.execute("DELETE FROM batch_jobs WHERE id = ?", (job_id,))))

    def jobs(self, grid: str | None = None, model: str | None = None, live: bool = False) -> list[Job]:
        sql, args = "SELECT * FROM batch_jobs WHERE 1", []
        if grid is not None:
            sql, args = sql + " AND grid = ?", [*args, grid]
        if model is not None:
            sql, args = sql + " AND model = ?", [*args, model]
        if live:
            sql += f" AND status IN ({','.join('?' * len(LIVE))})"
            args += LIVE
        return [Job(*row) for row in self._db.execute(sql + " ORDER BY created_at", args)]

    def job(self, job_id: str) -> Job | None:
        row = self._db.execute("SELECT * FROM batch_jobs WHERE id = ? OR remote_id = ?", (job_id, job_id)).fetchone()
        return Job(*row) if row else None

    def members(self, job_id: str) -> dict[str, tuple[str, ...] | None]:
        """{key: logprob letters or None} of a job's requests whose result is not committed yet."""
        return {k: None if l is None else tuple(orjson.loads(l)) for k, l in self._db.execute("SELECT key, letters FROM batch_members WHERE job = ?", (job_id,))}

    def commit(self, job_id: str, rows: Sequence[tuple[str, str, str, Response]]) -> None:
        """Commit result rows (key, provider, model id, response) with the removal of their membership and the
        job's done count, in one transaction. Raises CacheWriteError."""
        keys = [(r[0], job_id) for r in rows]

        def also(db: sqlite3.Connection) -> None:
            db.executemany("DELETE FROM batch_members WHERE key = ? AND job = ?", keys)
            db.execute("UPDATE batch_jobs SET done = done + ? WHERE id = ?", (len(keys), job_id))

        self.cache.write(rows, also)

    def close(self, job_id: str, leftovers: Iterable[tuple[str, str, str, Response]], provider_status: str, message: str | None) -> None:
        """The job's last word: errors for the members without a result, their membership gone, status CLOSED."""
        rows = list(leftovers)
        keys = [(r[0], job_id) for r in rows]

        def also(db: sqlite3.Connection) -> None:
            db.executemany("DELETE FROM batch_members WHERE key = ? AND job = ?", keys)
            db.execute("DELETE FROM batch_members WHERE job = ?", (job_id,))
            db.execute(
                "UPDATE batch_jobs SET status = ?, provider_status = ?, message = ?, finished_at = ? WHERE id = ?",
                (CLOSED, provider_status, message, time.time(), job_id),
            )

        self.cache.write(rows, also)
