"""Shared bench helpers: a server subprocess on 127.0.0.1 and grid files over synthetic personas."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def openai_server(latency: float) -> Iterator[str]:
    """The test suite's OpenAI-compatible server in its own process, so its CPU is not the engine's."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.testing.servers.openai_compat", "--port", str(port), "--latency", str(latency)], cwd=REPO
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(f"{url}/v1/models", timeout=1).read()
                break
            except OSError:
                time.sleep(0.05)
        yield f"{url}/v1"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def write_personas(path: Path, n: int) -> None:
    countries = ["India", "Germany", "United States", "Brazil", "Nigeria", "Japan"]
    with path.open("wb") as fh:
        for i in range(n):
            traits = {
                "country": {"question": "Country of interview", "answer": countries[i % 6], "category": "demographic"},
                "sex": {"question": "Sex", "answer": ["Female", "Male"][i % 2], "category": "demographic"},
                "age": {"question": "Age", "answer": str(18 + i % 70), "category": "demographic"},
            }
            fh.write(orjson.dumps({"id": f"bench-{i}", "source": "synthetic", "traits": traits}) + b"\n")


def write_grid(
    root: Path,
    base_url: str,
    personas: int,
    questions: int,
    concurrency: int,
    name: str = "bench",
    provider: str = "openai",
    model_extra: str = "",
    limits_extra: str = "",
) -> Path:
    """A baseline + prose-persona grid over synthetic personas and TruthfulQA, pointed at an API server."""
    write_personas(root / "personas.jsonl", personas)
    grid = root / f"{name}.toml"
    grid.write_text(
        textwrap.dedent(
            f"""
            [run]
            name = "{name}"
            output_dir = "runs/{{name}}"
            cache = "{name}.sqlite"

            [personas]
            source = "personas.jsonl"

            [[benchmarks]]
            name = "truthfulqa"
            limit = {questions}

            [[models]]
            id = "m"
            provider = "{provider}"
            model = "test"
            base_url = "{base_url}"
            logprobs = false
            {model_extra}

            [models.limits]
            concurrency = {concurrency}
            timeout_s = 60
            {limits_extra}

            [[conditions]]
            name = "baseline"

            [[conditions]]
            name = "prose"
            format = "prose"
            """
        )
    )
    return grid


def engine_run(grid_path: Path) -> tuple[float, float, dict]:
    """Run a grid in this process: (wall s, CPU s, run summary)."""
    import engine

    grid = engine.load_grid(grid_path)
    cpu, started = time.process_time(), time.perf_counter()
    outcome = engine.run(grid)
    return time.perf_counter() - started, time.process_time() - cpu, outcome.stats.summary()
