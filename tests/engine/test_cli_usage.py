"""The command line's own usage errors (an unknown option or command, a missing argument or option, a value out
of range): one line on stderr naming the problem and the command's usage, exit 2, nothing on stdout, no
traceback: the same as the engine's bad-input errors. A group named alone prints its help, exit 2."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from engine.cli import app


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
    ],
)
def test_a_usage_error_is_one_line_and_exit_2(args, line):
    result = CliRunner().invoke(app, args)
    assert (result.exit_code, result.stdout, result.stderr) == (2, "", line + "\n")
    assert isinstance(result.exception, SystemExit)


@pytest.mark.parametrize(("args", "commands"), [([], ["run", "report", "personas", "cache", "batches"]), (["cache"], ["export", "merge", "stats", "vacuum"])])
def test_a_group_named_alone_prints_its_help_and_exits_2(args, commands):
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    listed = result.stderr[result.stderr.index("Commands:"):].splitlines()[1:]
    assert [row.split()[0] for row in listed if row.startswith("  ") and not row.startswith("   ")] == commands
