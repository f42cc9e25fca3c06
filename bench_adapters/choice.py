"""Shared pieces of multiple-choice adapters: seeded sampling and shuffles, and scoring in every mode."""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import ClassVar

import polars as pl

from bench_adapters.base import JUDGE, MODES, NO_LOGPROBS, UNPARSED, Item, Output, Score
from bench_adapters.letters import format_options, letters_for, parse_letter


# Judge mode: short answers keep the judge's task (and its prompt) focused, as TruthfulQA's own setting does.
FREE_TEXT_INSTRUCTION = "Answer briefly, in one or two sentences."


def sample_indices(n: int, limit: int | None, seed: int) -> list[int]:
    """A seeded subset of range(n), kept in source order so that runs with the same limit agree."""
    if limit is None or limit >= n:
        return list(range(n))
    return sorted(random.Random(seed).sample(range(n), limit))


def shuffled(options: Sequence[str], gold: int, seed: int, item_id: str) -> tuple[tuple[str, ...], int]:
    """Shuffle options with a per-question seed (str seeds hash deterministically across processes)."""
    shown, order = permuted(options, seed, item_id)
    return shown, order.index(gold)


def permuted(options: Sequence[str], seed: int, item_id: str) -> tuple[tuple[str, ...], list[int]]:
    """The seeded presentation order; order[k] is the source index of the option shown k-th."""
    order = list(range(len(options)))
    random.Random(f"{seed}:{item_id}").shuffle(order)
    return tuple(options[i] for i in order), order


def draw_shots(evaluated: Sequence[Item], dataset: Sequence[Item], k: int, seed: int) -> dict[str, tuple[Item, ...]]:
    """Few-shot examples per evaluated item (grid key `shots`): k items drawn seeded from the dataset's items
    that are not evaluated (a separate split), or, when the grid evaluates every item, from the other items.

    Never the evaluated item itself; the same seed gives the same shots in the same order on every machine
    (a per-item stream, like the option shuffle). Raises ValueError when fewer than k candidates exist.
    """
    evaluated_ids = {item.id for item in evaluated}
    held_out = [item for item in dataset if item.id not in evaluated_ids]
    pool = held_out or list(dataset)
    out: dict[str, tuple[Item, ...]] = {}
    for item in evaluated:
        # k + 1 drawn, the item itself dropped: no per-item copy of the pool (datasets of 50k items)
        picks = random.Random(f"{seed}:{item.id}:shots").sample(pool, min(len(pool), k + 1))
        chosen = tuple(c for c in picks if c.id != item.id)[:k]
        if len(chosen) < k:
            raise ValueError(f"shots = {k}: only {len(chosen)} other item(s) to draw examples from")
        out[item.id] = chosen
    return out


CYCLIC = "cyclic"


def option_orders(n: int, orders: int | str, seed: int, item_id: str) -> tuple[tuple[int, ...], ...]:
    """The presentation orders of one item with n options, as permutations of its first order.

    order[k][j] is the index (into the item's first, seeded-shuffle order) of the option shown j-th in order k;
    order 0 is always the identity, so `orders = 1` is exactly the single seeded shuffle. "cyclic": the n cyclic
    shifts (order k shows option (j + k) mod n at position j), so every option appears once at every position.
    An integer N: N distinct seeded permutations (fewer when n! < N), drawn from a per-item stream.
    """
    identity = tuple(range(n))
    if orders == CYCLIC:
        return tuple(tuple((j + k) % n for j in range(n)) for k in range(n))
    wanted = min(int(orders), math.factorial(n))
    rng = random.Random(f"{seed}:{item_id}:orders")
    chosen = [identity]
    while len(chosen) < wanted:
        perm = tuple(rng.sample(identity, n))
        if perm not in chosen:
            chosen.append(perm)
    return tuple(chosen)


def reorder(item: Item, perm: Sequence[int], letter_meta: Sequence[str] = ()) -> Item:
    """The item with its options shown in `perm` order (perm[j] = current index of the option shown j-th).

    Gold, the true options and the `letter_meta` fields (metadata naming an option by its letter, e.g. BBQ's
    biased and unknown answers) follow their options, so every order is scored by the same rule.
    """
    where = {old: new for new, old in enumerate(perm)}
    letters = item.letters
    meta = dict(item.meta)
    for name in letter_meta:
        if meta.get(name):
            meta[name] = letters[where[letters.index(meta[name])]]
    return dataclasses.replace(
        item,
        options=tuple(item.options[i] for i in perm),
        gold=where[item.gold],
        true=tuple(sorted(where[i] for i in item.true)),
        meta=meta,
    )


def letter_prompt(question: str, options: tuple[str, ...]) -> str:
    return f"{question}\n{format_options(options)}\n{letter_instruction(letters_for(len(options)))}"


def letter_instruction(letters: Sequence[str]) -> str:
    """The closing line of a lettered question (bench_adapters.modes swaps it for the reasoning one)."""
    return f"Respond with a single letter ({', '.join(letters)}) only."


def letter_score(item: Item, text: str | None, letter_logprobs: Mapping[str, float] | None) -> Score:
    """Score a generated reply: the letter it gives (bench_adapters.letters, reading the option texts too), or
    invalid; `p_gold` from the letter logprobs when the backend sent them."""
    answer = parse_letter(text, item.letters, item.options)
    accepted = {item.letters[i] for i in item.accepted}
    p_gold = None
    if letter_logprobs:
        # Renormalise over the offered letters so p_gold is comparable across backends and option counts.
        probs = {k: math.exp(v) for k, v in letter_logprobs.items() if k in item.letters}
        total = sum(probs.values())
        if total > 0:
            p_gold = sum(p for k, p in probs.items() if k in accepted) / total
    correct = float(answer in accepted)
    return Score(answer=answer, correct=correct, invalid=answer is None, p_gold=p_gold, score=correct, invalid_kind=None if answer else UNPARSED)


