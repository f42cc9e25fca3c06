"""engine.testing.FakeProvider on its own: the answers tests of code built on the engine rely on."""

from __future__ import annotations

import asyncio

from engine.config import LimitsConfig, ModelConfig
from engine.request import Decoding, Request
from engine.testing import FakeProvider
from engine.testing.fake import answer

DECODING = Decoding(0.0, 4, 1.0, None)


def _request(text: str, mode: str = "letter", continuations: tuple[str, ...] = ()) -> Request:
    return Request((("user", text),), DECODING, 0, mode, ("A", "B", "C"), mode == "letter-logprob", continuations)


def test_answers_are_deterministic_letters_with_logprobs_where_asked():
    a, b = answer(_request("Q1?\nA. x\nB. y\nC. z")), answer(_request("Q1?\nA. x\nB. y\nC. z"))
    assert a.text == b.text and a.text in ("A", "B", "C") and a.letter_logprobs is None
    lp = answer(_request("Q1?\nA. x\nB. y\nC. z", "letter-logprob"))
    assert max(lp.letter_logprobs, key=lp.letter_logprobs.get) == lp.text and lp.letter_logprobs[lp.text] == -0.1
    like = answer(_request("Q1?", "likelihood", ("yes", "no")))
    assert like.text is None and len(like.option_logprobs) == 2 and like.option_tokens == (1, 1)


def test_faults_retries_and_counts():
    fake = FakeProvider(ModelConfig(id="m", provider="openai", model="t", limits=LimitsConfig(max_retries=3)), latency_s=0.01)
    out = asyncio.run(fake.complete([_request("ok?"), _request("<<flaky:2>>"), _request("<<fail:auth>>")]))
    assert [r.error_kind for r in out] == [None, None, "auth"]
    assert [r.attempts for r in out] == [1, 3, 1]  # a flaky prompt succeeds on its 3rd attempt; auth is not retried
    assert (fake.calls, fake.attempts, fake.batches, fake.max_in_flight) == (3, 5, 1, 3)
