"""The library face (engine/_api.py, re-exported by `engine`), the error hierarchy (engine/errors.py), grids
from text or a dict (engine/grid.py), adapters declaring their own options, and the README guards: the face
is what the README documents, and the README's CLI table lists exactly the CLI's commands.

Named after the face rather than `_api`: the tests reach it as users do, through `import engine`."""

from __future__ import annotations

import asyncio
import builtins
import inspect
import re
import signal
import sqlite3
import subprocess
import sys
import shutil

import orjson
import pytest
import click

import engine
from bench_adapters import ADAPTERS
from bench_adapters.choice import MultipleChoice
from engine import errors
from engine.grid import option_types
from tests.conftest import REPO, write_grid

FACE = [
    "load_grid", "dry_run", "run", "run_async", "open_run", "build_report",
    "DryRun", "ReportOutcome", "RunOutcome", "GridConfig",
    "EngineError", "GridError", "RunError", "RunDirError", "PreflightError", "WriteError",
    "CacheError", "CacheWriteError", "ResultsWriteError", "ReportError",
]  # fmt: skip
FUNCTIONS = ["load_grid", "dry_run", "run", "run_async", "open_run", "build_report"]
README = (REPO / "README.md").read_text(encoding="utf-8")


def _section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    return README[start : README.index("\n## ", start + 1)]


# --- guards -------------------------------------------------------------------------------------------------


def test_the_face_is_exactly_the_names_the_readme_documents():
    assert engine.__all__ == FACE
    rows = re.findall(r"^\| (.+?) \| .+ \|$", _section("Use as a library"), flags=re.MULTILINE)[2:]  # past the header
    documented = {name for row in rows for name in re.findall(r"`(?:await )?(\w+)", row)}
    assert documented == set(FACE), documented ^ set(FACE)
    for name in FACE:
        assert getattr(engine, name).__doc__, name


def test_every_face_function_says_what_it_raises_and_each_named_error_exists():
    known = {n for n in (*dir(errors), *dir(builtins)) if n.endswith("Error")} | {"PersonaFileError", "CancelledError"}
    for name in FUNCTIONS:
        doc = inspect.getdoc(getattr(engine, name))
        assert "Raises" in doc, name
        named = set(re.findall(r"\b([A-Z]\w*Error)\b", doc))
        assert named and named <= known, (name, named - known)


def test_import_engine_loads_no_engine_module_and_no_dependency():
    code = "import sys, engine; print(sorted(m for m in sys.modules if m.startswith(('engine.', 'polars', 'rich', 'bench_adapters'))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True).stdout
    assert out.strip() == "[]"


def test_the_readme_cli_table_lists_exactly_the_cli_commands():
    from engine.cli import app

    ctx = click.Context(app)
    top = {name: app.get_command(ctx, name) for name in app.list_commands(ctx)}  # the lazy groups imported here
    groups = {name: cmd for name, cmd in top.items() if isinstance(cmd, click.Group)}
    assert {"personas", "cache", "batches"} <= groups.keys()
    commands = {f"{name} {sub}" for name, group in groups.items() for sub in group.list_commands(ctx)} | (top.keys() - groups.keys())
    rows = re.findall(r"^\| `mtpa-engine ([^`]+)` \|", _section("CLI"), flags=re.MULTILINE)
    listed = {" ".join(row.split()[:2]) if row.split()[0] in groups else row.split()[0] for row in rows}
    assert listed == commands


# --- errors -------------------------------------------------------------------------------------------------


