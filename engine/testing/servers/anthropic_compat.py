"""A real HTTP server on 127.0.0.1 speaking the Anthropic messages wire format, for tests and benches.

`POST /v1/messages` with the key as `x-api-key` (the API) or `Authorization: Bearer` (what anthropic 2.12's
client sends) and an `anthropic-version` header (required, as by the API); `GET /v1/models/{model}`;
errors as `{"type": "error", "error": {"type", "message"}}` (529 = overloaded); `anthropic-ratelimit-*`
headers with RFC 3339 resets. Faults, limits and counting: see engine.testing.servers.common.

Run standalone: python -m engine.testing.servers.anthropic_compat --port 8012 --latency 0.05
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from engine.testing.servers.common import CompatServer, Wire, main

_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error", 404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 529: "overloaded_error"}


def _key(request: web.Request) -> str | None:
    if "anthropic-version" not in request.headers:
        return None  # the API refuses a request without it: answer as for a bad key
    auth = request.headers.get("Authorization", "")
    return request.headers.get("x-api-key") or (auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None)


def _prompt(body: dict[str, Any]) -> tuple[str, Any]:
    messages = body.get("messages") or []
    system = body.get("system") or ""
    if isinstance(system, list):
        system = " ".join(block.get("text", "") for block in system)
    return " ".join([system, *(str(m.get("content", "")) for m in messages)]), [system, messages]


def _message(body: dict[str, Any], n: int, content: list[dict[str, Any]], stop_reason: str, text: str) -> dict[str, Any]:
    return {
        "id": f"msg_{n:08d}",
        "type": "message",
        "role": "assistant",
        "model": body.get("model", "test"),
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": len(text) // 4, "output_tokens": len(content)},
    }


def _limit_headers(per_minute: float, remaining: int, reset_s: float) -> dict[str, str]:
    reset = (datetime.now(UTC) + timedelta(seconds=reset_s)).isoformat().replace("+00:00", "Z")
    return {"anthropic-ratelimit-requests-limit": f"{per_minute:.0f}", "anthropic-ratelimit-requests-remaining": str(max(0, remaining)), "anthropic-ratelimit-requests-reset": reset}


WIRE = Wire(
    generate_path="/v1/messages",
    model_path="/v1/models/{model}",
    key=_key,
    prompt=_prompt,
    answer=lambda body, answer, letters, n, text: _message(body, n, [{"type": "text", "text": answer}], "end_turn", text),
    error=lambda status, message: {"type": "error", "error": {"type": _ERROR_TYPES.get(status, "api_error"), "message": message}},
    filtered=lambda body, n: _message(body, n, [], "refusal", ""),
    model_info=lambda name: {"type": "model", "id": name, "display_name": name, "created_at": "2025-01-01T00:00:00Z"},
    limit_headers=_limit_headers,
    # As api.anthropic.com answers an account without credit: a 400 invalid_request_error.
    quota=lambda: (400, {"type": "error", "error": {"type": "invalid_request_error", "message": "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits."}}),
)


class AnthropicCompatServer(CompatServer):
    wire = WIRE


if __name__ == "__main__":
    main(WIRE, __doc__)