def choice_score(item: Item, logps: Sequence[float] | None) -> Score:
    """Score a per-option log-score vector (letter logprobs or option log-likelihoods).

    Correct means the best true option beats the best false one strictly, so a tie scores 0 (TruthfulQA's MC1
    rule). The answer is the unique argmax; a tie at the top has no answer. The mass on the true options,
    normalised over all options, is MC2's score and the `p_gold` of every benchmark.
    """
    if logps is None or len(logps) != len(item.options) or all(v == -math.inf for v in logps):
        return Score(answer=None, correct=0.0, invalid=True, p_gold=None, score=0.0, invalid_kind=NO_LOGPROBS)
    accepted = set(item.accepted)
    best_true = max(logps[i] for i in accepted)
    best_false = max((v for i, v in enumerate(logps) if i not in accepted), default=-math.inf)
    top = max(logps)
    winners = [i for i, v in enumerate(logps) if v == top]
    shift = [math.exp(v - top) for v in logps]
    mass = sum(shift[i] for i in accepted) / sum(shift)
    correct = float(best_true > best_false)
    answer = item.letters[winners[0]] if len(winners) == 1 else None
    return Score(answer=answer, correct=correct, invalid=False, p_gold=mass, score=correct)


def letter_logps(item: Item, letter_logprobs: Mapping[str, float] | None) -> list[float] | None:
    """Per-option logprobs in option order; a letter the backend did not list gets -inf (probability 0)."""
    if not letter_logprobs:
        return None
    return [letter_logprobs.get(letter, -math.inf) for letter in item.letters]


def meta_field(name: str) -> pl.Expr:
    return pl.col("meta").str.json_path_match(f"$.{name}").alias(name)


class MultipleChoice:
    """Base for adapters whose items are lettered options with known correct answers.

    Subclasses provide `load()`; this class renders prompts and scores in all three modes. `options` names
    the grid.toml benchmark keys beyond path/limit/seed/mode that the adapter accepts: each is a keyword
    parameter of the constructor, whose annotation types it (engine.grid checks the grid against it) and whose
    body validates its value (ValueError, one line).
    """

    name: ClassVar[str]
    modes: ClassVar[tuple[str, ...]] = MODES
    options: ClassVar[tuple[str, ...]] = ()
    default_path: ClassVar[Path | None] = None
    rubric: ClassVar[str | None] = None  # judge mode: the built-in rubric used when the grid names none
    letter_meta: ClassVar[tuple[str, ...]] = ()  # meta fields that name an option by its letter (follow reordering)
    higher_is_better: ClassVar[bool] = True  # the score is the correct answer's (accuracy, MC2 mass, p_gold)

    def __init__(self, path: Path | None = None, limit: int | None = None, seed: int = 0, mode: str = "letter") -> None:
        if mode not in self.modes:
            raise ValueError(f"{self.name}: mode '{mode}' not supported (expected one of {', '.join(self.modes)})")
        self.path = Path(path) if path else self.default_path
        self.limit = limit
        self.seed = seed
        self.mode = mode

    def load(self) -> list[Item]:
        raise NotImplementedError

    def items(self) -> Iterator[Item]:
        records = self.load()
        for i in sample_indices(len(records), self.limit, self.seed):
            yield records[i]

    def task_prompt(self, item: Item) -> str:
        if self.mode == "likelihood":
            return item.question
        if self.mode == JUDGE:
            return f"{item.question}\n{FREE_TEXT_INSTRUCTION}"
        return letter_prompt(item.question, item.options)

    def continuations(self, item: Item) -> tuple[str, ...]:
        return item.options

    def ordered(self, item: Item, orders: int | str) -> tuple[tuple[Item, tuple[int, ...]], ...]:
        """Every presentation order of an item (grid key `orders`) with its permutation; the first is the item."""
        perms = option_orders(len(item.options), orders, self.seed, item.id)
        return tuple((item if k == 0 else reorder(item, perm, self.letter_meta), perm) for k, perm in enumerate(perms))

    def score(self, item: Item, output: Output) -> Score:
        if self.mode == "letter":
            return letter_score(item, output.text, output.letter_logprobs)
        if self.mode == "letter-logprob":
            return choice_score(item, letter_logps(item, output.letter_logprobs))
        return choice_score(item, output.option_logprobs)

    @classmethod
    def metrics(cls, rows: pl.DataFrame) -> pl.DataFrame:
        """Accuracy, invalid rate and mean primary score per model × condition (and category, when items have one)."""
        rows = rows.filter(pl.col("status") == "ok").with_columns(meta_field("category"))
        keys = ["model", "condition"] + (["category"] if rows["category"].null_count() < rows.height else [])
        return accuracy_table(rows, keys)


def accuracy_table(rows: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    aggs = [
        pl.len().alias("n"),
        pl.col("correct").mean().alias("accuracy"),
        pl.col("invalid").mean().alias("invalid"),
        pl.col("score").mean().alias("score"),
        pl.col("p_gold").mean().alias("p_gold"),
    ]
    per_key = rows.group_by(keys).agg(aggs)
    if keys[-1] not in ("model", "condition"):  # add an "all" row per model × condition above the slices
        overall = rows.group_by(keys[:-1]).agg(aggs).with_columns(pl.lit("all").alias(keys[-1]))
        per_key = pl.concat([overall.select(per_key.columns), per_key])
    return per_key.sort(keys)
