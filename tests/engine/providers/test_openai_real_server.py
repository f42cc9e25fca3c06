"""The openai provider against a real OpenAI-compatible server running a real model: vLLM's API server
serving the embedded SmolLM2. Runs in the `.ci/vllm_tier` (vLLM is not in the default venv)."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.request

import orjson
import polars as pl
import pytest

from engine.config import ModelConfig
from engine.providers import create_provider
from engine.providers.weights import gguf_checkpoint, resolve
from engine.request import Decoding, Request
from tests.conftest import write_grid

pytestmark = [
    pytest.mark.vllm,
    pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vLLM not installed (run .ci/vllm_tier)"),
]


@pytest.fixture(scope="module")
def vllm_server():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    checkpoint = gguf_checkpoint(resolve("embedded"), "float32")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")}
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(checkpoint), "--served-model-name", "smollm2",
           "--dtype", "float32", "--max-model-len", "2048", "--enforce-eager", "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"vLLM server exited: {proc.stderr.read()[-2000:]}")
        try:
            if urllib.request.urlopen(f"{url}/health", timeout=2).status == 200:
                break
        except OSError:
            time.sleep(1)
    else:
        proc.kill()
        pytest.fail("vLLM server did not become healthy in 300 s")
    yield f"{url}/v1"
    os.killpg(proc.pid, 15)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)


@pytest.mark.parametrize("transport", ["aiohttp", "sdk"])
def test_provider_answers_with_letter_logprobs(vllm_server, transport):
    provider = create_provider(ModelConfig(id="m", provider="openai", model="smollm2", base_url=vllm_server, max_tokens=4, transport=transport))
    question = "What is the capital of France?\nA. Berlin\nB. Paris\nC. Rome\nRespond with a single letter (A, B, C) only."
    request = Request((("user", question),), Decoding(0.0, 4, 1.0, None), 0, "letter", ("A", "B", "C"), True)

    async def call():
        try:
            return await provider.complete([request])
        finally:
            await provider.aclose()

    (response,) = asyncio.run(call())
    assert response.ok, response.error
    assert response.text and response.prompt_tokens > 10 and response.completion_tokens >= 1
    assert response.letter_logprobs and set(response.letter_logprobs) <= {"A", "B", "C"}


def test_grid_run_against_the_real_server_then_rerun_is_free(tmp_path, vllm_server):
    grid = write_grid(tmp_path, base_url=vllm_server, personas=2, questions=3, concurrency=4)
    grid.write_text(grid.read_text().replace('model = "test"', 'model = "smollm2"'))
    cmd = [sys.executable, "-m", "engine.cli", "run", str(grid), "--no-progress", "--summary-json", str(tmp_path / "s.json")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    summary = orjson.loads((tmp_path / "s.json").read_bytes())
    assert summary["cells_total"] == 3 + 2 * 3 and summary["model_calls"] == 9 and summary["errors_total"] == 0
    results = pl.read_parquet(tmp_path / "out" / "t" / "results" / "*.parquet")
    assert (results["status"] == "ok").all() and results["p_gold"].is_not_null().all()
    assert subprocess.run(cmd, capture_output=True, text=True, timeout=300).returncode == 0
    assert orjson.loads((tmp_path / "s.json").read_bytes())["model_calls"] == 0
