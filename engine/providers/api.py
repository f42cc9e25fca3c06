"""What every API provider shares: keys, the lean aiohttp transport, limits, retries, preflight, parsing help.

A provider file only says how to speak its wire format (request body, response parsing, preflight lookup)
over two channels: the lean aiohttp one (orjson bodies on one session; the official SDKs cost ~1-2 ms of
CPU per call, which caps a 2-core machine at a few hundred calls/s) and the official SDK, kept for servers
or features that need it. The SDKs' own retries are switched off: the tenacity policy here (transient
errors only, bounded per cell in attempts and in time) is the one retry, so retries never stack.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from abc import abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol

import orjson
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, stop_after_delay, wait_exponential_jitter

from engine.config import ModelConfig
from engine.limits import Limiter, estimate_prompt_tokens, shared_limiter
from engine.providers.base import PreflightError, Provider
from engine.providers.errors import HTTPStatusError, MalformedBody, classify, describe, headers_of, is_transient
from engine.request import Request, Response

_PREFLIGHT_TIMEOUT_S = 20.0
REDACTED = "[redacted]"


class Channel(Protocol):
    async def generate(self, params: dict[str, Any]) -> tuple[dict[str, Any], Mapping[str, str]]: ...

    async def lookup_model(self) -> None: ...

    async def close(self) -> None: ...


def loads(raw: bytes | str) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise MalformedBody(f"response body is not JSON: {raw[:120]!r}") from None


class JSONTransport:
    """One aiohttp session posting orjson bodies; a non-2xx answer raises HTTPStatusError with its headers."""

    def __init__(self, headers: Mapping[str, str], timeout_s: float) -> None:
        import aiohttp

        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
            timeout=aiohttp.ClientTimeout(total=timeout_s),
            headers={"Content-Type": "application/json", **headers},
        )

    async def request(self, method: str, url: str, body: dict[str, Any] | None = None) -> tuple[Any, Mapping[str, str]]:
        data = None if body is None else orjson.dumps(body)
        async with self._session.request(method, url, data=data) as resp:
            raw = await resp.read()
            if resp.status >= 400:
                raise HTTPStatusError(resp.status, raw.decode(errors="replace")[:500], resp.headers)
            return loads(raw), resp.headers

    async def close(self) -> None:
        await self._session.close()


class APIProvider(Provider):
    """A remote model behind an HTTP API: concurrent single calls under shared limits and one retry policy."""

    key_envs: ClassVar[tuple[str, ...]]  # environment variables tried when the grid names none
    default_base_url: ClassVar[str]

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self._channel: Channel | None = None
        self._limiter: Limiter | None = None
        self._key: str | None = None

    def identity(self) -> dict[str, Any]:
        return {"model": self.config.model}

    @property
    def base_url(self) -> str:
        return (self.config.base_url or self.default_base_url).rstrip("/")

    def _key_source(self) -> str:
        cfg = self.config
        if cfg.api_key_file:
            return f"key file {cfg.api_key_file}"
        return "$" + (cfg.api_key_env or " or $".join(self.key_envs))

    def _api_key(self) -> str:
        cfg = self.config
        if cfg.api_key_file:
            key = Path(cfg.api_key_file).read_text(encoding="utf-8").strip()
        else:
            key = next((os.environ[e] for e in ((cfg.api_key_env,) if cfg.api_key_env else self.key_envs) if os.environ.get(e)), "")
        if key:
            return key
        if cfg.base_url:
            return "not-needed"  # local compatible servers usually take any key
        raise PreflightError(f"model '{cfg.id}': no API key: set {self._key_source()} (or api_key_file in grid.toml)")

    @abstractmethod
    def _open(self, api_key: str) -> Channel: ...

    @abstractmethod
    def _params(self, req: Request) -> dict[str, Any]: ...

    @abstractmethod
    def _parse(self, body: dict[str, Any], req: Request, params: dict[str, Any]) -> Response:
        """The answer of one successful call; raise ContentFiltered for a refusal."""

    def _channel_now(self) -> Channel:
        if self._channel is None:
            self._key = self._api_key()
            self._channel = self._open(self._key)
        return self._channel

    def _limiter_now(self) -> Limiter:
        if self._limiter is None:
            cfg = self.config
            upstream = cfg.limits.account or cfg.model
            self._limiter = shared_limiter((self.name, self.base_url, self._key_source(), upstream), cfg.limits)
        return self._limiter

    async def complete(self, batch: Sequence[Request]) -> list[Response]:
        return [await self._one(req) for req in batch]

    async def _one(self, req: Request) -> Response:
        lim = self.config.limits
        started = time.perf_counter()
        params = self._params(req)
        estimated = estimate_prompt_tokens(req) + req.decoding.max_tokens
        attempts = 0

        async def attempt() -> Response:
            nonlocal attempts
            attempts += 1
            return await self._attempt(params, req, estimated)

        try:
            try:
                resp = await attempt()
            except Exception as first:
                if not is_transient(first) or lim.max_retries == 0:
                    raise
                # Retries only once something failed: the common path pays nothing for tenacity.
                retrying = AsyncRetrying(
                    stop=stop_after_attempt(lim.max_retries) | stop_after_delay(lim.max_retry_time_s),
                    wait=wait_exponential_jitter(initial=0.5, max=30),
                    retry=retry_if_exception(is_transient),
                    reraise=True,
                )
                async for retry in retrying:
                    with retry:
                        resp = await attempt()
        except Exception as exc:
            resp = Response.failed(classify(exc), self._redact(describe(exc)))
        resp.latency_s = time.perf_counter() - started
        resp.attempts = attempts
        return resp

    async def _attempt(self, params: dict[str, Any], req: Request, estimated: float) -> Response:
        limiter = self._limiter_now()
        sent_at = await limiter.acquire(estimated)
        try:
            body, headers = await self._channel_now().generate(params)
        except Exception as exc:
            if classify(exc) == "rate_limit":
                limiter.on_rate_limited(headers_of(exc), sent_at)
            raise
        finally:
            limiter.release()
        try:
            resp = self._parse(body, req, params)
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            resp = Response.failed("bad_response", f"unexpected response body: {type(exc).__name__}: {exc}")
        used = None if resp.prompt_tokens is None else resp.prompt_tokens + (resp.completion_tokens or 0)
        limiter.on_success(headers, estimated, used)
        return resp

    def _redact(self, text: str) -> str:
        # Error bodies may echo what was sent; the key must never reach the cache or results.
        key = self._key
        return text.replace(key, REDACTED) if key and len(key) >= 8 else text

    async def preflight(self) -> None:
        """Look the model up (no tokens spent): a missing or wrong key or model name fails here, in seconds."""
        channel = self._channel_now()
        where = f"model '{self.config.id}' ({self.name} at {self.base_url})"
        try:
            await asyncio.wait_for(channel.lookup_model(), min(self.config.limits.timeout_s, _PREFLIGHT_TIMEOUT_S))
        except Exception as exc:
            kind = classify(exc)
            cause = self._redact(describe(exc))
            if kind == "rate_limit":
                return  # the key and model are fine, only busy
            if kind == "auth":
                raise PreflightError(f"{where}: the API key from {self._key_source()} was rejected ({cause})") from None
            if kind == "not_found":
                raise PreflightError(f"{where}: model '{self.config.model}' not found ({cause})") from None
            raise PreflightError(f"{where}: preflight call failed: {kind}: {cause}") from None
        finally:
            # The run's event loop opens its own channel: an aiohttp session belongs to one loop.
            await self.aclose()

    async def aclose(self) -> None:
        if self._channel is not None:
            channel, self._channel = self._channel, None
            await channel.close()


def letter_logprobs(candidates: Iterable[tuple[str, float]], letters: tuple[str, ...]) -> dict[str, float] | None:
    """Next-token (token, logprob) candidates -> logprob per answer letter; "A" and " A" pool their mass."""
    by_letter: dict[str, list[float]] = {}
    for token, logprob in candidates:
        letter = token.strip().strip("(*").upper()
        if letter in letters:
            by_letter.setdefault(letter, []).append(logprob)
    if not by_letter:
        return None
    return {k: math.log(sum(math.exp(v) for v in vs)) for k, vs in by_letter.items()}
