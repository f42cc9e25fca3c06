"""What the three batch test servers (openai_batch, anthropic_batch, google_batch) share: the job state, faults
and counts (`BatchState`), the route boilerplate around a provider's batch objects (`BatchRoutes`: errors in
the wire's shape, the key check, an object's public fields, simulated processing time, the retrieve route with
its 5xx fault and 404), and the server class (`BatchServer`). A provider's module keeps only its wire: its
objects' shapes, how a batch ends, and its routes.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

from aiohttp import web

from engine.testing.servers.common import CompatServer, ServerState, make_app


@dataclass
class BatchState:
    """A batch server's jobs, faults and counts.

    Faults: `fail_jobs` (ordinals of created jobs, from 1, that fail; OpenAI: validation), `expire_jobs` (ordinals
    that expire with only part of their requests done), `retrieve_5xx_every` (every n-th GET of a batch answers
    500), `shuffle` (results out of input order), `max_file_bytes` (OpenAI: a larger upload is refused, 413).
    Counts: `submitted` (times each custom_id was put in a created job: never more than once), creates, uploads,
    deletes, retrieves, downloads, and `simulated_s` (processing time the server made clients wait)."""

    process_s: float = 0.0  # a job's simulated processing time
    fail_jobs: set[int] = field(default_factory=set)
    expire_jobs: set[int] = field(default_factory=set)
    retrieve_5xx_every: int = 0
    shuffle: bool = False
    max_file_bytes: int = 200 * 1024 * 1024  # a larger upload is refused (413), as OpenAI refuses one over 200 MB
    seed: int = 0
    files: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> FileObject fields
    contents: dict[str, bytes] = field(default_factory=dict)
    batches: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> the provider's batch object, in creation order
    ready_at: dict[str, float] = field(default_factory=dict)
    submitted: Counter = field(default_factory=Counter)  # custom_id -> jobs it was created in
    creates: int = 0
    uploads: int = 0
    deletes: int = 0
    retrieves: int = 0
    downloads: int = 0
    simulated_s: float = 0.0

    def duplicates(self) -> int:
        return sum(n - 1 for n in self.submitted.values() if n > 1)

    def live_files(self, purpose: str = "batch") -> list[str]:
        return [f for f, obj in self.files.items() if obj["purpose"] == purpose]


def iso(t: float) -> str:
    """RFC 3339 UTC time, as Anthropic and Google write it."""
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def public(obj: dict[str, Any]) -> dict[str, Any]:
    """A batch object without the server's private fields (those starting with "_")."""
    return {k: v for k, v in obj.items() if not k.startswith("_")}


class BatchRoutes:
    """The routes' shared parts, bound to one server's state and wire (`error_body(status, message)`: the
    provider's error JSON; `key(request)`: the key the request carries)."""

    def __init__(self, state: ServerState, batch: BatchState, error_body: Callable[[int, str], dict[str, Any]], key: Callable[[web.Request], str | None]) -> None:
        self.state, self.batch = state, batch
        self._error_body, self._key = error_body, key
        self.rng = random.Random(batch.seed)

    def error(self, status: int, message: str) -> web.Response:
        self.state.statuses[status] += 1
        return web.json_response(self._error_body(status, message), status=status)

    def authorized(self, request: web.Request) -> bool:
        return self.state.api_key is None or self._key(request) == self.state.api_key

    def created(self, obj_id: str, obj: dict[str, Any]) -> None:
        """Record a new batch; it is processed for `process_s` from now."""
        self.batch.batches[obj_id] = obj
        self.batch.ready_at[obj_id] = time.monotonic() + self.batch.process_s

    def due(self, obj_id: str) -> bool:
        """Whether the batch's processing time is over (then counted in simulated_s: call once, as it ends)."""
        if time.monotonic() < self.batch.ready_at[obj_id]:
            return False
        self.batch.simulated_s += self.batch.process_s
        return True

    def retrieve(self, find: Callable[[str], dict[str, Any] | None], advance: Callable[[dict[str, Any]], None], view: Callable[[dict[str, Any]], dict[str, Any]], fault: str, missing: str) -> Callable:
        """GET of one batch: every `retrieve_5xx_every`-th answers 500 (`fault`), an unknown id 404 (`missing`,
        formatted with the id); else the batch advanced (`advance`: ends it when due) and shown (`view`)."""

        async def handler(request: web.Request) -> web.Response:
            self.batch.retrieves += 1
            if self.batch.retrieve_5xx_every and self.batch.retrieves % self.batch.retrieve_5xx_every == 0:
                return self.error(500, fault)
            obj = find(request.match_info["id"])
            if obj is None:
                return self.error(404, missing.format(request.match_info["id"]))
            advance(obj)
            return web.json_response(view(obj))

        return handler


class BatchServer(CompatServer):
    """A provider's batch server (its batch routes beside its online ones) on its own thread; `batch` holds the
    jobs, faults and counts. A subclass names its wire, `add_routes` and `max_body` (the provider's request limit)."""

    add_routes: ClassVar[Callable[[web.Application, ServerState, BatchState], None]]
    max_body: ClassVar[int]

    def __init__(self, batch: BatchState | None = None, **state: Any) -> None:
        super().__init__(**state)
        self.batch = batch or BatchState()

    def app(self) -> web.Application:
        app = make_app(self.wire, self.state, client_max_size=self.max_body)
        type(self).add_routes(app, self.state, self.batch)
        return app
