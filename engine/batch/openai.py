"""OpenAI Batch API through the official `openai` SDK (files.create/list/content/delete, batches.create/retrieve/list/cancel).

Wire format (platform.openai.com/docs/guides/batch, openai-python 2.x types `Batch`, `FileObject`): an input JSONL
of {"custom_id", "method": "POST", "url": "/v1/chat/completions", "body"} uploaded with purpose "batch"; one
output line per finished request, {"id", "custom_id", "response": {"status_code", "request_id", "body"},
"error"}, in the output file (successes) or the error file (failed requests; and requests a job left
unfinished: "response": null, "error": {"code": "batch_expired" | "batch_cancelled", "message"}).

The local job id is kept twice at the provider, so a run killed mid-submission finds its own traces: as the
input file's name (mtpa-<job>.jsonl) and as the batch's metadata {"mtpa_job": <job>}.

SDK retries are off (max_retries=0): a create retried by the SDK after a lost answer would submit the job
twice; the driver retries on its next poll, after `find` has looked for what the lost call did.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection, Mapping
from pathlib import Path
from typing import Any

import orjson

from engine.batch import BATCH_LIMITS, BatchTransport, JobState, parse_request
from engine.batch.store import Job
from engine.providers.api import loads
from engine.providers.errors import HTTPStatusError, body_error
from engine.request import Response

_ENDPOINT = "/v1/chat/completions"
_ENDED = {"completed": "batch_missing", "failed": "batch_failed", "expired": "expired", "cancelled": "cancelled"}
_LINE_KINDS = {"batch_expired": "expired", "batch_cancelled": "cancelled"}


def _file_name(job: str) -> str:
    return f"mtpa-{job}.jsonl"


class OpenAIBatch(BatchTransport):
    limits = BATCH_LIMITS["openai"]

    def _connect(self, key: str) -> Any:
        from openai import AsyncOpenAI

        return AsyncOpenAI(api_key=key, base_url=self.provider.base_url, max_retries=0, timeout=self.provider.config.limits.timeout_s)

    def line(self, key: str, request: Any) -> bytes:
        return orjson.dumps({"custom_id": key, "method": "POST", "url": _ENDPOINT, "body": self.provider._params(request)}) + b"\n"

    async def upload(self, job: str, path: Path) -> str | None:
        with path.open("rb") as f:
            uploaded = await self._sdk().files.create(file=(_file_name(job), f, "application/jsonl"), purpose="batch")
        return uploaded.id

    async def create(self, job: str, input_ref: str | None, path: Path) -> str:
        window = self.provider.config.batch.completion_window
        batch = await self._sdk().batches.create(input_file_id=input_ref, endpoint=_ENDPOINT, completion_window=window, metadata={"mtpa_job": job})
        return batch.id

    async def find(self, job: Job, taken: Callable[[str], bool], keys: Callable[[], Collection[str]]) -> tuple[str | None, str | None]:
        """Exact: the batch's metadata, or the input file's name, carries the local job id."""
        client = self._sdk()
        async for batch in client.batches.list(limit=100):
            if (batch.metadata or {}).get("mtpa_job") == job.id:
                return batch.id, batch.input_file_id
        async for f in client.files.list(purpose="batch"):
            if f.filename == _file_name(job.id):
                return None, f.id
        return None, None

    async def poll(self, remote_id: str) -> JobState:
        """The job's status and counts; `outputs` its output and error files."""
        b = await self._sdk().batches.retrieve(remote_id)
        counts = b.request_counts
        done = (counts.completed + counts.failed) if counts else 0
        message = None
        if b.errors is not None and b.errors.data:
            message = "; ".join(f"{e.code}: {e.message}" + (f" (line {e.line})" if e.line else "") for e in b.errors.data)
        elif b.status == "expired":
            message = f"the job expired after its {b.completion_window} window with {done} of {counts.total if counts else '?'} requests done"
        outputs = tuple(f for f in (b.output_file_id, b.error_file_id) if f)
        return JobState.of(b.status, _ENDED, self.provider._redact(message) if message else None, done, counts.total if counts else 0, outputs)

    async def results(self, state: JobState, letters: Mapping[str, tuple[str, ...] | None]) -> AsyncIterator[tuple[str, Response]]:
        client = self._sdk()
        for file_id in state.outputs:
            async with client.files.with_streaming_response.content(file_id) as stream:
                async for raw in stream.iter_lines():
                    if not raw.strip():
                        continue
                    line = loads(raw)
                    key = line.get("custom_id")
                    if key in letters:
                        yield key, self._response(line, letters[key])

    def _response(self, line: dict[str, Any], letters: tuple[str, ...] | None) -> Response:
        """One result line as the online provider would have answered it."""
        response, error = line.get("response"), line.get("error")
        if not isinstance(response, dict):
            code = (error or {}).get("code") or "batch_error"
            return Response.failed(_LINE_KINDS.get(code, code), self.provider._redact(f"{code}: {(error or {}).get('message', '')}"))
        body = response.get("body")
        status = response.get("status_code")
        try:
            if status != 200:
                raise HTTPStatusError(int(status or 500), orjson.dumps(body).decode())
            if (failure := body_error(body)) is not None:
                raise failure
            return self.provider._parse(body, parse_request(letters), {"logprobs": True} if letters is not None else {})
        except Exception as exc:
            return self._failed(exc)

    async def cancel(self, remote_id: str) -> None:
        await self._sdk().batches.cancel(remote_id)

    async def cleanup(self, input_ref: str | None, state: JobState | None) -> None:
        from openai import NotFoundError

        if input_ref is None:
            return
        try:
            await self._sdk().files.delete(input_ref)
        except NotFoundError:
            pass
