"""Reading benchmark records from local files (JSONL, JSON, CSV, Parquet) or a Hugging Face dataset, and
checking them row by row.

Every problem in a record is a ValueError naming the source and the record (`FILE: record N`, counted from
1 in file order, a CSV header not counted; JSONL parse errors name the line), so the grid's error path
reports it in one line instead of an IndexError or KeyError traceback from deep inside an adapter.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson
import polars as pl

FORMATS = (".jsonl", ".json", ".csv", ".parquet")


class RecordError(ValueError):
    """A record that cannot be used; str() names the source and the record (or line)."""


def read_records(path: Path) -> list[dict[str, Any]]:
    """Rows of a data file as dicts; nested JSON values (lists, objects) are kept as Python values."""
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".jsonl":
            return _objects(path, [_jsonl_line(path, n, line) for n, line in enumerate(path.read_bytes().splitlines(), 1) if line.strip()])
        if suffix == ".json":
            data = orjson.loads(path.read_bytes())
            if not isinstance(data, list):
                raise ValueError("expected a JSON list of records")
            return _objects(path, data)
        if suffix == ".csv":
            # Every column as text: labels such as "01" or "yes" must reach the adapter unchanged.
            return pl.read_csv(path, infer_schema=False, encoding="utf8-lossy").to_dicts()
        if suffix == ".parquet":
            return pl.read_parquet(path).to_dicts()
    except RecordError:
        raise
    except (OSError, ValueError, orjson.JSONDecodeError, pl.exceptions.PolarsError) as exc:
        raise ValueError(f"{path}: cannot read ({exc})") from None
    raise ValueError(f"{path}: unsupported data file (expected one of {', '.join(FORMATS)})")


def hub_records(dataset: str, config: str | None, split: str) -> list[dict[str, Any]]:
    """A Hugging Face hub dataset split; needs the `datasets` package and hub access (not bundled)."""
    try:
        import datasets
    except ImportError:
        raise ValueError(f"hub dataset '{dataset}': install the `datasets` package (pip install datasets) to load it") from None
    try:
        return list(datasets.load_dataset(dataset, config, split=split))
    except Exception as exc:  # network, auth, unknown config: all end the same way for the user
        raise ValueError(f"hub dataset '{dataset}' ({config or 'default'}, split {split}): {type(exc).__name__}: {exc}") from None


def _jsonl_line(path: Path, lineno: int, line: bytes) -> Any:
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise RecordError(f"{path}:{lineno}: not valid JSON ({exc})") from None


def _objects(path: Path, records: list[Any]) -> list[dict[str, Any]]:
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            raise RecordError(f"{where(path, i)}: expected a JSON object of fields, got {type(rec).__name__}")
    return records


def where(source: object, index: int) -> str:
    """How errors name record `index` (0-based) of a source: `SOURCE: record N`, N counted from 1."""
    return f"{source}: record {index + 1}"


_KINDS = {str: "a string", int: "an integer", list: "a list", dict: "an object"}


def field(rec: dict[str, Any], key: str, at: str, kind: type = str, *, empty: bool = False) -> Any:
    """rec[key], checked: present, of `kind` (int excludes bool), and unless `empty` non-empty (strings and
    lists). Raises ValueError naming `at` (the record) and the key."""
    if key not in rec or rec[key] is None:
        has = ", ".join(k for k, v in list(rec.items())[:20] if v is not None)
        raise ValueError(f"{at}: missing field '{key}' (the record has {has or 'no fields'})")
    value = rec[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"{at}: field '{key}': expected {_KINDS.get(kind, kind.__name__)}, got {type(value).__name__} {value!r:.60}")
    if not empty and isinstance(value, (str, list, dict)) and not (value.strip() if isinstance(value, str) else value):
        raise ValueError(f"{at}: field '{key}' is empty")
    return value


def require_unique(ids: Sequence[str], at: Callable[[int], str]) -> None:
    """Item ids key the cache and pair persona rows with baseline rows: two items with one id would share
    answers and cross-join pairs, so the second is refused, naming both records."""
    first: dict[str, int] = {}
    for i, item_id in enumerate(ids):
        if item_id in first:
            raise ValueError(f"{at(i)}: duplicate item id '{item_id}' (also {at(first[item_id])}); item ids must be unique")
        first[item_id] = i
