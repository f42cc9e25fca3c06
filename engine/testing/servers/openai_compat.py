"""A real HTTP server on 127.0.0.1 speaking the OpenAI chat-completions wire format, for tests and benches.

`POST /v1/chat/completions` and the legacy `POST /v1/completions` (a `prompt` string, answered as a
`text_completion` with `logprobs.top_logprobs` as {token: logprob} maps) (Bearer key), `GET /v1/models` and
`GET /v1/models/{model}`; errors as
`{"error": {"message", "type", "param", "code"}}`; rate-limit headers `x-ratelimit-*`. Faults, limits and
counting: see engine.testing.servers.common.

Run standalone: python -m engine.testing.servers.openai_compat --port 8011 --latency 0.05 [--limit 200 --window 10]
"""

from __future__ import annotations

import json
import time
from typing import Any

from aiohttp import web

from engine.testing.servers.common import FAIL_MARKER, CompatServer, ServerState, Wire, main

__all__ = ["FAIL_MARKER", "OpenAICompatServer", "ServerState", "WIRE"]

_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error", 429: "rate_limit_exceeded"}


def _key(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization", "")
    return auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None


def _prompt(body: dict[str, Any]) -> tuple[str, Any]:
    if "prompt" in body:  # /v1/completions
        return str(body["prompt"]), body["prompt"]
    messages = body.get("messages") or []
    return " ".join(str(m.get("content", "")) for m in messages), messages


def _text_completion(body: dict[str, Any], answer: str, letters: list[str], n: int, text: str) -> dict[str, Any]:
    """As /v1/completions answers: `text`, and with `logprobs: k` the legacy logprobs object."""
    choice: dict = {"text": answer, "index": 0, "logprobs": None, "finish_reason": "stop"}
    if body.get("logprobs"):
        top = {c: (-0.1 if c == answer else -3.0 - i) for i, c in enumerate(letters)}
        choice["logprobs"] = {"tokens": [answer], "token_logprobs": [-0.1], "top_logprobs": [dict(list(top.items())[: body["logprobs"]])], "text_offset": [len(text)]}
    return {
        "id": f"cmpl-{n}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": body.get("model", "test"),
        "choices": [choice],
        "usage": {"prompt_tokens": len(text) // 4, "completion_tokens": 1, "total_tokens": len(text) // 4 + 1},
    }


def _answer(body: dict[str, Any], answer: str, letters: list[str], n: int, text: str) -> dict[str, Any]:
    if "prompt" in body:
        return _text_completion(body, answer, letters, n, text)
    choice: dict = {"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop", "logprobs": None}
    if body.get("logprobs"):
        top = [{"token": c, "logprob": (-0.1 if c == answer else -3.0 - i), "bytes": list(c.encode())} for i, c in enumerate(letters)]
        choice["logprobs"] = {"content": [{"token": answer, "logprob": -0.1, "bytes": list(answer.encode()), "top_logprobs": top[: body.get("top_logprobs") or 5]}]}
    return {
        "id": f"chatcmpl-{n}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "test"),
        "choices": [choice],
        "usage": {"prompt_tokens": len(text) // 4, "completion_tokens": 1, "total_tokens": len(text) // 4 + 1},
    }


def _filtered(body: dict[str, Any], n: int) -> dict[str, Any]:
    choice = {"index": 0, "message": {"role": "assistant", "content": None}, "finish_reason": "content_filter", "logprobs": None}
    return {"id": f"chatcmpl-{n}", "object": "chat.completion", "created": int(time.time()), "model": body.get("model"), "choices": [choice], "usage": {"prompt_tokens": 1, "completion_tokens": 0, "total_tokens": 1}}


def _error(status: int, message: str) -> dict[str, Any]:
    kind = _ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


def _limit_headers(per_minute: float, remaining: int, reset_s: float) -> dict[str, str]:
    return {"x-ratelimit-limit-requests": f"{per_minute:.0f}", "x-ratelimit-remaining-requests": str(max(0, remaining)), "x-ratelimit-reset-requests": f"{reset_s:.3f}s"}


def _quota() -> tuple[int, dict[str, Any]]:
    # As api.openai.com answers an account out of credit (openai/openai-python#1671).
    message = "You exceeded your current quota, please check your plan and billing details."
    return 429, {"error": {"message": message, "type": "insufficient_quota", "param": None, "code": "insufficient_quota"}}


def _craft(name: str, answer: dict[str, Any]) -> bytes:
    """Crafted 200 bodies: optional parts broken (null-logprob, neginf-logprob: a JSON -Infinity, bad-usage),
    no answer (null-content, no-choices), or an error object instead of an answer (error-503, error-400)."""
    choice = answer["choices"][0]
    top = (choice.get("logprobs") or {}).get("content", [{}])[0].get("top_logprobs") or []
    if name == "null-logprob" and top:
        top[-1]["logprob"] = None
        top.append({"token": "junk", "logprob": "high"})
        top.append(None)
    elif name == "neginf-logprob" and top:
        top[-1]["logprob"] = -1e999  # serialised below as -Infinity
    elif name == "bad-usage":
        answer["usage"] = {"prompt_tokens": "many", "completion_tokens": None}
    elif name == "null-content":
        choice["message"]["content"], choice["finish_reason"] = None, None
    elif name == "no-choices":
        answer["choices"] = []
    elif name in ("error-503", "error-400"):
        status = int(name[-3:])
        answer = {"error": {"message": f"upstream said {status}", "type": "server_error" if status >= 500 else "invalid_request_error", "code": status}}
    return json.dumps(answer).encode()  # json, not orjson: it writes -Infinity, as some servers do


WIRE = Wire(
    generate_path="/v1/chat/completions",
    completions_path="/v1/completions",
    model_path="/v1/models/{model}",
    list_path="/v1/models",
    key=_key,
    prompt=_prompt,
    answer=_answer,
    error=_error,
    filtered=_filtered,
    model_info=lambda name: {"id": name, "object": "model", "owned_by": "tests"},
    limit_headers=_limit_headers,
    quota=_quota,
    craft=_craft,
)


class OpenAICompatServer(CompatServer):
    wire = WIRE
    base_path = "/v1"

    def __init__(self, latency: float = 0.0, fail_every: int = 0, fail_status: int = 500, **state: Any) -> None:
        super().__init__(latency=latency, fail_every=fail_every, fail_status=fail_status, **state)


if __name__ == "__main__":
    main(WIRE, __doc__)
