"""Drives one batch model: cache misses in -> jobs packed, submitted, polled, collected -> answers in the cache.

Memory stays flat in the number of cells: the scheduler (engine.scheduler) walks a batch model's cells twice.
Pass 1 hands the driver every cache miss through `round` (pulled chunk by chunk from an async iterator, nothing
registered per cell or key); the driver packs, submits and collects them into the cache and returns once no
live job of this grid and model remains. Pass 2 is the scheduler's normal walk, which finds the answers in the
cache; what it still misses (a key another process removed meanwhile) comes on the queue as awaited keys (the
fallback `_intake`), answered back through `BatchHooks.answered`. Every result this process commits is counted
through `BatchHooks.counted`; an error is kept there (O(errors)) so that pass 2 writes it and nothing asks again.

Life cycle, each step committed (engine.batch.store) before the next:
1. recover: jobs of this grid and model left by a dead process. A NEW job is looked up at the provider by
   its local id (`find`): created -> SUBMITTED; only its input uploaded -> the file deleted, the job dropped
   (its keys are packed again); nothing there -> dropped. An UPLOADED job is created from its input file.
2. intake: misses arrive in chunks; keys a live job already holds are left to it (this grid) or reported as
   `batch_elsewhere` errors (another grid's job: left alone); the rest are claimed into the open job
   (members committed) and their lines appended to its spool file. A job is sealed at the provider's limits
   (requests or bytes, engine.batch.BATCH_LIMITS; max_requests) or when the round (or the intake) ends, then
   uploaded (input id committed) and created (provider id committed). A failed upload or create is retried
   after `find` has checked what the failed call did, so a lost answer never makes a second job.
3. poll: every poll_s, each SUBMITTED job of this grid and model; an ended one is collected: its result
   lines are parsed and committed in chunks with their membership removed, its input file deleted, then the
   members with no line become errors (expired, cancelled, batch_failed) and the job is CLOSED.
A round returns once no live job of this grid and model remains (a database query, not a set of keys); the
driver returns once the intake is over and every awaited key is answered.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from engine.batch import BatchStats, BatchTransport, JobState, Undecided, open_transport
from engine.batch.store import ANSWERED, SUBMITTED, UPLOADED, BatchStore, Job, owner_alive, owner_tag
from engine.errors import CacheError
from engine.limits import estimate_prompt_tokens
from engine.providers.api import APIProvider, normalised_url
from engine.providers.errors import classify, describe, is_transient
from engine.request import Request, Response

log = logging.getLogger(__name__)
_INTAKE_CHUNK = 512
_COMMIT_LINES = 2000  # result lines per transaction: ~1 ms of commit per 2,000 answers
_RETRY_S = 1.0  # first wait before retrying a failed upload or create (doubles, at most poll_s)


class BatchHooks(Protocol):
    """What the scheduler gives a driver."""

    stats: BatchStats

    def counted(self, key: str, response: Response) -> None:
        """A result of this run's driver (committed to the cache, or an error it made): count and charge it as a
        call; an error is remembered so that no cell asks that key again in this run."""

    async def answered(self, key: str, response: Response) -> None:
        """An awaited key's answer (already counted): hand it to the cells waiting on it."""

    async def cached(self, key: str, response: Response) -> None:
        """A key another run answered meanwhile: a cache hit for the cells waiting on it."""

    def dropped(self, key: str) -> None:
        """An awaited key left unsubmitted (budget spent): its cells get no row, the next run asks again."""

    def reserve(self, usd: float) -> bool:
        """Count `usd` of submitted requests against --budget; False (and nothing counted) when it would pass it."""


@dataclass
class _Filling:
    """The job being filled: claimed members, its spool file being written; `claimed` counts every key claimed."""

    job: Job | None = None
    spool: BinaryIO | None = None
    size: int = 0
    count: int = 0
    claimed: int = 0

    def discard(self) -> None:
        """Close the spool file after a failure (its job stays NEW: the next run drops it and packs its keys
        again); a second write error while flushing must not replace the first."""
        if self.spool is not None:
            spool, self.spool = self.spool, None
            try:
                spool.close()
            except OSError:
                pass


