"""Client-side limits for API providers: concurrency, requests/min and tokens/min, adaptive on 429.

One `Limiter` per upstream: all grid models that call the same endpoint with the same key and the same
provider model (or that name the same `limits.account`) share it, because the provider counts them together.

Rates are paced, not windowed: each request reserves the next free slot of a steady schedule (GCRA), so a
server that counts over any window length (a minute, ten seconds, one second) never sees a burst above the
rate. A sliding one-minute window on our side (asyncio-throttle's model) would send a whole minute's budget
in the first second and trip servers that enforce the limit over shorter windows. Pacing runs at
`HEADROOM` of the limit so jitter in arrival order stays under it.

Adaptive (AIMD): a 429 halves the concurrency window once per congestion event and pauses every request
until Retry-After / the rate-limit reset; each success grows the window back by one. Rate-limit headers
(OpenAI `x-ratelimit-*`, Anthropic `anthropic-ratelimit-*`) set the pace when they report a tighter limit
than the configured one, and `remaining: 0` pauses until the reported reset.
"""

from __future__ import annotations

import asyncio
import re
import time
import weakref
from collections import deque
from collections.abc import Hashable, Mapping
from datetime import datetime
from email.utils import parsedate_to_datetime

from engine.config import LimitsConfig
from engine.request import Request

HEADROOM = 0.98
_DEFAULT_PAUSE_S = 1.0  # a 429 without any reset hint
_MAX_PAUSE_S = 120.0  # a bogus reset far in the future must not stall a run for hours
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
# (limit, remaining, reset) header names per dimension, OpenAI then Anthropic
_REQUEST_HEADERS = (
    ("x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests"),
    ("anthropic-ratelimit-requests-limit", "anthropic-ratelimit-requests-remaining", "anthropic-ratelimit-requests-reset"),
)
_TOKEN_HEADERS = (
    ("x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens"),
    ("anthropic-ratelimit-tokens-limit", "anthropic-ratelimit-tokens-remaining", "anthropic-ratelimit-tokens-reset"),
)


class Pacer:
    """Spaces units (requests or tokens) at a steady rate: each reservation takes the next free slot."""

    def __init__(self, per_minute: float) -> None:
        self.per_minute = per_minute
        self._seconds_per_unit = 60.0 / (per_minute * HEADROOM)
        self._next = 0.0

    def reserve(self, units: float, now: float) -> float:
        """Book `units` and return how long to wait before sending them."""
        start = max(now, self._next)
        self._next = start + units * self._seconds_per_unit
        return start - now

    def correct(self, units: float) -> None:
        """Charge (positive) or refund (negative) units once the real usage is known."""
        self._next += units * self._seconds_per_unit

    def hold_until(self, t: float) -> None:
        self._next = max(self._next, t)


