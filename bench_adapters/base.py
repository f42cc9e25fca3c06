"""The adapter interface every benchmark implements."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

from bench_adapters.letters import letters_for


@dataclass(frozen=True, slots=True)
class Item:
    """One benchmark question, options already in presentation order."""

    id: str
    question: str
    options: tuple[str, ...]
    gold: int  # index into options
    meta: Mapping[str, str] = field(default_factory=dict)
    letters: tuple[str, ...] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        # Stored, not derived on access: the scheduler reads it for every cell on the hot path.
        object.__setattr__(self, "letters", letters_for(len(self.options)))

    @property
    def gold_letter(self) -> str:
        return self.letters[self.gold]


@dataclass(frozen=True, slots=True)
class Score:
    answer: str | None  # the parsed letter, None when invalid
    correct: float  # 1.0/0.0; an invalid answer scores 0 and is flagged, never mapped to an option
    invalid: bool
    p_gold: float | None  # probability on the gold letter when letter logprobs exist


class Adapter(Protocol):
    name: ClassVar[str]
    modes: ClassVar[tuple[str, ...]]

    def items(self) -> Iterator[Item]: ...

    def task_prompt(self, item: Item) -> str: ...

    def score(self, item: Item, text: str | None, letter_logprobs: Mapping[str, float] | None) -> Score: ...