def account_of(provider: APIProvider) -> str:
    """Endpoint and where the key comes from (never the key): which provider account holds the jobs."""
    return f"{normalised_url(provider.base_url)} {provider._key_source()}"


class BatchDriver:
    def __init__(self, provider: APIProvider, store: BatchStore, grid: str, hooks: BatchHooks, spool_dir: Path, price: tuple[float, float] | None) -> None:
        self.provider = provider
        self.config = provider.config
        self.store = store
        self.grid = grid
        self.hooks = hooks
        self.spool_dir = spool_dir
        self.transport: BatchTransport = open_transport(provider)
        limits = self.transport.limits
        self.max_requests = min(self.config.batch.max_requests or limits.max_requests, limits.max_requests)
        self.max_bytes = limits.max_bytes
        self.account = account_of(provider)
        self._price = price
        self._outstanding: set[str] = set()  # awaited keys (the fallback intake's) waiting for an answer from a job
        self._intake_done = False
        self._spent = False  # --budget reached: nothing more is submitted
        self._ready = asyncio.Event()  # start-up recovery done: rounds may pack
        self._wake = asyncio.Event()  # a job was submitted: poll soon
        self._polled = asyncio.Event()  # a poll of every submitted job is over (a round waits on it)
        self._poller: asyncio.Task | None = None
        self._in_progress = 0  # this model's submitted jobs in stats.jobs_in_progress
        self._resumed: set[str] = set()  # ids of the jobs of earlier runs this run polls (one per job, not per key)

    async def run(self, inbox: asyncio.Queue, produced: asyncio.Event) -> None:
        try:
            await self._recover()
            poller = self._poller = asyncio.create_task(self._poll_loop())
            self._ready.set()
            try:
                await self._intake(inbox, produced)
                self._intake_done = True
                self._wake.set()
                await poller
            finally:
                poller.cancel()
                await asyncio.gather(poller, return_exceptions=True)
        finally:
            await self.transport.aclose()

    # -- 1. recover ------------------------------------------------------------------------------------------
    async def _recover(self) -> None:
        for job in self.store.jobs(self.grid, self.config.id, live=True):
            if owner_alive(job.owner):
                continue  # another live run's: it collects it
            if job.status == SUBMITTED:
                self._count_resumed(job)
                continue
            found = await self._find(job, wait=False)
            if found is None:
                continue  # the provider cannot tell yet: the job stays, its keys held; looked at again at the next poll
            remote, input_ref = found
            if remote is not None:
                self.store.update(job.id, status=SUBMITTED, remote_id=remote, input_ref=input_ref, owner=owner_tag(), submitted_at=time.time())
                self._count_resumed(job)
            elif job.status == UPLOADED and job.input_ref:
                self.store.update(job.id, owner=owner_tag())
                await self._submit(self.store.job(job.id))  # type: ignore[arg-type]  # creates it from its uploaded input
            else:
                if input_ref is not None:
                    await self._retrying(lambda ref=input_ref: self.transport.cleanup(ref, None))
                self._spool(job.id).unlink(missing_ok=True)  # before the job goes: no kill can orphan it
                self.store.drop(job.id)
            self._spool(job.id).unlink(missing_ok=True)

    # -- 2. intake -------------------------------------------------------------------------------------------
    async def round(self, misses: AsyncIterator[list[tuple[str, Request]]]) -> int:
        """Pass 1 of a run (engine.scheduler): pack every (key, request) `misses` yields into jobs, submit them,
        then wait until no live job of this grid and model remains (this process or another collected each).

        Nothing is kept per key: an answer reaches the cache (`BatchHooks.counted` counts it), and the
        scheduler's second walk over the cells finds it there. Returns the number of keys claimed into jobs."""
        await self._ready.wait()
        filling = _Filling()
        try:
            async for chunk in misses:
                await self._pack(filling, chunk, awaited=False)
            await self._seal(filling)
        finally:
            filling.discard()
        await self._quiet()
        return filling.claimed

    async def _intake(self, inbox: asyncio.Queue, produced: asyncio.Event) -> None:
        """The fallback: keys the scheduler's second walk still misses (and registered cells for), awaited one by one."""
        filling = _Filling()
        try:
            while (chunk := await self._take(inbox, produced)) is not None:
                await self._pack(filling, chunk, awaited=True)
            await self._seal(filling)
        finally:
            filling.discard()

    async def _pack(self, filling: _Filling, chunk: list[tuple[str, Request]], awaited: bool) -> None:
        """Claim `chunk`'s keys that no live job holds into `filling`'s job, spool their lines, submit the job once
        it is full. `awaited`: the scheduler waits on each key (`_outstanding`, answered through the hooks)."""
        held = self.store.holders([k for k, _ in chunk])
        for key, holder in held.items():
            await self._held(key, holder, awaited)
        chunk = [(k, r) for k, r in chunk if k not in held]
        # --budget: each request reserved at its estimated cost, in plan order, until one would pass it; from
        # then on nothing more is submitted this run (its cells get no row; the next run asks again)
        affordable = 0
        while not self._spent and affordable < len(chunk):
            if self.hooks.reserve(self._cost((chunk[affordable][1],))):
                affordable += 1
            else:
                self._spent = True
        if awaited:
            for key, _ in chunk[affordable:]:
                self.hooks.dropped(key)
        chunk = chunk[:affordable]
        if not chunk:
            return
        lines = [(key, request, self.transport.line(key, request)) for key, request in chunk]
        while lines:
            take, grow = 0, 0
            while take < len(lines) and filling.count + take < self.max_requests and filling.size + grow + len(lines[take][2]) <= self.max_bytes:
                grow += len(lines[take][2])
                take += 1
            if take == 0 and filling.count == 0:
                raise ValueError(f"model '{self.config.id}': one request is larger than a {self.provider.name} batch input may be ({self.max_bytes:,} bytes)")
            if take:
                members = [(k, r.letters if r.want_logprobs and r.letters else None) for k, r, _ in lines[:take]]
                filling.job, held = self.store.claim(filling.job, self.grid, self.config.id, self.provider.name, self.account, members)
                claimed = [(k, line) for k, _, line in lines[:take] if k not in held]
                if claimed:
                    assert filling.job is not None
                    self._spooling(filling, claimed)
                    if awaited:
                        self._outstanding.update(k for k, _ in claimed)
                    filling.size += sum(len(line) for _, line in claimed)
                    filling.count += len(claimed)
                    filling.claimed += len(claimed)
                for key, holder in held.items():
                    await self._held(key, holder, awaited)
            lines = lines[take:]
            if lines or filling.count >= self.max_requests:
                await self._seal(filling)

    def _spooling(self, filling: _Filling, claimed: list[tuple[str, bytes]] | None) -> None:
        """Append `claimed`'s lines to the job's spool file (None: close it). Raises OSError naming the file (a
        full disk: the run stops with exit 74; the job, still NEW, is dropped and packed again by the next run)."""
        assert filling.job is not None
        path = self._spool(filling.job.id)
        try:
            if claimed is None:
                if filling.spool is not None:
                    spool, filling.spool = filling.spool, None
                    spool.close()
                return
            if filling.spool is None:
                filling.spool = path.open("wb")
            filling.spool.writelines(line for _, line in claimed)
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, str(path)) from None

    async def _seal(self, filling: _Filling) -> None:
        """Submit `filling`'s job (if it holds anything) and start a new one."""
        if filling.job is not None and filling.spool is not None:
            self._spooling(filling, None)
            await self._submit(filling.job)
        filling.job, filling.size, filling.count = None, 0, 0

    async def _quiet(self) -> None:
        """Wait until no live job of this grid and model remains: each poll collects the ended ones; a job a dead
        process left NEW or UPLOADED meanwhile is settled as at start-up (it may hold keys this run needs)."""
        while True:
            await self._recover()
            if not self.store.jobs(self.grid, self.config.id, live=True):
                return
            self._polled.clear()
            polled = asyncio.ensure_future(self._polled.wait())
            assert self._poller is not None
            await asyncio.wait({polled, self._poller}, return_when=asyncio.FIRST_COMPLETED)
            if self._poller.done():  # its error (a cache write failing): the round, and so the run, stops with it
                polled.cancel()
                self._poller.result()
                raise RuntimeError("the batch poller ended while a round waited on it")

    async def _take(self, inbox: asyncio.Queue, produced: asyncio.Event) -> list[tuple[str, Request]] | None:
        """The next chunk of misses (up to _INTAKE_CHUNK), or None once the producer is done and the inbox empty.

        Taking an item marks it done on the queue only when its key is answered (the scheduler's _settle)."""
        chunk: list[tuple[str, Request]] = []
        while len(chunk) < _INTAKE_CHUNK:
            try:
                chunk.append(inbox.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            if chunk:
                break
            if produced.is_set():
                return None
            getter = asyncio.ensure_future(inbox.get())
            done = asyncio.ensure_future(produced.wait())
            await asyncio.wait({getter, done}, return_when=asyncio.FIRST_COMPLETED)
            done.cancel()
            if getter.done():
                chunk.append(getter.result())
            else:
                getter.cancel()
                try:
                    chunk.append(await getter)  # it may have completed while being cancelled
                except asyncio.CancelledError:
                    pass
        return chunk

    def _taken(self, remote_id: str) -> bool:
        return self.store.job(remote_id) is not None

    async def _find(self, job: Job, wait: bool) -> tuple[str | None, str | None] | None:
        """The transport's `find` for `job`, retried over transport failures; while the provider cannot tell
        (Undecided): None, or with `wait`, asked again every poll_s until it can."""
        while True:
            try:
                return await self._retrying(lambda: self.transport.find(job, self._taken, lambda: self.store.members(job.id)))
            except Undecided as exc:
                if not wait:
                    return None
                log.info("batch job %s: %s (asking again in %.1fs)", job.id, exc, self.config.batch.poll_s)
                await asyncio.sleep(self.config.batch.poll_s)

    async def _held(self, key: str, holder: str, awaited: bool) -> None:
        """A key a live job already holds: left to that job when it is this grid's (awaited: waited for), else an
        error (the other grid's job is left alone); a key already answered (ANSWERED): its cached answer."""
        if holder == ANSWERED:
            if not awaited:
                return  # the second walk finds it in the cache
            hit = self.store.cache.lookup([key]).get(key)
            if hit is not None:
                await self.hooks.cached(key, hit)
                return
        other = self.store.job(holder)
        if other is not None and other.grid == self.grid:
            if awaited:
                self._outstanding.add(key)
            return
        where = f"job {other.remote_id or other.id} of grid '{other.grid}'" if other else f"job {holder}"
        error = Response.failed("batch_elsewhere", f"in the live batch {where}; rerun once it has ended")
        self.hooks.counted(key, error)
        if awaited:
            await self.hooks.answered(key, error)

    def _cost(self, requests) -> float:
        if self._price is None:
            return 0.0
        tokens_in = tokens_out = 0.0
        for r in requests:
            tokens_in += estimate_prompt_tokens(r)
            tokens_out += r.decoding.max_tokens
        return (tokens_in * self._price[0] + tokens_out * self._price[1]) / 1e6

    def _spool(self, job_id: str) -> Path:
        return self.spool_dir / f".batch-{job_id}.jsonl"

    async def _submit(self, job: Job) -> None:
        """Upload and create a sealed NEW job, each step committed; retried (after `find`) until it holds."""
        path = self._spool(job.id)
        first = True
        while True:
            remote, input_ref = (None, None) if first else await self._find(job, wait=True)  # type: ignore[misc]
            first = False
            if remote is not None:
                break
            input_ref = input_ref or job.input_ref
            try:
                if input_ref is None:
                    input_ref = await self.transport.upload(job.id, path)
                    if input_ref is not None:
                        self.store.update(job.id, status=UPLOADED, input_ref=input_ref)
                job = self.store.job(job.id)  # type: ignore[assignment]
                await self._create(job, path)
                path.unlink(missing_ok=True)
                return
            except (asyncio.CancelledError, CacheError):
                raise
            except Exception as exc:
                self._note(job.id, exc)
                if not is_transient(exc):  # refused (too large, bad key, ...): asking again cannot succeed
                    await self._refused(job, exc)
                    return
                await asyncio.sleep(min(_RETRY_S, self.config.batch.poll_s))
        self.store.update(job.id, status=SUBMITTED, remote_id=remote, input_ref=input_ref, submitted_at=time.time())
        self._count_submitted(job)
        path.unlink(missing_ok=True)

    async def _refused(self, job: Job, exc: BaseException) -> None:
        """A job the provider refused to take: its requests become errors of that kind (submitted again by the
        next run), whatever it had uploaded is deleted, and the job is closed."""
        remote, input_ref = await self._find(job, wait=True)  # type: ignore[misc]
        if remote is not None:  # the refusal was of a retry: the first attempt got through
            self.store.update(job.id, status=SUBMITTED, remote_id=remote, input_ref=input_ref, submitted_at=time.time())
            self._count_submitted(job)
            return
        if input_ref is not None:
            await self._retrying(lambda: self.transport.cleanup(input_ref, None))
        self._spool(job.id).unlink(missing_ok=True)
        why = Response.failed(classify(exc), f"batch job not accepted: {self.provider._redact(describe(exc))}")
        leftovers = [(k, self.provider.name, self.config.model, why) for k in self.store.members(job.id)]
        self.store.close(job.id, leftovers, "refused", why.error)
        self.hooks.stats.failed_jobs.append(f"{job.id}: refused: {why.error}")
        for key, *_ in leftovers:
            await self._answer(key, why)

    async def _create(self, job: Job, path: Path | None = None) -> None:
        remote = await self.transport.create(job.id, job.input_ref, path or self._spool(job.id))
        self.store.update(job.id, status=SUBMITTED, remote_id=remote, submitted_at=time.time())
        self._count_submitted(job)

    def _count_resumed(self, job: Job) -> None:
        """A job an earlier run submitted, now this run's to poll: counted once (recovery runs at every wait)."""
        if job.id in self._resumed:
            return
        self._resumed.add(job.id)
        stats = self.hooks.stats
        stats.jobs_resumed += 1
        stats.requests_resumed += job.requests - job.done  # what the killed run had committed is not awaited again

    def _count_submitted(self, job: Job) -> None:
        stats = self.hooks.stats
        stats.jobs_submitted += 1
        stats.requests_submitted += self.store.job(job.id).requests  # type: ignore[union-attr]
        self._wake.set()

    def _note(self, job_id: str, exc: BaseException) -> None:
        message = self.provider._redact(describe(exc))
        log.warning("batch job %s: %s: %s (retrying)", job_id, classify(exc), message)
        self.store.update(job_id, message=message)

    async def _retrying(self, call: Callable):
        """A provider call retried until it answers (transport failures, 5xx): state is only ever read here."""
        wait = _RETRY_S
        while True:
            try:
                return await call()
            except (asyncio.CancelledError, Undecided):
                raise
            except Exception as exc:
                log.warning("batch %s: %s: %s (retrying in %.1fs)", self.config.id, classify(exc), self.provider._redact(describe(exc)), wait)
                await asyncio.sleep(wait)
                wait = min(2 * wait, self.config.batch.poll_s)

    # -- 3. poll ---------------------------------------------------------------------------------------------
    async def _poll_loop(self) -> None:
        poll_s = self.config.batch.poll_s
        while True:
            jobs = [j for j in self.store.jobs(self.grid, self.config.id, live=True) if j.status == SUBMITTED]
            stats = self.hooks.stats
            stats.jobs_in_progress += len(jobs) - self._in_progress
            self._in_progress = len(jobs)
            if self._intake_done:
                await self._orphans()
                if not self._outstanding:
                    stats.jobs_in_progress -= self._in_progress
                    self._in_progress = 0
                    return
            stats.next_poll_at = time.time() + poll_s
            try:
                await asyncio.wait_for(self._wake.wait(), poll_s) if not jobs else await asyncio.sleep(poll_s)
            except TimeoutError:
                pass
            self._wake.clear()
            for job in jobs:
                try:
                    state = await self.transport.poll(job.remote_id)  # type: ignore[arg-type]
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # a 5xx on retrieve: the job is asked again at the next poll
                    self._note(job.id, exc)
                    continue
                if state.ended:
                    await self._collect(job, state)
                else:
                    self.store.update(job.id, provider_status=state.status)
            self._polled.set()

    async def _collect(self, job: Job, state: JobState) -> None:
        letters = self.store.members(job.id)
        rows: list[tuple[str, str, str, Response]] = []
        seen: set[str] = set()
        name, model = self.provider.name, self.config.model

        async def flush() -> None:
            self.store.commit(job.id, rows)
            for key, _, _, response in rows:
                await self._answer(key, response)
            rows.clear()

        try:
            async for key, response in self.transport.results(state, letters):
                if key in seen:
                    continue  # a provider repeating a line: the first one is the answer
                seen.add(key)
                rows.append((key, name, model, response))
                if len(rows) >= _COMMIT_LINES:
                    await flush()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the download broke: what is committed stays; the rest is read at the next poll
            if rows:
                await flush()
            self._note(job.id, exc)
            return
        await flush()
        await self._retrying(lambda: self.transport.cleanup(job.input_ref, state))
        what = f"batch job {job.remote_id} {state.status}" + (f": {state.message}" if state.message else "")
        leftovers = [(k, name, model, Response.failed(state.leftover_kind, what)) for k in letters if k not in seen]
        self.store.close(job.id, leftovers, state.status, state.message)
        self._spool(job.id).unlink(missing_ok=True)  # left by a kill between the job's create and its unlink
        for key, _, _, response in leftovers:
            await self._answer(key, response)
        stats = self.hooks.stats
        stats.jobs_done += 1
        if not state.succeeded:
            stats.failed_jobs.append(f"{job.remote_id}: {state.status}" + (f": {state.message}" if state.message else ""))

    async def _orphans(self) -> None:
        """Keys this run awaits whose job another process collected meanwhile: their answer is in the cache, or
        the job ended without one (an error; the next run submits them again)."""
        keys = list(self._outstanding)
        held = self.store.holders(keys)
        gone = [k for k in keys if k not in held]
        if not gone:
            return
        hits = self.store.cache.lookup(gone)
        for key in gone:
            self._outstanding.discard(key)
            hit = hits.get(key)
            if hit is None:
                hit = Response.failed("batch_error", "its batch job was collected by another run without an answer for it; rerun to submit it again")
                self.hooks.counted(key, hit)
            await self.hooks.answered(key, hit)

    async def _answer(self, key: str, response: Response) -> None:
        """A result this process committed (or made: a refused job's): counted; handed on when a cell awaits it."""
        self.hooks.stats.requests_done += 1
        self.hooks.counted(key, response)
        if key in self._outstanding:
            self._outstanding.discard(key)
            await self.hooks.answered(key, response)
