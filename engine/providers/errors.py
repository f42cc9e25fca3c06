"""Classify backend failures into a few kinds: what to retry, and what a run's error table reports."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from engine.errors import ContentFiltered, HTTPStatusError, MalformedBody


TRANSIENT = frozenset({"rate_limit", "server_error", "timeout", "connection"})
# Out of credit or quota, billing off: permanent for this run, and for every other call of the account too.
QUOTA = "quota"

_BY_STATUS = {400: "bad_request", 401: "auth", 402: QUOTA, 403: "auth", 404: "not_found", 408: "timeout", 409: "server_error", 413: "bad_request", 422: "bad_request", 429: "rate_limit"}
# 400 bodies that say the prompt or answer was blocked (OpenAI/Azure, Google)
_FILTER_WORDS = ("content_filter", "content_policy", "safety")
# Bodies of 400/403/429 answers that say the account cannot pay, not that it is busy. OpenAI: error code
# insufficient_quota / billing_hard_limit_reached / billing_not_active (a 429); Anthropic: billing_error (402)
# and "Your credit balance is too low" (a 400); Google: BILLING_DISABLED (403) and a daily quota ("PerDay"
# quota ids) or a quota of 0 ("limit: 0", a model the plan does not include) on a 429 RESOURCE_EXHAUSTED.
# A per-minute Google quota stays a rate limit: it clears within the minute.
_QUOTA_WORDS = (
    "insufficient_quota",
    "billing_hard_limit",
    "billing_not_active",
    "billing_error",
    "credit balance is too low",
    "billing_disabled",
    "perday",
    "limit: 0",
)


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
        # The SDKs put the error's message in str() and its type and code in .body (OpenAI, Anthropic) or
        # .details (google-genai): classify from all of it.
        text = " ".join(str(part) for part in (exc, getattr(exc, "body", None), getattr(exc, "details", None)) if part).lower()
        if status in (400, 403, 429) and any(w in text for w in _QUOTA_WORDS):
            return QUOTA
        if status == 400 and any(w in text for w in _FILTER_WORDS):
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


# The words of an error object's type or status that say which HTTP status it stands for, when its code is
# not one: OpenAI-compatible servers (vLLM, OpenRouter) and Anthropic type them, Google names a status.
_STATUS_WORDS = (
    ("quota", 429),
    ("billing", 402),
    ("rate_limit", 429),
    ("resource_exhausted", 429),
    ("overloaded", 529),
    ("unavailable", 503),
    ("timeout", 504),
    ("deadline", 504),
    ("authentication", 401),
    ("permission", 403),
    ("not_found", 404),
    ("invalid", 400),
)


def body_error(body: Any) -> HTTPStatusError | None:
    """The failure a 2xx body reports as an `error` object instead of an answer, or None.

    Its status is the object's numeric code when that is an HTTP status (OpenAI-compatible servers, Google),
    else read from its type or status words (see _STATUS_WORDS), else 500: the server said it failed, so
    the bounded retries apply. The provider's own message is kept for the error table.
    """
    if not isinstance(body, dict) or not (error := body.get("error")) or not isinstance(error, dict | str):
        return None
    if isinstance(error, str):
        return HTTPStatusError(500, f"a 200 answer carrying an error: {error}")
    code = error.get("code")
    words = " ".join(str(error.get(k) or "") for k in ("type", "status", "code")).lower()
    status = code if isinstance(code, int) and not isinstance(code, bool) and 400 <= code <= 599 else None
    if status is None:
        status = next((st for word, st in _STATUS_WORDS if word in words), 500)
    message = error.get("message") or words.strip() or "no message"
    return HTTPStatusError(status, f"a 200 answer carrying an error object ({words.strip() or 'untyped'}): {message}")
