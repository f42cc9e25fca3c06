"""Shared pieces of multiple-choice adapters: seeded sampling, seeded option shuffles, letter scoring."""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence

from bench_adapters.base import Item, Score
from bench_adapters.letters import format_options, parse_letter


def sample_indices(n: int, limit: int | None, seed: int) -> list[int]:
    """A seeded subset of range(n), kept in source order so that runs with the same limit agree."""
    if limit is None or limit >= n:
        return list(range(n))
    return sorted(random.Random(seed).sample(range(n), limit))


def shuffled(options: Sequence[str], gold: int, seed: int, item_id: str) -> tuple[tuple[str, ...], int]:
    """Shuffle options with a per-question seed (str seeds hash deterministically across processes)."""
    order = list(range(len(options)))
    random.Random(f"{seed}:{item_id}").shuffle(order)
    return tuple(options[i] for i in order), order.index(gold)


def letter_prompt(question: str, options: tuple[str, ...]) -> str:
    letters = ", ".join(chr(65 + i) for i in range(len(options)))
    return f"{question}\n{format_options(options)}\nRespond with a single letter ({letters}) only."


def letter_score(item: Item, text: str | None, letter_logprobs: Mapping[str, float] | None) -> Score:
    answer = parse_letter(text, item.letters)
    p_gold = None
    if letter_logprobs:
        # Renormalise over the offered letters so p_gold is comparable across backends and option counts.
        probs = {k: math.exp(v) for k, v in letter_logprobs.items() if k in item.letters}
        total = sum(probs.values())
        if total > 0:
            p_gold = probs.get(item.gold_letter, 0.0) / total
    return Score(answer=answer, correct=float(answer == item.gold_letter), invalid=answer is None, p_gold=p_gold)
