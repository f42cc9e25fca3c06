"""The three API providers (openai, anthropic, google) against their wire-exact test servers (issue 5).

Each measurement starts a fresh server process (engine/testing/servers/*_compat.py) with 50 ms latency and runs the
engine in-process (engine.runner.run, lean aiohttp channel), next to a plain asyncio.gather + semaphore
client on the same server:

1. unlimited, C=1000: engine calls/s / min(C/L, bare-aiohttp ceiling measured on that server), CPU/call;
2. server limit 1,200 requests/min, enforced as 100 per 5 s sliding window (shortened to keep the bench
   short; the engine is configured with requests_per_minute = 1200): achieved requests/min / limit and the
   fraction of requests answered 429; the plain client retries each 429 after its Retry-After;
3. 20% of requests answered 503, max_retries = 8 (with the default 4, a cell fails 5 times in a row with
   probability 0.2^5: ~0.3 cells per 1,000 are left for the next run): every cell completes, retries
   counted; the plain client does not retry.

    python bench/api_providers.py [--cells 3000] [--limited-cells 300] [--faulty-cells 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._common import REPO, free_port, write_grid  # noqa: E402
from bench._common import engine_run as run_grid  # noqa: E402

LATENCY = 0.05
KEY = "bench-key"
# provider -> (server module, base path, generate path, headers, body for prompt text)
WIRES = {
    "openai": ("openai_compat", "/v1", "/v1/chat/completions", {"Authorization": f"Bearer {KEY}"}, lambda t: {"model": "test", "messages": [{"role": "user", "content": t}], "max_tokens": 8}),
    "anthropic": ("anthropic_compat", "", "/v1/messages", {"x-api-key": KEY, "anthropic-version": "2023-06-01"}, lambda t: {"model": "test", "max_tokens": 8, "messages": [{"role": "user", "content": t}]}),
    "google": ("google_compat", "", "/v1beta/models/test:generateContent", {"x-goog-api-key": KEY}, lambda t: {"contents": [{"role": "user", "parts": [{"text": t}]}], "generationConfig": {"maxOutputTokens": 8}}),
}


@contextlib.contextmanager
def server(provider: str, *args: str) -> Iterator[str]:
    module = WIRES[provider][0]
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", f"engine.testing.servers.{module}", "--port", str(port), "--latency", str(LATENCY), *args], cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(f"{url}/stats", timeout=1).read()
                break
            except OSError:
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def server_stats(url: str) -> dict:
    return orjson.loads(urllib.request.urlopen(f"{url}/stats", timeout=5).read())


async def plain_client(provider: str, url: str, n: int, concurrency: int, retry_429: bool) -> tuple[float, int]:
    """asyncio.gather + semaphore: the simplest client. Returns (wall seconds, requests that succeeded)."""
    _, _, path, headers, body = WIRES[provider]
    sem = asyncio.Semaphore(concurrency)
    ok = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), headers={"Content-Type": "application/json", **headers}) as session:

        async def one(i: int) -> None:
            nonlocal ok
            data = orjson.dumps(body(f"plain {i}\nA. x\nB. y"))
            async with sem:
                while True:
                    async with session.post(url + path, data=data) as r:
                        await r.read()
                        if r.status == 429 and retry_429:
                            await asyncio.sleep(float(r.headers.get("retry-after", "1")))
                            continue
                        ok += r.status == 200
                        return

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        return time.perf_counter() - started, ok


def engine_run(root: Path, provider: str, url: str, cells: int, concurrency: int, rpm: float = 0, retries: int = 4, name: str = "g") -> tuple[float, float, dict]:
    questions = 500 if cells >= 1000 else 100
    grid = write_grid(
        root, f"{url}{WIRES[provider][1]}", max(1, cells // questions - 1), questions, concurrency, name=name,
        provider=provider, model_extra='api_key_env = "BENCH_KEY"',
        limits_extra=f"requests_per_minute = {rpm}\nmax_retries = {retries}",
    )
    return run_grid(grid)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", type=int, default=3000)
    parser.add_argument("--limited-cells", type=int, default=300)
    parser.add_argument("--faulty-cells", type=int, default=1000)
    parser.add_argument("--providers", nargs="+", default=list(WIRES))
    args = parser.parse_args()
    os.environ["BENCH_KEY"] = KEY
    c = 1000
    print(f"server latency {LATENCY * 1000:.0f} ms; engine on the lean aiohttp channel\n")
    print("1) unlimited, C=1000")
    print(f"{'provider':>10} {'cells':>6} {'ceiling/s':>10} {'bound/s':>8} {'engine/s':>9} {'ratio':>6} {'CPU ms/call':>12}")
    for p in args.providers:
        with server(p) as url, tempfile.TemporaryDirectory() as tmp:
            asyncio.run(plain_client(p, url, 500, 100, False))  # warm-up
            wall, _ = asyncio.run(plain_client(p, url, args.cells, c, False))
            ceiling = args.cells / wall
            wall, cpu, s = engine_run(Path(tmp), p, url, args.cells, c)
            bound = min(c / LATENCY, ceiling)
            rate = s["model_calls"] / wall
            print(f"{p:>10} {s['cells_total']:>6} {ceiling:>10,.0f} {bound:>8,.0f} {rate:>9,.0f} {rate / bound:>6.2f} {cpu / s['model_calls'] * 1000:>12.3f}")

    print("\n2) server limit 1,200 requests/min (100 per 5 s sliding window); engine told requests_per_minute = 1200")
    print(f"{'provider':>10} {'client':>7} {'calls':>6} {'req/min':>8} {'/limit':>7} {'429 share':>10}")
    for p in args.providers:
        for client in ("engine", "plain"):
            with server(p, "--limit", "100", "--window", "5") as url, tempfile.TemporaryDirectory() as tmp:
                if client == "engine":
                    wall, _, s = engine_run(Path(tmp), p, url, args.limited_cells, 100, rpm=1200)
                    done = s["model_calls"] - s["errors_total"]
                else:
                    wall, done = asyncio.run(plain_client(p, url, args.limited_cells, 100, True))
                st = server_stats(url)
                share = st["statuses"].get("429", 0) / st["requests"]
                rpm = done / wall * 60
                print(f"{p:>10} {client:>7} {done:>6} {rpm:>8,.0f} {rpm / 1200:>7.3f} {share:>10.2%}")

    print("\n3) 20% of requests answered 503, C=100, engine max_retries = 8")
    print(f"{'provider':>10} {'client':>7} {'cells':>6} {'completed':>10} {'retries':>8} {'server 503s':>12} {'wall s':>7}")
    for p in args.providers:
        for client in ("engine", "plain"):
            with server(p, "--fail-rate", "0.2", "--fail-status", "503") as url, tempfile.TemporaryDirectory() as tmp:
                if client == "engine":
                    wall, _, s = engine_run(Path(tmp), p, url, args.faulty_cells, 100, retries=8)
                    n, done, retries = s["cells_total"], s["cells_done"] - s["errors_total"], s["attempts"] - s["model_calls"]
                else:
                    n = args.faulty_cells
                    wall, done = asyncio.run(plain_client(p, url, n, 100, False))
                    retries = 0
                st = server_stats(url)
                print(f"{p:>10} {client:>7} {n:>6} {done:>10} {retries:>8} {st['statuses'].get('503', 0):>12} {wall:>7.1f}")


if __name__ == "__main__":
    main()
