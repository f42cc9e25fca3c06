"""OpenAI chat completions through the official AsyncOpenAI client; any OpenAI-compatible server via base_url.

The client runs on the SDK's aiohttp transport: its default httpx transport costs milliseconds of CPU per
call, which caps throughput on small machines (bench/api_throughput.py measures both). The SDK's own
retries are off so that ours (tenacity, bounded per cell) are the only ones.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from typing import Any

from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, stop_after_delay, wait_exponential_jitter

from engine.config import ModelConfig
from engine.limits import RateLimiter
from engine.providers.base import Provider
from engine.providers.errors import classify, describe, is_transient
from engine.request import Request, Response

_MAX_TOP_LOGPROBS = 20


class OpenAIProvider(Provider):
    name = "openai"

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self._client: Any = None
        lim = config.limits
        self._limiter = RateLimiter(lim.requests_per_minute, lim.tokens_per_minute)

    def identity(self) -> dict[str, Any]:
        return {"model": self.config.model}

    def _api_key(self) -> str:
        env = self.config.api_key_env or "OPENAI_API_KEY"
        key = os.environ.get(env)
        if key:
            return key
        if self.config.base_url:
            return "not-needed"  # local OpenAI-compatible servers usually take any key
        raise RuntimeError(f"model '{self.config.id}': environment variable {env} is not set")

    def _get_client(self) -> Any:
        if self._client is None:
            from openai import AsyncOpenAI, DefaultAioHttpClient

            self._client = AsyncOpenAI(
                api_key=self._api_key(),
                base_url=self.config.base_url,
                max_retries=0,
                timeout=self.config.limits.timeout_s,
                http_client=DefaultAioHttpClient(),
            )
        return self._client

    async def complete(self, batch: Sequence[Request]) -> list[Response]:
        return [await self._one(req) for req in batch]

    async def _one(self, req: Request) -> Response:
        cfg = self.config
        started = time.perf_counter()
        attempts = 0
        params: dict[str, Any] = {
            "model": cfg.model,
            "messages": [{"role": role, "content": content} for role, content in req.messages],
            "temperature": req.decoding.temperature,
            "max_tokens": req.decoding.max_tokens,
            "top_p": req.decoding.top_p,
        }
        if req.decoding.seed is not None:
            params["seed"] = req.decoding.seed
        if req.want_logprobs and req.letters:
            params["logprobs"] = True
            params["top_logprobs"] = min(_MAX_TOP_LOGPROBS, max(5, len(req.letters)))
        estimated_tokens = req.prompt_chars / 4 + req.decoding.max_tokens
        try:
            client = self._get_client()
            retrying = AsyncRetrying(
                stop=stop_after_attempt(cfg.limits.max_retries + 1) | stop_after_delay(cfg.limits.timeout_s * 3),
                wait=wait_exponential_jitter(initial=0.5, max=30),
                retry=retry_if_exception(is_transient),
                reraise=True,
            )
            async for attempt in retrying:
                with attempt:
                    attempts += 1
                    await self._limiter.acquire(estimated_tokens)
                    completion = await client.chat.completions.create(**params)
        except Exception as exc:
            resp = Response.failed(classify(exc), describe(exc), time.perf_counter() - started)
            resp.attempts = attempts
            return resp
        choice = completion.choices[0]
        usage = completion.usage
        return Response(
            text=choice.message.content,
            letter_logprobs=_letter_logprobs(choice, req.letters) if "logprobs" in params else None,
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
            latency_s=time.perf_counter() - started,
            attempts=attempts,
        )

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()


def _letter_logprobs(choice: Any, letters: tuple[str, ...]) -> dict[str, float] | None:
    content = getattr(choice.logprobs, "content", None) if choice.logprobs else None
    if not content:
        return None
    by_letter: dict[str, list[float]] = {}
    for cand in content[0].top_logprobs or []:
        letter = cand.token.strip().strip("(*").upper()
        if letter in letters:
            by_letter.setdefault(letter, []).append(cand.logprob)
    # "A" and " A" are distinct tokens for one answer: combine their mass.
    return {k: math.log(sum(math.exp(v) for v in vs)) for k, vs in by_letter.items()}
