"""A real HTTP server on 127.0.0.1 speaking the OpenAI chat-completions wire format, for tests and benches.

It answers deterministically (a letter chosen from a hash of the messages), can add fixed latency, can
inject failures (HTTP status for prompts containing a marker, or a fraction of requests), and counts every
request it receives so tests can assert exactly which calls were made.

Run standalone: python -m tests.servers.openai_compat --port 8011 --latency 0.05
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import orjson
from aiohttp import web

FAIL_MARKER = "<<fail:"  # a prompt containing "<<fail:400>>" is answered with HTTP 400


@dataclass
class ServerState:
    latency: float = 0.0
    fail_every: int = 0  # every n-th request gets fail_status (0 = never)
    fail_status: int = 500
    requests: int = 0
    digests: list[str] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    started: float = field(default_factory=time.monotonic)


def _digest(messages: list) -> str:
    return hashlib.sha256(orjson.dumps(messages, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _error(status: int, message: str, kind: str) -> web.Response:
    body = {"error": {"message": message, "type": kind, "param": None, "code": None}}
    headers = {"retry-after": "0.05"} if status == 429 else {}
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json", headers=headers)


def make_app(state: ServerState) -> web.Application:
    async def chat(request: web.Request) -> web.StreamResponse:
        state.requests += 1
        n = state.requests
        body = orjson.loads(await request.read())
        messages = body.get("messages") or []
        digest = _digest(messages)
        state.digests.append(digest)
        if state.latency:
            await asyncio.sleep(state.latency)
        text = " ".join(str(m.get("content", "")) for m in messages)
        if FAIL_MARKER in text:
            status = int(text.split(FAIL_MARKER, 1)[1].split(">>", 1)[0])
            state.statuses[status] += 1
            return _error(status, f"injected failure {status}", "invalid_request_error")
        if state.fail_every and n % state.fail_every == 0:
            state.statuses[state.fail_status] += 1
            return _error(state.fail_status, "injected failure", "server_error")
        letters = [c for c in "ABCDEFGHIJKLM" if f"\n{c}. " in text] or ["A"]
        answer = letters[int(digest, 16) % len(letters)]
        choice: dict = {"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop", "logprobs": None}
        if body.get("logprobs"):
            top = [{"token": c, "logprob": (-0.1 if c == answer else -3.0 - i), "bytes": list(c.encode())} for i, c in enumerate(letters)]
            choice["logprobs"] = {"content": [{"token": answer, "logprob": -0.1, "bytes": list(answer.encode()), "top_logprobs": top[: body.get("top_logprobs") or 5]}]}
        state.statuses[200] += 1
        payload = {
            "id": f"chatcmpl-{n}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "test"),
            "choices": [choice],
            "usage": {"prompt_tokens": len(text) // 4, "completion_tokens": 1, "total_tokens": len(text) // 4 + 1},
        }
        return web.Response(body=orjson.dumps(payload), content_type="application/json")

    async def models(_: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "test", "object": "model", "owned_by": "tests"}]})

    async def stats(_: web.Request) -> web.Response:
        return web.json_response({"requests": state.requests, "statuses": {str(k): v for k, v in state.statuses.items()}})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/stats", stats)
    return app


class OpenAICompatServer:
    """Runs the server on its own thread and event loop; use as a context manager."""

    def __init__(self, latency: float = 0.0, fail_every: int = 0, fail_status: int = 500) -> None:
        self.state = ServerState(latency=latency, fail_every=fail_every, fail_status=fail_status)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> OpenAICompatServer:
        self._thread.start()
        self._runner = web.AppRunner(make_app(self.state), access_log=None)
        asyncio.run_coroutine_threadsafe(self._runner.setup(), self._loop).result()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, backlog=4096)
        asyncio.run_coroutine_threadsafe(site.start(), self._loop).result()
        self.port = site._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency", type=float, default=0.0)
    args = parser.parse_args()
    web.run_app(make_app(ServerState(latency=args.latency)), host="127.0.0.1", port=args.port, access_log=None, print=None, backlog=4096)


if __name__ == "__main__":
    main()
