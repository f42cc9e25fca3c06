"""Client-side rate limits: requests per minute (asyncio-throttle's sliding window) and tokens per minute."""

from __future__ import annotations

import asyncio
import time

from asyncio_throttle import Throttler


class TokenBucket:
    """Tokens per minute, refilled continuously; a request waits until its estimated tokens fit."""

    def __init__(self, per_minute: float) -> None:
        self.capacity = per_minute
        self.rate = per_minute / 60.0
        self.level = per_minute
        self.stamp = time.monotonic()
        self._lock = asyncio.Lock()

    async def take(self, tokens: float) -> None:
        tokens = min(tokens, self.capacity)  # an oversized request still goes, alone, when the bucket is full
        async with self._lock:
            while True:
                now = time.monotonic()
                self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
                self.stamp = now
                if self.level >= tokens:
                    self.level -= tokens
                    return
                await asyncio.sleep((tokens - self.level) / self.rate)


class RateLimiter:
    def __init__(self, requests_per_minute: float = 0, tokens_per_minute: float = 0) -> None:
        self._requests = Throttler(rate_limit=max(1, int(requests_per_minute)), period=60.0) if requests_per_minute else None
        self._tokens = TokenBucket(tokens_per_minute) if tokens_per_minute else None

    async def acquire(self, estimated_tokens: float) -> None:
        if self._requests is not None:
            await self._requests.acquire()
        if self._tokens is not None:
            await self._tokens.take(estimated_tokens)
