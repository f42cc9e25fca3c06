"""A real HTTP server on 127.0.0.1 speaking the Gemini API wire format (v1beta), for tests and benches.

`POST /v1beta/models/{model}:generateContent` with `x-goog-api-key`; `GET /v1beta/models/{model}`;
errors as `{"error": {"code", "message", "status"}}`, a 429 carrying `RetryInfo.retryDelay` in its details
(Google sends no Retry-After); logprobs as `logprobsResult.topCandidates`. Faults, limits and counting:
see engine.testing.servers.common.

Run standalone: python -m engine.testing.servers.google_compat --port 8013 --latency 0.05
"""

from __future__ import annotations

from typing import Any

import orjson

from engine.testing.servers.common import CompatServer, Wire, main

_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}


def _prompt(body: dict[str, Any]) -> tuple[str, Any]:
    parts = [p.get("text", "") for c in body.get("contents") or [] for p in c.get("parts") or []]
    system = [p.get("text", "") for p in (body.get("systemInstruction") or {}).get("parts") or []]
    return " ".join(system + parts), [system, body.get("contents")]


def _usage(text: str, out: int) -> dict[str, Any]:
    return {"promptTokenCount": len(text) // 4, "candidatesTokenCount": out, "totalTokenCount": len(text) // 4 + out}


def _answer(body: dict[str, Any], answer: str, letters: list[str], n: int, text: str) -> dict[str, Any]:
    cand: dict[str, Any] = {"content": {"role": "model", "parts": [{"text": answer}]}, "finishReason": "STOP", "index": 0}
    config = body.get("generationConfig") or {}
    if config.get("responseLogprobs"):
        top = [{"token": c, "tokenId": i, "logProbability": (-0.1 if c == answer else -3.0 - i)} for i, c in enumerate(letters)]
        cand["logprobsResult"] = {"topCandidates": [{"candidates": top[: config.get("logprobs") or 5]}], "chosenCandidates": [{"token": answer, "logProbability": -0.1}]}
    return {"candidates": [cand], "usageMetadata": _usage(text, 1), "modelVersion": "test", "responseId": f"r{n}"}


def _error(status: int, message: str) -> dict[str, Any]:
    error: dict[str, Any] = {"code": status, "message": message, "status": _STATUS.get(status, "INTERNAL")}
    if status == 429:
        error["details"] = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "0.05s"}]
    return {"error": error}


def _quota() -> tuple[int, dict[str, Any]]:
    # As generativelanguage.googleapis.com answers a spent daily quota: a 429 whose QuotaFailure names a PerDay quota.
    violation = {"quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests", "quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier", "quotaValue": "250"}
    details = [{"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [violation]}, {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "41s"}]
    return 429, {"error": {"code": 429, "message": "You exceeded your current quota, please check your plan and billing details.", "status": "RESOURCE_EXHAUSTED", "details": details}}


def _craft(name: str, answer: dict[str, Any]) -> bytes:
    """Crafted 200 bodies: a logprob entry without logProbability or a null one (null-logprob)."""
    top = answer["candidates"][0].get("logprobsResult", {}).get("topCandidates", [{}])[0].get("candidates") or []
    if name == "null-logprob" and len(top) > 1:
        del top[-1]["logProbability"]
        top[0]["logProbability"] = None
    return orjson.dumps(answer)


WIRE = Wire(
    generate_path="/v1beta/models/{model}:generateContent",
    model_path="/v1beta/models/{model}",
    key=lambda request: request.headers.get("x-goog-api-key"),
    prompt=_prompt,
    answer=_answer,
    error=_error,
    filtered=lambda body, n: {"candidates": [{"content": {"role": "model", "parts": []}, "finishReason": "SAFETY", "index": 0}], "usageMetadata": _usage("", 0)},
    model_info=lambda name: {"name": f"models/{name}", "displayName": name, "supportedGenerationMethods": ["generateContent"]},
    quota=_quota,
    craft=_craft,
)


class GoogleCompatServer(CompatServer):
    wire = WIRE


if __name__ == "__main__":
    main(WIRE, __doc__)
