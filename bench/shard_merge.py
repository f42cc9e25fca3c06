"""Bench: the cost of sharding a grid and of merging, inspecting, compacting and exporting its caches.

    python bench/shard_merge.py [--shards 7] [--entries 100000] [--personas 20000] [--questions 50]

(1) Plan walk: cells/s of one model's cells, the whole grid and one shard of `--shards` (a shard walks every
cell and keeps those whose id hashes to it), on a synthetic persona list × TruthfulQA questions.
(2) Caches: `--shards` synthetic shard caches of `--entries` letter answers each (disjoint keys, as shards
write), merged into an empty cache (entries/s), merged again (idempotent: nothing added), then stats, vacuum and
a JSON-lines export of the merged cache. Prints seconds and rates; asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import write_grid  # noqa: E402
from engine import cache_tools  # noqa: E402
from engine.cache import ResponseCache  # noqa: E402
from engine.grid import load_grid  # noqa: E402
from engine.plan import Plan  # noqa: E402
from engine.request import Response  # noqa: E402
from engine.shard import Shard  # noqa: E402
from persona_builder import Persona, Trait  # noqa: E402

def _walk(plan: Plan) -> tuple[int, float]:
    started = time.perf_counter()
    n = sum(1 for _ in plan.cells(plan.grid.models[0]))
    return n, time.perf_counter() - started


def bench_plan(tmp: Path, shards: int, personas: int, questions: int) -> None:
    # The grid's own personas are replaced below by `personas` synthetic ones; no server is called.
    base = Plan.from_grid(load_grid(write_grid(tmp, "http://127.0.0.1:1/v1", 1, questions, 1)))
    trait = {"country": Trait("Country", "X", "demographic")}
    people = [Persona(f"p{i}", "synthetic", trait) for i in range(personas)]
    whole = Plan(base.grid, people, base.benchmarks)
    n, dt = _walk(whole)
    print(f"plan walk, whole grid:   {n:>10,} cells  {dt:6.2f} s  {n / dt:>10,.0f} cells/s")
    part = Plan(base.grid, people, base.benchmarks, Shard(0, shards))
    k, dk = _walk(part)
    print(f"plan walk, shard 0/{shards}:    {k:>10,} cells  {dk:6.2f} s  {n / dk:>10,.0f} grid cells/s walked ({k / n:.3f} of the grid)")


def _shard_cache(path: Path, shard: int, entries: int) -> None:
    cache = ResponseCache(path)
    try:
        for start in range(0, entries, 10_000):
            rows = []
            for i in range(start, min(start + 10_000, entries)):
                key = hashlib.sha256(f"{shard}:{i}".encode()).hexdigest()
                rows.append((key, "openai", "test", Response(text="B", letter_logprobs={"A": -2.3, "B": -0.1, "C": -3.0, "D": -4.1}, prompt_tokens=512, completion_tokens=1, latency_s=0.4)))
            cache.write(rows)
    finally:
        cache.close()


def bench_caches(tmp: Path, shards: int, entries: int) -> None:
    inputs = [tmp / f"cache.shard-{i}-of-{shards}.sqlite" for i in range(shards)]
    started = time.perf_counter()
    for i, path in enumerate(inputs):
        _shard_cache(path, i, entries)
    print(f"wrote {shards} shard caches of {entries:,} entries in {time.perf_counter() - started:.1f} s")
    out = tmp / "merged.sqlite"
    total = shards * entries
    for label in ("merge", "merge again"):
        started = time.perf_counter()
        report = cache_tools.merge(out, inputs)
        dt = time.perf_counter() - started
        added = sum(i.added for i in report.inputs)
        print(f"{label:<12} {total:>10,} entries  {dt:6.2f} s  {total / dt:>10,.0f} entries/s  added {added:,}  conflicts {report.conflicts}  integrity {report.integrity}")
    for label, step in (
        ("stats", lambda: cache_tools.stats(out)),
        ("vacuum", lambda: cache_tools.vacuum(out)),
        ("export", lambda: cache_tools.export(out, tmp / "merged.jsonl")),
    ):
        started = time.perf_counter()
        step()
        dt = time.perf_counter() - started
        print(f"{label:<12} {total:>10,} entries  {dt:6.2f} s  {total / dt:>10,.0f} entries/s")
    print(f"merged cache {cache_tools.stats(out)['file_bytes'] / 1e6:,.1f} MB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shards", type=int, default=7)
    ap.add_argument("--entries", type=int, default=100_000, help="entries per shard cache")
    ap.add_argument("--personas", type=int, default=20_000)
    ap.add_argument("--questions", type=int, default=50)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bench_plan(Path(tmp), args.shards, args.personas, args.questions)
        bench_caches(Path(tmp), args.shards, args.entries)


if __name__ == "__main__":
    main()
