"""`cache` commands: merge shard caches, and stats, vacuum and export for a cache kept for months.

Mounted into the main CLI as `mtpa-engine cache ...`. The work is in engine.cache_tools; this file parses
arguments and prints. Bad input (a missing file, not a cache, another schema) is one line on stderr, exit 2.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click
import orjson
from click.exceptions import Exit
from rich.table import Table

from engine.cli_group import CommandGroup
from engine.cli_group import fail as _fail
from engine.console import CLIConsole, print_wide

app = CommandGroup("cache", help="Merge shard caches; stats, vacuum and export of a cache.")
# A path or key list is never broken across lines, and printed as it is: a file named '[b]x.sqlite' was read as
# markup ('x.sqlite'), ':x:' as an emoji.
out = CLIConsole(soft_wrap=True, markup=False, emoji=False, highlight=False)

EXIT_CORRUPT = 1


def _json(data: object) -> None:
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")


@app.command()
@click.argument("target", metavar="OUT", type=click.Path(path_type=Path), help="The merged cache (created if missing; its entries stand).")
@click.argument("inputs", metavar="IN...", type=click.Path(path_type=Path), nargs=-1, required=True, help="Caches to merge into OUT, in this order.")
@click.option("--json", "as_json", is_flag=True, help="Print the merge report as JSON.")
def merge(target: Path, inputs: tuple[Path, ...], as_json: bool) -> None:
    """Merge caches by key: the first answer stands, conflicting answers are counted; integrity-checked after."""
    import engine.cache_tools as cache_tools  # here, not at the top: sqlite-utils would slow every `mtpa-engine` start

    try:
        report = cache_tools.merge(target, list(inputs))
    except cache_tools.CacheToolError as exc:
        raise _fail(str(exc)) from None
    rows = [
        {"input": str(i.path), "entries": i.entries, "added": i.added, "same": i.same, "conflicts": i.conflicts,
         "conflict_keys": i.conflict_keys, "errors_added": i.errors_added}
        for i in report.inputs
    ]
    if as_json:
        _json({"out": str(report.out), "entries": report.entries, "conflicts": report.conflicts, "integrity": report.integrity, "inputs": rows})
    else:
        table = Table(title=f"cache merge -> {report.out}", title_justify="left")
        for name in ("input", "entries", "added", "same", "conflicts", "errors_added"):
            table.add_column(name, justify="left" if name == "input" else "right")
        for r in rows:
            table.add_row(r["input"], *(f"{r[k]:,}" for k in ("entries", "added", "same", "conflicts", "errors_added")))
        print_wide(out, table)  # whole paths when piped
        for r in rows:
            if r["conflicts"]:
                out.print(f"{r['input']}: {r['conflicts']:,} keys answered differently, OUT's answer kept; first: {', '.join(r['conflict_keys'])}")
        out.print(f"{report.entries:,} entries in {report.out}; integrity_check: {report.integrity}")
    if report.integrity != "ok":
        raise Exit(EXIT_CORRUPT)


def _when(seconds: float | None) -> str:
    return "" if seconds is None else time.strftime("%Y-%m-%d %H:%M", time.gmtime(seconds))


@app.command()
@click.argument("cache", type=click.Path(path_type=Path), help="A cache file.")
@click.option("--json", "as_json", is_flag=True, help="Print the statistics as JSON.")
def stats(cache: Path, as_json: bool) -> None:
    """Entries and tokens per model, first and last write, errors by kind, file size and reclaimable space."""
    import engine.cache_tools as cache_tools

    try:
        s = cache_tools.stats(cache)
    except cache_tools.CacheToolError as exc:
        raise _fail(str(exc)) from None
    if as_json:
        _json(s)
        return
    table = Table(title=f"{cache}: {s['entries']:,} entries, {s['file_bytes'] / 1e6:,.1f} MB ({s['free_bytes'] / 1e6:,.1f} MB free)", title_justify="left")
    for name in ("provider", "model", "entries", "prompt_tokens", "completion_tokens", "first (UTC)", "last (UTC)"):
        table.add_column(name, justify="right" if name in ("entries", "prompt_tokens", "completion_tokens") else "left")
    for m in s["models"]:
        table.add_row(m["provider"], m["model"], f"{m['entries']:,}", f"{m['prompt_tokens'] or 0:,}", f"{m['completion_tokens'] or 0:,}", _when(m["first_at"]), _when(m["last_at"]))
    print_wide(out, table)
    kinds = ", ".join(f"{k} {n:,}" for k, n in s["errors"].items()) or "none"
    out.print(f"errors logged {s['errors_total']:,} ({kinds}); of keys answered since: {s['errors_answered_since']:,}")


@app.command()
@click.argument("cache", type=click.Path(path_type=Path), help="A cache file no run is using.")
@click.option("--prune-errors", is_flag=True, help="First delete logged failures of keys that have an answer since.")
def vacuum(cache: Path, prune_errors: bool) -> None:
    """Compact a cache: checkpoint the WAL, VACUUM, integrity check. Answers are never deleted."""
    import engine.cache_tools as cache_tools

    try:
        r = cache_tools.vacuum(cache, prune_errors)
    except cache_tools.CacheToolError as exc:
        raise _fail(str(exc)) from None
    out.print(
        f"{cache}: {r['bytes_before'] / 1e6:,.2f} MB -> {r['bytes_after'] / 1e6:,.2f} MB; errors pruned {r['errors_pruned']:,}; "
        f"integrity_check: {r['integrity']}"
    )
    if r["integrity"] != "ok":
        raise Exit(EXIT_CORRUPT)


@app.command()
@click.argument("cache", type=click.Path(path_type=Path), help="A cache file.")
@click.argument("target", metavar="OUT", type=click.Path(path_type=Path), help="A .jsonl or .csv file.")
@click.option("--model", help="Only this model's entries: its `model` as the grid names it (as `cache stats` lists it), not its `id`.")
def export(cache: Path, target: Path, model: str | None) -> None:
    """Export the cache's entries, ordered by key, as JSON lines or CSV."""
    import engine.cache_tools as cache_tools

    try:
        n = cache_tools.export(cache, target, model)
    except cache_tools.CacheToolError as exc:
        raise _fail(str(exc)) from None
    out.print(f"{n:,} entries -> {target}")
