"""Engine throughput against a local OpenAI-compatible server with fixed latency (issue: engine foundation).

For each concurrency C it prints achieved calls/s, the bound min(C/L, ceiling) where the ceiling is a bare
aiohttp client loop against the same server measured in this run, their ratio, and engine CPU s per call.
It also measures the official SDK's default (httpx) transport against its aiohttp one, and a warm rerun of
a fully cached 100,000-cell grid.

    python bench/api_throughput.py [--cells 5000] [--latency 0.05] [--warm-cells 100000] [--loop uvloop]

`--loop uvloop` runs the engine (and the bare client) on uvloop's event loop, the optional `uvloop` extra
that `mtpa-engine run` uses when it is installed; `--loop asyncio` the standard one. `--startup N` instead
times N end-to-end `python -m engine.cli run` subprocesses of a 10-call grid (start-up, preflight, run,
tables), with `--code PATH` on PYTHONPATH (another checkout, to compare).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._common import engine_run, openai_server, write_grid  # noqa: E402


async def bare_aiohttp(base_url: str, n: int, concurrency: int) -> float:
    sem = asyncio.Semaphore(concurrency)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(i: int) -> None:
            body = orjson.dumps({"model": "test", "messages": [{"role": "user", "content": f"q{i}\nA. x\nB. y"}], "max_tokens": 8})
            async with sem, session.post(f"{base_url}/chat/completions", data=body, headers={"content-type": "application/json"}) as r:
                orjson.loads(await r.read())

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        return n / (time.perf_counter() - started)


async def sdk_loop(base_url: str, n: int, concurrency: int, transport: str) -> tuple[float, float]:
    from openai import AsyncOpenAI, DefaultAioHttpClient

    kwargs = {"http_client": DefaultAioHttpClient()} if transport == "aiohttp" else {}
    client = AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0, **kwargs)
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with sem:
            await client.chat.completions.create(model="test", messages=[{"role": "user", "content": f"s{i}\nA. x"}], max_tokens=8)

    cpu, started = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    await client.close()
    return n / wall, cpu / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", type=int, default=5000)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--warm-cells", type=int, default=100_000, help="0: skip the warm rerun")
    parser.add_argument("--no-sdk", action="store_true", help="skip the official SDK's transports")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument("--code", default=str(Path(__file__).resolve().parent.parent), help="with --startup: the checkout whose engine runs")
    parser.add_argument("--startup", type=int, default=0, metavar="N", help="only time N end-to-end runs of a 10-call grid")
    args = parser.parse_args()
    if args.startup:
        return startup(args)
    if args.loop == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    print(f"event loop: {args.loop}")
    questions = 500
    personas = max(1, args.cells // questions - 1)  # baseline + personas x questions ~= cells

    with openai_server(args.latency) as base_url, tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        asyncio.run(bare_aiohttp(base_url, 500, 100))  # warm the server up
        # Best of three: the ceiling is what the bare client can do, not what a noisy moment allowed.
        ceiling = max(asyncio.run(bare_aiohttp(base_url, args.cells, max(args.concurrency))) for _ in range(3))
        print(f"server latency {args.latency * 1000:.0f} ms; bare aiohttp ceiling {ceiling:,.0f} calls/s (C={max(args.concurrency)})")
        for transport in ("httpx", "aiohttp")[: 0 if args.no_sdk else 2]:
            rate, cpu = asyncio.run(sdk_loop(base_url, 2000, 100, transport))
            print(f"openai SDK, {transport:7s} transport, C=100: {rate:8,.0f} calls/s, {cpu * 1000:.2f} ms CPU per call")
        # calls/s over the scheduler's wall time (summary wall_s); "total s" adds plan setup, manifest and analysis.
        print(f"\n{'C':>5} {'cells':>6} {'calls/s':>9} {'bound':>9} {'ratio':>6} {'CPU ms/call':>12} {'total s':>8}")
        for c in args.concurrency:
            grid = write_grid(root, base_url, personas, questions, c, name=f"c{c}")
            wall, cpu, summary = engine_run(grid)
            calls = summary["model_calls"]
            rate = calls / summary["wall_s"]
            bound = min(c / args.latency, ceiling)
            print(f"{c:>5} {summary['cells_total']:>6} {rate:>9,.0f} {bound:>9,.0f} {rate / bound:>6.2f} {cpu / calls * 1000:>12.3f} {wall:>8.2f}")

        if not args.warm_cells:
            return
        warm_personas = max(1, args.warm_cells // questions - 1)
        grid = write_grid(root, base_url, warm_personas, questions, max(args.concurrency), name="warm")
        cold_wall, _, cold = engine_run(grid)
        warm_wall, warm_cpu, warm = engine_run(grid)
        assert warm["model_calls"] == 0 and warm["cache_hits"] == warm["cells_total"]
        print(f"\ncold run {cold['cells_total']:,} cells: {cold_wall:.1f} s ({cold['model_calls'] / cold_wall:,.0f} calls/s)")
        print(f"warm rerun {warm['cells_total']:,} cells, all cached: {warm_wall:.2f} s wall, {warm_cpu:.2f} s CPU, {warm['cells_total'] / warm_wall:,.0f} cells/s")


def startup(args: argparse.Namespace) -> None:
    """Wall time of `mtpa-engine run` on a 10-call grid (2 questions, baseline + 4 personas), end to end."""
    import resource
    import statistics
    import subprocess

    env = {"OPENAI_API_KEY": "x", "PATH": "", "PYTHONPATH": args.code}
    with openai_server(0.0) as base_url, tempfile.TemporaryDirectory() as tmp:
        walls, cpus = [], []
        for i in range(args.startup):
            grid = write_grid(Path(tmp), base_url, 4, 2, 10, name=f"s{i}")  # a new cache each time: 10 calls
            before, started = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
            subprocess.run([sys.executable, "-m", "engine.cli", "run", str(grid), "--no-progress"], check=True, capture_output=True, env=env, cwd=args.code)
            walls.append(time.perf_counter() - started)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpus.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
        # CPU seconds are the number to compare on a shared machine: wall time there is mostly waiting for a core.
        print(
            f"10-call API grid, end to end ({args.code}): wall median {statistics.median(walls):.2f} s (min {min(walls):.2f}), "
            f"CPU median {statistics.median(cpus):.2f} s (min {min(cpus):.2f}) over {len(walls)} runs"
        )


if __name__ == "__main__":
    main()
