"""Gemini batch mode through the official `google-genai` SDK (client.aio.batches.create/get/list/cancel).

Wire format (ai.google.dev/gemini-api/docs/batch-mode; google-genai's batches.py, `_CreateBatchJobParameters_to_mldev`,
`_InlinedRequest_to_mldev`, `_BatchJob_from_mldev`): `POST /v1beta/{model}:batchGenerateContent` with
{"batch": {"displayName", "inputConfig": {"requests": {"requests": [{"request": {"contents",
"generationConfig", "systemInstruction"}, "metadata": {"key"}}]}}}}; `GET /v1beta/batches/{id}` answers
{"name", "metadata": {"state": "BATCH_STATE_*", "output": {"inlinedResponses": {"inlinedResponses":
[{"response" | "error", "metadata"}]}}}}; `POST /v1beta/batches/{id}:cancel`; `GET /v1beta/batches` lists
them as "operations". Requests go inline (up to 20 MB a job, engine.batch.BATCH_LIMITS), with the cache key in
each request's metadata; the batch's displayName is mtpa-<job>, which `find` looks for after a kill.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection, Mapping
from pathlib import Path
from typing import Any

import orjson

from engine.batch import BATCH_LIMITS, InlineTransport, JobState, parse_request
from engine.batch.store import Job
from engine.providers.errors import HTTPStatusError
from engine.providers.google import _SDK_FIELDS, API_VERSION
from engine.request import Response

_ENDED = {"JOB_STATE_SUCCEEDED": "batch_missing", "JOB_STATE_FAILED": "batch_failed", "JOB_STATE_CANCELLED": "cancelled", "JOB_STATE_EXPIRED": "expired"}


def _name(job: str) -> str:
    return f"mtpa-{job}"


class GoogleBatch(InlineTransport):
    limits = BATCH_LIMITS["google"]

    def _connect(self, key: str) -> Any:
        from google import genai
        from google.genai import types

        timeout_ms = int(self.provider.config.limits.timeout_s * 1000)
        options = types.HttpOptions(base_url=self.provider.base_url, api_version=API_VERSION, timeout=timeout_ms, retry_options=types.HttpRetryOptions(attempts=1))
        return genai.Client(api_key=key, http_options=options).aio

    def line(self, key: str, request: Any) -> bytes:
        """An InlinedRequest as the SDK takes it: contents, config (GenerateContentConfig fields), metadata."""
        params = self.provider._params(request)
        config = {_SDK_FIELDS[k]: v for k, v in params["generationConfig"].items()}
        if "systemInstruction" in params:
            config["system_instruction"] = params["systemInstruction"]["parts"][0]["text"]
        return orjson.dumps({"contents": params["contents"], "config": config, "metadata": {"key": key}}) + b"\n"

    async def create(self, job: str, input_ref: str | None, path: Path) -> str:
        created = await self._sdk().batches.create(model=self.provider.config.model, src=self.requests(path), config={"display_name": _name(job)})
        return created.name

    async def find(self, job: Job, taken: Callable[[str], bool], keys: Callable[[], Collection[str]]) -> tuple[str | None, str | None]:
        """Exact: the batch's displayName carries the local job id."""
        async for b in await self._sdk().batches.list(config={"page_size": 100}):
            if b.display_name == _name(job.id):
                return b.name, None
        return None, None

    async def poll(self, remote_id: str) -> JobState:
        b = await self._sdk().batches.get(name=remote_id)
        state = b.state.value if hasattr(b.state, "value") else str(b.state)
        message = self.provider._redact(f"{b.error.code}: {b.error.message}") if getattr(b, "error", None) else None
        return JobState.of(state, _ENDED, message, 0, 0, (remote_id,))

    async def results(self, state: JobState, letters: Mapping[str, tuple[str, ...] | None]) -> AsyncIterator[tuple[str, Response]]:
        b = await self._sdk().batches.get(name=state.outputs[0])
        for item in (b.dest.inlined_responses if b.dest is not None else None) or ():
            key = (item.metadata or {}).get("key")
            if key in letters:
                yield key, self._response(item, letters[key])

    def _response(self, item: Any, letters: tuple[str, ...] | None) -> Response:
        try:
            if item.error is not None:
                error = item.error if isinstance(item.error, dict) else item.error.model_dump(mode="json")
                raise HTTPStatusError(int(error.get("code") or 500), orjson.dumps({"error": error}).decode())
            body = item.response.model_dump(mode="json", by_alias=True, exclude_none=True)
            config = {"logprobs": len(letters)} if letters is not None else {}
            return self.provider._parse(body, parse_request(letters), {"generationConfig": config})
        except Exception as exc:
            return self._failed(exc)

    async def cancel(self, remote_id: str) -> None:
        await self._sdk().batches.cancel(name=remote_id)
