"""Maintenance of response caches: merge (shards back into one cache), stats, vacuum, export.

These run outside any model run, on whole files, so they use sqlite-utils' table API (table names, columns,
counts, `rows_where`, `vacuum`) and plain SQL where a set operation says it better. The hot write path of a run
stays in engine.cache (sqlite3, explicit transactions); `ResponseCache` also creates and migrates the schema of
a merge's output, so there is one definition of it.

Guarantees of `merge(OUT, IN...)`:
- by key: an entry whose key OUT lacks is copied with all its columns; an entry whose key OUT has is never
  replaced (the first answer stands, as in a run: `INSERT OR IGNORE`). Inputs are taken in the order given, after
  what OUT already holds.
- conflicts (one key, different answers: `text`, letter or option logprobs, option tokens) are counted per input
  and the first few keys reported; timing and bookkeeping columns (latency, attempts, created_at) are not answers.
- each input is merged in one transaction, so a killed merge leaves OUT holding whole inputs only; a rerun of
  the same merge finishes it. Merging is idempotent (a second merge adds nothing), and for deterministic entries
  (the same answer wherever a key was asked) the answers in OUT do not depend on the order of the inputs.
- the errors log (failed attempts, never read by a run) is unioned: rows not already in OUT are added once.
- `PRAGMA integrity_check` on OUT after the merge; the inputs are only read.
"""

from __future__ import annotations

import csv
import os
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import sqlite_utils

from engine.cache import CACHE_SCHEMA, ResponseCache
from engine.cache_schema import SCHEMA_VERSION, file_version
from engine.errors import CacheToolError, RunDirError
from engine.rundir import check_file

# The columns that are the answer; two entries of one key that differ here are a conflict.
ANSWER_COLUMNS = ("text", "letter_logprobs", "option_logprobs", "option_tokens")
_JSON_COLUMNS = ("letter_logprobs", "option_logprobs", "option_tokens")
_ERROR_COLUMNS = "key, provider, model, kind, message, attempts, created_at"
_CONFLICT_EXAMPLES = 5
EXPORT_FORMATS = (".jsonl", ".csv")


@dataclass
class MergedInput:
    path: Path
    entries: int  # responses in the input
    added: int  # copied into OUT
    same: int  # key already in OUT with the same answer
    conflicts: int  # key already in OUT with a different answer (OUT's stands)
    conflict_keys: list[str] = field(default_factory=list)  # the first few, for a look with `cache export`
    errors_added: int = 0


@dataclass
class MergeReport:
    out: Path
    inputs: list[MergedInput]
    entries: int  # responses in OUT after the merge
    integrity: str  # PRAGMA integrity_check: "ok"

    @property
    def conflicts(self) -> int:
        return sum(i.conflicts for i in self.inputs)


def _open(path: Path) -> sqlite_utils.Database:
    """An existing mtpa-engine cache of this engine's schema; CacheToolError otherwise."""
    path = Path(path)
    if not path.is_file():
        raise CacheToolError(f"{path}: no such cache file")
    db = sqlite_utils.Database(path)
    try:
        db.execute("PRAGMA busy_timeout=10000")
        tables = set(db.table_names())
        if not {"meta", "responses", "errors"} <= tables:
            raise CacheToolError(f"{path}: not an mtpa-engine cache (expected tables meta, responses, errors)")
        row = db.execute("SELECT v FROM meta WHERE k='schema'").fetchone()
    except sqlite3.DatabaseError as exc:
        db.close()
        raise CacheToolError(f"{path}: not an SQLite cache ({exc})") from None
    except CacheToolError:
        db.close()
        raise
    if row is None or row[0] != str(CACHE_SCHEMA):
        db.close()
        raise CacheToolError(f"{path}: cache schema {row[0] if row else 'missing'}, this engine reads schema {CACHE_SCHEMA}")
    layout = file_version(db.conn)
    if layout is not None and layout > SCHEMA_VERSION:
        db.close()
        raise CacheToolError(f"{path}: cache layout {layout}, this engine knows up to {SCHEMA_VERSION} (written by a newer engine? upgrade mtpa-engine)")
    return db


def _writable(target: Path) -> None:
    try:
        check_file(target, "output")
    except RunDirError as exc:
        raise CacheToolError(str(exc)) from None


def merge(out: Path, inputs: Sequence[Path]) -> MergeReport:
    """Merge the caches `inputs` into `out` (created if missing). Raises CacheToolError before writing anything
    when an input is missing, not a cache, of another schema, or `out` itself."""
    out = Path(out)
    _writable(out)
    if not inputs:
        raise CacheToolError("cache merge: name at least one input cache")
    for path in inputs:
        if Path(path).resolve() == out.resolve():
            raise CacheToolError(f"{path}: an input cannot be the output of the merge")
        _open(path).close()
    if out.exists():
        _open(out).close()
    ResponseCache(out).close()  # creates the file and schema, or adds columns an older OUT lacks
    db = _open(out)
    db.conn.isolation_level = None  # explicit transactions below
    merged = [_merge_one(db, Path(path)) for path in inputs]
    entries = db["responses"].count
    integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
    db.close()
    return MergeReport(out, merged, entries, integrity)


