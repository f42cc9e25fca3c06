"""The asyncio scheduler: plan cells -> cache lookup -> provider calls -> cache + results.

One producer per model walks that model's cells in chunks, answers cache hits at once and queues misses
on a bounded queue (backpressure keeps memory flat). Workers drain the queue: API providers run
`concurrency` single calls at a time, local providers take whole batches. A response is committed to the
cache on receipt: the first one received in an event-loop turn schedules one commit at the end of that turn,
which takes every response received in it (one transaction per turn, so the write rate follows the load and a
SIGKILL loses only the calls in flight; bench/api_throughput.py measures the cost). A worker looks its batch
up in the cache once more right before calling, so a second process on the same cache that has answered
those cells meanwhile is not paid twice (only once another process has committed to the file: SQLite's
data_version tells, asked once per loop turn). Identical requests inside one run (the same key) are called once and
fan out to every waiting cell.

A cache or results write failure stops the run at once: `Scheduler.run` raises that error (CacheError or
ResultsWriteError, naming the file) after cancelling every task; everything committed before it stays.

A cell of a judged benchmark is written only once the judge's verdict on its answer is in: the answer goes
through the model's queue and the cache like any response, then the verdict request through the judge's own
queue, limits and cache entry. A run killed between the two finds the answer cached and asks only the judge.

A cell of a `summary = true` condition waits for the model's summary of its persona (engine.plan): the producer
asks for each summary once (cells of the same persona and model wait on the same key) through the model's own
queue and the cache, and when it arrives `_after_summary` asks every waiting cell's answer with it. A run killed
between the two finds the summary cached and asks only the answers.

A batch model (transport = "batch", engine.batch) is walked twice, so that nothing is held per cell while its
jobs run for hours: pass 1 (`_prefetch`) hands every cache miss to the model's batch driver, which submits and
collects them into the cache, in rounds while summaries are asked (round 1 the summaries, round 2 the answers
built on them); pass 2 is the walk above, which finds the answers in the cache (the `_pending` path stays for
what it still misses). This run's batch errors are kept (O(errors)) so that pass 2 writes them and nothing asks
them again; an answer committed since the run started is this run's call, not a cache hit.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import TYPE_CHECKING

import orjson

from engine.batch import BatchStats
from engine.cache import ResponseCache
from engine.config import ModelConfig
from engine.keys import Keys
from engine.plan import Cell, Plan
from engine.pricing import call_cost, price_for
from engine.providers import Provider
from engine.request import Request, Response
from engine.results import ResultRow, ResultsWriter
from engine.summaries import known_summaries, resolve

if TYPE_CHECKING:
    from engine.batch.store import BatchStore

_CHUNK = 512
_BATCH_WAIT_S = 0.01
# Allocations (net of frees) between young-generation collections during a run; CPython's default is 700.
_GC_YOUNG = 50_000


@contextlib.contextmanager
def _lean_gc() -> Iterator[None]:
    """The run's garbage collection: what exists when it starts (modules, plan, personas, items: ~56,000 objects
    for an API run) is frozen out of every collection (gc.freeze), and the young generation is collected every
    50,000 allocations instead of 700. At C = 1000 each call's objects (its aiohttp request and response, task,
    futures) live for the call's whole latency: with the defaults they were scanned by ~10 young collections and
    promoted, and collections took ~30 µs of the ~65 µs the engine spends per call, and ~85 of the ~265 µs a
    bare aiohttp call costs (bench/api_throughput.py). Refcounting still frees acyclic garbage at once; cycles
    wait at most 50,000 allocations. The thresholds and the frozen set are restored when the run ends."""
    threshold = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(_GC_YOUNG, *threshold[1:])
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()


@dataclass
class RunStats:
    cells_total: int
    cells_done: int = 0
    cache_hits: int = 0
    calls_made: int = 0  # requests a provider completed (success or failure), retries not counted
    attempts: int = 0  # every attempt, retries included
    errors: Counter = field(default_factory=Counter)  # by kind, counted per failed call
    invalid: Counter = field(default_factory=Counter)  # invalid answers by kind (bench_adapters.base), per cell
    wall_s: float = 0.0
    interrupted: bool = False
    cost_usd: float = 0.0  # calls made this run, at engine.pricing's prices (cache hits are free)
    unpriced_calls: int = 0  # calls to models without a known price: not in cost_usd
    budget_exhausted: bool = False
    batch: BatchStats | None = None  # set when a model has transport = "batch" (engine.batch)
    executor: str = ""  # the progress line's word on remote workers (Ray: workers alive, batches in flight); not in the summary

    def summary(self) -> dict:
        return {
            "cells_total": self.cells_total,
            "cells_done": self.cells_done,
            "cache_hits": self.cache_hits,
            "model_calls": self.calls_made,
            "attempts": self.attempts,
            "errors": dict(self.errors),
            "errors_total": sum(self.errors.values()),
            "invalid": dict(self.invalid),
            "wall_s": round(self.wall_s, 3),
            "interrupted": self.interrupted,
            "cost_usd": round(self.cost_usd, 6),
            "unpriced_calls": self.unpriced_calls,
            "budget_exhausted": self.budget_exhausted,
            **({"batch": self.batch.summary()} if self.batch is not None else {}),
        }


@dataclass(frozen=True, slots=True)
class _Answer:
    """A judged cell's answer, waiting for the judge's verdict."""

    key: str
    response: Response
    cached: bool


class _AwaitsSummary:
    """Marks a summary cell waiting on its persona summary's key (it has no answer yet)."""


