"""Provider batch APIs (`transport = "batch"`): cache misses packed into jobs, submitted, polled and resumed.

One small interface per provider (`BatchTransport`, one file each: engine/batch/openai.py, ...), one driver
(engine/batch/driver.py) that the scheduler calls through one hook, and the job state in the cache database
(engine/batch/store.py). This module stays import-light: engine.grid reads BATCH_LIMITS to check [models.batch].
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.batch.store import Job
    from engine.providers.api import APIProvider
    from engine.request import Request, Response


@dataclass(frozen=True)
class BatchLimits:
    """What one job may hold: requests, and bytes of its input (the JSONL file, or the request body)."""

    max_requests: int
    max_bytes: int


# OpenAI: platform.openai.com/docs/guides/batch ("up to 50,000 requests, input file up to 200 MB").
# Anthropic: docs.anthropic.com/en/docs/build-with-claude/batch-processing ("100,000 requests or 256 MB").
# Gemini: ai.google.dev/gemini-api/docs/batch-mode (inline requests up to 20 MB in total).
BATCH_LIMITS: dict[str, BatchLimits] = {
    "openai": BatchLimits(50_000, 200 * 1024 * 1024),
    "anthropic": BatchLimits(100_000, 256 * 1024 * 1024),
    "google": BatchLimits(100_000, 20 * 1024 * 1024),
}
_TRANSPORTS = {
    "openai": "engine.batch.openai:OpenAIBatch",
    "anthropic": "engine.batch.anthropic:AnthropicBatch",
    "google": "engine.batch.google:GoogleBatch",
}
BATCH_PROVIDERS = tuple(_TRANSPORTS)


@dataclass(frozen=True)
class JobState:
    """A provider job as last seen. `ended`: no request of it will change any more (results final)."""

    status: str  # the provider's own word (validating, in_progress, completed, expired, ended, ...)
    ended: bool
    message: str | None = None  # why a job failed / expired, in the provider's words
    done: int = 0  # requests the provider reports finished (success or error)
    total: int = 0
    outputs: tuple[str, ...] = ()  # where its results are (file ids, a results URL)
    leftover_kind: str = "expired"  # error kind of members with no result line: expired | cancelled | batch_failed
    # ran to its normal end (OpenAI "completed", Gemini JOB_STATE_SUCCEEDED, Anthropic "ended" neither cancelled
    # nor with expired requests); a job that did not is reported with its provider message
    succeeded: bool = False

    @classmethod
    def of(cls, status: str, ended: Mapping[str, str], message: str | None, done: int, total: int, outputs: tuple[str, ...]) -> JobState:
        """The state of a provider whose status word says it all: `ended` maps each final status to the error
        kind of the members left without a result line (OpenAI's completed -> batch_missing, failed ->
        batch_failed, ...)."""
        # the success status is the one whose missing lines are `batch_missing` (nothing else explains them)
        return cls(status, status in ended, message, done, total, outputs, ended.get(status, "expired"), ended.get(status) == "batch_missing")


# Error kinds of batch requests left unanswered by their job (not by the model): a rerun submits them again.
UNANSWERED_KINDS = ("expired", "cancelled", "batch_failed", "batch_missing", "batch_elsewhere", "batch_error")


@dataclass
class BatchStats:
    """What the live display and --summary-json show of the batch models."""

    jobs_submitted: int = 0
    jobs_resumed: int = 0  # jobs an earlier (killed or interrupted) run submitted, polled and collected by this one
    jobs_in_progress: int = 0
    jobs_done: int = 0
    requests_submitted: int = 0
    requests_resumed: int = 0  # the requests of jobs_resumed
    requests_done: int = 0
    next_poll_at: float | None = None  # time.time() of the next poll
    failed_jobs: list[str] = field(default_factory=list)  # "job: status: provider message"

    @property
    def active(self) -> bool:
        """Any job submitted or resumed this run (a fully cached rerun has none: nothing to show)."""
        return bool(self.jobs_submitted or self.jobs_resumed)

    def summary(self) -> dict:
        return {
            "jobs_submitted": self.jobs_submitted,
            "jobs_resumed": self.jobs_resumed,
            "jobs_in_progress": self.jobs_in_progress,
            "jobs_done": self.jobs_done,
            "requests_submitted": self.requests_submitted,
            "requests_resumed": self.requests_resumed,
            "requests_done": self.requests_done,
            "failed_jobs": self.failed_jobs,
        }


class BatchTransport(ABC):
    """How one provider's batch API is spoken. Built from the online provider of the same model, whose
    request body (`_params`), answer parser (`_parse`), key and endpoint it reuses: a batch answer is parsed
    exactly like an online one.

    Every method raises on a transport failure (HTTP error, connection); the driver retries at the next poll.
    """

    limits: BatchLimits

    def __init__(self, provider: APIProvider) -> None:
        self.provider = provider
        self._client: Any = None

    def _sdk(self) -> Any:
        """The provider's official async client, built on first use. Its key is set on the provider too, whose
        _redact then masks it in every message."""
        if self._client is None:
            key = self.provider._key = self.provider._api_key()
            self._client = self._connect(key)
        return self._client

    @abstractmethod
    def _connect(self, key: str) -> Any:
        """The official SDK's async client, with its own retries off (max_retries=0 or the like): a create retried
        by an SDK after a lost answer would submit a job twice; the driver retries after `find` has looked."""

    def _failed(self, exc: BaseException) -> Response:
        """A result line the online parser refused, or an error line: that request's error, never the job's."""
        from engine.providers.errors import classify, describe
        from engine.request import Response

        return Response.failed(classify(exc), self.provider._redact(describe(exc)))

    @abstractmethod
    def line(self, key: str, request: Request) -> bytes:
        """One request as a line of the job's input (custom_id = the cache key), newline-terminated."""

    @abstractmethod
    async def upload(self, job: str, path: Path) -> str | None:
        """Upload the input at `path` (named after the local `job` id); its provider id, or None where the
        provider takes the requests in the create call."""

    @abstractmethod
    async def create(self, job: str, input_ref: str | None, path: Path) -> str:
        """Create the job (tagged with the local `job` id where the provider keeps tags); its provider id."""

    @abstractmethod
    async def find(self, job: Job, taken: Callable[[str], bool], keys: Callable[[], Collection[str]]) -> tuple[str | None, str | None]:
        """After a kill: (provider job id, uploaded input id) the provider holds for the local `job`, or None;
        `taken(remote_id)` says a provider job is already recorded for another local job; `keys()` gives the
        job's members (its requests' custom_ids). Raises Undecided when the provider cannot tell yet."""

    @abstractmethod
    async def poll(self, remote_id: str) -> JobState: ...

    @abstractmethod
    def results(self, state: JobState, letters: Mapping[str, tuple[str, ...] | None]) -> AsyncIterator[tuple[str, Response]]:
        """(cache key, response) per result line of an ended job, in the provider's order; `letters` gives, per
        member key, the answer letters whose logprobs were asked for (None: none)."""

    @abstractmethod
    async def cancel(self, remote_id: str) -> None: ...

    @abstractmethod
    async def cleanup(self, input_ref: str | None, state: JobState | None) -> None:
        """Delete what was uploaded for an ended job (its input file); a missing file is not an error."""

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await (client.aclose() if hasattr(client, "aclose") else client.close())


