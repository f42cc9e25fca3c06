"""Reading benchmark records from local files (JSONL, JSON, CSV, Parquet) or a Hugging Face dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import polars as pl

FORMATS = (".jsonl", ".json", ".csv", ".parquet")


def read_records(path: Path) -> list[dict[str, Any]]:
    """Rows of a data file as dicts; nested JSON values (lists, objects) are kept as Python values."""
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".jsonl":
            return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
        if suffix == ".json":
            data = orjson.loads(path.read_bytes())
            if not isinstance(data, list):
                raise ValueError("expected a JSON list of records")
            return data
        if suffix == ".csv":
            # Every column as text: labels such as "01" or "yes" must reach the adapter unchanged.
            return pl.read_csv(path, infer_schema=False, encoding="utf8-lossy").to_dicts()
        if suffix == ".parquet":
            return pl.read_parquet(path).to_dicts()
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