def _merge_one(db: sqlite_utils.Database, path: Path) -> MergedInput:
    db.execute("ATTACH DATABASE ? AS src", [str(path)])  # bound, not quoted into SQL as Database.attach does
    try:
        src_columns = [r[1] for r in db.execute("PRAGMA src.table_info(responses)")]
        # An input written before a column existed has none to give: that column stays NULL, as in a migrated cache.
        columns = ", ".join(c for c in db["responses"].columns_dict if c in src_columns)
        differs = " OR ".join(f"s.{c} IS NOT m.{c}" for c in ANSWER_COLUMNS if c in src_columns)
        entries = db.execute("SELECT count(*) FROM src.responses").fetchone()[0]
        db.execute("BEGIN IMMEDIATE")
        try:
            joined = "FROM src.responses s JOIN main.responses m ON m.key = s.key"
            overlap = db.execute(f"SELECT count(*) {joined}").fetchone()[0]
            conflicts = db.execute(f"SELECT count(*) {joined} WHERE {differs}").fetchone()[0]
            examples = [k for (k,) in db.execute(f"SELECT s.key {joined} WHERE {differs} ORDER BY s.key LIMIT {_CONFLICT_EXAMPLES}")]
            added = db.execute(f"INSERT OR IGNORE INTO main.responses ({columns}) SELECT {columns} FROM src.responses").rowcount
            errors_added = db.execute(
                f"INSERT INTO main.errors ({_ERROR_COLUMNS}) SELECT {_ERROR_COLUMNS} FROM src.errors "
                f"EXCEPT SELECT {_ERROR_COLUMNS} FROM main.errors"
            ).rowcount
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    finally:
        db.execute("DETACH DATABASE src")
    return MergedInput(path, entries, added, overlap - conflicts, conflicts, examples, errors_added)


def _file_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())


def stats(path: Path) -> dict[str, Any]:
    """A cache's contents: entries and tokens per provider and model (with the first and last write, Unix
    seconds), errors by kind (and how many are of keys answered since), file bytes (database + WAL) and the
    bytes `vacuum` would reclaim (free pages)."""
    db = _open(path)
    try:
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
        free_pages = db.execute("PRAGMA freelist_count").fetchone()[0]
        models = list(db.query(
            "SELECT provider, model, count(*) AS entries, sum(prompt_tokens) AS prompt_tokens, "
            "sum(completion_tokens) AS completion_tokens, min(created_at) AS first_at, max(created_at) AS last_at "
            "FROM responses GROUP BY provider, model ORDER BY provider, model"
        ))
        errors = {r["kind"]: r["n"] for r in db.query("SELECT kind, count(*) AS n FROM errors GROUP BY kind ORDER BY n DESC, kind")}
        answered = db.execute("SELECT count(*) FROM errors WHERE key IN (SELECT key FROM responses)").fetchone()[0]
        return {
            "path": str(path),
            "schema": CACHE_SCHEMA,
            "entries": db["responses"].count,
            "models": models,
            "errors": errors,
            "errors_total": db["errors"].count,
            "errors_answered_since": answered,
            "file_bytes": _file_bytes(Path(path)),
            "free_bytes": page_size * free_pages,
        }
    finally:
        db.close()


def vacuum(path: Path, prune_errors: bool = False) -> dict[str, Any]:
    """Rewrite the cache compactly (checkpoint the WAL, VACUUM, truncate the WAL). `prune_errors` first deletes
    the logged failures of keys that have an answer since (a run never reads them). Needs the cache to itself:
    VACUUM waits for (up to 10 s), then fails on, a running grid's writes. Returns bytes before/after, errors
    pruned and the integrity check."""
    path = Path(path)
    before = _file_bytes(path)
    db = _open(path)
    try:
        pruned = 0
        if prune_errors:
            with db.conn:
                pruned = db.execute("DELETE FROM errors WHERE key IN (SELECT key FROM responses)").rowcount
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.vacuum()
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        db.close()
    return {"path": str(path), "bytes_before": before, "bytes_after": _file_bytes(path), "errors_pruned": pruned, "integrity": integrity}


def _entries(db: sqlite_utils.Database, model: str | None) -> Iterator[dict[str, Any]]:
    where, params = ("model = ?", [model]) if model is not None else (None, [])
    return db["responses"].rows_where(where, params, order_by="key")


def export(path: Path, target: Path, model: str | None = None) -> int:
    """Write the cache's entries (all, or one model's: the `model` column, the grid's model name) to `target`, by key: `.jsonl` (one object per entry;
    logprobs and option tokens as JSON values) or `.csv` (those as JSON text). The file appears whole or not at
    all. Returns the number of entries written."""
    target = Path(target)
    if target.suffix not in EXPORT_FORMATS:
        raise CacheToolError(f"{target}: expected a {' or '.join(EXPORT_FORMATS)} file to export to")
    _writable(target)
    db = _open(path)
    if model is not None and not db.execute("SELECT 1 FROM responses WHERE model = ? LIMIT 1", [model]).fetchone():
        have = [r[0] for r in db.execute("SELECT DISTINCT model FROM responses ORDER BY model")]
        db.close()
        raise CacheToolError(f"{path}: no entries of model '{model}' (the model column holds the grid's `model`, not its `id`; have: {', '.join(have) or 'none'})")
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    target.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    try:
        with tmp.open("w", newline="") as fh:
            if target.suffix == ".jsonl":
                for row in _entries(db, model):
                    for c in _JSON_COLUMNS:
                        row[c] = orjson.loads(row[c]) if row[c] else None
                    fh.write(orjson.dumps(row).decode() + "\n")
                    n += 1
            else:
                writer = csv.DictWriter(fh, fieldnames=list(db["responses"].columns_dict))
                writer.writeheader()
                for row in _entries(db, model):
                    writer.writerow(row)
                    n += 1
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
        db.close()
    return n
