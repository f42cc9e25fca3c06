"""An in-process model for tests: deterministic answers, configurable latency and faults, every call counted.

It answers as the wire-exact test servers do (engine.testing.servers.common), without HTTP: the letter a
hash of the messages picks among the request's answer letters, the same letter for the same prompt every
time. Letter-logprob requests get logprobs over the letters (-0.1 on the chosen one, -3 and below on the
rest), likelihood requests one summed logprob per continuation, judge requests (free text) the letter too.

Faults are markers in the prompt text, as the servers read them:

- `<<fail:KIND>>`: the call fails with error kind KIND (e.g. `server_error`, `bad_request`) and a message
  naming the marker, on every attempt;
- `<<flaky:N>>`: the first N attempts of that prompt fail with `server_error`; the provider retries as an API
  provider does, up to the model's `limits.max_retries` retries, and reports the attempts it took;
- `<<raise>>`: `complete` raises RuntimeError for its whole batch (a provider bug: the scheduler must record it
  on every cell of the batch and go on).

Counting: `calls` (requests answered, successes and failures), `attempts` (retries included), `batches`,
`in_flight` and `max_in_flight` (concurrent requests, for the concurrency bound), and `prompts` (the text of
every request, in arrival order).

Not registered as a grid provider: a test builds the plan from a grid naming any provider and hands the
scheduler `{model_id: FakeProvider(model_config)}`. Its cache keys are its own (provider name "fake").
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

import orjson

from engine.config import ModelConfig
from engine.providers.base import Provider
from engine.request import Request, Response

_FAIL = re.compile(r"<<fail:(\w+)>>")
_FLAKY = re.compile(r"<<flaky:(\d+)>>")
RAISE_MARKER = "<<raise>>"


def _digest(request: Request) -> int:
    return int(hashlib.sha256(orjson.dumps(request.messages)).hexdigest(), 16)


def answer(request: Request) -> Response:
    """The fake's deterministic answer to one request (no faults, no latency)."""
    text = " ".join(content for _, content in request.messages)
    letters = request.letters or tuple(c for c in "ABCDEFGHIJKLM" if f"\n{c}. " in text) or ("A",)
    digest = _digest(request)
    letter = letters[digest % len(letters)]
    logprobs = {c: (-0.1 if c == letter else -3.0 - i) for i, c in enumerate(letters)} if request.want_logprobs else None
    options = tuple(-float(1 + (digest >> (8 * i)) % 7) for i in range(len(request.continuations))) if request.continuations else None
    return Response(
        text=None if request.mode == "likelihood" else letter,
        letter_logprobs=logprobs,
        option_logprobs=options,
        option_tokens=tuple(max(1, len(c) // 4) for c in request.continuations) if request.continuations else None,
        prompt_tokens=len(text) // 4,
        completion_tokens=0 if request.mode == "likelihood" else 1,
    )


class FakeProvider(Provider):
    """A model answering in process. `latency_s` is slept per request; `batch_size` > 1 makes it a batching
    backend (one `complete` call per batch, as the local backends are driven). Raises nothing from `complete`
    except on the `<<raise>>` marker."""

    name = "fake"

    def __init__(self, config: ModelConfig, *, latency_s: float = 0.0, batch_size: int = 1) -> None:
        super().__init__(config)
        self.latency_s = latency_s
        self._batch_size = batch_size
        self.calls = 0
        self.attempts = 0
        self.batches = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.prompts: list[str] = []
        self._seen: Counter[int] = Counter()  # attempts per prompt, for <<flaky:N>>

    @property
    def batch_size(self) -> int:
        return self._batch_size

    def identity(self) -> dict[str, Any]:
        return {"model": self.config.model}

    async def complete(self, batch: Sequence[Request]) -> list[Response]:
        self.batches += 1
        texts = [" ".join(content for _, content in r.messages) for r in batch]
        if any(RAISE_MARKER in t for t in texts):
            raise RuntimeError(f"fake provider bug on a batch of {len(batch)}")
        return list(await asyncio.gather(*(self._one(r, t) for r, t in zip(batch, texts))))

    async def _one(self, request: Request, text: str) -> Response:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.prompts.append(text)
        try:
            if self.latency_s:
                await asyncio.sleep(self.latency_s)
            attempts = 0
            for _ in range(1 + self.config.limits.max_retries):
                attempts += 1
                self._seen[_digest(request)] += 1
                response = self._attempt(request, text)
                if response.ok or response.error_kind != "server_error":  # only transient kinds are retried
                    break
            response.attempts = attempts
            response.latency_s = self.latency_s
            self.calls += 1
            self.attempts += attempts
            return response
        finally:
            self.in_flight -= 1

    def _attempt(self, request: Request, text: str) -> Response:
        if m := _FAIL.search(text):
            return Response.failed(m.group(1), f"injected failure {m.group(0)}")
        if (m := _FLAKY.search(text)) and self._seen[_digest(request)] <= int(m.group(1)):
            return Response.failed("server_error", f"injected transient failure {m.group(0)}")
        return answer(request)
