"""Start-up stays lazy, and the command leaves cleanly: what `mtpa-engine run` imports, and engine.cli.entry's
quick exit (atexit run, output flushed, exit codes kept, the collector back on). Behaviour, not seconds:
bench/startup.py measures those."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from pathlib import Path

import orjson
from aiohttp import web
from click.testing import CliRunner

from engine.cli import app
from engine.testing.servers.openai_compat import OpenAICompatServer
from tests.conftest import REPO, write_grid

# Run by a fresh interpreter: an atexit hook records what the command imported and the collector's state,
# then the console script's own entry point runs the command.
_PROBE = """
import atexit, gc, sys
import orjson
out = sys.argv.pop(1)
collections = []
gc.callbacks.append(lambda phase, info: collections.append(1) if phase == "start" and "engine.cli" in sys.modules and "engine.runner" not in sys.modules else None)
def record():
    with open(out, "wb") as fh:
        fh.write(orjson.dumps({"modules": sorted(sys.modules), "gc_enabled": gc.isenabled(), "threshold": gc.get_threshold(), "start_collections": len(collections)}))
atexit.register(record)
sys.argv[0] = "mtpa-engine"
from engine.__main__ import entry
entry()
"""

# The commands `run` does not use, loaded when named (engine.cli's lazy groups), and typer, whose pydantic
# adapters cost every command ~0.07 s before the CLI moved to click.
LAZY_COMMANDS = {"engine.cache_cli", "engine.batch.cli", "engine.personas_cli"}
NOT_ON_ANY_RUN = LAZY_COMMANDS | {"typer", "pydantic", "pydantic_core"}

# Never on an API run: survey readers and the personas builder, the local/vLLM backends and the SDK
# transports, the HTML report, the live bar under --no-progress, the dry run's estimator.
NOT_ON_A_RUN = NOT_ON_ANY_RUN | {
    "pyreadstat",
    "persona_builder.build",
    "persona_builder.clean",
    "torch",
    "transformers",
    "vllm",
    "openai",
    "anthropic",
    "pandas",
    "pyarrow",
    "engine.report.html",
    "engine.report.svg",
    "rich.progress",
    "rich.live",
    "engine.dryrun",
    "numpy.ma",  # polars reads a numpy array through it: the closing tables' columns are built from lists (~10 ms)
}


def _probe(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    record = tmp_path / "probe.json"
    env = {**os.environ, "OPENAI_API_KEY": "sk-test"}
    proc = subprocess.run([sys.executable, "-c", _PROBE, str(record), *args], capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    return proc, orjson.loads(record.read_bytes())


def test_api_run_imports_only_what_it_needs_and_leaves_cleanly(tmp_path, openai_server):
    grid = write_grid(tmp_path, base_url=openai_server.base_url, personas=2, questions=2)
    proc, seen = _probe(tmp_path, "run", str(grid), "--no-progress", "--summary-json", str(tmp_path / "s.json"))
    assert proc.returncode == 0, proc.stderr
    modules = set(seen["modules"])
    assert {"aiohttp", "polars", "engine.runner", "engine.report.build"} <= modules  # the probe sees the run's imports
    assert modules & NOT_ON_A_RUN == set()
    # The quick exit ran atexit (the record above exists), flushed stdout up to its last print (the closing
    # counts line), and the summary was written.
    assert "cells 6/6  cache hits 0  model calls 6  errors 0" in proc.stdout and openai_server.state.requests == 6
    assert orjson.loads((tmp_path / "s.json").read_bytes())["model_calls"] == 6
    # The collector, off while the start-up imported, is back on, with the run's lean settings undone
    # (engine.scheduler restores its thresholds and unfreezes what it froze once the run ends).
    assert seen["gc_enabled"] is True and seen["threshold"] == list(gc.get_threshold())
    # The console script's module (engine.__main__) paused the collector before the CLI's imports: none ran from
    # there to the run's own imports (~50 did when engine.cli was imported with it on).
    assert seen["start_collections"] == 0


def test_dry_run_loads_no_http_client(tmp_path):
    grid = write_grid(tmp_path, base_url="http://127.0.0.1:9/v1", personas=2, questions=2)
    proc, seen = _probe(tmp_path, "run", str(grid), "--dry-run")
    assert proc.returncode == 0, proc.stderr
    modules = set(seen["modules"])
    assert "engine.dryrun" in modules
    assert modules & ({"aiohttp", "pyreadstat", "torch", "transformers", "engine.report.html"} | NOT_ON_ANY_RUN) == set()
    assert seen["gc_enabled"] is True


def test_help_lists_every_command_and_imports_none_of_the_lazy_ones(tmp_path):
    proc, seen = _probe(tmp_path, "--help")
    assert proc.returncode == 0, proc.stderr
    listing = proc.stdout[proc.stdout.index("Commands:"):]
    for name, first_words in [("run", "Run a grid: every persona"), ("report", "Persona-effect report:"), ("personas", "Build, inspect and summarise"),
                              ("cache", "Merge shard caches;"), ("batches", "List and cancel provider batch jobs")]:
        assert f"\n  {name} " in listing and first_words in listing, name
    assert set(seen["modules"]) & NOT_ON_ANY_RUN == set()
    # a group's own help imports that group only, and lists its commands
    proc, seen = _probe(tmp_path, "batches", "--help")
    assert proc.returncode == 0, proc.stderr
    assert "\n  list " in proc.stdout and "\n  cancel " in proc.stdout
    assert set(seen["modules"]) & LAZY_COMMANDS == {"engine.batch.cli"}


def test_quick_exit_keeps_exit_code_and_message_on_bad_input(tmp_path):
    proc, seen = _probe(tmp_path, "run", str(tmp_path / "missing.toml"))
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: {tmp_path / 'missing.toml'}: grid file not found"
    assert "engine.runner" not in seen["modules"] and "aiohttp" not in seen["modules"]


def test_in_process_app_leaves_the_collector_alone(tmp_path):
    """Only the console script pauses the collector: the app run in-process (tests, a notebook) does not."""
    frozen = gc.get_freeze_count()
    result = CliRunner().invoke(app, ["run", str(tmp_path / "missing.toml")])
    assert result.exit_code == 2
    assert gc.isenabled() and gc.get_freeze_count() == frozen


class _PortsServer(OpenAICompatServer):
    """The OpenAI-compatible test server, recording each request's path and client port (its TCP connection)."""

    def __init__(self, **state) -> None:
        super().__init__(**state)
        self.requests: list[tuple[str, int]] = []

    def app(self) -> web.Application:
        served = super().app()

        @web.middleware
        async def record(request: web.Request, handler):
            self.requests.append((request.path, request.transport.get_extra_info("peername")[1]))
            return await handler(request)

        served.middlewares.append(record)
        return served


def test_first_call_goes_out_on_the_preflight_connection(tmp_path, monkeypatch):
    """The model lookup's connection carries the calls: no second connection (on a remote API, a second TCP
    and TLS handshake) between the preflight and the first token."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with _PortsServer() as server:
        grid = write_grid(tmp_path, base_url=server.base_url, personas=1, questions=2, concurrency=1)
        result = CliRunner().invoke(app, ["run", str(grid), "--no-progress"])
    assert result.exit_code == 0, result.output
    paths = [path for path, _ in server.requests]
    assert paths == ["/v1/models"] + ["/v1/chat/completions"] * 4  # 2 baseline cells + 1 persona x 2 questions
    assert len({port for _, port in server.requests}) == 1


def test_version_prints_the_installed_version_and_exits_0():
    from importlib.metadata import version

    proc = subprocess.run([sys.executable, "-m", "engine.cli", "--version"], capture_output=True, text=True)
    assert (proc.returncode, proc.stdout) == (0, f"mtpa-engine {version('mtpa-engine')}\n")