def test_every_error_is_an_engine_error_keeps_its_builtin_base_and_its_old_import_path():
    from engine.cache import CacheError, CacheWriteError
    from engine.cache_tools import CacheToolError
    from engine.providers.base import PreflightError
    from engine.providers.errors import ContentFiltered, HTTPStatusError, MalformedBody
    from engine.report.load import ReportError
    from engine.results import ResultsWriteError
    from engine.rundir import RunDirError

    assert (CacheError, CacheWriteError, CacheToolError, PreflightError, ReportError, ResultsWriteError, RunDirError) == (
        errors.CacheError, errors.CacheWriteError, errors.CacheToolError, errors.PreflightError, errors.ReportError,
        errors.ResultsWriteError, errors.RunDirError,
    )  # fmt: skip
    assert (HTTPStatusError, MalformedBody, ContentFiltered) == (errors.HTTPStatusError, errors.MalformedBody, errors.ContentFiltered)
    for cls in (engine.GridError, engine.ReportError, CacheToolError):
        assert issubclass(cls, engine.EngineError) and issubclass(cls, ValueError)
    for cls in (engine.RunDirError, engine.PreflightError, engine.CacheError, engine.ResultsWriteError):
        assert issubclass(cls, engine.RunError) and issubclass(cls, RuntimeError)
    # what the CLI turns into exit 74: a write failing mid-run, from the cache or the results
    assert issubclass(engine.CacheWriteError, engine.WriteError) and issubclass(engine.ResultsWriteError, engine.WriteError)
    assert not issubclass(engine.CacheError, engine.WriteError)
    assert issubclass(errors.IncompleteAnswer, errors.MalformedBody) and issubclass(errors.ProviderError, engine.EngineError)
    assert all(issubclass(cls, errors.ProviderError) for cls in (HTTPStatusError, MalformedBody, ContentFiltered))


# --- grids without a file -----------------------------------------------------------------------------------

GRID = """
[run]
name = "t"

[[benchmarks]]
name = "truthfulqa"
task = "mc2"
mode = "letter-logprob"

[[models]]
id = "m"
provider = "openai"
model = "test"

[[conditions]]
name = "baseline"
"""


def test_a_grid_from_text_or_a_dict_resolves_paths_against_base_dir(tmp_path):
    import tomllib

    from_text = engine.load_grid(GRID, base_dir=tmp_path)
    from_dict = engine.load_grid(tomllib.loads(GRID), base_dir=tmp_path)
    assert from_text == from_dict
    assert from_text.output_dir == (tmp_path / "runs" / "t").resolve() and from_text.cache_path == (tmp_path / "cache.sqlite").resolve()
    assert from_text.benchmarks[0].adapter_options() == {"task": "mc2"}
    with pytest.raises(TypeError, match="needs base_dir"):
        engine.load_grid({"run": {"name": "t"}})
    with pytest.raises(TypeError, match="load_grid: TOML text needs base_dir"):  # never "<the whole text>: grid file not found"
        engine.load_grid(GRID)


def test_a_grid_from_text_reports_its_problems_as_a_file_does_under_the_name_grid(tmp_path):
    bad = GRID.replace('task = "mc2"', 'tsak = "mc2"\ncategories = ["Age"]').replace('id = "m"', 'id = "m"\ntemprature = 0.5')
    with pytest.raises(engine.GridError) as caught:
        engine.load_grid(bad, base_dir=tmp_path)
    assert caught.value.problems == [
        "<grid>: benchmarks[0].tsak: unknown key (did you mean 'task'?)",
        "<grid>: models[0].temprature: unknown key (did you mean 'temperature'?)",
    ]
    (tmp_path / "grid.toml").write_text(bad)
    with pytest.raises(engine.GridError) as from_file:
        engine.load_grid(tmp_path / "grid.toml")
    assert [p.replace(str(tmp_path / "grid.toml"), "<grid>") for p in from_file.value.problems] == caught.value.problems
    with pytest.raises(engine.GridError, match=r"^<grid>: not valid TOML"):
        engine.load_grid("[run", base_dir=tmp_path)
    stray = GRID.replace('task = "mc2"', 'task = "mc2"\ncategories = ["Age"]')
    with pytest.raises(engine.GridError, match=r"^<grid>: benchmarks\[0\]\.categories: not an option of truthfulqa \(its options: task\)$"):
        engine.load_grid(stray, base_dir=tmp_path)


class _Toy(MultipleChoice):
    """A benchmark added the documented way: this class (a module in real life) and one registry entry."""

    name = "toy"
    options = ("colour", "sizes")

    def __init__(self, path=None, limit=None, seed=0, mode="letter", colour: str | None = None, sizes: tuple[int, ...] = ()) -> None:
        super().__init__(path, limit, seed, mode)
        if colour not in (None, "red", "blue"):
            raise ValueError(f"toy: colour '{colour}' (expected red or blue)")
        self.colour, self.sizes = colour, sizes