class InlineTransport(BatchTransport):
    """A provider that takes the requests in the create call (Anthropic, Gemini): nothing is uploaded, so
    nothing is deleted after a job; `requests` reads them back from the job's spool file."""

    async def upload(self, job: str, path: Path) -> str | None:
        return None

    async def cleanup(self, input_ref: str | None, state: JobState | None) -> None:
        return None

    @staticmethod
    def requests(path: Path) -> list[dict]:
        import orjson

        return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


class Undecided(Exception):
    """`find` cannot tell yet whether the provider holds the job (Anthropic: a candidate batch has not ended,
    and only its results name its requests). The job stays as it is, its keys held; ask again at the next poll."""


def open_transport(provider: APIProvider) -> BatchTransport:
    """The batch transport of `provider`'s model (transport = "batch"). Raises KeyError for a provider without one."""
    module, cls = _TRANSPORTS[provider.name].split(":")
    return getattr(importlib.import_module(module), cls)(provider)


def parse_request(letters: tuple[str, ...] | None) -> Any:
    """The parts of a Request a provider's answer parser reads (the letters, whether logprobs were asked), for a
    result whose request is not in memory (a job collected after a restart)."""
    from engine.request import Decoding, Request

    return Request((), Decoding(0.0, 1, 1.0, None), 0, "letter", letters or (), letters is not None)
