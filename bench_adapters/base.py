"""The adapter interface every benchmark implements."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Protocol

import polars as pl

from bench_adapters.letters import letters_for

if TYPE_CHECKING:
    from persona_builder.persona import Persona

# letter: generated letter, parsed strictly; letter-logprob: next-token distribution over the option letters;
# likelihood: summed log-probability of each option's text after the prompt; judge: a free-text answer, scored
# by the grid's judge model against a rubric (bench_adapters.rubric).
MODES = ("letter", "letter-logprob", "likelihood")
JUDGE = "judge"

# Why an answer is invalid (Score.invalid_kind, results column `invalid_kind`, the run summary's `invalid`).
UNPARSED = "unparsed"  # a reply (or a reasoning reply's final answer line) that names no option unambiguously
NO_LOGPROBS = "no_logprobs"  # a logprob mode without usable probabilities from the backend
TRUNCATED = "truncated"  # reasoning stopped at max_tokens before its final answer line (bench_adapters.modes)
NO_ANSWER_LINE = "no_answer_line"  # reasoning that ended without a final answer line, under max_tokens


@dataclass(frozen=True, slots=True)
class Item:
    """One benchmark question, options already in presentation order (none for a free-text question)."""

    id: str
    question: str
    options: tuple[str, ...]
    gold: int  # index into options; the gold letter reported in results
    meta: Mapping[str, str] = field(default_factory=dict)
    # Every option that counts as correct (TruthfulQA MC2 has several); empty means just `gold`.
    true: tuple[int, ...] = ()
    # Free-text items: reference material a judge's rubric may quote by name (e.g. {correct_answers}).
    refs: Mapping[str, str] = field(default_factory=dict)
    letters: tuple[str, ...] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        # Stored, not derived on access: the scheduler reads it for every cell on the hot path.
        object.__setattr__(self, "letters", letters_for(len(self.options)) if self.options else ())

    @property
    def gold_letter(self) -> str | None:
        return self.letters[self.gold] if self.letters else None

    @property
    def accepted(self) -> tuple[int, ...]:
        return self.true or (self.gold,)


class Output(Protocol):
    """What a backend returned for one cell (engine.request.Response satisfies it)."""

    text: str | None
    letter_logprobs: dict[str, float] | None
    option_logprobs: tuple[float, ...] | None


@dataclass(frozen=True, slots=True)
class Score:
    answer: str | None  # the chosen letter (parsed, or the argmax in the logprob modes); None when there is none
    correct: float  # 1.0/0.0; an invalid answer scores 0 and is flagged, never mapped to an option
    invalid: bool  # no usable answer: unparseable text, or no logprobs from the backend
    p_gold: float | None  # probability mass on the correct option(s), when the mode gives probabilities
    score: float | None = None  # the benchmark's primary per-item metric (e.g. MC2 mass); None means `correct`
    # Why `invalid` (UNPARSED, NO_LOGPROBS, TRUNCATED, NO_ANSWER_LINE above); None when valid
    invalid_kind: str | None = None


class Adapter(Protocol):
    name: ClassVar[str]
    modes: ClassVar[tuple[str, ...]]
    rubric: ClassVar[str | None]  # judge mode: the default rubric (bench_adapters.rubric)
    # Whether a higher per-item score is the better one, as lm-eval's task configs declare per metric
    # (`higher_is_better`): the report carries it beside every Δ, so a Δ's sign is read the right way round.
    higher_is_better: ClassVar[bool]
    mode: str

    def items(self) -> Iterator[Item]: ...

    def task_prompt(self, item: Item) -> str: ...

    def continuations(self, item: Item) -> tuple[str, ...]:
        """likelihood mode: the texts whose log-likelihood after the prompt is compared, one per option."""
        ...

    def score(self, item: Item, output: Output) -> Score: ...

    def ordered(self, item: Item, orders: int | str) -> tuple[tuple[Item, tuple[int, ...]], ...]:
        """Multiple-choice adapters: the item in every presentation order (grid key `orders`), each with its
        permutation of the first order; only called when `orders` asks for more than one."""
        ...

    @classmethod
    def metrics(cls, rows: pl.DataFrame) -> pl.DataFrame:
        """The benchmark's aggregate metrics from its result rows (one benchmark, any models and conditions)."""
        ...


class PersonaItems(Adapter, Protocol):
    """An adapter whose items come from the personas themselves (`per_persona = True`: trait inference).

    engine.plan binds it to the run's personas, enumerates each persona's own items with that persona only,
    and renders the persona without the traits `hidden(item)` names."""

    count: int  # items over all personas, once bound

    def bind(self, personas: Sequence[Persona]) -> None:
        """Resolve the items against the personas; ValueError names what is wrong and what is available."""
        ...

    def items_for(self, persona: Persona) -> Iterator[Item]: ...

    def hidden(self, item: Item) -> frozenset[str]: ...
