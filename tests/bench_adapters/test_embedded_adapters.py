"""Every adapter end to end on the embedded model, and the local backend's scoring modes against references."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import textwrap

import orjson
import polars as pl
import pytest

from bench_adapters.metrics import benchmark_metrics
from engine.config import LimitsConfig, ModelConfig
from engine.providers import create_provider, hf_scoring, weights
from engine.request import Decoding, Request
from tests.bench_adapters.test_normad import write_fixture
from tests.conftest import EXAMPLE_PERSONAS

pytestmark = pytest.mark.slow

GREEDY = Decoding(0.0, 1, 1.0, None)
QUESTION = "What is the capital of France?\nA. Berlin\nB. Paris\nC. Rome\nRespond with a single letter (A, B, C) only."


@pytest.fixture(scope="module")
def provider():
    return create_provider(ModelConfig(id="smol", provider="local", model="embedded", max_tokens=1, limits=LimitsConfig(batch_size=8)))


def test_letter_logprob_matches_the_first_generated_token(provider):
    letters = ("A", "B", "C")
    (gen,) = asyncio.run(provider.complete([Request((("user", QUESTION),), GREEDY, 0, "letter", letters, True)]))
    scored = asyncio.run(
        provider.complete(
            [
                Request((("user", QUESTION),), GREEDY, 0, "letter-logprob", letters, True),
                Request((("system", "You answer as a sailor."), ("user", QUESTION)), GREEDY, 0, "letter-logprob", letters, True),
            ]
        )
    )
    assert scored[0].text is None and scored[0].completion_tokens == 0
    for letter in letters:  # left padding beside a longer prompt changes nothing
        assert scored[0].letter_logprobs[letter] == pytest.approx(gen.letter_logprobs[letter], abs=1e-3)
    assert scored[0].letter_logprobs != scored[1].letter_logprobs


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_likelihood_batched_equals_one_unpadded_pass_per_option(provider, attention):
    """Each question's context is computed once with every option packed after it (a 4D mask keeps options
    apart); the scores must equal one plain forward pass per (context, option), under either attention kernel."""
    import torch

    first = Request((("user", "What is the capital of France?"),), GREEDY, 0, "likelihood", (), False, ("Paris.", "Berlin.", "It is Paris, of course."))
    second = Request((("system", "You are a geography teacher."), ("user", "Capital of Germany?")), GREEDY, 0, "likelihood", (), False, ("Berlin", "Bonn"))
    # One option alone, one empty option, and a context ending in a space (it moves onto the options).
    third = Request((("user", "Say a colour."),), GREEDY, 0, "likelihood", (), False, (" blue",))
    asyncio.run(provider.complete([first]))  # loads the weights
    tok, model = provider._tokenizer, provider._model
    kernel = model.config._attn_implementation
    model.set_attn_implementation(attention)
    try:
        batched = asyncio.run(provider.complete([first, second, third]))
        spaced = hf_scoring.option_logprobs(model, tok, [("Q: sky colour? A: ", ["blue", ""])], provider._device)[0]
    finally:
        model.set_attn_implementation(kernel)
    cases = [(weights.chat_prompt(tok, r.messages), r.continuations, list(zip(b.option_logprobs, b.option_tokens))) for r, b in zip((first, second, third), batched)]
    cases.append(("Q: sky colour? A: ", ("blue", ""), spaced))
    for context, options, got in cases:
        assert len(got) == len(options)
        for cont, (lp, n) in zip(options, got):
            ctx_ids, cont_ids = hf_scoring.split_pair(tok, context, cont)
            ids, start = ctx_ids + cont_ids, len(ctx_ids)
            with torch.inference_mode():
                logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), dim=-1)
            want = sum(float(logp[t - 1, ids[t]]) for t in range(start, len(ids)))
            assert n == len(ids) - start and lp == pytest.approx(want, abs=1e-3)
    assert batched[0].option_logprobs[0] > batched[0].option_logprobs[1]  # Paris over Berlin


def _run_grid(tmp_path, grid: str) -> tuple[list[str], dict]:
    """Write a grid (plus a baseline and a prose-persona condition), run it, return the command and its summary."""
    (tmp_path / "grid.toml").write_text(grid + '\n[[conditions]]\nname = "baseline"\n\n[[conditions]]\nname = "prose"\nformat = "prose"\n')
    cmd = [sys.executable, "-m", "engine.cli", "run", str(tmp_path / "grid.toml"), "--no-progress", "--summary-json", str(tmp_path / "s.json")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return cmd, orjson.loads((tmp_path / "s.json").read_bytes())


def test_every_adapter_runs_end_to_end(tmp_path):
    shutil.copy(EXAMPLE_PERSONAS, tmp_path / "personas.jsonl")
    write_fixture(tmp_path / "normad.csv")
    (tmp_path / "mine.jsonl").write_bytes(
        b"\n".join(orjson.dumps({"q": q, "opts": o, "a": a}) for q, o, a in [("2 + 2 = ?", ["3", "4"], 1), ("Sky colour?", ["blue", "green"], 0)])
    )
    cmd, summary = _run_grid(
        tmp_path,
        textwrap.dedent(
            """
            [run]
            name = "all"
            output_dir = "runs/{name}"

            [personas]
            source = "personas.jsonl"
            limit = 1

            [[benchmarks]]
            name = "truthfulqa"
            task = "mc2"
            mode = "likelihood"
            limit = 2

            [[benchmarks]]
            name = "bbq"
            mode = "letter-logprob"
            limit = 3

            [[benchmarks]]
            name = "crows_pairs"
            mode = "likelihood"
            limit = 2

            [[benchmarks]]
            name = "normad"
            path = "normad.csv"
            context = "country"

            [[benchmarks]]
            name = "dataset"
            path = "mine.jsonl"
            question_field = "q"
            options_field = "opts"
            gold_field = "a"
            mode = "letter-logprob"

            [[models]]
            id = "smol"
            provider = "local"
            model = "embedded"
            max_tokens = 4
            """
        ),
    )
    assert summary["cells_total"] == 2 * (2 + 3 + 2 + 3 + 2) and summary["errors_total"] == 0
    run = tmp_path / "runs" / "all"
    results = pl.read_parquet(run / "results" / "*.parquet")
    assert results["status"].unique().to_list() == ["ok"]
    per = {b: results.filter(pl.col("benchmark") == b) for b in results["benchmark"].unique()}
    mc2 = per["truthfulqa"]
    assert mc2["score"].is_between(0, 1).all() and (mc2["score"] == mc2["p_gold"]).all() and not mc2["invalid"].any()
    assert per["bbq"]["answer"].is_in(["A", "B", "C"]).all() and per["bbq"]["p_gold"].is_not_null().all()
    assert per["crows_pairs"]["response"].is_null().all() and per["crows_pairs"]["correct"].is_not_null().all()
    assert per["normad"]["response"].str.len_chars().min() > 0
    metrics = benchmark_metrics(results)
    assert set(metrics) == {"truthfulqa", "bbq", "crows_pairs", "normad", "dataset"}
    bbq = metrics["bbq"]
    assert {"acc_ambig", "acc_disambig", "s_dis", "s_amb"} <= set(bbq.columns) and "all" in bbq["category"].to_list()
    assert metrics["crows_pairs"].filter(pl.col("category") == "all")["pct_more"].is_between(0, 100).all()
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0 and orjson.loads((tmp_path / "s.json").read_bytes())["model_calls"] == 0


def test_free_text_answers_judged_by_the_embedded_model(tmp_path):
    shutil.copy(EXAMPLE_PERSONAS, tmp_path / "personas.jsonl")
    (tmp_path / "free.jsonl").write_bytes(orjson.dumps({"q": "What colour is a clear daytime sky?", "ref": "Blue."}))
    cmd, summary = _run_grid(
        tmp_path,
        textwrap.dedent(
            """
            [run]
            name = "judged"

            [personas]
            source = "personas.jsonl"
            limit = 1

            [[benchmarks]]
            name = "truthfulqa"
            mode = "judge"
            limit = 2
            max_tokens = 24

            [[benchmarks]]
            name = "dataset"
            path = "free.jsonl"
            mode = "judge"
            question_field = "q"
            reference_fields = ["ref"]
            max_tokens = 16

            [[models]]
            id = "smol"
            provider = "local"
            model = "embedded"

            [judge]
            mode = "letter-logprob"
            [judge.model]
            id = "smol-judge"
            provider = "local"
            model = "embedded"
            """
        ),
    )
    assert summary["cells_total"] == 2 * (2 + 1) and summary["errors_total"] == 0
    results = pl.read_parquet(tmp_path / "runs" / "judged" / "results" / "*.parquet")
    assert (results["status"] == "ok").all() and results["response"].str.len_chars().min() > 0
    # letter-logprob verdicts: no text, never invalid, the score is the expected rubric value
    assert results["verdict"].is_null().all() and not results["invalid"].any() and results["judge_key"].is_not_null().all()
    assert results["score"].is_between(0, 1).all() and results["p_gold"].is_not_null().all()
    truthful = results.filter(pl.col("benchmark") == "truthfulqa")
    assert (truthful["score"] - truthful["p_gold"]).abs().max() < 1e-9  # a 1/0 rubric: expected value = pass mass
    assert results.filter(pl.col("benchmark") == "dataset")["answer"].is_in(list("ABCDE")).all()
    metrics = benchmark_metrics(results)
    assert metrics["truthfulqa"].filter(pl.col("category") == "all")["accuracy"].is_between(0, 1).all()
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0 and orjson.loads((tmp_path / "s.json").read_bytes())["model_calls"] == 0
