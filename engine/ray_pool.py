"""In-process models on a Ray cluster (`[run] executor = "ray"`): a Provider that forwards batches to Ray actors.

The scheduler sees one more provider with the interface of an in-process one (engine.providers.in_process):
`batch_size` prompts per `complete` call, `concurrency` calls at once. Here `concurrency` is workers x
`batches_per_worker`, so the scheduler's bounded queue (2 x concurrency x batch_size) keeps the driver's memory
flat however large the plan, and its batches are consecutive cells of the persona-major plan (persona-grouped:
a worker's persona-prefix KV cache, or vLLM's prefix cache, is reused within a batch). The driver stays the one
process that plans, keys and writes the SQLite cache; an actor only receives Requests and returns Responses,
and never sees the cache file. API models stay in the driver: they wait on rate limits, not compute.

Ray Core actors rather than Ray Data: the scheduler already streams, deduplicates, caches and commits per
response; Ray Data's `map_batches` would take the dataset from it and hand results back only as a pipeline's
output, so the commit-on-receipt that makes a driver SIGKILL lose only the calls in flight would be lost, and
an actor pool there retries tasks but never tells the driver which batch was redone. With actors, a lost batch
is visible: its `ObjectRef` raises `RayActorError`, and the batch goes to another worker.

Faults: an actor that dies (its process killed, its node lost) fails the batches it held with RayActorError;
each is sent again to a live worker (at most `_ATTEMPTS` times, then its cells are `worker_lost` errors, which
are not answers: a rerun calls them), and the dead actor is replaced by a fresh one. A batch answered twice is
harmless (the cache keeps the first answer per key), and the scheduler writes each cell once.

Raises PreflightError (from `preflight`) when Ray cannot connect or no worker starts; engine.grid.ray_problem
says when Ray is not installed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.config import GridConfig, ModelConfig, RayConfig
from engine.errors import GridError
from engine.grid import ray_problem
from engine.providers import Provider
from engine.providers.base import PreflightError
from engine.request import Request, Response

_ATTEMPTS = 4  # sends of one batch before its cells are failed: enough for a worker or two dying under it
_POLL_S = 0.005
_START_TIMEOUT_S = 900.0  # a worker loads its model before it counts as alive (a large vLLM model: minutes)
_CONNECT_TIMEOUT_S = 5.0
_GRACE_S = 60.0  # after the first worker is alive, how long the preflight waits for the others


def on_ray(grid: GridConfig, address: str) -> GridConfig:
    """`grid` with executor = "ray" at `address` (`run --ray auto|ADDRESS`). Raises GridError when Ray is missing."""
    if (missing := ray_problem()) is not None:
        raise GridError([f"--ray: {missing}"])
    if not address.strip():
        raise GridError(['--ray: expected "auto" or a cluster address such as 10.0.0.1:6379'])
    settings = dataclasses.replace(grid.run.ray, address=address)
    return dataclasses.replace(grid, run=dataclasses.replace(grid.run, executor="ray", ray=settings))


def _unreachable(address: str | None) -> str | None:
    """Why nothing answers at a HOST:PORT cluster address (checked in seconds: ray.init retries a dead address
    for minutes), or None; "auto", a ray:// address and Ray's default are left to Ray."""
    if address is None or address == "auto" or "://" in address or ":" not in address:
        return None
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=_CONNECT_TIMEOUT_S).close()
    except ValueError:
        return f"expected HOST:PORT, got {address!r}"
    except OSError as exc:
        return f"nothing answers there ({exc.strerror or exc}); start the cluster with `ray start --head` or fix the address"
    return None


class _ModelWorker:
    """The actor: one in-process provider (its own model copy) answering whole batches, one at a time."""

    def __init__(self, config: ModelConfig, cpus: float) -> None:
        from engine.providers import create_provider

        # As many torch threads as CPUs this actor holds (engine.providers.local reads it), not the node's count:
        # two actors on two cores would otherwise each spin two threads.
        os.environ["OMP_NUM_THREADS"] = str(max(1, int(cpus)))
        self._provider = create_provider(config)

    def info(self) -> dict[str, Any]:
        """Where this worker runs and the identity of its weights (the driver refuses a worker whose differ)."""
        import ray

        context = ray.get_runtime_context()
        return {
            "node_id": context.get_node_id(),
            "pid": os.getpid(),
            "resources": context.get_assigned_resources(),
            "identity": self._provider.identity(),
        }

    async def run(self, batch: list[Request]) -> list[Response]:
        return await self._provider.complete(batch)


@dataclass
class _Slot:
    actor: Any
    ready_ref: Any  # the ObjectRef of actor.info(): done once the worker is alive
    ready: bool = False
    failed: str | None = None  # why this actor is out of use (it died or never started)
    inflight: int = 0
    info: dict[str, Any] = field(default_factory=dict)


