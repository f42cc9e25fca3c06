"""Read the columns a survey needs from its microdata file: CSV (lazily, via Polars), Stata .dta or SPSS .sav.

Files are matched to columns case-insensitively (the joint file ships mixed-case and lower-case headers),
and only the needed columns are materialised, which is what keeps a 600-column file cheap to read.
Missing codes stay as they are here; harmonize.py turns them into nulls. Stata extended missing values
(.d, .i, .n, ...) and SPSS declared missing values already arrive as nulls from pyreadstat.
"""

from __future__ import annotations

import csv
from pathlib import Path

import polars as pl

from persona_builder.persona import PersonaFileError

_SUFFIX_FORMAT = {".csv": "csv", ".dta": "dta", ".sav": "sav", ".zsav": "sav"}


def file_format(path: Path) -> str:
    fmt = _SUFFIX_FORMAT.get(path.suffix.lower())
    if fmt is None:
        raise PersonaFileError(f"{path}: unsupported file type '{path.suffix}' (expected .csv, .dta or .sav)")
    return fmt


def _csv_header(path: Path) -> list[str]:
    with path.open("rb") as fh:
        first = fh.readline()
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            text = first.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    return next(csv.reader([text]), [])


def header(path: Path) -> list[str]:
    """The column names of a survey file, raising PersonaFileError if it cannot be opened as its type."""
    if not path.is_file():
        raise PersonaFileError(f"{path}: file not found")
    import pyreadstat  # on use: engine runs import this module (via sample.py) and never read survey files

    fmt = file_format(path)
    try:
        if fmt == "csv":
            return _csv_header(path)
        reader = pyreadstat.read_dta if fmt == "dta" else pyreadstat.read_sav
        _, meta = reader(str(path), metadataonly=True, output_format="polars")
        return list(meta.column_names)
    except (pyreadstat.ReadstatError, pyreadstat.PyreadstatError, OSError) as exc:
        raise PersonaFileError(f"{path}: cannot read as a {fmt} file ({exc})") from None


def resolve(ref: str, columns: list[str]) -> str | None:
    """The file's column for a catalog ref 'A|B' (first alternative present, any letter case)."""
    by_lower = {c.lower(): c for c in columns}
    return next((by_lower[a.lower()] for a in ref.split("|") if a.lower() in by_lower), None)


def read_columns(path: Path, columns: list[str]) -> pl.DataFrame:
    """The given file columns, CSV ones as text (harmonize.py checks they are numbers), others as read."""
    import pyreadstat

    fmt = file_format(path)
    try:
        if fmt == "csv":
            # All text: a cell like "-4.0" or a stray label must reach the numeric check, not a schema guess.
            lazy = pl.scan_csv(path, infer_schema=False, encoding="utf8-lossy")
            return lazy.select(columns).collect()
        reader = pyreadstat.read_dta if fmt == "dta" else pyreadstat.read_sav
        frame, _ = reader(str(path), usecols=columns, output_format="polars")
        return frame.select(columns)
    except (pl.exceptions.PolarsError, pyreadstat.ReadstatError, pyreadstat.PyreadstatError, OSError) as exc:
        raise PersonaFileError(f"{path}: cannot read columns {', '.join(columns)} ({exc})") from None
