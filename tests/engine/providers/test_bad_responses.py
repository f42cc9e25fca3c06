"""Quota errors, lenient reading of optional response parts, 200s carrying errors, and cache identity of
endpoints (issue 12 items 10, 12, 13), against the wire-exact servers in engine/testing/servers/."""

from __future__ import annotations

import asyncio
import pytest

from engine.keys import cache_key
from engine.config import ModelConfig
from engine.providers import create_provider
from engine.providers.api import scrub
from engine.providers.errors import HTTPStatusError, classify
from engine.request import Decoding, Request
from tests.engine.providers.test_limits_and_faults import COMBOS, KEY, SERVERS, model, request
from engine.testing.servers.openai_compat import OpenAICompatServer


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv("MTPA_TEST_KEY", KEY)


def one_by_one(config: ModelConfig, requests: list[Request]):
    """The responses of one provider called with each request in turn, in order."""

    async def go():
        provider = create_provider(config)
        try:
            return [(await provider.complete([r]))[0] for r in requests]
        finally:
            await provider.aclose()

    return asyncio.run(go())


# --- item 12: out of quota


@pytest.mark.parametrize(("provider", "transport"), COMBOS)
def test_out_of_quota_fails_fast_and_stops_the_models_calls(provider, transport):
    with SERVERS[provider](api_key=KEY) as server:
        first, second, third = one_by_one(model(provider, server, transport), [request("q <<quota>>"), request("q2"), request("q3")])
        assert (first.error_kind, first.attempts) == ("quota", 1), first.error
        # Later cells are not sent at all: the account cannot pay for them either.
        assert [(r.error_kind, r.attempts) for r in (second, third)] == [("quota", 0), ("quota", 0)]
        assert second.error.startswith(f"not called: model 'm-{provider}' is out of quota or credit")
        assert server.state.requests == 1


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (429, '{"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}}', "rate_limit"),
        (429, '{"error": {"message": "You exceeded your current quota", "type": "insufficient_quota", "code": "insufficient_quota"}}', "quota"),
        (429, '{"error": {"code": "billing_hard_limit_reached", "message": "Billing hard limit has been reached"}}', "quota"),
        (400, '{"type": "error", "error": {"type": "invalid_request_error", "message": "Your credit balance is too low to access the Anthropic API."}}', "quota"),
        (402, '{"type": "error", "error": {"type": "billing_error", "message": "payment method declined"}}', "quota"),
        (429, '{"type": "error", "error": {"type": "rate_limit_error", "message": "Number of request tokens has exceeded your per-minute rate limit"}}', "rate_limit"),
        (429, '{"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "details": [{"violations": [{"quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"}]}]}}', "rate_limit"),
        (429, '{"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "details": [{"violations": [{"quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier"}]}]}}', "quota"),
        (403, '{"error": {"code": 403, "status": "PERMISSION_DENIED", "details": [{"reason": "BILLING_DISABLED"}]}}', "quota"),
        (403, '{"error": {"code": 403, "message": "API key not valid", "status": "PERMISSION_DENIED"}}', "auth"),
        (400, '{"error": {"code": "content_filter", "message": "The response was filtered"}}', "content_filter"),
    ],
)
def test_quota_is_read_from_the_body_not_only_the_status(status, body, kind):
    assert classify(HTTPStatusError(status, body)) == kind


# --- item 13: optional parts read entry by entry; 200 error objects; null content


@pytest.mark.parametrize("transport", ["aiohttp", "sdk"])
@pytest.mark.parametrize("craft", ["null-logprob", "neginf-logprob"])
def test_a_broken_logprob_entry_loses_only_itself(transport, craft):
    with OpenAICompatServer(api_key=KEY) as server:
        (resp,) = one_by_one(model("openai", server, transport), [request(f"q <<crafted:{craft}>>")])
        assert resp.ok, resp.error
        # The server ranks A, B, C with logprobs -0.1 for its answer, else -3, -4, -5; C's entry is broken.
        expected = {c: (-0.1 if c == resp.text else -3.0 - i) for i, c in enumerate("AB")}
        assert resp.text in "ABC" and resp.letter_logprobs == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("transport", ["aiohttp", "sdk"])
def test_google_logprob_entry_without_a_value_is_skipped(transport):
    with SERVERS["google"](api_key=KEY) as server:
        (resp,) = one_by_one(model("google", server, transport), [request("q <<crafted:null-logprob>>")])
        assert resp.ok, resp.error
        assert resp.letter_logprobs == pytest.approx({"B": -0.1 if resp.text == "B" else -4.0}, abs=1e-12)


def test_bad_usage_is_unknown_usage_and_the_text_is_kept():
    with OpenAICompatServer(api_key=KEY) as server:
        (resp,) = one_by_one(model("openai", server), [request("q <<crafted:bad-usage>>")])
        assert resp.ok and resp.text in "ABC" and resp.prompt_tokens is None and resp.completion_tokens is None