class RayPool(Provider):
    """`inner`'s model served by Ray actors. `inner` stays in the driver for what needs no weights: the identity
    that keys the cache and the chat-template check."""

    def __init__(self, inner: Provider, settings: RayConfig) -> None:
        super().__init__(inner.config)
        self.inner = inner
        self.settings = settings
        self.requeued = 0  # batches sent again after their worker died
        self.replaced = 0  # actors started in place of dead ones
        self._slots: list[_Slot] = []
        self._lock = threading.Lock()
        self._remote: Any = None  # the actor class with its resource options
        self._width = settings.workers

    @property
    def name(self) -> str:  # type: ignore[override] - rows and keys carry the backend's name, not "ray"
        return self.inner.name

    @property
    def batch_size(self) -> int:
        return self.inner.batch_size

    @property
    def concurrency(self) -> int:
        """Batches in flight. The pool's width is known once `preflight` has started it; before (or when it
        failed: a fully cached rerun may run with the cluster down) `workers`, at least 1, and nothing starts."""
        return max(1, self._width) * self.settings.batches_per_worker

    def identity(self) -> dict[str, Any]:
        return self.inner.identity()

    def check_request(self, request: Request) -> None:
        self.inner.check_request(request)

    @property
    def started(self) -> bool:
        return self._remote is not None

    # -- the pool ----------------------------------------------------------------------------------

    def _resources(self) -> dict[str, float]:
        gpus = self.config.vllm.tensor_parallel_size if self.inner.name == "vllm" else self.settings.gpus_per_worker
        return {"num_cpus": self.settings.cpus_per_worker, "num_gpus": float(gpus)}

    def _start(self) -> None:
        """Connect to Ray and start the actors (idempotent; blocking: seconds). Raises PreflightError."""
        with self._lock:
            if self._remote is not None:
                return
            import ray

            if (closed := _unreachable(self.settings.address)) is not None:
                raise PreflightError(f"model '{self.config.id}': cannot connect to Ray at {self.settings.address}: {closed}")
            try:
                if not ray.is_initialized():
                    ray.init(address=self.settings.address, log_to_driver=False, include_dashboard=False, configure_logging=False)
            except Exception as exc:  # ConnectionError, ValueError: no cluster at that address
                raise PreflightError(f"model '{self.config.id}': cannot connect to Ray at {self.settings.address or 'its default'}: {exc}") from None
            resources = self._resources()
            if not self._width:
                total = ray.cluster_resources()
                fits = [total.get(k, 0.0) / v for k, v in (("CPU", resources["num_cpus"]), ("GPU", resources["num_gpus"])) if v]
                self._width = max(1, int(min(fits)))
            self._remote = ray.remote(_ModelWorker).options(max_restarts=0, max_concurrency=1, **resources)
            self._slots = [self._spawn() for _ in range(self._width)]

    def _spawn(self) -> _Slot:
        actor = self._remote.remote(self.config, self.settings.cpus_per_worker)
        return _Slot(actor, actor.info.remote())

    def _poll_starting(self) -> None:
        """Mark started actors alive (or failed); a worker with other weights than the driver's is refused."""
        import ray

        starting = [s for s in self._slots if not s.ready and s.failed is None]
        if not starting:
            return
        done, _ = ray.wait([s.ready_ref for s in starting], num_returns=len(starting), timeout=0)
        for slot in (s for s in starting if s.ready_ref in done):
            try:
                slot.info = ray.get(slot.ready_ref)
            except Exception as exc:  # died while loading: a broken install on its node, out of memory
                slot.failed = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                continue
            if slot.info["identity"] != self.identity():
                slot.failed = f"its weights differ from the driver's ({slot.info['identity']} != {self.identity()})"
                ray.kill(slot.actor, no_restart=True)
            else:
                slot.ready = True

    async def preflight(self) -> None:
        """Start the pool and wait for a first live worker (it has loaded its model), then up to _GRACE_S for the
        others, so that the first batches spread over the pool; a worker still pending then (no room on the
        cluster) joins whenever it starts."""
        await asyncio.to_thread(self._start)
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not any(s.ready for s in self._slots):
            self._poll_starting()
            if all(s.failed for s in self._slots):
                raise PreflightError(f"model '{self.config.id}': no Ray worker started: {self._slots[0].failed}")
            if time.monotonic() > deadline:
                raise PreflightError(f"model '{self.config.id}': no Ray worker alive after {_START_TIMEOUT_S:.0f} s (does the cluster have {self._resources()} free?)")
            await asyncio.sleep(0.05)
        grace = time.monotonic() + _GRACE_S
        while any(not s.ready and s.failed is None for s in self._slots) and time.monotonic() < grace:
            await asyncio.sleep(0.05)
            self._poll_starting()

    async def _acquire(self) -> _Slot | str:
        """The live worker with the fewest batches in flight and room for one more; or, when none is alive or
        starting, why not."""
        cap = self.settings.batches_per_worker
        alone_since: float | None = None  # since when no worker is alive (the replacements wait for room)
        while True:
            self._poll_starting()
            free = [s for s in self._slots if s.ready and s.failed is None and s.inflight < cap]
            if free:
                return min(free, key=lambda s: s.inflight)
            if all(s.failed for s in self._slots):
                return f"no Ray worker alive: {self._slots[-1].failed}"
            if any(s.ready and s.failed is None for s in self._slots):
                alone_since = None
            elif alone_since is None:
                alone_since = time.monotonic()
            elif time.monotonic() - alone_since > _START_TIMEOUT_S:
                return f"no Ray worker alive for {_START_TIMEOUT_S:.0f} s (no room on the cluster for {self._resources()}?)"
            await asyncio.sleep(_POLL_S)

    def _lost(self, slot: _Slot, exc: BaseException) -> None:
        """`slot`'s actor died: take it out of use and start a fresh one in its place."""
        import ray

        if slot.failed is not None:
            return  # another batch of the same actor already reported it
        slot.failed = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        try:
            ray.kill(slot.actor, no_restart=True)
        except Exception:  # already gone
            pass
        self._slots.append(self._spawn())
        self.replaced += 1

    async def complete(self, batch: Sequence[Request]) -> list[Response]:
        import ray.exceptions

        requests, cause = list(batch), ""
        try:
            self._start()  # started by the preflight, unless that failed and the cache seemed to answer everything
        except PreflightError as exc:
            return [Response.failed("worker_lost", str(exc)) for _ in requests]
        for attempt in range(_ATTEMPTS):
            slot = await self._acquire()
            if isinstance(slot, str):
                cause = slot
                break
            slot.inflight += 1
            try:
                return await slot.actor.run.remote(requests)
            except ray.exceptions.RayTaskError as exc:  # our code raised inside the worker (complete() catches its own)
                return [Response.failed("exception", str(exc).splitlines()[0]) for _ in requests]
            except ray.exceptions.RayError as exc:  # the worker is gone (killed process, lost node): send it again
                cause = f"{type(exc).__name__}"
                self._lost(slot, exc)
                self.requeued += 1
            finally:
                slot.inflight -= 1
        return [Response.failed("worker_lost", f"Ray workers lost {_ATTEMPTS} times under this batch ({cause})") for _ in requests]

    async def aclose(self) -> None:
        import ray

        for slot in self._slots:  # the slots stay: describe() reports them in the manifest's last word
            try:
                ray.kill(slot.actor, no_restart=True)
            except Exception:  # already gone
                pass

    # -- reporting ---------------------------------------------------------------------------------

    def status(self) -> str:
        """For the live progress line: workers alive and batches in flight."""
        alive = sum(s.ready and s.failed is None for s in self._slots)
        inflight = sum(s.inflight for s in self._slots)
        lost = f", {self.requeued} requeued" if self.requeued else ""
        return f"{self.config.id}: {alive}/{self._width} workers, {inflight} batches in flight{lost}"

    def describe(self) -> dict[str, Any]:
        """What the manifest records of this model's workers."""
        return {
            "workers": [
                {"node_id": s.info.get("node_id"), "pid": s.info.get("pid"), "resources": s.info.get("resources"), "alive": s.ready and s.failed is None}
                for s in self._slots
                if s.info
            ],
            "per_worker": self._resources(),
            "batches_per_worker": self.settings.batches_per_worker,
            "batches_requeued": self.requeued,
            "workers_replaced": self.replaced,
        }


def wrap(providers: dict[str, Provider], settings: RayConfig) -> dict[str, Provider]:
    """`providers` with every in-process one (local, vllm) served by a RayPool; API providers unchanged."""
    from engine.providers.in_process import InProcessProvider

    return {mid: RayPool(p, settings) if isinstance(p, InProcessProvider) else p for mid, p in providers.items()}


def pools(providers: dict[str, Provider]) -> list[RayPool]:
    return [p for p in providers.values() if isinstance(p, RayPool)]


def cluster(providers: dict[str, Provider]) -> dict[str, Any] | None:
    """The manifest's `cluster`: Ray version, the nodes (CPUs, GPUs) and each model's workers; None without pools."""
    found = pools(providers)
    if not found or not any(p.started for p in found):
        return None
    import ray

    nodes = [
        {"node_id": n["NodeID"], "address": n["NodeManagerAddress"], "alive": n["Alive"], "cpus": n["Resources"].get("CPU", 0), "gpus": n["Resources"].get("GPU", 0)}
        for n in ray.nodes()
    ]
    return {"ray_version": ray.__version__, "address": found[0].settings.address, "nodes": nodes, "models": {p.config.id: p.describe() for p in found}}
