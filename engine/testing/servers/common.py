"""The machinery every provider test server shares: fault injection, a server-side rate limit, counting.

A wire module (openai_compat, anthropic_compat, google_compat) only says how its provider speaks: routes,
where the key and the prompt are, and the shapes of answers and errors. Everything else is here:

- deterministic answers (a letter from a hash of the messages), optional fixed latency;
- faults by prompt marker: "<<fail:400>>" always answers that status; "<<flaky:KIND:N>>" makes the first N
  requests with that prompt fail with KIND (a status code, "timeout" = hang past the client's timeout,
  "drop" = close the connection, "malformed" = a body that is not JSON); "<<filter>>" gives the
  provider's content-filter answer;
- key echoes: "<<echo:STATUS:PAD>>" answers STATUS with an error message of PAD characters then the key
  (STATUS 200: a 2xx body that is not JSON, holding the same), so a key can be put across any length cut;
- "<<quota>>" answers the provider's out-of-quota / billing error (the wire's `quota`);
- "<<crafted:NAME>>" or "<<crafted:NAME:N>>" (the first N requests of that prompt) turns the normal 200
  answer into one of the wire's crafted bodies (`craft`): null or -Infinity logprobs, an error object, ...;
- faults by rate: every n-th request (`fail_every`) or a seeded fraction (`fail_rate`) gets `fail_status`;
- a sliding-window limit of `limit` accepted requests per `window_s`, answered 429 with Retry-After and the
  provider's rate-limit headers beyond it;
- counts: every request, statuses, successful answers per prompt digest, accepted request times, and the
  prompt text of every request.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import random
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

FAIL_MARKER = "<<fail:"
_FLAKY = re.compile(r"<<flaky:(\w+):(\d+)>>")
_ECHO = re.compile(r"<<echo:(\d+):(\d+)>>")
_CRAFTED = re.compile(r"<<crafted:([\w-]+)(?::(\d+))?>>")
QUOTA_MARKER = "<<quota>>"
FILTER_MARKER = "<<filter>>"


@dataclass
class ServerState:
    latency: float = 0.0
    fail_every: int = 0  # every n-th request gets fail_status (0 = never)
    fail_status: int = 500
    fail_rate: float = 0.0  # a seeded fraction of requests gets fail_status
    seed: int = 0
    api_key: str | None = None  # when set, any other key is answered 401
    limit: int = 0  # accepted requests per window (0 = unlimited)
    window_s: float = 60.0
    rate_headers: bool = False  # send the provider's rate-limit headers on every answer
    retry_after: float = 0.05  # Retry-After of injected 429s
    hang_s: float = 3.0  # how long a "timeout" fault holds the request
    requests: int = 0
    model_lookups: int = 0
    digests: list[str] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    ok_digests: Counter = field(default_factory=Counter)  # successful answers per prompt
    seen: Counter = field(default_factory=Counter)  # requests per prompt, for flaky faults
    accepted: deque = field(default_factory=deque)  # monotonic times of requests inside the limit
    accepted_log: list[float] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    last_body: dict[str, Any] = field(default_factory=dict)
    prompts: list[str] = field(default_factory=list)  # the text of every generate request, in arrival order
    rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        self.rng.seed(self.seed)

    def max_in_window(self) -> int:
        """The most accepted requests any window of window_s held: must never exceed limit."""
        times, best, lo = self.accepted_log, 0, 0
        for hi, t in enumerate(times):
            while t - times[lo] >= self.window_s:
                lo += 1
            best = max(best, hi - lo + 1)
        return best

    def stats(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "statuses": {str(k): v for k, v in self.statuses.items()},
            "accepted": len(self.accepted_log),
            "max_in_window": self.max_in_window(),
            "duplicate_successes": sum(n - 1 for n in self.ok_digests.values() if n > 1),
            "model_lookups": self.model_lookups,
        }


@dataclass(frozen=True)
class Wire:
    """How one provider speaks."""

    generate_path: str  # aiohttp route, may hold {model}
    model_path: str
    key: Callable[[web.Request], str | None]
    prompt: Callable[[dict[str, Any]], tuple[str, Any]]  # (all text, what identifies the prompt)
    answer: Callable[[dict[str, Any], str, list[str], int, str], dict[str, Any]]  # body, letter, letters, n, text
    error: Callable[[int, str], dict[str, Any]]
    filtered: Callable[[dict[str, Any], int], dict[str, Any]]
    model_info: Callable[[str], dict[str, Any]]
    limit_headers: Callable[[float, int, float], dict[str, str]] = lambda per_min, remaining, reset_s: {}
    list_path: str | None = None  # a model listing ({"data": [...]}), where the provider has one
    quota: Callable[[], tuple[int, dict[str, Any]]] | None = None  # (status, body) of "out of quota / credit"
    craft: Callable[[str, dict[str, Any]], bytes] | None = None  # (name, normal answer) -> crafted 200 body
    completions_path: str | None = None  # a plain-prompt generate route (OpenAI's /v1/completions), same handler


def prompt_digest(messages: Any) -> str:
    return hashlib.sha256(orjson.dumps(messages, option=orjson.OPT_SORT_KEYS)).hexdigest()


def pick_letter(text: str, digest: str) -> tuple[list[str], str]:
    """(the option letters in a prompt, the deterministic answer among them: a hash of the messages)."""
    letters = [c for c in "ABCDEFGHIJKLM" if f"\n{c}. " in text] or ["A"]
    return letters, letters[int(digest, 16) % len(letters)]


def make_app(wire: Wire, state: ServerState, client_max_size: int = 1024**2) -> web.Application:
    def error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
        state.statuses[status] += 1
        return web.Response(status=status, body=orjson.dumps(wire.error(status, message)), content_type="application/json", headers=headers or {})

    def limit_headers(now: float) -> dict[str, str]:
        if not (state.rate_headers and state.limit):
            return {}
        reset = state.accepted[0] + state.window_s - now if state.accepted else 0.0
        return wire.limit_headers(state.limit * 60.0 / state.window_s, state.limit - len(state.accepted), max(0.0, reset))

    def rate_limited(now: float) -> web.Response | None:
        if not state.limit:
            return None
        while state.accepted and now - state.accepted[0] >= state.window_s:
            state.accepted.popleft()
        if len(state.accepted) >= state.limit:
            wait = state.accepted[0] + state.window_s - now
            return error(429, "rate limit exceeded", {"retry-after": f"{wait:.3f}", **limit_headers(now)})
        state.accepted.append(now)
        state.accepted_log.append(now)
        return None

    async def generate(request: web.Request) -> web.StreamResponse:
        state.requests += 1
        n = state.requests
        body = orjson.loads(await request.read())
        state.last_body = body
        if state.api_key is not None and wire.key(request) != state.api_key:
            return error(401, f"invalid api key: {wire.key(request)}")
        text, ident = wire.prompt(body)
        state.prompts.append(text)
        digest = prompt_digest(ident)
        state.digests.append(digest)
        state.seen[digest] += 1
        now = time.monotonic()
        if (limited := rate_limited(now)) is not None:
            return limited
        if state.latency:
            await asyncio.sleep(state.latency)
        if FAIL_MARKER in text:
            status = int(text.split(FAIL_MARKER, 1)[1].split(">>", 1)[0])
            # The message echoes the key, as some servers' errors do: the engine must keep it out of every file.
            message = f"injected failure {status} (key {wire.key(request)})"
            return error(status, message, {"retry-after": str(state.retry_after)} if status == 429 else None)
        if m := _ECHO.search(text):
            status, pad = int(m.group(1)), int(m.group(2))
            message = "x" * pad + str(wire.key(request)) + " <- the key, echoed"
            if status == 200:
                state.statuses["echo200"] += 1
                return web.Response(body=message.encode(), content_type="application/json")
            return error(status, message)
        if QUOTA_MARKER in text and wire.quota is not None:
            status, payload = wire.quota()
            state.statuses[status] += 1
            return web.Response(status=status, body=orjson.dumps(payload), content_type="application/json")
        if (m := _FLAKY.search(text)) and state.seen[digest] <= int(m.group(2)):
            kind = m.group(1)
            if kind == "timeout":
                state.statuses["timeout"] += 1
                await asyncio.sleep(state.hang_s)
                request.transport.close()
                return web.Response()
            if kind == "drop":
                state.statuses["drop"] += 1
                request.transport.close()
                return web.Response()
            if kind == "malformed":
                state.statuses["malformed"] += 1
                return web.Response(body=b'{"id": "trunc', content_type="application/json")
            status = int(kind)
            return error(status, f"injected transient {status}", {"retry-after": str(state.retry_after)} if status == 429 else None)
        if (state.fail_every and n % state.fail_every == 0) or (state.fail_rate and state.rng.random() < state.fail_rate):
            return error(state.fail_status, "injected failure")
        headers = limit_headers(now)
        if FILTER_MARKER in text:
            payload = wire.filtered(body, n)
        else:
            letters, letter = pick_letter(text, digest)
            payload = wire.answer(body, letter, letters, n, text)
            state.ok_digests[digest] += 1
        state.statuses[200] += 1
        crafted = _CRAFTED.search(text)
        if crafted and wire.craft is not None and (crafted.group(2) is None or state.seen[digest] <= int(crafted.group(2))):
            return web.Response(body=wire.craft(crafted.group(1), payload), content_type="application/json", headers=headers)
        return web.Response(body=orjson.dumps(payload), content_type="application/json", headers=headers)

    async def model(request: web.Request) -> web.Response:
        state.model_lookups += 1
        if state.api_key is not None and wire.key(request) != state.api_key:
            return error(401, "invalid api key")
        name = request.match_info.get("model", "test")
        if name != "test":
            return error(404, f"model {name} not found")
        return web.json_response(wire.model_info(name))

    async def listing(request: web.Request) -> web.Response:
        state.model_lookups += 1
        if state.api_key is not None and wire.key(request) != state.api_key:
            return error(401, "invalid api key")
        return web.json_response({"object": "list", "data": [wire.model_info("test")]})

    async def stats(_: web.Request) -> web.Response:
        return web.json_response(state.stats())

    app = web.Application(client_max_size=client_max_size)  # aiohttp's default 1 MB; a batch input file is larger
    app.router.add_post(wire.generate_path, generate)
    if wire.completions_path:
        app.router.add_post(wire.completions_path, generate)
    app.router.add_get(wire.model_path, model)
    if wire.list_path:
        app.router.add_get(wire.list_path, listing)
    app.router.add_get("/stats", stats)
    return app


class CompatServer:
    """Runs a wire's server on its own thread and event loop; use as a context manager."""

    wire: Wire
    base_path = ""

    def __init__(self, **state: Any) -> None:
        self.state = ServerState(**state)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.base_path}"

    def app(self) -> web.Application:
        """The server's routes (a subclass adds its own, e.g. engine.testing.servers.openai_batch)."""
        return make_app(self.wire, self.state)

    def __enter__(self) -> CompatServer:
        self._thread.start()
        self._runner = web.AppRunner(self.app(), access_log=None)
        asyncio.run_coroutine_threadsafe(self._runner.setup(), self._loop).result()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, backlog=4096)
        asyncio.run_coroutine_threadsafe(site.start(), self._loop).result()
        self.port = site._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)


def main(wire: Wire, doc: str | None) -> None:
    parser = argparse.ArgumentParser(description=doc)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--limit", type=int, default=0, help="accepted requests per window (0 = unlimited)")
    parser.add_argument("--window", type=float, default=60.0, help="window of --limit, seconds")
    parser.add_argument("--fail-rate", type=float, default=0.0)
    parser.add_argument("--fail-status", type=int, default=500)
    args = parser.parse_args()
    state = ServerState(latency=args.latency, limit=args.limit, window_s=args.window, fail_rate=args.fail_rate, fail_status=args.fail_status)
    web.run_app(make_app(wire, state), host="127.0.0.1", port=args.port, access_log=None, print=None, backlog=4096)
