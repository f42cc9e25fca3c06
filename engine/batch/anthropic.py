"""Anthropic Message Batches through the official `anthropic` SDK (client.messages.batches.create/retrieve/list/
results/cancel).

Wire format (docs.anthropic.com/en/api/creating-message-batches, anthropic-python types `MessageBatch`,
`MessageBatchIndividualResponse`): the requests go in the create call, each {"custom_id", "params"} with the
params of the online messages call (custom_id: 1-64 characters of [a-zA-Z0-9_-]; a cache key's 64 hex digits
fit); results are JSONL at the batch's results_url once processing_status is "ended", one line per request:
{"custom_id", "result": {"type": "succeeded", "message"} | {"type": "errored", "error": {"type": "error",
"error": {"type", "message"}}} | {"type": "canceled"} | {"type": "expired"}}. Nothing is uploaded, so nothing
is deleted after a job.

A batch carries no tag of ours (no metadata, no name; its id, created_at and request_counts are all the
MessageBatch object says), but its results name every request by custom_id = our cache key. So after a kill
between create and recording its id, `find` is exact: the candidates are the batches created since the job was
claimed (less a clock skew) with the job's request count that no other local job records; an ended one is ours
when its results' custom_ids are the job's members. While a candidate is still in progress nothing can tell
(two jobs created close together, another grid's batch on the account): `find` raises Undecided and the job
waits, its keys held, until the candidates end (they must end before any result of ours could be read anyway).
No candidate, or every one ended and someone else's: the batch was never created.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection, Mapping
from pathlib import Path
from typing import Any

import orjson

from engine.batch import BATCH_LIMITS, InlineTransport, JobState, Undecided, parse_request
from engine.batch.store import Job
from engine.providers.errors import HTTPStatusError
from engine.request import Response

# The error types of the Messages API and the statuses they are answered with (docs.anthropic.com/en/api/errors).
_STATUS = {"invalid_request_error": 400, "authentication_error": 401, "billing_error": 402, "permission_error": 403, "not_found_error": 404,
           "request_too_large": 413, "rate_limit_error": 429, "api_error": 500, "overloaded_error": 529}
_CLOCK_SKEW_S = 60.0  # a batch created up to this long before the job's claim (clocks differ) can still be it


def _total(counts: Any) -> int:
    """A batch's requests: MessageBatchRequestCounts has no total, only the count in each state."""
    return counts.processing + counts.succeeded + counts.errored + counts.canceled + counts.expired


class AnthropicBatch(InlineTransport):
    limits = BATCH_LIMITS["anthropic"]

    def _connect(self, key: str) -> Any:
        from anthropic import AsyncAnthropic

        return AsyncAnthropic(api_key=key, base_url=self.provider.base_url, max_retries=0, timeout=self.provider.config.limits.timeout_s)

    def line(self, key: str, request: Any) -> bytes:
        return orjson.dumps({"custom_id": key, "params": self.provider._params(request)}) + b"\n"

    async def create(self, job: str, input_ref: str | None, path: Path) -> str:
        return (await self._sdk().messages.batches.create(requests=self.requests(path))).id

    async def find(self, job: Job, taken: Callable[[str], bool], keys: Callable[[], Collection[str]]) -> tuple[str | None, str | None]:
        """The batch whose results' custom_ids are the job's members, among those created since its claim with
        its request count and not recorded for another job; Undecided while such a batch is in progress."""
        client = self._sdk()
        candidates = []
        async for b in client.messages.batches.list(limit=100):
            if b.created_at.timestamp() < job.created_at - _CLOCK_SKEW_S:
                break  # newest first: the rest are older still
            if _total(b.request_counts) == job.requests and not taken(b.id):
                candidates.append(b)
        members: set[str] | None = None
        for b in candidates:
            if b.processing_status == "ended":
                members = members if members is not None else set(keys())
                if {entry.custom_id async for entry in await client.messages.batches.results(b.id)} == members:
                    return b.id, None
        if any(b.processing_status != "ended" for b in candidates):
            raise Undecided(f"{len(candidates)} batch(es) of {job.requests} requests created since job {job.id} was claimed; in progress")
        return None, None

    async def poll(self, remote_id: str) -> JobState:
        b = await self._sdk().messages.batches.retrieve(remote_id)
        c = b.request_counts
        total = _total(c)
        message = ", ".join(f"{n} {what}" for n, what in ((c.errored, "errored"), (c.canceled, "canceled"), (c.expired, "expired")) if n) or None
        kind = "cancelled" if b.cancel_initiated_at is not None else "expired"
        ended = b.processing_status == "ended"
        succeeded = ended and b.cancel_initiated_at is None and not c.expired
        return JobState(b.processing_status, ended, message, total - c.processing, total, (remote_id,), kind, succeeded)

    async def results(self, state: JobState, letters: Mapping[str, tuple[str, ...] | None]) -> AsyncIterator[tuple[str, Response]]:
        decoder = await self._sdk().messages.batches.results(state.outputs[0])
        async for entry in decoder:
            if entry.custom_id in letters:
                yield entry.custom_id, self._response(entry.result, letters[entry.custom_id])

    def _response(self, result: Any, letters: tuple[str, ...] | None) -> Response:
        """One result as the online provider would have answered it."""
        kind = result.type
        if kind == "canceled":
            return Response.failed("cancelled", "canceled: the batch was canceled before this request was processed")
        if kind == "expired":
            return Response.failed("expired", "expired: the batch reached its 24-hour limit before this request was processed")
        try:
            if kind == "errored":
                error = result.error.error
                raise HTTPStatusError(_STATUS.get(error.type, 500), orjson.dumps({"type": "error", "error": {"type": error.type, "message": error.message}}).decode())
            return self.provider._parse(result.message.model_dump(mode="json"), parse_request(letters), {})
        except Exception as exc:
            return self._failed(exc)

    async def cancel(self, remote_id: str) -> None:
        await self._sdk().messages.batches.cancel(remote_id)
