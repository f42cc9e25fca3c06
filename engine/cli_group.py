"""The click classes of every mtpa-engine command line (`mtpa-engine` and its `cache`, `batches` and `personas`
groups): help, usage errors and whole numbers as the typer version had them.

Imports click and the consoles (engine.console, rich) only: `mtpa-engine --help` and `cache` start without the
engine's or the persona builder's modules."""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator

import click
from click.exceptions import Exit, NoArgsIsHelpError
from rich.markup import escape

from engine.console import CLIConsole

EXIT_BAD_INPUT = 2
_err = CLIConsole(stderr=True)


def fail(message: str) -> Exit:
    """Print bad input's one line (`error: MESSAGE`, stderr) and return the exit (code 2) to raise. The message
    quotes user text (TOML table names such as [judge], file names): never read as markup."""
    _err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return Exit(EXIT_BAD_INPUT)


def first_paragraph(command: click.Command) -> str:
    """A command's line in its group's command list: its `short_help`, else the first paragraph of its help,
    whole. click's default is the first sentence cut to the terminal's width ("Merge caches by key: the first
    answer stands, conflicting..."), which lost the rest of what typer printed."""
    if command.short_help:
        return inspect.cleandoc(command.short_help)
    return " ".join(inspect.cleandoc(command.help or "").split("\n\n")[0].split())


class WholeNumber(click.types.IntParamType):
    """An integer option, read as typer read it (pydantic's lax int, pydantic-core 2.x): '10', ' 10 ', '1_0' and
    '10.0' (only zeros after the point) are 10; '10.5', '10.' and '1e1' are not integers. click's own int refused
    '10.0', which typer had taken."""

    def convert(self, value, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, str):
            whole, point, zeros = value.strip().partition(".")
            if whole and point and zeros and not zeros.strip("0"):
                value = whole
        return super().convert(value, param, ctx)


class Count(click.IntRange, WholeNumber):
    """A whole number from `min` (WholeNumber). Named "integer" in errors: click's IntRange says "'1.5' is not a
    valid integer range", read as if a range were asked for."""

    name = "integer"


class _UsageInParseErrors:
    """An option's parse error (a missing value, a value given to a flag) names its command: click raises it
    without a context, so the one-line error had no usage to show."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)  # type: ignore[misc]
        except click.UsageError as exc:
            if exc.ctx is None:
                exc.ctx = ctx
            raise


class Command(_UsageInParseErrors, click.Command):
    """A command of a CommandGroup (its `command_class`)."""


class CommandGroup(_UsageInParseErrors, click.Group):
    """A command group that lists its commands in the order they are declared (click sorts them), each with the
    first paragraph of its help whole (first_paragraph), and, as the outermost group, turns a usage error (an
    unknown option or command, a missing argument or option, a value out of range) into one line on stderr, exit
    2, as bad input is; a group named with nothing after it still prints its help (stderr, exit 2)."""

    command_class = Command

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)

    def command_help(self, name: str) -> str | None:
        """`name`'s line in the command list; None for a hidden or unknown command."""
        command = self.commands.get(name)
        return None if command is None or command.hidden else first_paragraph(command)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, line) for name in self.list_commands(ctx) if (line := self.command_help(name)) is not None]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def fail(self, message: str) -> Exit:
        """Print a usage error's one line and return the exit to raise (`fail`; `mtpa-engine`'s own: its _fail)."""
        return fail(message)

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra) -> click.Context:
        with self._one_line_usage_errors(outermost=parent is None):
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: click.Context):
        with self._one_line_usage_errors(outermost=ctx.parent is None):  # a subcommand's own arguments are parsed in here
            return super().invoke(ctx)

    @contextlib.contextmanager
    def _one_line_usage_errors(self, outermost: bool) -> Iterator[None]:
        """click's usage error (usage, a hint and the error on four lines) as one line, by the outermost group
        only, so that `mtpa-engine cache stats --bogus` is printed as `mtpa-engine`'s own errors are."""
        try:
            yield
        except NoArgsIsHelpError:
            raise
        except click.UsageError as exc:
            if not outermost:
                raise
            usage = f" ({' '.join(exc.ctx.get_usage().split())})" if exc.ctx is not None else ""
            raise self.fail(exc.format_message().replace("\n", " ") + usage) from None
