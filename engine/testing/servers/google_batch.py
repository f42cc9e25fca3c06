"""A real HTTP server on 127.0.0.1 speaking the Gemini batch mode wire format (plus generateContent).

Routes (ai.google.dev/api/batch-mode; shapes as google-genai's batches.py reads and writes them in Gemini
Developer API mode, `_CreateBatchJobParameters_to_mldev`, `_BatchJob_from_mldev`, `_ListBatchJobsResponse_from_mldev`):
- POST /v1beta/models/{model}:batchGenerateContent {"batch": {"displayName", "inputConfig": {"requests":
  {"requests": [{"request", "metadata"}]}}}} -> the batch {"name": "batches/...", "metadata": {"state", ...}};
- GET /v1beta/batches/{id}: once ended, metadata.output.inlinedResponses.inlinedResponses holds one
  {"response"} or {"error": {"code", "message", "status"}} per request, with its metadata;
- GET /v1beta/batches?pageSize=&pageToken= -> {"operations": [...], "nextPageToken"}; POST /v1beta/batches/{id}:cancel;
- everything of engine.testing.servers.google_compat, for the engine's preflight.

A batch is BATCH_STATE_RUNNING until `process_s` after its creation, then SUCCEEDED (every request answered
like generateContent answers it; "<<fail:STATUS>>" gives an error entry), or EXPIRED for `expire_jobs`
ordinals and CANCELLED after a cancel (no output: Gemini returns none for those). Faults and counts are
engine.testing.servers.batch_common's BatchState (`retrieve_5xx_every`, `shuffle`, `submitted`, creates, retrieves).
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from aiohttp import web

from engine.testing.servers.batch_common import BatchRoutes, BatchServer, BatchState, iso, public
from engine.testing.servers.common import FAIL_MARKER, ServerState, pick_letter, prompt_digest
from engine.testing.servers.google_compat import WIRE, _error


def add_batch_routes(app: web.Application, state: ServerState, batch: BatchState) -> None:
    routes = BatchRoutes(state, batch, _error, WIRE.key)
    error, authorized, rng = routes.error, routes.authorized, routes.rng

    async def create(request: web.Request) -> web.Response:
        if not authorized(request):
            return error(401, "API key not valid. Please pass a valid API key.")
        body = orjson.loads(await request.read())
        spec = body.get("batch") or {}
        requests = ((spec.get("inputConfig") or {}).get("requests") or {}).get("requests")
        if not isinstance(requests, list) or not requests:
            return error(400, "batch.inputConfig.requests: expected a non-empty list")
        batch.creates += 1
        for r in requests:
            batch.submitted[str((r.get("metadata") or {}).get("key"))] += 1  # the engine's metadata: {"key": cache key}
        now = time.time()
        name = f"batches/{batch.creates:06d}{rng.randrange(16**10):010x}"
        meta = {
            "@type": "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch",
            "model": f"models/{request.match_info['model']}", "displayName": spec.get("displayName", ""), "name": name,
            "createTime": iso(now), "updateTime": iso(now), "state": "BATCH_STATE_PENDING",
            "batchStats": {"requestCount": str(len(requests)), "pendingRequestCount": str(len(requests))},
        }
        obj = {"name": name, "metadata": meta, "done": False, "_requests": requests, "_ordinal": batch.creates}
        routes.created(name, obj)
        return web.json_response(public(obj))

    def finish(obj: dict[str, Any], final: str) -> None:
        requests = obj.pop("_requests")
        meta = obj["metadata"]
        if final == "BATCH_STATE_SUCCEEDED":
            if batch.shuffle:
                rng.shuffle(requests)
            out = []
            for i, r in enumerate(requests):
                req = r.get("request") or {}
                text, ident = WIRE.prompt(req)
                if FAIL_MARKER in text:
                    status = int(text.split(FAIL_MARKER, 1)[1].split(">>", 1)[0])
                    out.append({"error": _error(status, f"injected failure {status}")["error"], "metadata": r.get("metadata")})
                    continue
                letters, letter = pick_letter(text, prompt_digest(ident))
                out.append({"response": WIRE.answer(req, letter, letters, i, text), "metadata": r.get("metadata")})
            meta["output"] = {"inlinedResponses": {"inlinedResponses": out}}
            failed = sum(1 for o in out if "error" in o)
            meta["batchStats"] = {"requestCount": str(len(out)), "successfulRequestCount": str(len(out) - failed), "failedRequestCount": str(failed)}
        meta.update(state=final, endTime=iso(time.time()), updateTime=iso(time.time()))
        obj["done"] = True

    def advance(obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        if obj["done"]:
            return
        if meta.get("_cancel"):
            meta.pop("_cancel")
            finish(obj, "BATCH_STATE_CANCELLED")
        elif routes.due(obj["name"]):
            finish(obj, "BATCH_STATE_EXPIRED" if obj["_ordinal"] in batch.expire_jobs else "BATCH_STATE_SUCCEEDED")
        else:
            meta["state"] = "BATCH_STATE_RUNNING"

    def found(bid: str) -> dict[str, Any] | None:
        return batch.batches.get(f"batches/{bid}")

    retrieve = routes.retrieve(found, advance, lambda obj: {**public(obj), "metadata": public(obj["metadata"])}, "Internal error encountered.", "Batch {} not found.")

    async def list_batches(request: web.Request) -> web.Response:
        items = [{**public(o), "metadata": {k: v for k, v in o["metadata"].items() if k != "output" and not k.startswith("_")}} for o in reversed(batch.batches.values())]
        start = int(request.query.get("pageToken") or 0)
        size = int(request.query.get("pageSize") or 50)
        page = {"operations": items[start : start + size]}
        if start + size < len(items):
            page["nextPageToken"] = str(start + size)
        return web.json_response(page)

    async def cancel(request: web.Request) -> web.Response:
        obj = found(request.match_info["id"])
        if obj is None:
            return error(404, f"Batch {request.match_info['id']} not found.")
        if not obj["done"]:
            obj["metadata"]["_cancel"] = True
        return web.json_response({})

    app.router.add_post("/v1beta/models/{model}:batchGenerateContent", create)
    app.router.add_get("/v1beta/batches", list_batches)
    app.router.add_get("/v1beta/batches/{id}", retrieve)
    app.router.add_post("/v1beta/batches/{id}:cancel", cancel)


class GoogleBatchServer(BatchServer):
    """The Gemini batch server on its own thread; `batch` holds the jobs, faults and counts."""

    wire = WIRE
    add_routes = add_batch_routes
    max_body = 32 * 1024 * 1024  # inline requests: 20 MB, plus JSON
