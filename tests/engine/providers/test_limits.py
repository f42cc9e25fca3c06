"""The limiter's arithmetic: pacing, AIMD on 429, pauses, header learning, sharing, prices."""

from __future__ import annotations

import asyncio
import time

from engine.config import LimitsConfig, ModelConfig
from engine.limits import HEADROOM, Limiter, Pacer, reset_in_s, retry_after_s, shared_limiter
from engine.pricing import call_cost, price_for


def test_pacer_spaces_requests_and_takes_token_corrections():
    pacer = Pacer(600)  # 10/s at headroom
    step = 60 / (600 * HEADROOM)
    waits = [pacer.reserve(1, now=100.0) for _ in range(4)]
    assert [round(w / step, 9) for w in waits] == [0, 1, 2, 3]
    pacer.correct(-2)  # two units refunded once real usage was known
    assert abs(pacer.reserve(1, now=100.0) - 2 * step) < 1e-9


def test_429_halves_the_window_once_per_congestion_event_then_grows_back():
    async def go():
        lim = Limiter(LimitsConfig(concurrency=16))
        sent = await lim.acquire(1)
        lim.release()
        lim.on_rate_limited({"retry-after": "0.2"}, sent)
        lim.on_rate_limited({"retry-after": "0.2"}, sent)  # in flight before the cut: same event
        assert lim.window == 8 and lim.cuts == 1 and lim.rate_limited == 2
        started = time.monotonic()
        await lim.acquire(1)
        assert time.monotonic() - started >= 0.19, "paused until Retry-After"
        lim.release()
        for _ in range(20):
            lim.on_success({}, 1, None)
        assert lim.window == 16

    asyncio.run(go())


def test_concurrency_window_bounds_calls_in_flight():
    async def go():
        lim = Limiter(LimitsConfig(concurrency=3))
        peak = 0

        async def one():
            nonlocal peak
            await lim.acquire(1)
            peak = max(peak, lim.in_flight)
            await asyncio.sleep(0.01)
            lim.release()

        await asyncio.gather(*(one() for _ in range(20)))
        assert peak == 3 and lim.in_flight == 0

    asyncio.run(go())


def test_headers_teach_limits_and_resets():
    async def go():
        lim = Limiter(LimitsConfig(concurrency=4))
        lim.on_success({"x-ratelimit-limit-requests": "500", "x-ratelimit-limit-tokens": "30000"}, 10, 12)
        assert lim.requests.per_minute == 500 and lim.tokens.per_minute == 30000
        lim.on_success({"anthropic-ratelimit-requests-limit": "50", "anthropic-ratelimit-requests-remaining": "0", "anthropic-ratelimit-requests-reset": "2099-01-01T00:00:00Z"}, 1, 1)
        assert lim.requests.per_minute == 50 and lim.paused_until - time.monotonic() > 100  # capped, not until 2099

    asyncio.run(go())
    assert reset_in_s("6m0s") == 360 and reset_in_s("20ms") == 0.02 and reset_in_s("1.5") == 1.5
    assert retry_after_s({"retry-after-ms": "250"}) == 0.25 and retry_after_s({"retry-after": "3"}) == 3


def test_models_on_one_upstream_share_the_strictest_limits():
    async def go():
        a = shared_limiter(("openai", "u", "$K", "gpt"), LimitsConfig(concurrency=8, requests_per_minute=600))
        b = shared_limiter(("openai", "u", "$K", "gpt"), LimitsConfig(concurrency=4, requests_per_minute=900))
        c = shared_limiter(("openai", "u", "$K", "other"), LimitsConfig())
        assert a is b and a is not c and a.ceiling == 4 and a.requests.per_minute == 600

    asyncio.run(go())


def test_prices_match_dated_snapshots_and_grid_overrides():
    assert price_for(ModelConfig(id="a", provider="openai", model="gpt-4o-mini-2024-07-18")) == (0.15, 0.60)
    assert price_for(ModelConfig(id="a", provider="anthropic", model="claude-sonnet-4-5-20250929")) == (3.0, 15.0)
    assert price_for(ModelConfig(id="a", provider="openai", model="my-finetune")) is None
    assert price_for(ModelConfig(id="a", provider="openai", model="gpt-4o", input_price=1.0)) == (1.0, 10.0)
    assert price_for(ModelConfig(id="a", provider="local", model="embedded")) == (0.0, 0.0)
    assert call_cost((2.0, 8.0), 1_000_000, 500_000) == 6.0