_AWAITS_SUMMARY = _AwaitsSummary()


def _chunks(cells: Iterator[Cell], size: int) -> Iterator[list[Cell]]:
    while chunk := list(islice(cells, size)):
        yield chunk


class Scheduler:
    def __init__(
        self, plan: Plan, providers: dict[str, Provider], cache: ResponseCache, writer: ResultsWriter, budget_usd: float | None = None
    ) -> None:
        self.plan = plan
        self.providers = providers
        self.cache = cache
        self.writer = writer
        self.stats = RunStats(cells_total=len(plan))
        self.keys = Keys(providers)
        # key -> cells waiting on that call; a judge call's waiters carry the answer it grades
        self._pending: dict[str, list[tuple[Cell, _Answer | _AwaitsSummary | None]]] = {}
        self._followups: set[asyncio.Task] = set()  # answers being asked after their persona summary arrived
        self._summaries = plan.has_summaries
        self._fresh: dict[str, Response] = {}  # answered this run, not yet committed
        # judge key -> the verdict call that failed this run: a cell asking for it after the call returned gets
        # that failure too, as the cells waiting on the call did (a verdict is asked once a run; a rerun asks again)
        self._failed_verdicts: dict[str, Response] = {}
        self._buffer: list[tuple[str, str, str, Response]] = []
        self._flush_scheduled = False
        self._alone_this_turn: bool | None = None  # engine.cache.written_elsewhere, asked this loop turn
        self._failure: asyncio.Future | None = None  # set to the first write error: ends the run
        self._budget_usd = budget_usd
        self._prices = {id(p): price_for(p.config) for p in providers.values()}
        # Batch models (transport = "batch"): one driver each instead of workers (engine.batch.driver).
        self._batched = {mid for mid, p in providers.items() if p.config.transport == "batch"}
        self._produced = {mid: asyncio.Event() for mid in self._batched}
        self._batch_reserved = 0.0  # estimated cost of submitted batch requests, counted against the budget
        self._batch_spent = 0.0  # actual cost of batch answers (in cost_usd, but already reserved)
        self._batch_failed: dict[str, Response] = {}  # errors of this run's batch jobs: written by pass 2, never asked again
        self._batch_store: BatchStore | None = None
        self._drivers: dict[str, asyncio.Future] = {}  # batch model id -> its BatchDriver, once built
        self._started = 0.0  # time.time() at run start: a batch answer committed since is this run's, not a cache hit
        if self._batched:
            self.stats.batch = BatchStats()

        judge = plan.grid.judge
        self._judge: ModelConfig | None = judge.model if judge is not None else None
        self._judge_queue: asyncio.Queue | None = None

    async def run(self, stop: asyncio.Event) -> RunStats:
        with _lean_gc():
            return await self._run(stop)

    async def _run(self, stop: asyncio.Event) -> RunStats:
        started = time.perf_counter()
        self._started = time.time()
        self._failure = asyncio.get_running_loop().create_future()
        self._drivers = {mid: asyncio.get_running_loop().create_future() for mid in self._batched}
        queues = {
            mid: asyncio.Queue(maxsize=max(64, 2 * p.concurrency * p.batch_size)) for mid, p in self.providers.items()
        }
        workers = [
            asyncio.create_task(self._worker(mid, provider, queues[mid]))
            for mid, provider in self.providers.items()
            if mid not in self._batched
            for _ in range(provider.concurrency)
        ]
        drivers = [asyncio.create_task(self._batch_worker(self.providers[mid], queues[mid])) for mid in self._batched]
        workers += drivers
        if self._judge is not None:
            self._judge_queue = queues[self._judge.id]
        producers = [asyncio.create_task(self._produce(m, queues[m.id], stop)) for m in self.plan.grid.models]
        finished = asyncio.ensure_future(self._drain(producers, [queues[m.id] for m in self.plan.grid.models], drivers))
        stopper = asyncio.ensure_future(stop.wait())
        ok = False
        try:
            await asyncio.wait({finished, stopper, self._failure}, return_when=asyncio.FIRST_COMPLETED)
            if self._failure.done():
                raise self._failure.result()
            if finished.done() and not finished.cancelled() and finished.exception() is not None:
                raise finished.exception()  # a failing producer is an engine bug: never report it as a finished run
            ok = True
        finally:
            # Any Ctrl-C counts: the run ends as interrupted, never as complete with exit 130.
            self.stats.interrupted = stop.is_set()
            followups = tuple(self._followups)
            for task in (*producers, *workers, *followups, finished, stopper):
                task.cancel()
            await asyncio.gather(*producers, *workers, *followups, finished, stopper, return_exceptions=True)
            swapped = False
            try:
                if not self._failure.done():  # after a failed commit the buffer is not retried: it would mask the cause
                    self._flush()
                if ok:
                    self.writer.close()
                    swapped = True
            finally:
                if not swapped:
                    self.writer.discard()
                for provider in self.providers.values():
                    await provider.aclose()
                self.stats.wall_s = time.perf_counter() - started
        return self.stats

    async def _drain(self, producers: list[asyncio.Task], queues: list[asyncio.Queue], drivers: list[asyncio.Task]) -> None:
        await asyncio.gather(*producers)
        await asyncio.gather(*(q.join() for q in queues))
        await asyncio.gather(*drivers)  # a batch driver returns once its last job is closed and its input deleted
        # Only now: every answer has been handed to the judge, so an empty judge queue means all are judged.
        if self._judge_queue is not None:
            await self._judge_queue.join()

    async def _produce(self, model, queue: asyncio.Queue, stop: asyncio.Event) -> None:
        try:
            await self._produce_cells(model, queue, stop)
        finally:
            if model.id in self._produced:
                self._produced[model.id].set()

    async def _produce_cells(self, model, queue: asyncio.Queue, stop: asyncio.Event) -> None:
        batched = model.id in self._batched
        if batched:
            await self._prefetch(model, stop)
        for chunk in _chunks(self.plan.cells(model), _CHUNK):
            # A batch model's answers are in the cache already (pass 1): its rows are written whatever the budget.
            if stop.is_set() or (self.stats.budget_exhausted and not batched):
                return
            chunk = await self._summarised(model, queue, chunk)
            await self._submit(chunk, queue)
            await asyncio.sleep(0)  # let workers and commits run between chunks of pure cache hits

    async def _prefetch(self, model: ModelConfig, stop: asyncio.Event) -> None:
        """Pass 1 of a batch model: its driver packs, submits and collects every cache miss into the cache and
        returns once none of this grid's jobs of the model is live; pass 2 (the normal walk) then writes the rows.
        Nothing is registered per cell. A round that asked persona summaries is followed by one that asks the
        answers waiting on them (summary = true conditions)."""
        try:
            driver = await self._drivers[model.id]
            summaries = [True]
            while summaries[0] and not stop.is_set():
                summaries[0] = False
                if not await driver.round(self._misses(model, stop, summaries)):
                    return  # nothing new was submitted: the next round would find the same
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a cache write or an engine bug: the run stops, naming it
            self._fail(exc)

    async def _misses(self, model: ModelConfig, stop: asyncio.Event, summaries: list[bool]) -> AsyncIterator[list[tuple[str, Request]]]:
        """(key, request) of each distinct cache miss of `model`'s cells, chunk by chunk in plan order, minus the
        keys this run's batch jobs answered with an error; a summary cell whose summary is missing yields that
        summary's request instead (and sets summaries[0]: its answer is asked by the next round)."""
        of = lambda r: self.keys.of(model, r)  # noqa: E731
        for chunk in _chunks(self.plan.cells(model), _CHUNK):
            if stop.is_set():
                return
            resolved = resolve(self.plan, of, self.cache, chunk) if self._summaries else None
            asks = {k: r for k, r in resolved.missing.items() if k not in self._batch_failed} if resolved is not None else {}
            summaries[0] = summaries[0] or bool(asks)
            for cell in resolved.ready if resolved is not None else chunk:
                request = self.plan.request(cell)
                asks.setdefault(of(request), request)
            found = self.cache.contains_keys(list(asks))
            misses = [(k, r) for k, r in asks.items() if k not in found and k not in self._batch_failed]
            if misses:
                yield misses

    async def _submit(self, cells: list[Cell], queue: asyncio.Queue) -> None:
        """Answer each cell from the cache (or this run's fresh answers), join an identical call in flight, or
        queue its call. A batch model's cell answered by a job of this run is no cache hit; one whose job answered
        an error is written with it (never asked again in this run); one dropped by --budget gets no row."""
        requests = [self.plan.request(c) for c in cells]
        keys = [self.keys.of(c.model, r) for c, r in zip(cells, requests)]
        hits = self.cache.lookup([k for k in keys if k not in self._pending and k not in self._fresh])
        batched = bool(cells) and cells[0].model.id in self._batched
        mine = self._batch_store.answered_since(list(hits), self._started) if batched and hits and self._batch_store else set()
        for cell, request, key in zip(cells, requests, keys):
            cached = hits.get(key)
            if cached is not None:
                self.stats.cache_hits += key not in mine
                await self._deliver(cell, key, cached, cached=key not in mine)
            elif key in self._fresh:
                self.stats.cache_hits += 1
                await self._deliver(cell, key, self._fresh[key], cached=True)
            elif key in self._pending:
                self._pending[key].append((cell, None))
            elif batched and key in self._batch_failed:
                await self._deliver(cell, key, self._batch_failed[key], cached=False)
            elif batched and self.stats.budget_exhausted:
                continue
            else:
                self._pending[key] = [(cell, None)]
                await queue.put((key, request))

    async def _summarised(self, model: ModelConfig, queue: asyncio.Queue, cells: list[Cell]) -> list[Cell]:
        """The cells that can be asked now: summary cells get their persona summary where it exists (this run's,
        or cached); the others wait on its key, and its call is queued once, however many cells wait."""
        if not self._summaries:
            return cells
        wanted = {i: r for i, c in enumerate(cells) if (r := self.plan.summary_request(c)) is not None}
        if not wanted:
            return cells
        skeys = {i: self.keys.of(model, r) for i, r in wanted.items()}
        texts = known_summaries(self.cache, [k for k in set(skeys.values()) if k not in self._pending], self._fresh)
        batched = model.id in self._batched
        ready = []
        for i, cell in enumerate(cells):
            skey = skeys.get(i)
            if skey is None:
                ready.append(cell)
            elif skey in texts:
                ready.append(cell.with_summary(texts[skey]))
            elif batched and skey in self._batch_failed:  # its batch job answered the summary with an error
                self._emit(cell, skey, self._batch_failed[skey], cached=False, stage="summary")
            elif batched and self.stats.budget_exhausted:
                continue
            elif skey in self._pending:
                self._pending[skey].append((cell, _AWAITS_SUMMARY))
            else:
                self._pending[skey] = [(cell, _AWAITS_SUMMARY)]
                await queue.put((skey, wanted[i]))
        return ready

    async def _after_summary(self, queue: asyncio.Queue, skey: str, summary: Response, cells: list[Cell]) -> None:
        """A persona summary arrived: ask each waiting cell's answer with it, or, if it failed, write that failure
        on each. It owns the summary's queue item, marked done only once every answer is queued, so the run
        cannot end in between; a task of its own, so a worker never waits on its own full queue."""
        try:
            if summary.ok:
                await self._submit([c.with_summary(summary.text or "") for c in cells], queue)
            else:
                for cell in cells:
                    self._emit(cell, skey, summary, cached=False, stage="summary")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a write failure: the run stops
            self._fail(exc)
        finally:
            queue.task_done()

    async def _deliver(self, cell: Cell, key: str, response: Response, cached: bool) -> None:
        """A model's response for a cell: written now, or, in a judged benchmark, first handed to the judge (a
        reasoning reply without a final answer is written at once: there is nothing to grade)."""
        graded = self.plan.graded_text(cell, response) if response.ok and self.plan.judged(cell.benchmark) else None
        if graded is not None:
            await self._ask_judge(cell, _Answer(key, response, cached), graded)
        else:
            self._emit(cell, key, response, cached)

    async def _ask_judge(self, cell: Cell, answer: _Answer, graded: str) -> None:
        assert self._judge is not None and self._judge_queue is not None
        request = self.plan.judge_request(cell, graded)
        key = self.keys.of(self._judge, request)
        verdict = self._fresh.get(key)
        if verdict is None and (failed := self._failed_verdicts.get(key)) is not None:
            self._emit(cell, answer.key, answer.response, answer.cached, (key, failed, False))
            return
        if verdict is None and key not in self._pending:
            verdict = self.cache.lookup([key]).get(key)
        if verdict is not None:
            self.stats.cache_hits += 1
            self._emit(cell, answer.key, answer.response, answer.cached, (key, verdict, True))
        elif key in self._pending:
            self._pending[key].append((cell, answer))
        else:
            self._pending[key] = [(cell, answer)]
            await self._judge_queue.put((key, request))

    async def _worker(self, model_id: str, provider: Provider, queue: asyncio.Queue) -> None:
        size = provider.batch_size
        while True:
            batch = [await queue.get()]
            if size > 1:
                deadline = time.monotonic() + _BATCH_WAIT_S
                while len(batch) < size:
                    try:
                        batch.append(queue.get_nowait())
                    except asyncio.QueueEmpty:
                        if time.monotonic() >= deadline:
                            break
                        await asyncio.sleep(0.001)
            if self.stats.budget_exhausted:  # spent: leave queued cells uncalled (and uncached) for a resume
                for key, _ in batch:
                    self._pending.pop(key, None)
                    queue.task_done()
                continue
            if not self._alone():  # alone on the cache (the common case): nothing to re-check, no coroutine
                batch = await self._recheck(batch, queue)
                if not batch:
                    continue
            try:
                responses = await provider.complete([req for _, req in batch])
                if len(responses) != len(batch):
                    raise RuntimeError(f"provider returned {len(responses)} responses for {len(batch)} requests")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a provider bug must not kill the run: record it on every cell
                responses = [Response.failed("exception", f"{type(exc).__name__}: {exc}") for _ in batch]
            for (key, _), response in zip(batch, responses):
                self._count_call(provider, key, response)
                await self._settle(queue, key, response, cached=False)

    async def _batch_worker(self, provider: Provider, queue: asyncio.Queue) -> None:
        """The one hook of batch models: their misses go to a driver that packs, submits and polls provider
        batch jobs, and hands back answers it has already committed to the cache (engine.batch.driver)."""
        from engine.batch.driver import BatchDriver
        from engine.batch.store import BatchStore

        scheduler = self

        class Hooks:
            stats = self.stats.batch

            def counted(self, key: str, response: Response) -> None:
                scheduler._count_batch(provider, key, response)

            async def answered(self, key: str, response: Response) -> None:
                await scheduler._settle(queue, key, response, cached=False)

            async def cached(self, key: str, response: Response) -> None:
                scheduler.stats.cache_hits += len(scheduler._pending.get(key, ()))
                await scheduler._settle(queue, key, response, cached=True)

            def dropped(self, key: str) -> None:
                scheduler._pending.pop(key, None)
                queue.task_done()

            def reserve(self, usd: float) -> bool:
                return scheduler._reserve(usd)

        try:
            store = self._batch_store = self._batch_store or BatchStore(self.cache)
            driver = BatchDriver(provider, store, self.plan.grid.run.name, Hooks(), self.cache.path.parent, self._prices[id(provider)])  # type: ignore[arg-type]
            self._drivers[provider.config.id].set_result(driver)
            await driver.run(queue, self._produced[provider.config.id])
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a cache write or an engine bug: the run stops, naming it
            self._fail(exc)

    def _count_batch(self, provider: Provider, key: str, response: Response) -> None:
        """A batch answer (committed by the driver): counted and charged like a call, not buffered again; an error
        is kept for pass 2 to write (its cells are not asked again in this run)."""
        self.stats.calls_made += 1
        self.stats.attempts += response.attempts
        if not response.ok:
            self.stats.errors[response.error_kind] += 1
            self._batch_failed[key] = response
        price = self._prices[id(provider)]
        if price is None:
            self.stats.unpriced_calls += 1
            return
        cost = call_cost(price, response.prompt_tokens, response.completion_tokens)
        self.stats.cost_usd += cost
        self._batch_spent += cost

    def _reserve(self, usd: float) -> bool:
        """--budget for batch models: requests count at their estimated cost when submitted (answers come hours later)."""
        if self._budget_usd is not None and self.stats.cost_usd - self._batch_spent + self._batch_reserved + usd > self._budget_usd:
            self.stats.budget_exhausted = True
            return False
        self._batch_reserved += usd
        return True

    async def _recheck(self, batch: list[tuple[str, Request]], queue: asyncio.Queue) -> list[tuple[str, Request]]:
        """The batch minus what another process committed since the producer looked (settled as cache hits);
        asked only once `_alone()` is False."""
        try:
            hits = self.cache.lookup([key for key, _ in batch])
        except Exception as exc:
            self._fail(exc)
            hits = {}
        if not hits:
            return batch
        remaining = []
        for key, request in batch:
            if (hit := hits.get(key)) is None:
                remaining.append((key, request))
            else:
                self.stats.cache_hits += len(self._pending.get(key, ()))
                await self._settle(queue, key, hit, cached=True)
        return remaining

    def _alone(self) -> bool:
        """No other process has committed to the cache since it was opened (then there is nothing to re-check).
        Asked once per event-loop turn: at C = 1000 a turn starts hundreds of calls, and a commit landing within
        the turn is no different from one landing just after the check. A cache that cannot be asked stops the
        run (`_fail`); the call goes ahead meanwhile."""
        if self._alone_this_turn is None:
            try:
                elsewhere = self.cache.written_elsewhere()
            except Exception as exc:
                self._fail(exc)
                return True
            self._alone_this_turn = not elsewhere
            if self._alone_this_turn:  # once not alone, never alone again: no need to ask
                asyncio.get_running_loop().call_soon(setattr, self, "_alone_this_turn", None)
        return self._alone_this_turn

    async def _settle(self, queue: asyncio.Queue, key: str, response: Response, cached: bool) -> None:
        """Hand a key's response to its waiting cells and mark the queue item done, even when writing fails
        (a persona summary's item is handed to `_after_summary`, which marks it done)."""
        handed_off = False
        try:
            if queue is self._judge_queue and not response.ok:
                self._failed_verdicts[key] = response
            waiting = self._pending.pop(key, [])
            summarised = [cell for cell, answer in waiting if answer is _AWAITS_SUMMARY]
            for cell, answer in waiting:
                if answer is None:
                    await self._deliver(cell, key, response, cached=cached)
                elif isinstance(answer, _Answer):
                    self._emit(cell, answer.key, answer.response, answer.cached, (key, response, cached))
            if summarised:
                task = asyncio.create_task(self._after_summary(queue, key, response, summarised))
                self._followups.add(task)
                task.add_done_callback(self._followups.discard)
                handed_off = True
        except Exception as exc:  # a write failure: the run stops; this item must still count as done
            self._fail(exc)
        finally:
            if not handed_off:
                queue.task_done()

    def _count_call(self, provider: Provider, key: str, response: Response) -> None:
        """A response a provider returned: counted, charged, and committed at the end of this loop turn."""
        self.stats.calls_made += 1
        self.stats.attempts += response.attempts
        self._buffer.append((key, provider.name, provider.config.model, response))
        self._charge(provider, response)
        if response.ok:
            self._fresh[key] = response
        else:
            self.stats.errors[response.error_kind] += 1
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_turn)

    def _flush_turn(self) -> None:
        self._flush_scheduled = False
        if self._failure is not None and self._failure.done():
            return
        try:
            self._flush()
        except Exception as exc:
            self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        """Record the first write failure; `run` raises it and stops everything."""
        if self._failure is not None and not self._failure.done():
            self._failure.set_result(exc)

    def _charge(self, provider: Provider, response: Response) -> None:
        price = self._prices[id(provider)]
        if price is None:
            self.stats.unpriced_calls += 1
            return
        self.stats.cost_usd += call_cost(price, response.prompt_tokens, response.completion_tokens)
        if self._budget_usd is not None and self.stats.cost_usd - self._batch_spent + self._batch_reserved >= self._budget_usd:
            self.stats.budget_exhausted = True

    def _emit(self, cell: Cell, key: str, response: Response, cached: bool, judged: tuple[str, Response, bool] | None = None, stage: str = "") -> None:
        """Write a cell's row; `judged` is the judge's (key, verdict, cached) for a judged cell; `stage` names the
        first call of a two-call cell ("summary") when `response` is that call's failure."""
        item = cell.item
        verdict = judged[1] if judged else None
        failed = response if not response.ok else verdict if verdict is not None and not verdict.ok else None
        invalid_kind = None
        if failed is None:
            s = self.plan.score(cell, response, verdict)
            answer, correct, invalid, p_gold, score = s.answer, s.correct, s.invalid, s.p_gold, s.score
            if s.invalid:
                # an unusable verdict is the judge's, never mistaken for the model's
                invalid_kind = f"judge_{s.invalid_kind}" if judged else s.invalid_kind
                self.stats.invalid[invalid_kind] += 1
        else:
            answer, correct, invalid, p_gold, score = None, None, None, None, None
        # A failed verdict (or summary) is the cell's error, named as the judge's (summary's) so it is never mistaken for the answer's.
        error_kind = None if failed is None else f"{stage}_{failed.error_kind}" if stage else failed.error_kind if failed is response else f"judge_{failed.error_kind}"
        # Positional, in ResultRow's field order (each line's fields named after it): 31 keywords cost ~3.5 µs a
        # row more, matched name by name (tests/engine/test_scheduler.py checks every column of a row).
        self.writer.add(
            ResultRow(
                cell.index, cell.id, cell.model.id, cell.benchmark, item.id, cell.condition.name,  # cell .. condition
                cell.persona.id if cell.persona else None, cell.sample, key,  # persona_id, sample, key
                cached and (judged is None or judged[2]), "ok" if failed is None else "error", response.text,  # cached, status, response
                answer, item.gold_letter, correct, invalid, p_gold,  # answer, gold, correct, invalid, p_gold
                response.prompt_tokens, response.completion_tokens, response.latency_s,  # prompt_tokens .. latency_s
                error_kind, None if failed is None else failed.error, score,  # error_kind, error, score
                orjson.dumps(item.meta).decode() if item.meta else None,  # meta
                judged[0] if judged else None, verdict.text if verdict is not None else None, cell.order,  # judge_key, verdict, order
                None if judged else cell.option(answer),  # option: a judged row's answer is a rubric level, not an option
                self.plan.reasoning(cell, response), cell.summary, invalid_kind,  # reasoning, summary, invalid_kind
            )
        )
        self.stats.cells_done += 1

    def _flush(self) -> None:
        if self._buffer:
            rows, self._buffer = self._buffer, []
            self.cache.write(rows)
            for key, *_ in rows:
                self._fresh.pop(key, None)