@pytest.fixture
def toy_registered(monkeypatch):
    monkeypatch.setitem(ADAPTERS, "toy", _Toy)
    option_types.cache_clear()
    yield
    option_types.cache_clear()


def test_a_new_adapter_declares_its_options_and_the_grid_types_and_checks_them(tmp_path, toy_registered):
    toy = GRID.replace('name = "truthfulqa"\ntask = "mc2"\nmode = "letter-logprob"', 'name = "toy"\ncolour = "red"\nsizes = [1, 2]')
    assert engine.load_grid(toy, base_dir=tmp_path).benchmarks[0].adapter_options() == {"colour": "red", "sizes": (1, 2)}
    problems = {
        'colour = "red"': "<grid>: benchmarks[0].colour: expected a string, got 3",
        "sizes = [1, 2]": "<grid>: benchmarks[0].sizes[1]: expected an integer, got 'x'",
    }
    for good, message in problems.items():
        broken = toy.replace(good, {'colour = "red"': "colour = 3", "sizes = [1, 2]": 'sizes = [1, "x"]'}[good])
        with pytest.raises(engine.GridError) as caught:
            engine.load_grid(broken, base_dir=tmp_path)
        assert caught.value.problems == [message]
    with pytest.raises(engine.GridError) as caught:  # the adapter's own check, one line naming the benchmark
        engine.load_grid(toy.replace('"red"', '"green"'), base_dir=tmp_path)
    assert caught.value.problems == ["<grid>: benchmarks[0]: toy: colour 'green' (expected red or blue)"]


def test_the_manifest_config_lists_every_adapter_option_as_when_config_declared_them(tmp_path):
    from engine.grid import option_defaults

    grid = engine.load_grid(GRID, base_dir=tmp_path)
    bench = grid.canonical(option_defaults())["benchmarks"][0]
    assert bench["task"] == "mc2" and bench["categories"] == () and bench["targets"] is None and bench["shots"] is None
    assert set(bench) == {"name", "id", "path", "limit", "seed", "mode", "rubric", "max_tokens", "orders", "template", "format", *option_types()}


# --- runs in process ----------------------------------------------------------------------------------------


def _handlers() -> tuple:
    return signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)


def test_a_run_in_process_reports_progress_touches_no_signal_and_opens_and_reports(tmp_path, openai_server):
    grid = write_grid(tmp_path, base_url=openai_server.base_url, personas=3, questions=4)
    before, seen = _handlers(), []
    outcome = engine.run(grid, progress=lambda stats, done: seen.append((stats.cells_done, done)), progress_interval_s=0.01)
    cells = 4 + 3 * 4  # the baseline's 4 questions, and 3 personas x 4 questions
    assert _handlers() == before
    assert outcome.complete and outcome.stats.cells_done == cells and openai_server.state.requests == cells
    assert seen[-1] == (cells, True) and all(not done for _, done in seen[:-1]) and len(seen) >= 2
    assert sorted(p.suffix for p in outcome.results_path.iterdir()) == [".parquet"] * len(list(outcome.results_path.iterdir()))
    run = engine.open_run(outcome.run_dir)
    assert run.results.collect().height == cells and run.manifest["status"] == "complete" and run.baseline == "baseline"
    written = engine.build_report(outcome.run_dir, bootstrap=0)
    assert written.out_dir == outcome.run_dir / "report" and (written.out_dir / "report.html") in written.files
    assert "delta_by_condition" in written.report.tables
    one = engine.build_report(outcome.run_dir, by="sex", bootstrap=0, out_dir=tmp_path / "by-sex")  # one trait, as a string
    assert "delta_by_sex" in one.report.tables and not any(name.startswith("delta_by_s_") for name in one.report.tables)

    again = engine.run(str(grid))  # a path as text; every cell from the cache
    assert again.stats.cache_hits == cells and again.stats.calls_made == 0 and openai_server.state.requests == cells


def test_run_async_works_inside_a_running_loop_and_run_there_refuses(tmp_path, openai_server):
    grid = engine.load_grid(write_grid(tmp_path, base_url=openai_server.base_url, personas=2, questions=3))

    async def notebook_cell():
        with pytest.raises(RuntimeError, match="await engine.run_async"):
            engine.run(grid)
        return await engine.run_async(grid)

    outcome = asyncio.run(notebook_cell())
    assert outcome.complete and outcome.stats.cells_done == 3 + 2 * 3 and openai_server.state.requests == 9


