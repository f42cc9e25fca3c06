"""Migrations of the cache file's layout: a cache written by an older engine is brought up to date when opened.

`meta.schema_version` numbers the compatible layout changes (tables, columns added in place). `meta.schema`
(engine.cache.CACHE_SCHEMA) marks an incompatible file generation, refused outright; neither enters a key
(engine.keys.KEY_VERSION does): a layout migration keeps every stored key and answer valid, a key change would
orphan them all.

Each version lists what it added, as data; `migrate` applies, in order, every step newer than the file's
version, through sqlite-utils' table API (`columns_dict`, `add_column`). A file from before `schema_version`
existed has none: every step is checked against what the file has and only what is missing is added, so
migrating is idempotent. The steps run inside the transaction in which engine.cache.ResponseCache opens the
file, so a file is migrated whole or not at all, and two processes opening it at once migrate it once. A file
already at SCHEMA_VERSION costs one meta lookup: sqlite-utils (0.4 s to import) is loaded only to migrate.

Raises ValueError for a file of a newer layout (an older engine must not write rows missing its columns).
"""

from __future__ import annotations

import sqlite3

# version -> table -> columns it added (name -> SQLite type); the tables themselves come from engine.cache's DDL.
STEPS: dict[int, dict[str, dict[str, str]]] = {
    # The first cache (commit 2fff608): meta, errors, responses (key, provider, model, text, letter_logprobs,
    # prompt_tokens, completion_tokens, latency_s, attempts, created_at).
    1: {},
    2: {"responses": {"option_logprobs": "TEXT", "option_tokens": "TEXT"}},  # likelihood mode (commit c07e9e9)
}
SCHEMA_VERSION = max(STEPS)


def file_version(conn: sqlite3.Connection) -> int | None:
    """The layout version the file records, or None (a new file, or one from before schema_version)."""
    row = conn.execute("SELECT v FROM meta WHERE k='schema_version'").fetchone()
    return int(row[0]) if row is not None else None


def migrate(conn: sqlite3.Connection) -> list[str]:
    """Bring the open cache `conn` (its tables created, inside the caller's transaction) to SCHEMA_VERSION.

    Returns what was added, as `table.column` (empty when the file was current or new)."""
    version = file_version(conn)
    if version == SCHEMA_VERSION:
        return []
    if version is not None and version > SCHEMA_VERSION:
        raise ValueError(f"cache layout {version}, this engine knows up to {SCHEMA_VERSION} (written by a newer engine? upgrade mtpa-engine)")
    added: list[str] = []
    pending = [(table, columns) for v, step in sorted(STEPS.items()) if version is None or v > version for table, columns in step.items()]
    if any(name not in _columns(conn, table) for table, columns in pending for name in columns):
        import sqlite_utils

        db = sqlite_utils.Database(conn)
        for table, columns in pending:
            have = db[table].columns_dict
            for name, kind in columns.items():
                if name not in have:
                    db[table].add_column(name, kind)
                    added.append(f"{table}.{name}")
    conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
    return added


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
