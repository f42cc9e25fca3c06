"""The command line's own usage errors (an unknown option or command, a missing argument or option, a value out
of range): one line on stderr naming the problem and the command's usage, exit 2, nothing on stdout, no
traceback: the same as the engine's bad-input errors. A group named alone prints its help, exit 2."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from engine.cli import app
from engine.cli_group import Count, WholeNumber


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["run"], "error: Missing argument 'GRID'. (Usage: mtpa-engine run [OPTIONS] GRID)"),
        (["run", "g.toml", "--bogus"], "error: No such option '--bogus'. (Usage: mtpa-engine run [OPTIONS] GRID)"),
        (["run", "g.toml", "--budget", "lots"], "error: Invalid value for '--budget': 'lots' is not a valid float. (Usage: mtpa-engine run [OPTIONS] GRID)"),
        (["report", "r", "--bootstrap", "-1"], "error: Invalid value for '--bootstrap': -1 is not in the range x>=0. (Usage: mtpa-engine report [OPTIONS] RUN_DIR)"),
        (["report", "r", "--min-size", "0"], "error: Invalid value for '--min-size': 0 is not in the range x>=1. (Usage: mtpa-engine report [OPTIONS] RUN_DIR)"),
        (["bogus"], "error: No such command 'bogus'. (Usage: mtpa-engine [OPTIONS] COMMAND [ARGS]...)"),
        (["cache", "merge", "out.sqlite"], "error: Missing argument 'IN...'. (Usage: mtpa-engine cache merge [OPTIONS] OUT IN...)"),
        (["personas", "show", "dir"], "error: Missing option '--id'. (Usage: mtpa-engine personas show [OPTIONS] DIRECTORY)"),
        (["batches", "cancel", "--every"], "error: No such option '--every'. (Usage: mtpa-engine batches cancel [OPTIONS] [JOB])"),
        # click raises an option's parse errors without the command: the line still names its usage
        (["report", "r", "--by"], "error: Option '--by' requires an argument. (Usage: mtpa-engine report [OPTIONS] RUN_DIR)"),
        (["run", "g.toml", "--dry-run=yes"], "error: Option '--dry-run' does not take a value. (Usage: mtpa-engine run [OPTIONS] GRID)"),
        (["cache", "stats", "c.sqlite", "--json=1"], "error: Option '--json' does not take a value. (Usage: mtpa-engine cache stats [OPTIONS] CACHE)"),
        # a count is "a valid integer", not click's "integer range"
        (["report", "r", "--bootstrap", "1.5"], "error: Invalid value for '--bootstrap': '1.5' is not a valid integer. (Usage: mtpa-engine report [OPTIONS] RUN_DIR)"),
        (["report", "r", "--seed", "1e1"], "error: Invalid value for '--seed': '1e1' is not a valid integer. (Usage: mtpa-engine report [OPTIONS] RUN_DIR)"),
        (["run", "g.toml", "--show-prompts", "2."], "error: Invalid value for '--show-prompts': '2.' is not a valid integer. (Usage: mtpa-engine run [OPTIONS] GRID)"),
        (["personas", "build", "--out", "o", "--n", "0.5"], "error: Invalid value for '--n': '0.5' is not a valid integer. (Usage: mtpa-engine personas build [OPTIONS])"),
        (["cache", "stats", "a.sqlite", "b.sqlite"], "error: Got unexpected extra argument (b.sqlite) (Usage: mtpa-engine cache stats [OPTIONS] CACHE)"),
    ],
)
def test_a_usage_error_is_one_line_and_exit_2(args, line):
    result = CliRunner().invoke(app, args)
    assert (result.exit_code, result.stdout, result.stderr) == (2, "", line + "\n")
    assert isinstance(result.exception, SystemExit)


def _command_list(help_text: str) -> dict[str, str]:
    """The help's command list: {name: its line, wrapped lines joined}, in the order shown."""
    rows: dict[str, str] = {}
    for line in help_text[help_text.index("Commands:"):].splitlines()[1:]:
        if line.startswith("  ") and not line.startswith("   "):
            name, _, text = line.strip().partition(" ")
            rows[name] = text.strip()
        elif line.strip():
            rows[name] += " " + line.strip()
    return rows


@pytest.mark.parametrize(
    ("args", "commands"),
    [
        ([], ["run", "report", "personas", "cache", "batches"]),
        (["cache"], ["merge", "stats", "vacuum", "export"]),  # as declared, as the README lists them (click sorts)
        (["batches"], ["list", "cancel"]),
        (["personas"], ["build", "show", "stats"]),
    ],
)
def test_a_group_named_alone_prints_its_help_and_exits_2(args, commands):
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert list(_command_list(result.stderr)) == commands


def test_a_command_list_shows_each_commands_first_paragraph_whole():
    """click cut each line to its first sentence and the terminal's width ("Merge caches by key: the first
    answer stands, conflicting..."); typer showed the paragraph."""
    listed = _command_list(CliRunner().invoke(app, ["cache", "--help"], terminal_width=60).stdout)
    assert listed == {
        "merge": "Merge caches by key: the first answer stands, conflicting answers are counted; integrity-checked after.",
        "stats": "Entries and tokens per model, first and last write, errors by kind, file size and reclaimable space.",
        "vacuum": "Compact a cache: checkpoint the WAL, VACUUM, integrity check. Answers are never deleted.",
        "export": "Export the cache's entries, ordered by key, as JSON lines or CSV.",
    }


@pytest.mark.parametrize(("text", "number"), [("10", 10), (" 10 ", 10), ("1_000", 1000), ("+7", 7), ("10.0", 10), ("10.00", 10), ("-3.0", -3), ("-0.0", 0)])
def test_a_whole_number_is_read_as_typer_read_it(text, number):
    """typer (pydantic's lax int) took '10.0' for 10; click's int refused it."""
    assert WholeNumber().convert(text, None, None) == number
    assert Count(min=-5).convert(text, None, None) == number


def test_a_whole_number_written_as_a_decimal_reaches_the_command():
    result = CliRunner().invoke(app, ["report", "no-such-run", "--bootstrap", "10.0", "--min-size", "5.00"])
    assert (result.exit_code, result.stderr) == (2, "error: no-such-run: no results (no-such-run/results/*.parquet matches nothing); is this a run directory?\n")
