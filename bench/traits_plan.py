"""Bench: plan and dry-run trait inference over 50,000 personas × 23 value traits (1.15 M items per condition).

    python bench/traits_plan.py [--personas 50000 --traits 23 --conditions 2] [--sample N] [--dry-run]

Writes synthetic personas with answer scales (60 countries, 4-10 point scales) to a temporary folder, then in
fresh child processes (so each peak RSS is that phase's own): (1) load the grid and plan (read the personas,
resolve targets, count items), (2) enumerate every cell, (3) build the request and cache key (what a dry run
and a run do per cell) of the first --sample cells (default: all), (4) with --dry-run, `mtpa-engine run
--dry-run` whole. Prints wall seconds and peak RSS of each, and µs per cell.
"""

from __future__ import annotations

import argparse
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def write_personas(path: Path, n: int, traits: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    scales = {f"value_{j:02d}": [f"answer {a} of trait {j}" for a in range(4 + j % 7)] for j in range(traits)}
    with path.open("wb") as fh:
        for i in range(n):
            record = {
                "country": {"question": "In which country were you interviewed?", "answer": f"Country {i % 60}", "category": "demographic"},
                "sex": {"question": "What is your sex?", "answer": rng.choice(["Female", "Male"]), "category": "demographic"},
                "age": {"question": "How old are you?", "answer": str(rng.randint(18, 90)), "category": "demographic"},
            }
            for key, scale in scales.items():
                record[key] = {"question": f"Question of {key}?", "answer": rng.choice(scale), "category": "values", "scale": scale, "ordinal": True}
            fh.write(orjson.dumps({"id": f"r{i:06d}", "source": "synthetic", "traits": record}) + b"\n")


def write_grid(folder: Path, conditions: int) -> Path:
    grid = folder / "grid.toml"
    conds = '[[conditions]]\nname = "baseline"\n' + "".join(
        f'\n[[conditions]]\nname = "prose{c}"\nformat = "prose"\n' for c in range(conditions - 1)
    )
    grid.write_text(
        '[run]\nname = "bench"\noutput_dir = "out"\ncache = "cache.sqlite"\n\n[personas]\nsource = "personas.jsonl"\n\n'
        '[[benchmarks]]\nname = "traits"\ntargets = "values"\n\n'
        '[[models]]\nid = "m"\nprovider = "openai"\nmodel = "gpt-4.1-mini"\nbase_url = "http://127.0.0.1:9/v1"\napi_key_env = "PATH"\n\n' + conds
    )
    return grid


def _plan(grid: Path) -> int:
    from engine.grid import load_grid
    from engine.plan import Plan

    return len(Plan.from_grid(load_grid(grid)))


def _enumerate(grid: Path) -> int:
    from engine.grid import load_grid
    from engine.plan import Plan

    return sum(1 for _ in Plan.from_grid(load_grid(grid)))


def _requests(grid: Path, sample: int | None = None) -> int:
    from itertools import islice

    from engine.grid import load_grid
    from engine.keys import cache_key
    from engine.runner import prepare

    plan, providers = prepare(load_grid(grid))
    model = plan.grid.models[0]
    identity = providers[model.id].identity()
    return sum(1 for cell in islice(plan, sample) if cache_key(model.provider, identity, plan.request(cell)))


PHASES = {"plan": _plan, "enumerate": _enumerate, "requests": _requests}


def _child(grid: Path, phase: str, sample: int | None) -> None:
    start = time.perf_counter()
    n = _requests(grid, sample) if phase == "requests" else PHASES[phase](grid)
    wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    print(f"{phase:>10}: {n:>10,} cells  wall {wall:7.1f} s ({1e6 * wall / max(n, 1):6.1f} µs a cell, imports and personas included)  peak RSS {peak:6.0f} MB", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--personas", type=int, default=50_000)
    parser.add_argument("--traits", type=int, default=23)
    parser.add_argument("--conditions", type=int, default=2, help="baseline + (conditions - 1) prose conditions")
    parser.add_argument("--sample", type=int, default=None, help="requests phase: only the first SAMPLE cells")
    parser.add_argument("--dry-run", action="store_true", help="also time `mtpa-engine run --dry-run` (every cell's request)")
    parser.add_argument("--child", nargs=2, metavar=("GRID", "PHASE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(Path(args.child[0]), args.child[1], args.sample)
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        start = time.perf_counter()
        write_personas(folder / "personas.jsonl", args.personas, args.traits)
        grid = write_grid(folder, args.conditions)
        print(f"{args.personas:,} personas × {args.traits} value traits, {args.conditions} conditions "
              f"(written in {time.perf_counter() - start:.1f} s, {(folder / 'personas.jsonl').stat().st_size / 1e6:.0f} MB)")
        for phase in PHASES:
            sample = ["--sample", str(args.sample)] if args.sample else []
            subprocess.run([sys.executable, __file__, "--child", str(grid), phase, *sample], check=True, cwd=ROOT)
        if not args.dry_run:
            return
        start = time.perf_counter()
        proc = subprocess.run(
            ["/usr/bin/time", "-f", "%M", sys.executable, "-m", "engine.cli", "run", str(grid), "--dry-run"],
            capture_output=True, text=True, cwd=ROOT,
        )
        wall = time.perf_counter() - start
        peak = int(proc.stderr.strip().splitlines()[-1]) / 1024 if proc.returncode == 0 else float("nan")
        print(f"{'dry-run':>10}: `mtpa-engine run --dry-run` exit {proc.returncode}  wall {wall:7.1f} s  peak RSS {peak:6.0f} MB")


if __name__ == "__main__":
    main()