def models_to_call(plan: Plan, providers: dict[str, Provider], cache: ResponseCache) -> set[str]:
    """Ids of the models (and judge) with at least one call the cache cannot answer: the ones to preflight.

    Stops at a model's first uncached cell. The judge counts when any model has calls to make (their verdicts
    are unknown yet) or a cached answer's verdict is not cached."""
    needed: set[str] = set()
    judge = plan.grid.judge.model if plan.grid.judge is not None else None
    keys_of = Keys(providers)
    for model in plan.grid.models:
        for chunk in _chunks(plan.cells(model), 2048):
            resolved = resolve(plan, lambda r: keys_of.of(model, r), cache, chunk)
            if resolved.missing:  # a persona summary to ask for
                needed.add(model.id)
                break
            chunk = resolved.ready
            keys = [keys_of.of(model, plan.request(c)) for c in chunk]
            answers = cache.lookup(keys) if judge is not None and judge.id not in needed else None
            if len(set(answers) if answers is not None else cache.contains_keys(keys)) < len(set(keys)):
                needed.add(model.id)
                break
            if answers is not None:
                verdicts = [
                    keys_of.of(judge, plan.judge_request(c, graded))
                    for c, k in zip(chunk, keys)
                    if plan.judged(c.benchmark) and (graded := plan.graded_text(c, answers[k])) is not None
                ]
                if len(cache.contains_keys(verdicts)) < len(set(verdicts)):
                    needed.add(judge.id)
    if judge is not None and needed:
        needed.add(judge.id)
    return needed