class Limiter:
    def __init__(self, limits: LimitsConfig) -> None:
        self.ceiling = limits.concurrency
        self.window = float(limits.concurrency)
        self.in_flight = 0
        self.requests = Pacer(limits.requests_per_minute) if limits.requests_per_minute else None
        self.tokens = Pacer(limits.tokens_per_minute) if limits.tokens_per_minute else None
        self.paused_until = 0.0
        self.rate_limited = 0  # 429s seen
        self.cuts = 0  # times the window was halved
        self._last_cut = float("-inf")
        self._waiters: deque[asyncio.Future[None]] = deque()

    def tighten(self, limits: LimitsConfig) -> None:
        """Another model joins this upstream: the strictest setting of each limit wins."""
        self.ceiling = min(self.ceiling, limits.concurrency)
        self.window = min(self.window, float(self.ceiling))
        for attr, per_minute in (("requests", limits.requests_per_minute), ("tokens", limits.tokens_per_minute)):
            current = getattr(self, attr)
            if per_minute and (current is None or per_minute < current.per_minute):
                setattr(self, attr, Pacer(per_minute))

    async def acquire(self, tokens: float) -> float:
        """Wait for a concurrency slot, the request and token pace and any 429 pause; return the send time.

        The caller must call `release()` once the request is answered (or failed)."""
        if self.requests is None and self.tokens is None and not self._waiters and self.in_flight < int(self.window):
            now = time.monotonic()
            if self.paused_until <= now:  # the common case, without a coroutine per check (~1 µs a call at C = 1000)
                self.in_flight += 1
                return now
        await self._wait_pause()
        if self.in_flight >= int(self.window) or self._waiters:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self.release()  # the slot was handed over just as we were cancelled
                raise
        else:
            self.in_flight += 1
        try:
            now = time.monotonic()
            delay = 0.0
            if self.requests is not None:
                delay = self.requests.reserve(1, now)
            if self.tokens is not None:
                delay = max(delay, self.tokens.reserve(min(tokens, self.tokens.per_minute), now))
            if delay > 0:
                await asyncio.sleep(delay)
            await self._wait_pause()
        except BaseException:
            self.release()
            raise
        return time.monotonic()

    def release(self) -> None:
        self.in_flight -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.in_flight < int(self.window):
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.in_flight += 1
                waiter.set_result(None)

    async def _wait_pause(self) -> None:
        while (delay := self.paused_until - time.monotonic()) > 0:
            await asyncio.sleep(delay)

    def on_success(self, headers: Mapping[str, str], estimated_tokens: float, used_tokens: int | None) -> None:
        if self.window < self.ceiling:
            self.window = min(float(self.ceiling), self.window + 1.0)
            self._wake()
        if self.tokens is not None and used_tokens is not None:
            self.tokens.correct(used_tokens - min(estimated_tokens, self.tokens.per_minute))
        if headers:
            self._learn(headers)

    def on_rate_limited(self, headers: Mapping[str, str], sent_at: float) -> None:
        self.rate_limited += 1
        now = time.monotonic()
        pause = retry_after_s(headers)
        self._pause(now + (_DEFAULT_PAUSE_S if pause is None else pause))
        # Requests sent before the last cut were already in flight when it happened: their 429s report the
        # same congestion and must not halve the window again.
        if sent_at >= self._last_cut:
            self.window = max(1.0, self.window / 2)
            self._last_cut = now
            self.cuts += 1
        self._learn(headers)

    def _pause(self, until: float) -> None:
        until = min(until, time.monotonic() + _MAX_PAUSE_S)
        self.paused_until = max(self.paused_until, until)
        for pacer in (self.requests, self.tokens):
            if pacer is not None:
                pacer.hold_until(self.paused_until)

    def _learn(self, headers: Mapping[str, str]) -> None:
        for attr, names in (("requests", _REQUEST_HEADERS), ("tokens", _TOKEN_HEADERS)):
            for limit_name, remaining_name, reset_name in names:
                limit = _number(headers.get(limit_name))
                if limit is None:
                    continue
                current = getattr(self, attr)
                if limit > 0 and (current is None or limit < current.per_minute):
                    setattr(self, attr, Pacer(limit))
                if _number(headers.get(remaining_name)) == 0:
                    reset = reset_in_s(headers.get(reset_name))
                    if reset is not None:
                        self._pause(time.monotonic() + reset)


def estimate_prompt_tokens(request: Request) -> float:
    # ~4 characters per token for English, plus the few tokens each message's framing takes.
    return request.prompt_chars / 4 + 4 * len(request.messages)


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def reset_in_s(value: str | None) -> float | None:
    """Seconds until a reset given as seconds ("1.5"), a Go duration ("6m0s", "20ms") or an RFC 3339 time."""
    if not value:
        return None
    if (seconds := _number(value)) is not None:
        return max(0.0, seconds)
    if parts := _DURATION.findall(value):
        return sum(float(n) * _UNIT_S[u] for n, u in parts)
    try:
        return max(0.0, datetime.fromisoformat(value).timestamp() - time.time())
    except ValueError:
        return None


def retry_after_s(headers: Mapping[str, str]) -> float | None:
    if (ms := _number(headers.get("retry-after-ms"))) is not None:
        return ms / 1000
    value = headers.get("retry-after")
    if value is None:
        return None
    if (seconds := _number(value)) is not None:
        return max(0.0, seconds)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


_SHARED: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Hashable, Limiter]] = weakref.WeakKeyDictionary()


def shared_limiter(key: Hashable, limits: LimitsConfig) -> Limiter:
    """The limiter for one upstream in the running event loop (a new loop, a new run: fresh limiters)."""
    table = _SHARED.setdefault(asyncio.get_running_loop(), {})
    limiter = table.get(key)
    if limiter is None:
        limiter = table[key] = Limiter(limits)
    else:
        limiter.tighten(limits)
    return limiter
