"""Classify backend failures into a few kinds: what to retry, and what a run's error table reports."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping


class HTTPStatusError(Exception):
    """A non-2xx answer from a provider, for transports that do not raise their own typed errors."""

    def __init__(self, status_code: int, body: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(body)
        self.status_code = status_code
        self.headers = headers or {}


class MalformedBody(Exception):
    """A 2xx answer whose body is not the JSON it should be: a truncated or garbled reply, worth one more try."""


class ContentFiltered(Exception):
    """The provider refused or blocked the answer; asking again would only pay for the same refusal."""


TRANSIENT = frozenset({"rate_limit", "server_error", "timeout", "connection"})

_BY_STATUS = {400: "bad_request", 401: "auth", 403: "auth", 404: "not_found", 408: "timeout", 409: "server_error", 413: "bad_request", 422: "bad_request", 429: "rate_limit"}
# 400 bodies that say the prompt or answer was blocked (OpenAI/Azure, Google)
_FILTER_WORDS = ("content_filter", "content_policy", "safety")


def status_of(exc: BaseException) -> int | None:
    for owner in (exc, getattr(exc, "response", None)):
        status = getattr(owner, "status_code", None)
        if isinstance(status, int):
            return status
    return None


def classify(exc: BaseException) -> str:
    if isinstance(exc, ContentFiltered):
        return "content_filter"
    if isinstance(exc, MalformedBody):
        return "bad_response"
    status = status_of(exc)
    if status is not None:
        if status == 400 and any(w in str(exc).lower() for w in _FILTER_WORDS):
            return "content_filter"
        return _BY_STATUS.get(status, "server_error" if status >= 500 else "bad_request")
    # By class names along the MRO: aiohttp's ServerDisconnectedError, httpx's ReadTimeout and the SDKs'
    # APIConnectionError/APITimeoutError all say what they are there, without importing every library.
    names = " ".join(k.__name__.lower() for k in type(exc).__mro__)
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)) or "timeout" in names:
        return "timeout"
    if isinstance(exc, ConnectionError) or any(w in names for w in ("connection", "disconnected", "payload")):
        return "connection"
    if "decode" in names:
        return "bad_response"
    return "exception"


def headers_of(exc: BaseException) -> Mapping[str, str]:
    """Response headers carried by an HTTP error (ours or an SDK's), for Retry-After and rate-limit hints."""
    headers = getattr(exc, "headers", None)
    if headers is None:
        headers = getattr(getattr(exc, "response", None), "headers", None)
    return headers if isinstance(headers, Mapping) else {}


def describe(exc: BaseException) -> str:
    status = status_of(exc)
    text = str(exc) or type(exc).__name__
    return f"HTTP {status}: {text}" if status else f"{type(exc).__name__}: {text}"


def is_transient(exc: BaseException) -> bool:
    # A body that is not JSON is retried; valid JSON of the wrong shape ("bad_response" too) would only repeat.
    return isinstance(exc, MalformedBody) or classify(exc) in TRANSIENT
