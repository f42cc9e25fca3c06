"""OpenAI chat completions; any OpenAI-compatible server (vLLM, llama.cpp, Together, ...) via base_url.

Two transports speak the same wire format and share one response parser:
- "aiohttp" (default): one aiohttp session posting orjson bodies. The official SDK costs ~1.7 ms of CPU per
  call even on its aiohttp transport (bench/api_throughput.py measures it), which caps a 2-core machine at a
  few hundred calls/s; this path costs a fraction of that.
- "sdk": the official AsyncOpenAI client on its aiohttp transport, for servers or features that need it.
Neither retries on its own: our tenacity policy (transient errors only, bounded per cell) is the one retry.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from typing import Any

import orjson
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, stop_after_delay, wait_exponential_jitter

from engine.config import ModelConfig
from engine.limits import RateLimiter
from engine.providers.base import Provider
from engine.providers.errors import HTTPStatusError, classify, describe, is_transient
from engine.request import Request, Response

_MAX_TOP_LOGPROBS = 20
DEFAULT_BASE_URL = "https://api.openai.com/v1"


class _AiohttpTransport:
    def __init__(self, base_url: str, api_key: str, timeout_s: float) -> None:
        import aiohttp

        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        )
        self._url = base_url.rstrip("/") + "/chat/completions"
        self._headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}

    async def create(self, params: dict[str, Any]) -> dict[str, Any]:
        async with self._session.post(self._url, data=orjson.dumps(params), headers=self._headers) as resp:
            body = await resp.read()
            if resp.status >= 400:
                raise HTTPStatusError(resp.status, body.decode(errors="replace")[:500], resp.headers.get("retry-after"))
            return orjson.loads(body)

    async def close(self) -> None:
        await self._session.close()


class _SDKTransport:
    def __init__(self, base_url: str | None, api_key: str, timeout_s: float) -> None:
        from openai import AsyncOpenAI, DefaultAioHttpClient

        self._client = AsyncOpenAI(api_key=api_key, base_url=base_url, max_retries=0, timeout=timeout_s, http_client=DefaultAioHttpClient())

    async def create(self, params: dict[str, Any]) -> dict[str, Any]:
        # The raw body, parsed once by orjson, instead of the SDK's pydantic models: same data, less CPU.
        raw = await self._client.chat.completions.with_raw_response.create(**params)
        return orjson.loads(raw.http_response.content)

    async def close(self) -> None:
        await self._client.close()


class OpenAIProvider(Provider):
    name = "openai"

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self._transport: _AiohttpTransport | _SDKTransport | None = None
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

    def _get_transport(self) -> _AiohttpTransport | _SDKTransport:
        if self._transport is None:
            cfg = self.config
            if cfg.transport == "sdk":
                self._transport = _SDKTransport(cfg.base_url, self._api_key(), cfg.limits.timeout_s)
            else:
                self._transport = _AiohttpTransport(cfg.base_url or DEFAULT_BASE_URL, self._api_key(), cfg.limits.timeout_s)
        return self._transport

    async def complete(self, batch: Sequence[Request]) -> list[Response]:
        return [await self._one(req) for req in batch]

    def _params(self, req: Request) -> dict[str, Any]:
        params: dict[str, Any] = {
            "model": self.config.model,
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
        return params

    async def _attempt(self, params: dict[str, Any], estimated_tokens: float) -> dict[str, Any]:
        await self._limiter.acquire(estimated_tokens)
        return await self._get_transport().create(params)

    async def _one(self, req: Request) -> Response:
        lim = self.config.limits
        started = time.perf_counter()
        params = self._params(req)
        estimated_tokens = req.prompt_chars / 4 + req.decoding.max_tokens
        attempts = 1
        try:
            try:
                body = await self._attempt(params, estimated_tokens)
            except Exception as first:
                if not is_transient(first) or lim.max_retries == 0:
                    raise
                # Retries only once something failed: the common path pays nothing for tenacity.
                retrying = AsyncRetrying(
                    stop=stop_after_attempt(lim.max_retries) | stop_after_delay(lim.timeout_s * 3),
                    wait=wait_exponential_jitter(initial=0.5, max=30),
                    retry=retry_if_exception(is_transient),
                    reraise=True,
                )
                async for attempt in retrying:
                    with attempt:
                        attempts += 1
                        body = await self._attempt(params, estimated_tokens)
        except Exception as exc:
            resp = Response.failed(classify(exc), describe(exc), time.perf_counter() - started)
            resp.attempts = attempts
            return resp
        try:
            return _parse(body, req, "logprobs" in params, time.perf_counter() - started, attempts)
        except (KeyError, IndexError, TypeError) as exc:
            return Response.failed("bad_response", f"unexpected response body: {type(exc).__name__}: {exc}")

    async def aclose(self) -> None:
        if self._transport is not None:
            await self._transport.close()


def _parse(body: dict[str, Any], req: Request, logprobs: bool, latency_s: float, attempts: int) -> Response:
    choice = body["choices"][0]
    usage = body.get("usage") or {}
    return Response(
        text=choice["message"].get("content"),
        letter_logprobs=_letter_logprobs(choice, req.letters) if logprobs else None,
        prompt_tokens=usage.get("prompt_tokens"),
        completion_tokens=usage.get("completion_tokens"),
        latency_s=latency_s,
        attempts=attempts,
    )


def _letter_logprobs(choice: dict[str, Any], letters: tuple[str, ...]) -> dict[str, float] | None:
    content = (choice.get("logprobs") or {}).get("content")
    if not content:
        return None
    by_letter: dict[str, list[float]] = {}
    for cand in content[0].get("top_logprobs") or []:
        letter = cand["token"].strip().strip("(*").upper()
        if letter in letters:
            by_letter.setdefault(letter, []).append(cand["logprob"])
    # "A" and " A" are distinct tokens for one answer: combine their mass.
    return {k: math.log(sum(math.exp(v) for v in vs)) for k, vs in by_letter.items()}
