"""Items/s per scoring mode on the embedded model (local transformers backend), TruthfulQA MC1 and MC2.

    python bench/adapter_scoring.py [--items 32] [--batch-size 16]

Each mode scores the same seeded TruthfulQA questions (no persona) through the provider, batched as the
scheduler batches them: `letter` generates (max_tokens 4), `letter-logprob` is one forward pass per batch,
`likelihood` scores every option's text (rows packed into forward passes). Also runs likelihood with
batch size 1, the one-prompt-at-a-time baseline, and prints MC1/MC2 on the sample.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_adapters.truthfulqa import TruthfulQA  # noqa: E402
from engine.config import LimitsConfig, ModelConfig  # noqa: E402
from engine.providers import create_provider  # noqa: E402
from engine.request import Decoding, Request  # noqa: E402


def _requests(adapter: TruthfulQA, items: list, decoding: Decoding) -> list[Request]:
    mode = adapter.mode
    return [
        Request(
            (("user", adapter.task_prompt(item)),),
            decoding,
            0,
            mode,
            item.letters,
            mode != "likelihood",
            adapter.continuations(item) if mode == "likelihood" else (),
        )
        for item in items
    ]


def run(mode: str, task: str, n: int, batch_size: int, provider) -> dict:
    adapter = TruthfulQA(mode=mode, task=task, limit=n, seed=0)
    items = list(adapter.items())
    requests = _requests(adapter, items, Decoding(0.0, 4, 1.0, None))
    started = time.perf_counter()
    responses = []
    for start in range(0, len(requests), batch_size):
        responses += asyncio.run(provider.complete(requests[start : start + batch_size]))
    wall = time.perf_counter() - started
    scores = [adapter.score(item, r) for item, r in zip(items, responses)]
    errors = [r.error for r in responses if not r.ok]
    assert not errors, errors[:1]
    return {
        "mode": mode,
        "task": task,
        "batch": batch_size,
        "items": len(items),
        "options": sum(len(i.options) for i in items),
        "wall_s": round(wall, 2),
        "items_per_s": round(len(items) / wall, 2),
        "accuracy": round(sum(s.correct for s in scores) / len(scores), 3),
        "score": round(sum(s.score for s in scores) / len(scores), 3),
        "invalid": round(sum(s.invalid for s in scores) / len(scores), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    provider = create_provider(ModelConfig(id="smol", provider="local", model="embedded", max_tokens=4, limits=LimitsConfig(batch_size=args.batch_size)))
    run("letter-logprob", "mc1", 1, 1, provider)  # load the weights outside the timings
    cases = [
        ("letter", "mc1", args.batch_size),
        ("letter-logprob", "mc1", args.batch_size),
        ("letter-logprob", "mc2", args.batch_size),
        ("likelihood", "mc1", args.batch_size),
        ("likelihood", "mc2", args.batch_size),
        ("likelihood", "mc1", 1),
    ]
    print(f"{'mode':15} {'task':4} {'batch':>5} {'items':>5} {'options':>7} {'wall_s':>7} {'items/s':>8} {'acc':>6} {'score':>6} {'invalid':>7}")
    for mode, task, batch in cases:
        r = run(mode, task, args.items, batch, provider)
        print(
            f"{r['mode']:15} {r['task']:4} {r['batch']:>5} {r['items']:>5} {r['options']:>7} {r['wall_s']:>7} "
            f"{r['items_per_s']:>8} {r['accuracy']:>6} {r['score']:>6} {r['invalid']:>7}",
            flush=True,
        )


if __name__ == "__main__":
    main()
