"""The three API providers against our wire-exact servers: answers, faults, retries, limits, preflight.

Each provider runs on its lean aiohttp path and on its official SDK (pointed at the server via base_url).
The servers count every request, so the tests assert exactly which calls were made.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from engine.config import LimitsConfig, ModelConfig
from engine.providers import create_provider
from engine.errors import PreflightError
from engine.request import Decoding, Request
from engine.testing.servers.anthropic_compat import AnthropicCompatServer
from engine.testing.servers.google_compat import GoogleCompatServer
from engine.testing.servers.openai_compat import OpenAICompatServer

SERVERS = {"openai": OpenAICompatServer, "anthropic": AnthropicCompatServer, "google": GoogleCompatServer}
COMBOS = [(p, t) for p in SERVERS for t in ("aiohttp", "sdk")]
KEY = "sk-test-0123456789abcdef"


def model(provider: str, server, transport: str = "aiohttp", **limits) -> ModelConfig:
    lim = {"concurrency": 16, "max_retries": 4, "timeout_s": 5.0, **limits}
    return ModelConfig(id=f"m-{provider}", provider=provider, model="test", base_url=server.base_url, transport=transport, api_key_env="MTPA_TEST_KEY", limits=LimitsConfig(**lim))


def request(question: str, system: str | None = "You are a survey respondent.") -> Request:
    messages = ((("system", system),) if system else ()) + (("user", f"{question}\nA. yes\nB. no\nC. maybe\nAnswer:"),)
    return Request(messages=messages, decoding=Decoding(0.0, 4, 1.0, None), sample=0, mode="letter", letters=("A", "B", "C"), want_logprobs=True)


def call(config: ModelConfig, requests: list[Request]):
    async def go():
        provider = create_provider(config)
        try:
            return await asyncio.gather(*(provider.complete([r]) for r in requests)), provider
        finally:
            await provider.aclose()

    results, provider = asyncio.run(go())
    return [r[0] for r in results], provider


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv("MTPA_TEST_KEY", KEY)


@pytest.mark.parametrize(("provider", "transport"), COMBOS)
def test_answers_usage_logprobs_and_system_placement(provider, transport):
    with SERVERS[provider](api_key=KEY) as server:
        (resp,), _ = call(model(provider, server, transport), [request("q1")])
        assert resp.ok, resp.error
        assert resp.text in ("A", "B", "C") and resp.prompt_tokens > 0 and resp.completion_tokens == 1 and resp.attempts == 1
        if provider == "anthropic":
            assert resp.letter_logprobs is None  # the API has none: supports_logprobs is False
            assert server.state.last_body["system"] == "You are a survey respondent."
            assert [m["role"] for m in server.state.last_body["messages"]] == ["user"]
        else:
            assert max(resp.letter_logprobs, key=resp.letter_logprobs.get) == resp.text
        if provider == "google":
            cfg = server.state.last_body["generationConfig"]
            assert cfg["maxOutputTokens"] == 4 and cfg["temperature"] == 0.0 and cfg["candidateCount"] == 1
            assert server.state.last_body["systemInstruction"]["parts"][0]["text"] == "You are a survey respondent."
        assert server.state.requests == 1 and server.state.model_lookups == 0


TRANSIENT = ["<<flaky:429:2>>", "<<flaky:500:1>>", "<<flaky:503:1>>", "<<flaky:drop:1>>", "<<flaky:timeout:1>>", "<<flaky:malformed:1>>"]
PERMANENT = {"<<fail:400>>": "bad_request", "<<fail:401>>": "auth", "<<fail:403>>": "auth", "<<fail:404>>": "not_found", "<<filter>>": "content_filter"}


@pytest.mark.parametrize(("provider", "transport"), COMBOS)
def test_transient_faults_are_retried_and_permanent_ones_recorded_once(provider, transport):
    with SERVERS[provider](api_key=KEY, hang_s=1.5) as server:
        faults = TRANSIENT + (["<<flaky:529:1>>"] if provider == "anthropic" else [])
        clean = [request(f"plain {i}") for i in range(20)]
        flaky = [request(f"flaky {m}") for m in faults]
        permanent = [request(f"bad {m}") for m in PERMANENT]
        responses, _ = call(model(provider, server, transport, timeout_s=0.5), clean + flaky + permanent)

        ok = responses[: len(clean) + len(flaky)]
        assert all(r.ok for r in ok), [(r.error_kind, r.error) for r in ok if not r.ok]
        attempts = [r.attempts for r in responses[len(clean) : len(clean) + len(flaky)]]
        assert attempts == [3 if "429:2" in m else 2 for m in faults]
        kinds = [r.error_kind for r in responses[len(clean) + len(flaky) :]]
        assert kinds == list(PERMANENT.values())
        assert all(r.attempts == 1 for r in responses[len(clean) + len(flaky) :]), "permanent errors are not retried"
        assert all(KEY not in (r.error or "") for r in responses), "the key never reaches a recorded error"
        # No lost cells, no duplicate successful calls: every prompt answered 200 exactly once.
        assert len(server.state.ok_digests) == len(clean) + len(flaky) and set(server.state.ok_digests.values()) == {1}
        assert server.state.requests == len(clean) + len(permanent) + sum(attempts)


@pytest.mark.parametrize("provider", list(SERVERS))
def test_request_rate_is_paced_under_a_server_side_window(provider):
    # 10 requests per 0.5 s window = 1,200/min on the server; the client is told 1,080/min.
    with SERVERS[provider](api_key=KEY, limit=10, window_s=0.5) as server:
        started = time.monotonic()
        responses, _ = call(model(provider, server, concurrency=50, requests_per_minute=1080), [request(f"r{i}") for i in range(30)])
        elapsed = time.monotonic() - started
        assert all(r.ok for r in responses)
        assert server.state.statuses[429] == 0 and server.state.max_in_window() <= 10
        assert elapsed > 29 * 60 / 1080 * 0.9, "requests were spread out, not sent in one burst"


@pytest.mark.slow
@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_limits_are_learned_from_rate_limit_headers(provider):
    # No client limit configured: the first burst meets 429s, then x-ratelimit-* / anthropic-ratelimit-*
    # headers set the pace and the rest goes through without another 429 storm.
    with SERVERS[provider](api_key=KEY, limit=10, window_s=0.5, rate_headers=True) as server:
        responses, provider_obj = call(model(provider, server, concurrency=20), [request(f"h{i}") for i in range(60)])
        assert all(r.ok for r in responses), [r.error for r in responses if not r.ok]
        limiter = provider_obj._limiter
        assert limiter.requests is not None and limiter.requests.per_minute == 1200
        assert server.state.statuses[429] <= 15 and server.state.max_in_window() <= 10


@pytest.mark.parametrize("provider", list(SERVERS))
def test_preflight_names_wrong_key_and_unknown_model(provider, monkeypatch):
    with SERVERS[provider](api_key=KEY) as server:
        good = model(provider, server)
        asyncio.run(create_provider(good).preflight())
        monkeypatch.setenv("MTPA_TEST_KEY", "sk-wrong-key-000000")
        with pytest.raises(PreflightError, match="MTPA_TEST_KEY was rejected") as err:
            asyncio.run(create_provider(good).preflight())
        assert "sk-wrong-key-000000" not in str(err.value)
        monkeypatch.setenv("MTPA_TEST_KEY", KEY)
        missing = ModelConfig(**{**good.__dict__, "model": "no-such-model"})
        with pytest.raises(PreflightError, match="'no-such-model' not found"):
            asyncio.run(create_provider(missing).preflight())
        assert server.state.requests == 0, "preflight spends no tokens"


def test_preflight_without_any_key_fails_without_a_call(monkeypatch):
    for env in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY"):
        monkeypatch.delenv(env, raising=False)
    for provider in SERVERS:
        config = ModelConfig(id="x", provider=provider, model="test")
        with pytest.raises(PreflightError, match="no API key"):
            asyncio.run(create_provider(config).preflight())
