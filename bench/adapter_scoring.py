"""Items/s per scoring mode on the embedded model (local transformers backend), TruthfulQA MC1 and MC2.

    python bench/adapter_scoring.py [--items 32] [--batch-size 16] [--persona]

Each mode scores the same seeded TruthfulQA questions (no persona) through the provider, batched as the
scheduler batches them: `letter` generates (max_tokens 4), `letter-logprob` is one forward pass per batch,
`likelihood` scores every option's text (rows packed into forward passes). Also runs likelihood with
batch size 1, the one-prompt-at-a-time baseline, and prints MC1/MC2 on the sample. `judge` is TruthfulQA
generation: a free-text answer (max_tokens --answer-tokens) and the same model's verdict on it under the
`truthful` rubric in letter-logprob mode; its items/s covers both calls, and `wall_s` is split answer+verdict.
`--persona` puts the first example persona (prose, ~500 tokens) in front of every prompt, as persona cells are.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_adapters.rubric import load_rubric  # noqa: E402
from bench_adapters.truthfulqa import TruthfulQA  # noqa: E402
from engine.config import LimitsConfig, ModelConfig  # noqa: E402
from engine.providers import create_provider  # noqa: E402
from engine.request import Decoding, Request  # noqa: E402


def _messages(persona: str | None, task: str) -> tuple[tuple[str, str], ...]:
    return ((("system", persona),) if persona else ()) + (("user", task),)


def _requests(adapter: TruthfulQA, items: list, decoding: Decoding, persona: str | None) -> list[Request]:
    mode = adapter.mode
    return [
        Request(
            _messages(persona, adapter.task_prompt(item)),
            decoding,
            0,
            mode,
            item.letters,
            mode != "likelihood",
            adapter.continuations(item) if mode == "likelihood" else (),
        )
        for item in items
    ]


def _complete(provider, requests: list[Request], batch_size: int) -> tuple[list, float]:
    started = time.perf_counter()
    responses = []
    for start in range(0, len(requests), batch_size):
        responses += asyncio.run(provider.complete(requests[start : start + batch_size]))
    errors = [r.error for r in responses if not r.ok]
    assert not errors, errors[:1]
    return responses, time.perf_counter() - started


def run(mode: str, task: str, n: int, batch_size: int, provider, answer_tokens: int = 32, persona: str | None = None) -> dict:
    adapter = TruthfulQA(mode=mode, task=task, limit=n, seed=0)
    items = list(adapter.items())
    if mode == "judge":
        answers, answer_wall = _complete(provider, [Request(_messages(persona, adapter.task_prompt(i)), Decoding(0.0, answer_tokens, 1.0, None), 0, "generate", (), False) for i in items], batch_size)
        rubric = load_rubric(adapter.rubric)
        verdict_requests = [Request((("user", rubric.render(i, a.text or "")),), Decoding(0.0, 1, 1.0, None), 0, "letter-logprob", rubric.letters, True) for i, a in zip(items, answers)]
        responses, verdict_wall = _complete(provider, verdict_requests, batch_size)
        wall = answer_wall + verdict_wall
        scores = [rubric.score(r, "letter-logprob") for r in responses]
        task, note = "gen", f"  (answers {answer_wall:.1f} s + verdicts {verdict_wall:.1f} s)"
    else:
        note = ""
        responses, wall = _complete(provider, _requests(adapter, items, Decoding(0.0, 4, 1.0, None), persona), batch_size)
        scores = [adapter.score(item, r) for item, r in zip(items, responses)]
    return {
        "note": note,
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
    parser.add_argument("--answer-tokens", type=int, default=32, help="judge mode: free-text answer length")
    parser.add_argument("--persona", action="store_true", help="every prompt behind the first example persona (prose, system message)")
    args = parser.parse_args()
    persona = None
    if args.persona:
        from persona_builder import load_personas, render

        persona = render(load_personas(Path(__file__).resolve().parent.parent / "examples" / "personas.jsonl")[0], "prose", "all")
    provider = create_provider(ModelConfig(id="smol", provider="local", model="embedded", max_tokens=4, limits=LimitsConfig(batch_size=args.batch_size)))
    run("letter-logprob", "mc1", 1, 1, provider)  # load the weights outside the timings
    cases = [
        ("letter", "mc1", args.batch_size),
        ("letter-logprob", "mc1", args.batch_size),
        ("letter-logprob", "mc2", args.batch_size),
        ("likelihood", "mc1", args.batch_size),
        ("likelihood", "mc2", args.batch_size),
        ("likelihood", "mc1", 1),
        ("judge", "generation", args.batch_size),
    ]
    print(f"{'mode':15} {'task':4} {'batch':>5} {'items':>5} {'options':>7} {'wall_s':>7} {'items/s':>8} {'acc':>6} {'score':>6} {'invalid':>7}")
    for mode, task, batch in cases:
        r = run(mode, task, args.items, batch, provider, args.answer_tokens, persona)
        print(
            f"{r['mode']:15} {r['task']:4} {r['batch']:>5} {r['items']:>5} {r['options']:>7} {r['wall_s']:>7} "
            f"{r['items_per_s']:>8} {r['accuracy']:>6} {r['score']:>6} {r['invalid']:>7}{r['note']}",
            flush=True,
        )


if __name__ == "__main__":
    main()