def test_a_set_stop_event_ends_the_run_interrupted_with_nothing_lost(tmp_path, openai_server):
    grid = engine.load_grid(write_grid(tmp_path, base_url=openai_server.base_url, personas=2, questions=3))

    async def stopped():
        stop = asyncio.Event()
        stop.set()
        return await engine.run_async(grid, stop=stop)

    outcome = asyncio.run(stopped())
    assert outcome.stats.interrupted and not outcome.complete and outcome.tables == {}
    assert orjson.loads((outcome.run_dir / "manifest.json").read_bytes())["status"] == "interrupted"
    done = outcome.stats.cells_done
    resumed = engine.run(grid)
    assert resumed.complete and resumed.stats.cache_hits == done and resumed.stats.cells_done == 9


def test_dry_run_counts_cells_and_calls_without_calling(tmp_path, openai_server):
    grid = write_grid(tmp_path, base_url=openai_server.base_url, personas=2, questions=3)
    result = engine.dry_run(grid)
    assert [(m.model, m.cells, m.cached, m.to_call, m.calls) for m in result.models] == [("m", 9, 0, 9, 9)]
    halves = [engine.dry_run(grid, shard=f"{i}/2").models[0].cells for i in (0, 1)]  # "I/N" as engine.run takes it
    assert sum(halves) == 9 and all(halves)
    assert openai_server.state.requests == 0
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache.sqlite").exists()


@pytest.mark.slow
def test_the_readme_library_example_runs_the_example_grid(tmp_path):
    """The README's command, verbatim, in a copy of examples/ cut to 2 personas x 2 questions (33 cells)."""
    command = re.search(r'^(python -c ".*")$', _section("Use as a library"), flags=re.MULTILINE).group(1)
    code = command.removeprefix('python -c "').removesuffix('"')
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    grid = tmp_path / "examples" / "grid.toml"
    grid.write_text(grid.read_text().replace("limit = 4", "limit = 2"))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["33", str((tmp_path / "runs" / "example" / "results").resolve())]


def test_a_cache_written_before_the_restructuring_is_fully_hit_after_it(tmp_path):
    """tests/engine/data/keys_4ce1bf3.sqlite: keys_grid.toml run by the engine at commit 4ce1bf3 (before issue
    14), against the OpenAI-compatible test server on the grid's fixed port. Rerun with nothing listening there:
    every cell must come from that cache (the preflight failure is ignored for a fully cached model)."""
    data = REPO / "tests" / "engine" / "data"
    shutil.copy(data / "keys_grid.toml", tmp_path / "grid.toml")
    shutil.copy(data / "keys_4ce1bf3.sqlite", tmp_path / "cache.sqlite")
    shutil.copy(REPO / "examples" / "personas.jsonl", tmp_path / "personas.jsonl")
    with sqlite3.connect(tmp_path / "cache.sqlite") as db:
        stored = db.execute("SELECT count(*) FROM responses").fetchone()[0]
    outcome = engine.run(tmp_path / "grid.toml")
    # 51 cells, one answer each: truthfulqa 15 question orders (3 questions, every cyclic order) x (baseline + 2
    # personas) = 45, bbq 2 questions x 3 = 6; the task and categories options reach the adapter as before.
    assert stored == 51
    assert outcome.complete and outcome.stats.calls_made == 0 and outcome.stats.errors == {}
    assert outcome.stats.cache_hits == outcome.stats.cells_done == outcome.stats.cells_total == stored


def test_budget_must_be_a_positive_finite_number_and_a_shard_can_be_given_as_text(tmp_path):
    from engine._api import _budget, _shard
    from engine.shard import Shard

    for bad in (-1.0, 0.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="budget_usd: expected a positive finite number"):
            _budget(bad)
    assert _budget(2.5) == 2.5 and _budget(None) is None
    assert _shard("1/3") == Shard(1, 3) and _shard(None) is None
    with pytest.raises(ValueError, match="expected I/N"):
        _shard("3/3")
