from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from engine.testing.servers.openai_compat import OpenAICompatServer

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_PERSONAS = REPO / "examples" / "personas.jsonl"


@pytest.fixture
def openai_server():
    with OpenAICompatServer(latency=0.002) as server:
        yield server


def write_grid(
    tmp_path: Path,
    *,
    base_url: str,
    personas: int = 4,
    questions: int = 5,
    concurrency: int = 4,
    extra_model: str = "",
    conditions: str = '[[conditions]]\nname = "baseline"\n\n[[conditions]]\nname = "prose"\nformat = "prose"\n',
) -> Path:
    """A grid over the example personas and TruthfulQA, pointed at an OpenAI-compatible server."""
    shutil.copy(EXAMPLE_PERSONAS, tmp_path / "personas.jsonl")
    grid = tmp_path / "grid.toml"
    grid.write_text(
        textwrap.dedent(
            f"""
            [run]
            name = "t"
            seed = 0
            output_dir = "out/{{name}}"
            cache = "cache.sqlite"

            [personas]
            source = "personas.jsonl"
            limit = {personas}

            [[benchmarks]]
            name = "truthfulqa"
            limit = {questions}

            [[models]]
            id = "m"
            provider = "openai"
            model = "test"
            base_url = "{base_url}"
            max_tokens = 4
            {extra_model}

            [models.limits]
            concurrency = {concurrency}
            max_retries = 2
            timeout_s = 10
            """
        )
        + "\n"
        + conditions
    )
    return grid


def run_until_killed(grid: Path, until: Callable[[], bool], poll_s: float = 0.01) -> None:
    """Start `mtpa-engine run GRID` and SIGKILL it (no cleanup, as a crash) as soon as `until()` holds."""
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "run", str(grid), "--no-progress"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not until() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(poll_s)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
