"""Classify backend failures into a few kinds: what to retry, and what a run's error table reports."""

from __future__ import annotations

import asyncio

class HTTPStatusError(Exception):
    """A non-2xx answer from a provider, for transports that do not raise their own typed errors."""

    def __init__(self, status_code: int, body: str, retry_after: str | None = None) -> None:
        super().__init__(body)
        self.status_code = status_code
        self.retry_after = retry_after


TRANSIENT = frozenset({"rate_limit", "server_error", "timeout", "connection"})

_BY_STATUS = {400: "bad_request", 401: "auth", 403: "auth", 404: "not_found", 408: "timeout", 409: "server_error", 413: "bad_request", 422: "bad_request", 429: "rate_limit"}


def classify(exc: BaseException) -> str:
    status = getattr(exc, "status_code", None) or getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(status, int):
        return _BY_STATUS.get(status, "server_error" if status >= 500 else "bad_request")
    name = type(exc).__name__.lower()
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)) or "timeout" in name:
        return "timeout"
    if "connection" in name or isinstance(exc, ConnectionError):
        return "connection"
    if "validation" in name or "decode" in name:
        return "bad_response"
    return "exception"


def describe(exc: BaseException) -> str:
    status = getattr(exc, "status_code", None)
    text = str(exc) or type(exc).__name__
    return f"HTTP {status}: {text}" if status else f"{type(exc).__name__}: {text}"


def is_transient(exc: BaseException) -> bool:
    return classify(exc) in TRANSIENT
