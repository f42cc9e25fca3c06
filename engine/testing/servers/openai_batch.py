"""A real HTTP server on 127.0.0.1 speaking the OpenAI Batch API wire format (plus the chat-completions one).

Routes (platform.openai.com/docs/api-reference/batch and /files; shapes as openai-python 2.x's `Batch`,
`FileObject`, `FileDeleted`, `AsyncCursorPage` read them):
- POST /v1/files (multipart: file, purpose), GET /v1/files?purpose=&after=&limit=, GET /v1/files/{id},
  GET /v1/files/{id}/content, DELETE /v1/files/{id};
- POST /v1/batches {input_file_id, endpoint, completion_window, metadata}, GET /v1/batches/{id},
  GET /v1/batches?after=&limit= (newest first), POST /v1/batches/{id}/cancel;
- everything of engine.testing.servers.openai_compat (chat completions, model lookup), for the engine's preflight.

A job's input is validated at create (each line a JSON object with a custom_id unique in the file, method
POST, url = the endpoint, a body; else status "failed" with errors.data naming the line). It is in_progress
until `process_s` after its creation, then ends, on the first retrieve after that: each line is answered like
the chat-completions server answers it (the same deterministic letter; "<<fail:STATUS>>" in a prompt gives
that status as the line's response), successes to the output file, failed lines to the error file.

Faults (BatchState): `fail_jobs` (ordinals of created jobs, from 1, that fail validation), `expire_jobs`
(ordinals that expire with only the first half of their lines done; the rest are error lines with code
batch_expired), `retrieve_5xx_every` (every n-th GET of a batch answers 500), `shuffle` (result lines out of
input order), a cancel (status cancelling, then cancelled with half of the lines done, the rest
batch_cancelled). Counts: engine.testing.servers.batch_common's BatchState.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from aiohttp import web

from engine.testing.servers.batch_common import BatchRoutes, BatchServer, BatchState, public
from engine.testing.servers.common import FAIL_MARKER, ServerState, make_app, pick_letter, prompt_digest
from engine.testing.servers.openai_compat import WIRE, _error

_ENDPOINT = "/v1/chat/completions"
_MAX_UPLOAD = 200 * 1024 * 1024 + 1024**2  # OpenAI's 200 MB input file limit, plus the multipart framing
_EXPIRED = "This request could not be executed before the completion window expired."
_CANCELLED = "This request was cancelled before it was executed."


def _page(items: list[dict[str, Any]], after: str | None, limit: int) -> dict[str, Any]:
    ids = [i["id"] for i in items]
    start = ids.index(after) + 1 if after in ids else 0
    data = items[start : start + limit]
    return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None, "last_id": data[-1]["id"] if data else None, "has_more": start + limit < len(items)}


def add_batch_routes(app: web.Application, state: ServerState, batch: BatchState) -> None:
    routes = BatchRoutes(state, batch, _error, WIRE.key)
    error, authorized, rng = routes.error, routes.authorized, routes.rng

    def new_file(name: str, purpose: str, data: bytes) -> dict[str, Any]:
        fid = f"file-{len(batch.files) + batch.deletes + 1:06d}{rng.randrange(16**6):06x}"
        obj = {"id": fid, "object": "file", "bytes": len(data), "created_at": int(time.time()), "filename": name, "purpose": purpose, "status": "processed", "expires_at": None, "status_details": None}
        batch.files[fid], batch.contents[fid] = obj, data
        return obj

    async def upload(request: web.Request) -> web.Response:
        if not authorized(request):
            return error(401, "invalid api key")
        form = await request.post()
        f, purpose = form.get("file"), form.get("purpose")
        if f is None or not hasattr(f, "file") or purpose is None:
            return error(400, "expected multipart fields 'file' and 'purpose'")
        data = f.file.read()
        if len(data) > batch.max_file_bytes:
            return error(413, f"File is too large: {len(data)} bytes, the limit is {batch.max_file_bytes}.")
        batch.uploads += 1
        return web.json_response(new_file(f.filename, str(purpose), data))

    async def list_files(request: web.Request) -> web.Response:
        purpose = request.query.get("purpose")
        items = [o for o in reversed(batch.files.values()) if purpose is None or o["purpose"] == purpose]
        return web.json_response(_page(items, request.query.get("after"), int(request.query.get("limit", 10000))))

    async def get_file(request: web.Request) -> web.Response:
        obj = batch.files.get(request.match_info["id"])
        return web.json_response(obj) if obj else error(404, f"No such File object: {request.match_info['id']}")

    async def content(request: web.Request) -> web.Response:
        data = batch.contents.get(request.match_info["id"])
        if data is None:
            return error(404, f"No such File object: {request.match_info['id']}")
        batch.downloads += 1
        return web.Response(body=data, content_type="application/octet-stream")

    async def delete_file(request: web.Request) -> web.Response:
        fid = request.match_info["id"]
        if batch.files.pop(fid, None) is None:
            return error(404, f"No such File object: {fid}")
        batch.contents.pop(fid, None)
        batch.deletes += 1
        return web.json_response({"id": fid, "object": "file", "deleted": True})

    def validate(data: bytes, endpoint: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        lines, problems, seen = [], [], set()
        for n, raw in enumerate(data.splitlines(), 1):
            if not raw.strip():
                continue
            try:
                line = orjson.loads(raw)
            except orjson.JSONDecodeError:
                problems.append({"code": "invalid_json_line", "message": "This line is not parseable as valid JSON.", "param": None, "line": n})
                continue
            cid = line.get("custom_id") if isinstance(line, dict) else None
            if not isinstance(cid, str):
                problems.append({"code": "missing_required_parameter", "message": "Missing required parameter: 'custom_id'.", "param": "custom_id", "line": n})
            elif cid in seen:
                problems.append({"code": "duplicate_custom_id", "message": "The custom_id for this request is a duplicate of another request.", "param": "custom_id", "line": n})
            elif line.get("method") != "POST" or line.get("url") != endpoint or not isinstance(line.get("body"), dict):
                problems.append({"code": "invalid_request", "message": f"Each line must be a POST to {endpoint} with a body.", "param": None, "line": n})
            else:
                seen.add(cid)
                lines.append(line)
        return lines, problems

    async def create(request: web.Request) -> web.Response:
        if not authorized(request):
            return error(401, "invalid api key")
        body = orjson.loads(await request.read())
        fid, endpoint = body.get("input_file_id"), body.get("endpoint")
        if fid not in batch.files:
            return error(400, f"Invalid 'input_file_id': '{fid}'. No such file.")
        if body.get("completion_window") != "24h":
            return error(400, "Invalid 'completion_window': only '24h' is supported.")
        batch.creates += 1
        now = int(time.time())
        bid = f"batch_{batch.creates:06d}{rng.randrange(16**8):08x}"
        lines, problems = validate(batch.contents[fid], endpoint)
        if batch.creates in batch.fail_jobs and not problems:
            # The message echoes the key, as a careless server might: the engine must keep it out of every file.
            message = f"injected validation failure of job {batch.creates} (key {WIRE.key(request)})"
            problems = [{"code": "invalid_request", "message": message, "param": None, "line": 1}]
        if not problems:  # a job that fails validation runs no request
            for line in lines:
                batch.submitted[line["custom_id"]] += 1
        obj = {
            "id": bid, "object": "batch", "endpoint": endpoint, "model": None, "errors": None, "input_file_id": fid,
            "completion_window": "24h", "status": "validating", "output_file_id": None, "error_file_id": None,
            "created_at": now, "in_progress_at": None, "expires_at": now + 86400, "finalizing_at": None, "completed_at": None,
            "failed_at": None, "expired_at": None, "cancelling_at": None, "cancelled_at": None,
            "request_counts": {"total": len(lines), "completed": 0, "failed": 0}, "metadata": body.get("metadata"), "usage": None,
        }
        if problems:
            obj.update(status="failed", failed_at=now, errors={"object": "list", "data": problems}, request_counts={"total": 0, "completed": 0, "failed": 0})
        obj["_lines"], obj["_ordinal"], obj["_key"] = lines, batch.creates, WIRE.key(request)
        routes.created(bid, obj)
        return web.json_response(public(obj))

    def finish(obj: dict[str, Any], status: str) -> None:
        """End a job: answer its lines (all, or the first half for an expired or cancelled one)."""
        lines = obj.pop("_lines")
        if batch.shuffle:
            rng.shuffle(lines)
        done = len(lines) if status == "completed" else len(lines) // 2
        out, err = [], []
        for i, line in enumerate(lines):
            rid = f"batch_req_{obj['_ordinal']}_{i}"
            if i >= done:
                message = _EXPIRED if status == "expired" else _CANCELLED
                err.append({"id": rid, "custom_id": line["custom_id"], "response": None, "error": {"code": f"batch_{status}", "message": message}})
                continue
            body = line["body"]
            text, ident = WIRE.prompt(body)
            if FAIL_MARKER in text:
                code = int(text.split(FAIL_MARKER, 1)[1].split(">>", 1)[0])
                body = _error(code, f"injected failure {code} (key {obj['_key']})")  # echoes the key, like the chat server
                err.append({"id": rid, "custom_id": line["custom_id"], "response": {"status_code": code, "request_id": rid, "body": body}, "error": None})
                continue
            letters, letter = pick_letter(text, prompt_digest(ident))
            answer = WIRE.answer(body, letter, letters, i, text)
            out.append({"id": rid, "custom_id": line["custom_id"], "response": {"status_code": 200, "request_id": rid, "body": answer}, "error": None})
        now = int(time.time())
        name = obj["id"]
        if out:
            obj["output_file_id"] = new_file(f"{name}_output.jsonl", "batch_output", b"".join(orjson.dumps(o) + b"\n" for o in out))["id"]
        if err:
            obj["error_file_id"] = new_file(f"{name}_error.jsonl", "batch_output", b"".join(orjson.dumps(o) + b"\n" for o in err))["id"]
        failed = sum(1 for e in err if e["response"] is not None)
        obj["request_counts"] = {"total": len(lines), "completed": len(out), "failed": failed + (len(err) - failed if status == "completed" else 0)}
        obj.update(status=status, finalizing_at=now, **{f"{status}_at": now})

    def advance(obj: dict[str, Any]) -> None:
        if obj["status"] in ("completed", "failed", "expired", "cancelled"):
            return
        if obj["status"] == "cancelling":
            finish(obj, "cancelled")
        elif routes.due(obj["id"]):
            finish(obj, "expired" if obj["_ordinal"] in batch.expire_jobs else "completed")
        elif obj["status"] == "validating":
            obj.update(status="in_progress", in_progress_at=int(time.time()))

    retrieve = routes.retrieve(batch.batches.get, advance, public, "The server had an error while processing your request.", "No such Batch object: {}")

    async def list_batches(request: web.Request) -> web.Response:
        items = [public(o) for o in reversed(batch.batches.values())]
        return web.json_response(_page(items, request.query.get("after"), int(request.query.get("limit", 20))))

    async def cancel(request: web.Request) -> web.Response:
        obj = batch.batches.get(request.match_info["id"])
        if obj is None:
            return error(404, f"No such Batch object: {request.match_info['id']}")
        if obj["status"] in ("validating", "in_progress", "finalizing"):
            obj.update(status="cancelling", cancelling_at=int(time.time()))
        return web.json_response(public(obj))

    app.router.add_post("/v1/files", upload)
    app.router.add_get("/v1/files", list_files)
    app.router.add_get("/v1/files/{id}", get_file)
    app.router.add_get("/v1/files/{id}/content", content)
    app.router.add_delete("/v1/files/{id}", delete_file)
    app.router.add_post("/v1/batches", create)
    app.router.add_get("/v1/batches", list_batches)
    app.router.add_get("/v1/batches/{id}", retrieve)
    app.router.add_post("/v1/batches/{id}/cancel", cancel)


class OpenAIBatchServer(BatchServer):
    """The OpenAI batch server on its own thread; `batch` holds the job state, faults and counts."""

    wire = WIRE
    base_path = "/v1"
    add_routes = add_batch_routes
    max_body = _MAX_UPLOAD


def main() -> None:
    """Run standalone (for bench/batch.py): python -m engine.testing.servers.openai_batch --port 8012 [--process-s 0.5].
    GET /batch_stats answers the counts (creates, uploads, deletes, retrieves, downloads, duplicates, simulated_s)."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--process-s", type=float, default=0.0)
    args = parser.parse_args()
    state, batch = ServerState(), BatchState(process_s=args.process_s)
    app = make_app(WIRE, state, client_max_size=_MAX_UPLOAD)
    add_batch_routes(app, state, batch)

    async def stats(_: web.Request) -> web.Response:
        keys = ("creates", "uploads", "deletes", "retrieves", "downloads", "simulated_s")
        counts = {k: getattr(batch, k) for k in keys}
        return web.json_response({**counts, "duplicates": batch.duplicates(), "submitted": len(batch.submitted), "cpu_s": time.process_time()})

    app.router.add_get("/batch_stats", stats)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
