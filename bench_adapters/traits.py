"""Trait inference, MTPA's own task: predict a real survey respondent's held-out answer from the rest of them.

Items come from the persona file itself: one item is one persona × one target trait. The engine's plan pairs a
persona's items with that persona only (never a persona × item cross product) and renders the persona without
the target and the `withhold` traits (`hidden`); the baseline condition shows no persona at all, so its answer
is the model's default for "anyone". The task prompt is the target's survey question with its answer scale as
lettered options in the survey's order, then "Respond with a single letter"; gold is the respondent's real
answer. With `shots = k` the prompt first shows k other respondents (persona, question, real answer) drawn,
seeded per item, from a train split disjoint from the test personas.

Splits and samples, all seeded by the benchmark's `seed`:
- train/test (only when shots > 0): within each country × sex stratum, TRAIN_SHARE of the personas (rounded,
  at most all but one) go to train, the rest are test items; a respondent (persona id, unique in a persona
  file) is in one split.
- `limit`: a stratified sample of the test items, strata = target × country × sex, sizes proportional to the
  strata (largest remainder), items within a stratum chosen by a seeded random key.

Sources: MTPA (EMNLP Findings 2025; trait inference over real profiles, train/test stratified to the
population); WorldValuesBench (Zhao et al. 2024, Demon702/WorldValuesBench: predict a WVS respondent's answer
from their demographics). Metrics: bench_adapters.trait_metrics.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import ClassVar

import orjson
import polars as pl

from bench_adapters.base import Item, Output, Score
from bench_adapters.choice import choice_score, letter_logps, letter_prompt, letter_score
from bench_adapters.letters import LETTERS
from persona_builder.persona import Persona, Trait
from persona_builder.render import trait_lines

TARGET_SETS = ("values", "demographic", "all")
TRAIN_SHARE = 0.2  # of each country × sex stratum's personas, when shots are drawn
MISSING = "(missing)"


def _stratum(persona: Persona) -> tuple[str, str]:
    """Country × sex: the split's and the sample's strata (sex keeps a one-country survey such as the GSS stratified)."""
    return persona.answer("country") or MISSING, persona.answer("sex") or MISSING


def _usable(trait: Trait) -> bool:
    """A trait can be a target when its scale can be lettered (bind() checks that it holds the answer)."""
    return 2 <= len(trait.scale) <= len(LETTERS)


def ordinal_score(predicted: float, real: int, points: int) -> float:
    """1 − |predicted − real| / (points − 1): 1 for the real answer, 0 for the far end of the scale."""
    return 1.0 - abs(predicted - real) / (points - 1)


class Traits:
    name: ClassVar[str] = "traits"
    modes: ClassVar[tuple[str, ...]] = ("letter", "letter-logprob")
    options: ClassVar[tuple[str, ...]] = ("targets", "withhold", "shots")
    rubric: ClassVar[str | None] = None
    higher_is_better: ClassVar[bool] = True  # the score is matching the respondent's real answer
    per_persona: ClassVar[bool] = True  # items come from each persona: engine.plan calls bind() and items_for()

    def __init__(
        self,
        path: Path | None = None,
        limit: int | None = None,
        seed: int = 0,
        mode: str = "letter",
        targets: str | Sequence[str] | None = None,
        withhold: Sequence[str] = (),
        shots: int | None = None,
    ) -> None:
        if mode not in self.modes:
            raise ValueError(f"traits: mode '{mode}' not supported (expected one of {', '.join(self.modes)})")
        if path is not None:
            raise ValueError("traits: `path` is not used (the items come from the [personas] file)")
        targets = targets or "values"
        if isinstance(targets, str) and targets not in TARGET_SETS:
            raise ValueError(f"traits: targets '{targets}' (expected {', '.join(TARGET_SETS)} or a list of trait keys)")
        if (shots or 0) < 0:
            raise ValueError("traits: shots must be 0 or more")
        self.limit, self.seed, self.mode = limit, seed, mode
        self.targets_spec = targets
        self.withhold = tuple(withhold)
        self.shots = shots or 0
        self.targets: tuple[str, ...] = ()
        self._personas: Sequence[Persona] = ()
        self._index: dict[str, int] = {}
        self._train: set[int] = set()
        self._chosen: set[tuple[int, str]] | None = None  # None: every test item
        self._pools: dict[tuple[str, tuple[str, ...]], list[int]] = {}
        self._scale_json: dict[tuple[str, ...], str] = {}  # a scale's JSON for the items' meta, written once
        self.count = 0

    # --- binding to the run's personas -------------------------------------------------------------------

    def bind(self, personas: Sequence[Persona]) -> None:
        """Resolve the targets, split train/test, draw the limit sample and the shot pools, in a few passes over
        the personas (memory: the chosen items, the shot pools, counts per stratum, never the items).

        Raises ValueError, listing what is available, for a persona file without answer scales, a target or
        withheld trait the personas lack, an answer missing from its own scale, or too few train respondents."""
        self._personas = personas
        self._index = {p.id: i for i, p in enumerate(personas)}
        self.targets = self._resolve(personas)
        self._train = self._split(personas) if self.shots else set()
        strata: Counter[tuple[str, str, str]] = Counter()
        scales: set[tuple[str, tuple[str, ...]]] = set()  # (target, scale) of the test items: each needs a shot pool
        for i, p in enumerate(personas):
            train, stratum = i in self._train, _stratum(p)
            for key in self.targets:
                t = p.traits.get(key)
                if t is None or not _usable(t):
                    continue
                if t.answer not in t.scale:
                    raise ValueError(f"traits: persona '{p.id}': trait '{key}': answer '{t.answer}' is not on its scale ({', '.join(t.scale)})")
                if train:
                    self._pools.setdefault((key, t.scale), []).append(i)
                else:
                    strata[(key, *stratum)] += 1
                    scales.add((key, t.scale))
        if not strata:
            raise ValueError(f"traits: no test persona answered any of the targets ({', '.join(self.targets)})")
        self.count = sum(strata.values())
        if self.limit is not None and self.limit < self.count:
            self._chosen = self._sample(personas, strata)
            self.count = len(self._chosen)
        if self.shots:
            short = sorted({f"{k} ({len(self._pools.get((k, scale), ()))})" for k, scale in scales if len(self._pools.get((k, scale), ())) < self.shots})
            if short:
                raise ValueError(f"traits: shots = {self.shots} but the train split has fewer respondents for: {', '.join(short)}")

    def _resolve(self, personas: Sequence[Persona]) -> tuple[str, ...]:
        seen: dict[str, str] = {}  # trait key -> category, in first-seen order
        scaled: dict[str, None] = {}
        for p in personas:
            for key, t in p.traits.items():
                seen.setdefault(key, t.category)
                if _usable(t):
                    scaled.setdefault(key, None)
        if not scaled:
            raise ValueError(
                "traits: the persona file has no answer scales (each trait's `scale` and `ordinal`); "
                "rebuild it with `mtpa-engine personas build`, which writes them"
            )
        available = ", ".join(scaled)
        unknown_withheld = [k for k in self.withhold if k not in seen]
        if unknown_withheld:
            raise ValueError(f"traits: withhold: no persona has trait {', '.join(map(repr, unknown_withheld))} (traits: {', '.join(seen)})")
        if isinstance(self.targets_spec, str):
            chosen = tuple(k for k in scaled if self.targets_spec == "all" or seen[k] == self.targets_spec)
            if not chosen:
                raise ValueError(f"traits: targets '{self.targets_spec}': no such trait has an answer scale (available: {available})")
            kept = tuple(k for k in chosen if k not in self.withhold)
            if not kept:
                raise ValueError(f"traits: targets '{self.targets_spec}': every such trait is withheld ({', '.join(chosen)})")
            return kept
        missing = [k for k in self.targets_spec if k not in scaled]
        if missing:
            raise ValueError(f"traits: targets: no answer scale for {', '.join(map(repr, missing))} in the persona file (available: {available})")
        both = [k for k in self.targets_spec if k in self.withhold]
        if both:
            raise ValueError(f"traits: {', '.join(map(repr, both))} is both a target and withheld (a withheld trait is hidden with every target, never a target itself)")
        return tuple(dict.fromkeys(self.targets_spec))

    def _split(self, personas: Sequence[Persona]) -> set[int]:
        by_stratum: dict[tuple[str, str], list[int]] = defaultdict(list)
        for i, p in enumerate(personas):
            by_stratum[_stratum(p)].append(i)
        train: set[int] = set()
        for stratum, members in sorted(by_stratum.items()):
            members = sorted(members, key=lambda i: personas[i].id)
            random.Random(f"{self.seed}:split:{stratum}").shuffle(members)
            train.update(members[: min(round(TRAIN_SHARE * len(members)), len(members) - 1)])
        return train

    def _sample(self, personas: Sequence[Persona], strata: Counter[tuple[str, str, str]]) -> set[tuple[int, str]]:
        """limit items, proportional to the target × country × sex strata (largest remainder); within a stratum
        the items with the smallest seeded random keys."""
        assert self.limit is not None
        total = sum(strata.values())
        quota = {s: self.limit * n // total for s, n in strata.items()}
        by_remainder = sorted(strata, key=lambda s: (-(self.limit * strata[s] % total), s))
        for s in by_remainder[: self.limit - sum(quota.values())]:
            quota[s] += 1
        rng = random.Random(f"{self.seed}:limit")
        kept: dict[tuple[str, str, str], list[tuple[float, int]]] = defaultdict(list)  # max-heaps of the quota's smallest keys
        for i, p in enumerate(personas):
            if i in self._train:
                continue
            stratum = _stratum(p)
            for key in self.targets:
                t = p.traits.get(key)
                if t is None or not _usable(t):
                    continue
                s, r = (key, *stratum), rng.random()
                heap = kept[s]
                if len(heap) < quota[s]:
                    heapq.heappush(heap, (-r, i))
                elif heap and -heap[0][0] > r:
                    heapq.heapreplace(heap, (-r, i))
        return {(i, s[0]) for s, heap in kept.items() for _, i in heap}

    # --- items and prompts -------------------------------------------------------------------------------

    def items_for(self, persona: Persona) -> Iterator[Item]:
        """This persona's items, one per target it answered (none for a train-split persona), in target order."""
        i = self._index.get(persona.id)
        if i is None or i in self._train:
            return
        for key in self.targets:
            t = persona.traits.get(key)
            if t is None or not _usable(t) or (self._chosen is not None and (i, key) not in self._chosen):
                continue
            scale = self._scale_json.get(t.scale) or self._scale_json.setdefault(t.scale, orjson.dumps(t.scale).decode())
            meta = {"target": key, "ordinal": "true" if t.ordinal else "false", "scale": scale}
            yield Item(f"{persona.id}:{key}", t.question, t.scale, t.scale.index(t.answer), meta)

    def items(self) -> Iterator[Item]:
        for p in self._personas:
            yield from self.items_for(p)

    def hidden(self, item: Item) -> frozenset[str]:
        """Traits the persona must not show for this item: the target and the withheld ones."""
        return frozenset((item.meta["target"], *self.withhold))

    def task_prompt(self, item: Item) -> str:
        question = letter_prompt(item.question, item.options)
        if not self.shots:
            return question
        key = item.meta["target"]
        pool = self._pools[key, item.options]
        examples = []
        for n, j in enumerate(random.Random(f"{self.seed}:shots:{item.id}").sample(pool, self.shots), 1):
            shot = self._personas[j]
            answer = shot.traits[key].answer
            lines = trait_lines(shot, self.hidden(item))
            examples.append("\n".join([f"Respondent {n}:", *lines, item.question, f"Answer: {item.letters[item.options.index(answer)]}. {answer}"]))
        return "Other respondents to the same survey, and their answers:\n\n" + "\n\n".join(examples) + "\n\nNow the question:\n" + question

    def continuations(self, item: Item) -> tuple[str, ...]:
        return item.options

    def score(self, item: Item, output: Output) -> Score:
        """accuracy in `correct`; in `score` the ordinal score on ordinal scales (of the chosen letter, or in
        letter-logprob mode of the expected position under the renormalised letter distribution), else
        `correct`. An invalid answer scores 0 on both and is flagged."""
        if self.mode == "letter":
            scored = letter_score(item, output.text, output.letter_logprobs)
            position = None if scored.answer is None else item.letters.index(scored.answer)
        else:
            scored = choice_score(item, letter_logps(item, output.letter_logprobs))
            position = expected_position(letter_logps(item, output.letter_logprobs))
        if item.meta.get("ordinal") != "true" or scored.invalid:
            return scored
        assert position is not None
        return Score(scored.answer, scored.correct, scored.invalid, scored.p_gold, ordinal_score(position, item.gold, len(item.options)))

    @classmethod
    def metrics(cls, rows: pl.DataFrame) -> pl.DataFrame:
        """Accuracy, ordinal score and invalid rate per model × condition × target (the priors and
        alignment need the personas too: engine.report.build adds trait_metrics' tables)."""
        from bench_adapters.trait_metrics import per_target

        return per_target(rows)


def expected_position(logps: Sequence[float] | None) -> float | None:
    """Σ position × p over the scale, p renormalised over its letters; None without usable logprobs."""
    if logps is None or all(v == -math.inf for v in logps):
        return None
    top = max(logps)
    weights = [math.exp(v - top) for v in logps]
    return sum(i * w for i, w in enumerate(weights)) / sum(weights)
