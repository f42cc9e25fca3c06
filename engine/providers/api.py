"""What every API provider shares: keys, the lean aiohttp transport, limits, retries, preflight, parsing help.

A provider file only says how to speak its wire format (request body, response parsing, preflight lookup)
over two channels: the lean aiohttp one (orjson bodies on one session; the official SDKs cost ~1-2 ms of
CPU per call, which caps a 2-core machine at a few hundred calls/s) and the official SDK, kept for servers
or features that need it. The SDKs' own retries are switched off: the tenacity policy here (transient
errors only, bounded per cell in attempts and in time) is the one retry, so retries never stack.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import time
from abc import abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol
from urllib.parse import urlsplit

import orjson

from engine.config import ModelConfig
from engine.errors import PreflightError
from engine.limits import Limiter, estimate_prompt_tokens, shared_limiter
from engine.providers.base import Provider
from engine.providers.errors import QUOTA, HTTPStatusError, MalformedBody, body_error, classify, describe, headers_of, is_transient
from engine.request import Request, Response

_PREFLIGHT_TIMEOUT_S = 20.0
REDACTED = "[redacted]"
ERROR_CHARS = 500  # an error message kept in the cache and results: the cause, not a whole HTML page
_PIECE = 12  # a run of this many key characters anywhere in an error is masked (a key a server or library cut)
_TAIL = 8  # a key prefix at least this long ending a message is masked (a key cut by a length limit)


class Channel(Protocol):
    async def generate(self, params: dict[str, Any]) -> tuple[dict[str, Any], Mapping[str, str]]: ...

    async def lookup_model(self) -> None: ...

    async def close(self) -> None: ...


def loads(raw: bytes | str) -> Any:
    """A response body as JSON. NaN, Infinity and -Infinity, which some servers write for a logprob, are
    read as the floats they mean (Python's json reads them; orjson refuses them), so the answer is kept.

    Raises MalformedBody carrying the whole body: it is cut (after the key is redacted) where it is reported.
    """
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        try:
            return json.loads(raw)
        except (ValueError, RecursionError):
            text = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
            raise MalformedBody(f"response body is not JSON: {text}") from None


def scrub(text: str, key: str | None, limit: int = ERROR_CHARS) -> str:
    """An error message safe to store and print: the key redacted before the message is cut to `limit`.

    Redacting first means a key straddling the cut cannot survive minus its last characters. Beyond the
    whole key, any run of 12 or more key characters (a key a server or library already cut, anywhere) and a
    key prefix of 8 or more characters ending the message (cut at its end) are masked too. A key shorter
    than 8 characters cannot be told from ordinary text and is left alone.
    """
    if not key or len(key) < _TAIL:
        return text[:limit]
    text = text.replace(key, REDACTED)[: limit + len(key)]  # a piece cut off here starts past `limit`
    pieces = {key[i : i + _PIECE] for i in range(len(key) - _PIECE + 1)}
    spans: list[list[int]] = []  # merged [start, end) runs of text covered by pieces of the key
    for i in range(len(text) - _PIECE + 1):
        if text[i : i + _PIECE] in pieces:
            if spans and i <= spans[-1][1]:
                spans[-1][1] = i + _PIECE
            else:
                spans.append([i, i + _PIECE])
    for start, end in reversed(spans):
        text = text[:start] + REDACTED + text[end:]
    text = _mask_tail(text, key)
    marker = text.rfind(REDACTED, 0, limit + len(REDACTED))
    if marker != -1 and marker < limit < marker + len(REDACTED):
        limit = marker + len(REDACTED)  # never cut the marker itself: "[reda" would read as a damaged message
    return _mask_tail(text[:limit], key)


def _mask_tail(text: str, key: str) -> str:
    for n in range(len(key) - 1, _TAIL - 1, -1):
        if text.endswith(key[:n]):
            return text[:-n] + REDACTED
    return text


def normalised_url(url: str) -> str:
    """scheme://host[:port]/path, lower-cased scheme and host, default port and trailing slash dropped, no
    user info: one server, one spelling (for cache identity)."""
    parts = urlsplit(url.strip())
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    netloc = host if port is None or port == {"http": 80, "https": 443}.get(scheme) else f"{host}:{port}"
    query = f"?{parts.query}" if parts.query else ""
    return f"{scheme}://{netloc}{parts.path.rstrip('/')}{query}"


class JSONTransport:
    """One aiohttp session posting orjson bodies; a non-2xx answer raises HTTPStatusError with its headers.

    Cookies are neither kept nor sent (DummyCookieJar): the APIs authenticate by the key header alone, and the
    default jar's filtering and storing cost ~9 µs of CPU a call at C = 1000 (bench/api_throughput.py)."""

    def __init__(self, headers: Mapping[str, str], timeout_s: float) -> None:
        import aiohttp

        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
            timeout=aiohttp.ClientTimeout(total=timeout_s),
            headers={"Content-Type": "application/json", **headers},
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    async def request(self, method: str, url: str, body: dict[str, Any] | None = None) -> tuple[Any, Mapping[str, str]]:
        data = None if body is None else orjson.dumps(body)
        async with self._session.request(method, url, data=data) as resp:
            raw = await resp.read()
            if resp.status >= 400:
                # The whole body: it is cut only after the key is redacted (scrub), where it is reported.
                raise HTTPStatusError(resp.status, raw.decode(errors="replace"), resp.headers)
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
        self._out_of_quota: str | None = None  # set by the first quota failure: later calls are not made

    def identity(self) -> dict[str, Any]:
        """The model name, plus the endpoint when it is not the provider's official one: two compatible
        servers can serve different models under one name, and must not share cache entries. Keys of
        official-endpoint models are unchanged (no endpoint field)."""
        endpoint = normalised_url(self.base_url)
        if endpoint == normalised_url(self.default_base_url):
            return {"model": self.config.model}
        return {"model": self.config.model, "endpoint": endpoint}

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
        if len(batch) == 1:  # the scheduler's API workers send one request at a time
            return [await self._one(batch[0])]
        return [await self._one(req) for req in batch]

    async def _one(self, req: Request) -> Response:
        if self._out_of_quota is not None:
            # The account cannot pay: asking again only repeats the refusal (and may count against it).
            skipped = Response.failed(QUOTA, self._out_of_quota)
            skipped.attempts = 0
            return skipped
        lim = self.config.limits
        started = time.perf_counter()
        params = self._params(req)
        estimated = estimate_prompt_tokens(req) + req.decoding.max_tokens
        attempts = 1
        try:
            try:
                resp = await self._attempt(params, req, estimated)
            except Exception as first:
                if not is_transient(first) or lim.max_retries == 0:
                    raise
                # Retries only once something failed: the common path pays nothing for tenacity, not even its import.
                from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, stop_after_delay, wait_exponential_jitter

                retrying = AsyncRetrying(
                    stop=stop_after_attempt(lim.max_retries) | stop_after_delay(lim.max_retry_time_s),
                    wait=wait_exponential_jitter(initial=0.5, max=30),
                    retry=retry_if_exception(is_transient),
                    reraise=True,
                )
                async for retry in retrying:
                    with retry:
                        attempts += 1
                        resp = await self._attempt(params, req, estimated)
        except Exception as exc:
            kind = classify(exc)
            resp = Response.failed(kind, self._redact(describe(exc)))
            if kind == QUOTA and self._out_of_quota is None:
                self._out_of_quota = f"not called: model '{self.config.id}' is out of quota or credit (its first such error: {resp.error})"
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
        if (failure := body_error(body)) is not None:
            raise failure  # a 200 that reports an error: classified and retried like the status it names
        try:
            resp = self._parse(body, req, params)
        except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
            if isinstance(exc, MalformedBody):
                raise
            resp = Response.failed("bad_response", self._redact(f"unexpected response body: {type(exc).__name__}: {exc}"))
        used = None if resp.prompt_tokens is None else resp.prompt_tokens + (resp.completion_tokens or 0)
        limiter.on_success(headers, estimated, used)
        return resp

    def _redact(self, text: str) -> str:
        # Error bodies may echo what was sent; the key must never reach the cache, results or terminal.
        return scrub(text, self._key)

    async def preflight(self) -> None:
        """Look the model up (no tokens spent): a missing or wrong key or model name fails here, in seconds.

        Once the lookup answered, its channel stays open for the calls, which run on the same event loop
        (engine.runner.run_async): the first call then goes out on the lookup's connection instead of a new
        one (TCP and TLS handshakes: two round trips before the first token on a remote API). Whoever
        preflights closes the provider (aclose) when done with it; a failed lookup closes it here."""
        channel = self._channel_now()
        where = f"model '{self.config.id}' ({self.name} at {self.base_url})"
        try:
            await asyncio.wait_for(channel.lookup_model(), min(self.config.limits.timeout_s, _PREFLIGHT_TIMEOUT_S))
        except Exception as exc:
            await self.aclose()  # the run stops here, ignores this model (all cached), or (rate-limited) reopens
            kind = classify(exc)
            cause = self._redact(describe(exc))
            if kind == "rate_limit":
                return  # the key and model are fine, only busy
            if kind == QUOTA:
                raise PreflightError(f"{where}: the account of the key from {self._key_source()} is out of quota or credit ({cause})") from None
            if kind == "auth":
                raise PreflightError(f"{where}: the API key from {self._key_source()} was rejected ({cause})") from None
            if kind == "not_found":
                raise PreflightError(f"{where}: model '{self.config.model}' not found ({cause})") from None
            raise PreflightError(f"{where}: preflight call failed: {kind}: {cause}") from None

    async def aclose(self) -> None:
        if self._channel is not None:
            channel, self._channel = self._channel, None
            await channel.close()


def letter_logprobs(candidates: Iterable[Any], letters: tuple[str, ...], token: str, logprob: str) -> dict[str, float] | None:
    """Next-token candidates (objects with a `token` and a `logprob` field) -> logprob per answer letter;
    "A" and " A" pool their mass.

    Read entry by entry: an entry that is not an object, or whose logprob is null, NaN or -Infinity (no
    mass), adds nothing, and never costs the answer text. Logprobs above 0 (rounding) count as 0.
    """
    by_letter: dict[str, list[float]] = {}
    for entry in candidates if isinstance(candidates, list) else ():
        if not isinstance(entry, dict) or not isinstance(text := entry.get(token, ""), str):
            continue
        value = entry.get(logprob)
        if isinstance(value, bool) or not isinstance(value, int | float) or not -math.inf < value < math.inf:
            continue
        letter = text.strip().strip("(*").upper()
        if letter in letters:
            by_letter.setdefault(letter, []).append(min(float(value), 0.0))
    if not by_letter:
        return None
    # log-sum-exp from the largest term: exp of a very negative logprob underflows to 0, whose log is undefined.
    return {k: max(vs) + math.log(sum(math.exp(v - max(vs)) for v in vs)) for k, vs in by_letter.items()}


def entry(value: Any, *path: str | int) -> Any:
    """value[path[0]][path[1]]..., or None where a step is missing or of another shape: for optional parts."""
    for step in path:
        if isinstance(step, int):
            value = value[step] if isinstance(value, list) and -len(value) <= step < len(value) else None
        else:
            value = value.get(step) if isinstance(value, dict) else None
    return value


def count(body: Any, *path: str) -> int | None:
    """An optional token count: a non-negative integer, else None (unknown), never an error."""
    value = entry(body, *path)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None
