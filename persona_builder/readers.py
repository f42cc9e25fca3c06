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


# Leading bytes of the files users most often find under a wrong name, and what they are.
_MAGIC = (
    (b"\x1f\x8b", "a gzip-compressed file (unpack it first)"),
    (b"PK\x03\x04", "a zip archive (unzip it first)"),
    (b"PAR1", "a Parquet file"),
    (b"<stata_dta>", "a Stata .dta file"),
    (b"$FL2", "an SPSS .sav file"),
    (b"$FL3", "an SPSS .sav file (compressed)"),
    (b"\xd0\xcf\x11\xe0", "an Excel/OLE file"),
)


def _sniff(head: bytes) -> str | None:
    """What the first bytes say the file is, or None for plain text. Stata formats 113-119 (before
    <stata_dta>) start with the version byte, the byte order (1 or 2) and file type 1."""
    for magic, what in _MAGIC:
        if head.startswith(magic):
            return what
    if len(head) >= 4 and 0x71 <= head[0] <= 0x77 and head[1] in (1, 2) and head[2] == 1 and head[3] == 0:
        return "a Stata .dta file"
    return "a binary file" if b"\x00" in head else None


def _csv_header(path: Path) -> list[str]:
    with path.open("rb") as fh:
        first = fh.readline()
    if (what := _sniff(first[:64])) is not None:
        raise PersonaFileError(f"{path}: named .csv but looks like {what}, not CSV text")
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            return next(csv.reader([first.decode(encoding)]), [])
        except UnicodeDecodeError:
            continue
    raise PersonaFileError(f"{path}:1: the header is neither UTF-8 nor Windows-1252 text; is this a CSV file?")


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


def _check_complete(path: Path, width: int) -> None:
    """A CSV cut off mid-row (an interrupted download) has a last row shorter than its header.

    Reads only the file's last 64 KiB; the line number is counted only when the check fails.
    """
    size = path.stat().st_size
    with path.open("rb") as fh:
        fh.seek(max(0, size - (1 << 16)))
        tail = fh.read()
    line = tail.rstrip(b"\r\n").rsplit(b"\n", 1)[-1]
    fields = next(csv.reader([line.decode("utf-8", "replace")]), [])
    if len(fields) == width or b"\n" not in tail.rstrip(b"\r\n") and size <= len(tail):
        return  # complete, or a header-only file (the header is the last line)
    with path.open("rb") as fh:
        number = sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))
    number += 0 if tail.endswith(b"\n") else 1
    raise PersonaFileError(
        f"{path}:{number}: the last row has {len(fields)} fields, the header {width}: "
        "the file looks cut off (download it again)"
    )


def read_columns(path: Path, columns: list[str]) -> pl.DataFrame:
    """The given file columns, CSV ones as text (harmonize.py checks they are numbers), others as read."""
    import pyreadstat

    fmt = file_format(path)
    try:
        if fmt == "csv":
            _check_complete(path, len(_csv_header(path)))
            # All text: a cell like "-4.0" or a stray label must reach the numeric check, not a schema guess.
            lazy = pl.scan_csv(path, infer_schema=False, encoding="utf8-lossy")
            return lazy.select(columns).collect()
        reader = pyreadstat.read_dta if fmt == "dta" else pyreadstat.read_sav
        frame, _ = reader(str(path), usecols=columns, output_format="polars")
        return frame.select(columns)
    except (pl.exceptions.PolarsError, pyreadstat.ReadstatError, pyreadstat.PyreadstatError, OSError) as exc:
        raise PersonaFileError(f"{path}: cannot read columns {', '.join(columns)} ({exc})") from None
