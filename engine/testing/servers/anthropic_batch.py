"""A real HTTP server on 127.0.0.1 speaking the Anthropic Message Batches wire format (plus the messages one).

Routes (docs.anthropic.com/en/api/creating-message-batches, retrieving-message-batches, listing-message-batches,
canceling-message-batches, retrieving-message-batch-results; shapes as anthropic-python's `MessageBatch`,
`MessageBatchIndividualResponse`, `AsyncPage` read them):
- POST /v1/messages/batches {"requests": [{"custom_id", "params"}]}: a custom_id must match ^[a-zA-Z0-9_-]{1,64}$
  and be unique in the batch, else 400 invalid_request_error (nothing created);
- GET /v1/messages/batches/{id}, GET /v1/messages/batches?after_id=&limit= (newest first),
  POST /v1/messages/batches/{id}/cancel, GET /v1/messages/batches/{id}/results (JSONL, at `results_url`);
- everything of engine.testing.servers.anthropic_compat, for the engine's preflight.

A batch is in_progress until `process_s` after its creation, then ends (processing_status "ended") on the first
retrieve after that; each request is answered like the messages server answers it ("<<fail:STATUS>>" in a
prompt: an errored result of that status's error type). Faults and counts are engine.testing.servers.batch_common's
BatchState: `expire_jobs` (the second half of those jobs' requests "expired"), `retrieve_5xx_every`, `shuffle`,
a cancel (the second half "canceled"), `submitted` per custom_id, creates and retrieves.
"""

from __future__ import annotations

import re
import time
from typing import Any

import orjson
from aiohttp import web

from engine.testing.servers.anthropic_compat import _ERROR_TYPES, WIRE
from engine.testing.servers.batch_common import BatchRoutes, BatchServer, BatchState, iso, public
from engine.testing.servers.common import FAIL_MARKER, ServerState, pick_letter, prompt_digest

_CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def add_batch_routes(app: web.Application, state: ServerState, batch: BatchState) -> None:
    routes = BatchRoutes(state, batch, WIRE.error, WIRE.key)
    error, authorized, rng = routes.error, routes.authorized, routes.rng
    results: dict[str, bytes] = {}

    async def create(request: web.Request) -> web.Response:
        if not authorized(request):
            return error(401, "invalid x-api-key")
        body = orjson.loads(await request.read())
        requests = body.get("requests")
        if not isinstance(requests, list) or not requests:
            return error(400, "requests: expected a non-empty list")
        seen = set()
        for i, r in enumerate(requests):
            cid = r.get("custom_id") if isinstance(r, dict) else None
            if not isinstance(cid, str) or not _CUSTOM_ID.match(cid):
                return error(400, f"requests.{i}.custom_id: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'")
            if cid in seen:
                return error(400, f"requests.{i}.custom_id: duplicate custom_id '{cid}'")
            if not isinstance(r.get("params"), dict):
                return error(400, f"requests.{i}.params: Field required")
            seen.add(cid)
        batch.creates += 1
        for r in requests:
            batch.submitted[r["custom_id"]] += 1
        now = time.time()
        bid = f"msgbatch_{batch.creates:06d}{rng.randrange(16**10):010x}"
        obj = {
            "id": bid, "type": "message_batch", "processing_status": "in_progress",
            "request_counts": {"processing": len(requests), "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0},
            "ended_at": None, "created_at": iso(now), "expires_at": iso(now + 86400), "archived_at": None,
            "cancel_initiated_at": None, "results_url": None,
            "_requests": requests, "_ordinal": batch.creates, "_base": f"{request.scheme}://{request.host}",
        }
        routes.created(bid, obj)
        return web.json_response(public(obj))

    def finish(obj: dict[str, Any], cut: str | None) -> None:
        """End a batch: answer its requests (the second half `cut`: "expired" or "canceled")."""
        requests = obj.pop("_requests")
        if batch.shuffle:
            rng.shuffle(requests)
        done = len(requests) if cut is None else len(requests) // 2
        counts = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        lines = []
        for i, r in enumerate(requests):
            if i >= done:
                result: dict[str, Any] = {"type": cut}
            else:
                text, ident = WIRE.prompt(r["params"])
                if FAIL_MARKER in text:
                    status = int(text.split(FAIL_MARKER, 1)[1].split(">>", 1)[0])
                    result = {"type": "errored", "error": {"type": "error", "error": {"type": _ERROR_TYPES.get(status, "api_error"), "message": f"injected failure {status}"}}}
                else:
                    letters, letter = pick_letter(text, prompt_digest(ident))
                    result = {"type": "succeeded", "message": WIRE.answer(r["params"], letter, letters, i, text)}
            counts[result["type"]] += 1
            lines.append(orjson.dumps({"custom_id": r["custom_id"], "result": result}) + b"\n")
        results[obj["id"]] = b"".join(lines)
        obj.update(processing_status="ended", ended_at=iso(time.time()), request_counts=counts, results_url=f"{obj['_base']}/v1/messages/batches/{obj['id']}/results")

    def advance(obj: dict[str, Any]) -> None:
        if obj["processing_status"] == "ended":
            return
        if obj["processing_status"] == "canceling":
            finish(obj, "canceled")
        elif routes.due(obj["id"]):
            finish(obj, "expired" if obj["_ordinal"] in batch.expire_jobs else None)

    retrieve = routes.retrieve(batch.batches.get, advance, public, "Internal server error", "message batch {} not found")

    async def list_batches(request: web.Request) -> web.Response:
        for obj in batch.batches.values():  # a listing shows each batch's state now, as retrieving it would
            advance(obj)
        items = [public(o) for o in reversed(batch.batches.values())]
        ids = [i["id"] for i in items]
        after = request.query.get("after_id")
        start = ids.index(after) + 1 if after in ids else 0
        limit = int(request.query.get("limit", 20))
        data = items[start : start + limit]
        return web.json_response({"data": data, "has_more": start + limit < len(items), "first_id": data[0]["id"] if data else None, "last_id": data[-1]["id"] if data else None})

    async def cancel(request: web.Request) -> web.Response:
        obj = batch.batches.get(request.match_info["id"])
        if obj is None:
            return error(404, f"message batch {request.match_info['id']} not found")
        if obj["processing_status"] == "in_progress":
            obj.update(processing_status="canceling", cancel_initiated_at=iso(time.time()))
        return web.json_response(public(obj))

    async def get_results(request: web.Request) -> web.Response:
        data = results.get(request.match_info["id"])
        if data is None:
            return error(404, "results not available: the batch has not ended")
        batch.downloads += 1
        return web.Response(body=data, content_type="application/binary")

    app.router.add_post("/v1/messages/batches", create)
    app.router.add_get("/v1/messages/batches", list_batches)
    app.router.add_get("/v1/messages/batches/{id}", retrieve)
    app.router.add_post("/v1/messages/batches/{id}/cancel", cancel)
    app.router.add_get("/v1/messages/batches/{id}/results", get_results)


class AnthropicBatchServer(BatchServer):
    """The Anthropic batch server on its own thread; `batch` holds the jobs, faults and counts."""

    wire = WIRE
    add_routes = add_batch_routes
    max_body = 256 * 1024 * 1024  # Anthropic's 256 MB per batch