@pytest.mark.parametrize("transport", ["aiohttp", "sdk"])
def test_a_200_error_object_is_reported_and_retried_by_its_code(transport):
    with OpenAICompatServer(api_key=KEY) as server:
        transient, permanent = one_by_one(model("openai", server, transport), [request("q <<crafted:error-503:1>>"), request("q <<crafted:error-400>>")])
        assert transient.ok and transient.attempts == 2 and transient.text in "ABC"
        assert (permanent.error_kind, permanent.attempts) == ("bad_request", 1)
        assert "upstream said 400" in permanent.error
        assert server.state.requests == 3


def test_null_content_without_finish_reason_is_retried_not_cached_as_an_answer():
    with OpenAICompatServer(api_key=KEY) as server:
        once, always = one_by_one(model("openai", server, max_retries=2), [request("q <<crafted:null-content:1>>"), request("q <<crafted:no-choices>>")])
        assert once.ok and once.attempts == 2 and once.text in "ABC"
        assert (always.error_kind, always.attempts, always.text) == ("bad_response", 3, None)  # 1 + max_retries


# --- item 9: the key never survives a cut


@pytest.mark.parametrize("offset", range(470, 520))
def test_scrub_masks_a_key_across_any_cut(offset):
    key = "sk-proj-ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    text = "x" * offset + key + " and after"
    clean = scrub(text, key)
    assert len(clean) <= 500 + len("[redacted]")
    assert not any(key[i : i + 8] in clean for i in range(len(key) - 7))
    # An upstream cut (a library that already truncated the body) is masked too: any 12-character piece
    # anywhere, and a prefix of 8 or more characters at the end.
    assert not any(key[i : i + 12] in scrub(text[: offset + 20] + " more", key) for i in range(len(key) - 11))
    assert scrub("error: " + key[:9], key) == "error: [redacted]"


def test_scrub_exact_values():
    key = "sk-proj-ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    assert scrub(f"bad key {key}!", key) == "bad key [redacted]!"
    assert scrub(f"a {key[5:25]} b", key) == "a [redacted] b"  # a cut piece, anywhere
    assert scrub(f"a {key[:11]} b", key) == f"a {key[:11]} b"  # shorter than 12 and not at the end: ordinary text
    assert scrub("y" * 495 + key, key) == "y" * 495 + "[redacted]"  # redacted first, then cut: nothing survives
    assert scrub("short", "abc") == "short" and scrub("z" * 900, None) == "z" * 500


# --- item 10: the endpoint is part of a non-official server's identity


def identity_of(config: ModelConfig) -> dict:
    return create_provider(config).identity()


def test_official_endpoint_cache_keys_are_unchanged_and_other_servers_are_told_apart():
    req = Request(messages=(("user", "Q?\nA. x\nB. y\nAnswer:"),), decoding=Decoding(0.0, 8, 1.0, None), sample=0, mode="letter", letters=("A", "B"), want_logprobs=True)
    # Values computed with main's engine before this change: official endpoints keep their keys byte for byte.
    official = {
        ("openai", "gpt-4o-mini"): (["https://api.openai.com/v1", "https://API.openai.com:443/v1/"], "5491d8391d7bb20d89e475d5b75fad5b80f76906b74c1829e7a45e633eb45c6b"),
        ("anthropic", "claude-x"): (["https://api.anthropic.com"], "eae32e929670c4beb9204b3cb5b8d143bfdc30b447973aff07644c094e57ba53"),
        ("google", "gemini-2.5-flash"): (["https://generativelanguage.googleapis.com/"], "5f5bf54897471e69e3a792254c1f523ce9ed2235cb6c12053d6779d1790aae8e"),
    }
    for (provider, name), (urls, key) in official.items():
        for url in [None, *urls]:
            identity = identity_of(ModelConfig(id="m", provider=provider, model=name, base_url=url))
            assert identity == {"model": name} and cache_key(provider, identity, req) == key
    a = identity_of(ModelConfig(id="m", provider="openai", model="default", base_url="http://127.0.0.1:8001/v1/"))
    b = identity_of(ModelConfig(id="m", provider="openai", model="default", base_url="HTTP://127.0.0.1:8002/v1"))
    assert a == {"model": "default", "endpoint": "http://127.0.0.1:8001/v1"}
    assert b == {"model": "default", "endpoint": "http://127.0.0.1:8002/v1"}
    assert cache_key("openai", a, req) != cache_key("openai", b, req)
    # No user info (a password in a URL) ever reaches the identity written to manifests.
    c = identity_of(ModelConfig(id="m", provider="openai", model="default", base_url="http://user:secret@host:80/v1"))
    assert c == {"model": "default", "endpoint": "http://host/v1"}

