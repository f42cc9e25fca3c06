"""The lazy grid: persona x question x model x condition x sample, enumerated in a fixed order.

Cells are generated on demand and never stored, so a ten-million-cell grid plans in constant memory. Within
a model and condition, cells are persona-major so prompts sharing a persona preamble arrive together
(prefix caches hit, and the persona is rendered once per run of cells rather than once per cell).

A benchmark whose items come from the personas themselves (`per_persona`, trait inference) pairs each
persona only with its own items, in every condition (the baseline records whose answer is predicted but shows
no persona), and renders the persona without the traits the item hides (its target): cut out of the persona's
one rendering per format and subset (persona_builder.render.PersonaText), not rendered again per item.

The dry run (engine.dryrun) counts cells per benchmark × condition (`part_counts`) and renders a seeded sample
of them (`sample_cells`) rather than every cell.

A benchmark with `orders` > 1 shows each question in several option orders; each order is its own cell (and
cache entry), and the report averages a question's orders into its position-debiased score.

A cell of a benchmark in judge mode takes two requests: the model's free-text answer, then the judge's verdict
on it (`judge_request`), built once the answer exists; both are ordinary cached requests.

A cell of a `summary = true` condition also takes two: the model's summary of the persona (`summary_request`:
one request per persona rendering × model, so every question of that persona shares it), then the answer with
the summary in the persona's place (`request` of the cell `with_summary`). A `reasoning = true` condition asks
for reasoning and a final "Answer:" line, and is scored from that line alone (bench_adapters.modes).
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from itertools import islice
from typing import cast

from bench_adapters import ADAPTERS, JUDGE, Adapter, Item, Score, modes
from bench_adapters.base import PersonaItems
from bench_adapters.choice import draw_shots
from bench_adapters.rubric import Rubric, load_rubric
from engine.config import BenchmarkConfig, ConditionConfig, GridConfig, ModelConfig
from engine.errors import GridError
from engine.request import Decoding, Request, Response
from engine.shard import Shard
from engine.templates import PromptTemplate, TemplateError, condition_fields, item_fields, persona_fields
from persona_builder import Persona, load_personas
from persona_builder.render import PersonaText, select_traits, trait_lines


@dataclass(frozen=True, slots=True)
class Cell:
    index: int
    model: ModelConfig
    benchmark: str
    item: Item
    condition: ConditionConfig
    persona: Persona | None
    sample: int
    order: int = 0  # which option order of the item (0: the seeded shuffle every grid has)
    perm: tuple[int, ...] | None = None  # order > 0: perm[j] = the order-0 index of the option shown j-th
    summary: str | None = None  # summary conditions: the model's summary of the persona, once it exists (not in the id)

    @property
    def id(self) -> str:
        """Stable across runs and machines: derived from the cell's coordinates, not its position. The order
        enters only when it is > 0, so grids without `orders` keep the ids they always had."""
        pid = self.persona.id if self.persona else "-"
        raw = f"{self.model.id}\x1f{self.benchmark}\x1f{self.item.id}\x1f{self.condition.name}\x1f{pid}\x1f{self.sample}"
        if self.order:
            raw += f"\x1f{self.order}"
        return hashlib.sha256(raw.encode()).hexdigest()[:20]

    def with_summary(self, summary: str) -> Cell:
        return dataclasses.replace(self, summary=summary)

    def option(self, letter: str | None) -> int | None:
        """The chosen option as its index in the item's order 0 (comparable across orders); None without one."""
        if letter is None or letter not in self.item.letters:
            return None
        shown = self.item.letters.index(letter)
        return self.perm[shown] if self.perm is not None else shown


# Judge mode: a free-text answer needs room; a model's max_tokens is sized for one letter.
JUDGED_ANSWER_TOKENS = 256


@dataclass(frozen=True)
class Benchmark:
    config: BenchmarkConfig
    adapter: Adapter
    items: tuple[Item, ...]
    rubric: Rubric | None = None  # judge mode only
    # Per item: its presentation orders (item, permutation of order 0); (item, None) alone when `orders` = 1.
    variants: tuple[tuple[tuple[Item, tuple[int, ...] | None], ...], ...] = ()
    template: PromptTemplate | None = None  # grid key `template` (engine.templates); None: the adapter's prompts
    shots: dict[str, tuple[Item, ...]] | None = None  # grid key `shots`: each item's few-shot examples

    @classmethod
    def with_orders(
        cls,
        config: BenchmarkConfig,
        adapter: Adapter,
        items: tuple[Item, ...],
        rubric: Rubric | None = None,
        template: PromptTemplate | None = None,
        shots: dict[str, tuple[Item, ...]] | None = None,
    ) -> Benchmark:
        if config.orders == 1:
            variants = tuple(((item, None),) for item in items)
        else:
            variants = tuple(tuple((shown, perm) for shown, perm in adapter.ordered(item, config.orders)) for item in items)
        return cls(config, adapter, items, rubric, variants, template, shots)

    @property
    def cells_per_persona(self) -> int:
        """Question × order cells one persona (or the baseline) answers, per sample."""
        return sum(len(v) for v in self.variants)

    @property
    def max_tokens(self) -> int | None:
        return self.config.max_tokens or (JUDGED_ANSWER_TOKENS if self.rubric else None)

    @property
    def per_persona(self) -> bool:
        """Items come from each persona (bench_adapters.traits): enumerated per persona, never stored."""
        return getattr(self.adapter, "per_persona", False)

    @property
    def persona_items(self) -> PersonaItems:
        return cast(PersonaItems, self.adapter)


def _check_condition_traits(grid: GridConfig, personas: list[Persona]) -> None:
    """A condition's `-TRAIT` / `+TRAIT` must name a trait the personas have: a typo would silently remove nothing."""
    known = {k for p in personas for k in p.traits}
    problems = []
    for i, c in enumerate(grid.conditions):
        if c.format is None:
            continue
        base, *asked = c.traits.split("+")
        named = ([base[1:]] if base.startswith("-") else []) + asked
        unknown = [k for k in named if k not in known]
        if unknown:
            problems.append(f"{grid.path}: conditions[{i}].traits: no persona has trait {', '.join(map(repr, unknown))} (traits: {', '.join(sorted(known))})")
    if problems:
        raise GridError(problems)


class Plan:
    def __init__(self, grid: GridConfig, personas: list[Persona], benchmarks: list[Benchmark], shard: Shard | None = None) -> None:
        self.grid = grid
        self.shard = shard  # None: the whole grid; else only the cells of this shard (engine.shard)
        self._shard_counts: dict[str, int] = {}
        self.personas = personas
        self.benchmarks = benchmarks
        self._benchmarks = {b.config.label: b for b in benchmarks}
        self._by_id = {p.id: p for p in personas}
        # A persona is rendered once per format × subset; each item cuts its hidden traits out of that (trait inference).
        self._text = lru_cache(maxsize=1024)(self._text_uncached)
        self._judged_persona = lru_cache(maxsize=4096)(lambda pid: "\n".join(trait_lines(self._by_id[pid])))
        self._tasks: dict[tuple[str, str, int], str] = {}  # benchmark items are few; prompts are built once each
        self._decodings: dict[tuple[int, int | None], tuple[ModelConfig, Decoding]] = {}  # by (id(config), max_tokens)

    @classmethod
    def from_grid(cls, grid: GridConfig, shard: Shard | None = None) -> Plan:
        personas: list[Persona] = []
        if grid.personas is not None:
            personas = load_personas(grid.resolve(grid.personas.source))
            limit = grid.personas.limit
            if limit is not None and limit < len(personas):
                keep = sorted(random.Random(grid.run.seed).sample(range(len(personas)), limit))
                personas = [personas[i] for i in keep]
        _check_condition_traits(grid, personas)
        benchmarks = []
        for i, b in enumerate(grid.benchmarks):
            kind = ADAPTERS[b.name]
            path = grid.resolve(b.path) if b.path else None
            adapter = kind(path=path, limit=b.limit, seed=b.seed, mode=b.mode, **b.adapter_options(kind.options))
            try:
                template = PromptTemplate.load(b.template, b.name, grid.root) if b.template else None
            except TemplateError as exc:
                raise GridError([f"{grid.path}: benchmarks[{i}].template: {exc}"]) from None
            if getattr(adapter, "per_persona", False):
                try:
                    cast(PersonaItems, adapter).bind(personas)
                except ValueError as exc:
                    raise GridError([f"{grid.path}: benchmarks[{i}]: {exc}"]) from None
                benchmarks.append(Benchmark(b, adapter, (), template=template))
                continue
            items = tuple(adapter.items())
            rubric = None
            if b.mode == JUDGE:
                rubric = load_rubric(b.rubric or kind.rubric, grid.root)
                rubric.check(items)  # a reference the prompt quotes but the data lacks fails here, not per cell
            shots = None
            if b.shots:  # an adapter declaring `shots` itself (trait inference) never gets here with them
                everything = kind(path=path, limit=None, seed=b.seed, mode=b.mode, **b.adapter_options(kind.options)).items()
                try:
                    shots = draw_shots(items, tuple(everything), b.shots, b.seed)
                except ValueError as exc:
                    raise GridError([f"{grid.path}: benchmarks[{i}].shots: {exc}"]) from None
            benchmarks.append(Benchmark.with_orders(b, adapter, items, rubric, template, shots))
        plan = cls(grid, personas, benchmarks, shard)
        plan._check_templates()
        return plan

    def _check_templates(self) -> None:
        """Render every item of each templated benchmark once per condition (the first persona standing for
        all), then the first item once per persona, so that a field the template names but the data (an item
        or any persona) lacks stops the grid before any call."""
        problems = []
        persona = self.personas[0] if self.personas else None
        for i, bench in enumerate(self.benchmarks):
            if bench.template is None:
                continue
            for condition in self.grid.conditions:
                who = persona if condition.format is not None else None
                if condition.format is not None and who is None:
                    continue
                items = bench.persona_items.items_for(who) if bench.per_persona and who is not None else bench.items
                others = islice(self.personas, 1, None) if condition.format is not None else ()
                try:
                    for item in items:
                        self.request(Cell(0, self.grid.models[0], bench.config.label, item, condition, who, 0))
                    for other in others:
                        for item in islice(bench.persona_items.items_for(other) if bench.per_persona else bench.items, 1):
                            self.request(Cell(0, self.grid.models[0], bench.config.label, item, condition, other, 0))
                except TemplateError as exc:
                    problems.append(f"{self.grid.path}: benchmarks[{i}].template: {exc}")
                    break
        if problems:
            raise GridError(problems)

    def _personas_for(self, condition: ConditionConfig, bench: Benchmark) -> list[Persona | None]:
        """The personas a condition's cells carry. The baseline shows none, so has one cell per question, except
        where a rubric grades fit to a persona (`{persona}`): there the one baseline answer (one call) is judged
        against each persona, as PERSONA Bench's critic judges its baseline mode, one cell per persona."""
        if condition.format is None and not (bench.rubric is not None and bench.rubric.quotes_persona):
            return [None]
        return list(self.personas)

    def _items(self, bench: Benchmark, condition: ConditionConfig) -> int:
        if bench.per_persona:
            return bench.persona_items.count
        return bench.cells_per_persona * len(self._personas_for(condition, bench))

    def count(self, model: ModelConfig) -> int:
        """Cells of `model` in this plan. A shard's are counted by walking its cells once (constant memory)."""
        if self.shard is None:
            return self._size(model)
        if model.id not in self._shard_counts:
            self._shard_counts[model.id] = sum(1 for _ in self.cells(model))
        return self._shard_counts[model.id]

    def _size(self, model: ModelConfig) -> int:
        """Cells of `model` in the whole grid, counted arithmetically."""
        return sum(self._items(b, c) * model.samples for b in self.benchmarks for c in self.grid.conditions)

    def __len__(self) -> int:
        return sum(self.count(m) for m in self.grid.models)

    def __iter__(self) -> Iterator[Cell]:
        for model in self.grid.models:
            yield from self.cells(model)

    def cells(self, model: ModelConfig) -> Iterator[Cell]:
        """One model's cells (of this plan's shard); each model has its own stream so that all models can run at once.

        `Cell.index` is the cell's position in the whole grid, shard or not.
        """
        cells, shard = self._all_cells(model), self.shard
        return cells if shard is None else (c for c in cells if shard.holds(c.id))

    def _all_cells(self, model: ModelConfig) -> Iterator[Cell]:
        index = 0
        for m in self.grid.models:
            if m.id == model.id:
                break
            index += self._size(m)
        for bench in self.benchmarks:
            for condition in self.grid.conditions:
                for persona, item, order, perm in self.pairs(bench, condition):
                    for sample in range(model.samples):
                        yield Cell(index, model, bench.config.label, item, condition, persona, sample, order, perm)
                        index += 1

    def pairs(self, bench: Benchmark, condition: ConditionConfig) -> Iterator[tuple[Persona | None, Item, int, tuple[int, ...] | None]]:
        """(persona, item, order, permutation) in plan order: persona-major; a per-persona benchmark's items go
        with their persona only (one order: their scale keeps the survey's order)."""
        if bench.per_persona:
            for persona in self.personas:
                for item in bench.persona_items.items_for(persona):
                    yield persona, item, 0, None
            return
        for persona in self._personas_for(condition, bench):
            for variants in bench.variants:
                for order, (item, perm) in enumerate(variants):
                    yield persona, item, order, perm

    def part_counts(self, model: ModelConfig) -> dict[tuple[str, str], int]:
        """Cells of `model` per (benchmark label, condition name), in plan order: arithmetic for the whole grid,
        one walk over the cells (constant memory) for a shard."""
        if self.shard is None:
            return {(b.config.label, c.name): self._items(b, c) * model.samples for b in self.benchmarks for c in self.grid.conditions}
        counts = {(b.config.label, c.name): 0 for b in self.benchmarks for c in self.grid.conditions}
        for cell in self.cells(model):
            counts[cell.benchmark, cell.condition.name] += 1
        return counts

    def sample_cells(self, model: ModelConfig, bench: Benchmark, condition: ConditionConfig, k: int, rng: random.Random) -> list[Cell]:
        """Up to k cells of one benchmark × condition of `model`, drawn by `rng` from the whole grid (a shard's
        cells are a hash-chosen part of it, alike in their prompts), without enumerating the rest: all of them
        when there are k or fewer. Sample 0 only (the sample index never changes a prompt); `Cell.index` is 0.
        A per-persona benchmark walks its personas in a shuffled order and takes their items until it has k."""
        label = bench.config.label
        if bench.per_persona:
            order = list(range(len(self.personas)))
            rng.shuffle(order)
            drawn: list[Cell] = []
            for i in order:
                persona = self.personas[i]
                drawn += (Cell(0, model, label, item, condition, persona, 0) for item in bench.persona_items.items_for(persona))
                if len(drawn) >= k:
                    break
            return drawn[:k]
        flat = [(item, order, perm) for variants in bench.variants for order, (item, perm) in enumerate(variants)]
        personas = self._personas_for(condition, bench)
        total = len(flat) * len(personas)
        picks = range(total) if total <= k else sorted(rng.sample(range(total), k))
        cells = []
        for n in picks:
            item, order, perm = flat[n % len(flat)]
            cells.append(Cell(0, model, label, item, condition, personas[n // len(flat)], 0, order, perm))
        return cells

    def adapter(self, benchmark: str) -> Adapter:
        return self._benchmarks[benchmark].adapter

    @property
    def rubrics(self) -> dict[str, Rubric]:
        return {label: b.rubric for label, b in self._benchmarks.items() if b.rubric is not None}

    def judged(self, benchmark: str) -> bool:
        return self._benchmarks[benchmark].rubric is not None

    def _text_uncached(self, persona_id: str, fmt: str, traits: str) -> PersonaText:
        return PersonaText(self._by_id[persona_id], fmt, traits)

    def _decoding(self, model: ModelConfig, max_tokens: int | None = None) -> Decoding:
        # Memoised on the config object itself: hashing a ModelConfig's value (its ~20 fields and nested
        # tables) on every request cost more than building the Decoding (bench/api_throughput.py profile).
        # The config is kept beside its Decoding, so its id cannot be reused by another object while memoised.
        key = (id(model), max_tokens)
        if (memo := self._decodings.get(key)) is None or memo[0] is not model:
            memo = self._decodings[key] = (model, Decoding(model.temperature, max_tokens or model.max_tokens, model.top_p, model.seed))
        return memo[1]

    def _task(self, benchmark: str, item: Item, order: int) -> str:
        if self._benchmarks[benchmark].per_persona:  # one prompt per persona × target: memoising would grow with the grid
            return self.adapter(benchmark).task_prompt(item)
        key = (benchmark, item.id, order)
        if key not in self._tasks:
            self._tasks[key] = self.adapter(benchmark).task_prompt(item)
        return self._tasks[key]

    def _persona_text(self, cell: Cell) -> str | None:
        """The persona as the condition renders it; None for the baseline."""
        cond = cell.condition
        if cell.persona is None or cond.format is None:
            return None
        bench = self._benchmarks[cell.benchmark]
        # a per-persona item never shows the trait it asks for
        hidden = bench.persona_items.hidden(cell.item) if bench.per_persona else frozenset()
        return self._text(cell.persona.id, cond.format, cond.traits).without(hidden)

    def _answer_tokens(self, cell: Cell) -> int | None:
        """max_tokens of the cell's answer call: the benchmark's; a reasoning cell's at least REASONING_TOKENS."""
        bench = self._benchmarks[cell.benchmark]
        if cell.condition.reasoning:
            return bench.config.max_tokens or max(cell.model.max_tokens, modes.REASONING_TOKENS)
        return bench.max_tokens

    @property
    def has_summaries(self) -> bool:
        """Whether some condition is `summary = true` (else no cell needs a summary: callers skip the check)."""
        return any(c.summary for c in self.grid.conditions)

    def summary_request(self, cell: Cell) -> Request | None:
        """A summary cell's first call (the persona in, the model's summary out); None for any other cell.
        Sample 0 always: one summary per persona rendering × model, shared by the cell's questions and samples."""
        persona_text = self._persona_text(cell) if cell.condition.summary else None
        if persona_text is None:
            return None
        decoding = self._decoding(cell.model, max(cell.model.max_tokens, modes.SUMMARY_TOKENS))
        return Request((("user", modes.summary_prompt(persona_text)),), decoding, 0, "generate", (), False)

    def request(self, cell: Cell) -> Request:
        """The cell's answer call. A summary cell needs its summary first (`summary_request`, `Cell.with_summary`).
        Raises TemplateError when the benchmark's template cannot render it."""
        task = self._task(cell.benchmark, cell.item, cell.order)
        messages: tuple[tuple[str, str], ...]
        cond = cell.condition
        bench = self._benchmarks[cell.benchmark]
        if cond.reasoning:
            task = modes.reasoning_prompt(task, () if bench.rubric is not None else cell.item.letters)
        persona_text = self._persona_text(cell)
        if persona_text is not None and cond.summary:
            assert cell.summary is not None, "a summary cell's answer is asked once its summary exists"
            persona_text = modes.summary_persona(cell.summary)
        prompt, delimiter = None, ""
        if bench.template is not None:
            rendered = bench.template.render(self._variables(cell, bench, task, persona_text), bench.config.format)
            messages, prompt, delimiter = rendered.messages, rendered.prompt, rendered.target_delimiter
        else:
            shown = self._shot_turns(bench, cell.item)
            if persona_text is None:
                messages = (*shown, ("user", task))
            elif cond.placement == "system":
                messages = (("system", persona_text), *shown, ("user", task))
            else:
                messages = (*shown, ("user", f"{persona_text}\n\n{task}"))
        m = cell.model
        mode = bench.config.mode
        decoding = self._decoding(m, self._answer_tokens(cell))
        if bench.rubric is not None:  # a free-text answer, for the judge
            return Request(messages, decoding, cell.sample, "generate", (), False, prompt=prompt)
        continuations = ()
        if mode == "likelihood":
            continuations = tuple(delimiter + c for c in self.adapter(cell.benchmark).continuations(cell.item))
        return Request(
            messages=messages,
            decoding=decoding,
            sample=cell.sample,
            mode=mode,
            letters=cell.item.letters,
            # letter-logprob is nothing but the letter logprobs; likelihood never needs them; a reasoning reply's
            # first token is no answer, so its letter logprobs would mean nothing
            want_logprobs=(m.logprobs and not cond.reasoning) if mode == "letter" else mode == "letter-logprob",
            continuations=continuations,
            prompt=prompt,
        )

    def graded_text(self, cell: Cell, response: Response) -> str | None:
        """What the judge grades: the reply, or a reasoning reply's final answer (None: it has none, so the cell
        is invalid without a verdict)."""
        if cell.condition.reasoning:
            return modes.split(response.text).answer
        return response.text or ""

    def reasoning(self, cell: Cell, response: Response) -> str | None:
        """A reasoning cell's reasoning (the reply before its final answer line), for the results; else None."""
        return modes.split(response.text).reasoning if cell.condition.reasoning and response.ok else None

    @staticmethod
    def _hidden(bench: Benchmark, item: Item) -> frozenset[str]:
        return bench.persona_items.hidden(item) if bench.per_persona else frozenset()

    def _variables(self, cell: Cell, bench: Benchmark, task: str, persona_text: str | None) -> dict[str, object]:
        """What a template sees (engine.templates): item, persona, condition, shots, format, mode."""
        adapter, cond = bench.adapter, cell.condition
        persona = None
        if cell.persona is not None and persona_text is not None and cond.format is not None:
            hidden = self._hidden(bench, cell.item)
            shown = {k: t for k, t in select_traits(cell.persona, cond.traits).items() if k not in hidden}
            persona = persona_fields(cell.persona, persona_text, shown)
        shots = []
        for shot in (bench.shots or {}).get(cell.item.id, ()):
            fields = item_fields(shot, adapter.task_prompt(shot), "shot")
            fields.update(answer=fields["gold"], answer_text=fields["gold_text"])
            shots.append(fields)
        return {
            "item": item_fields(cell.item, task),
            "persona": persona,
            "condition": condition_fields(cond),
            "shots": shots,
            "format": bench.config.format,
            "mode": bench.config.mode,
        }

    def _shot_turns(self, bench: Benchmark, item: Item) -> tuple[tuple[str, str], ...]:
        """The built-in prompts' few-shot examples: each shot's question as a user turn and its answer (the
        gold letter; in likelihood mode the gold option's text) as the assistant's."""
        if not bench.shots:
            return ()
        adapter, likelihood = bench.adapter, bench.config.mode == "likelihood"
        turns: list[tuple[str, str]] = []
        for shot in bench.shots[item.id]:
            answer = shot.options[shot.gold] if likelihood else shot.letters[shot.gold]
            turns += [("user", adapter.task_prompt(shot)), ("assistant", answer)]
        return tuple(turns)

    def judge_request(self, cell: Cell, answer: str) -> Request:
        """The judge's request grading one answer; its cache key covers the answer, so a new answer is re-judged.
        A rubric quoting {persona} sees the cell's persona as a plain list of all its traits ("- Label: answer"),
        the same in every condition (the baseline's too), so a difference in fit is the answers' alone."""
        judge = self.grid.judge
        rubric = self._benchmarks[cell.benchmark].rubric
        assert judge is not None and rubric is not None, "judge_request on a benchmark not in judge mode"
        return Request(
            messages=(("user", rubric.render(cell.item, answer, self._judged_persona(cell.persona.id) if cell.persona else None)),),
            decoding=self._decoding(judge.model),
            sample=0,  # one verdict per answer: several samples of an answer are several answers
            mode=judge.mode,
            letters=rubric.letters,
            want_logprobs=judge.model.logprobs if judge.mode == "letter" else True,
        )

    def score(self, cell: Cell, response: Response, verdict: Response | None = None) -> Score:
        """A cell's score: by its benchmark's adapter, or in judge mode by the rubric from the judge's verdict.
        A reasoning reply is read from its final answer line only; without one it is invalid (truncated or
        no_answer_line) and has no verdict."""
        rubric = self._benchmarks[cell.benchmark].rubric
        if cell.condition.reasoning:
            reasoned = modes.split(response.text)
            if reasoned.answer is None:
                kind = modes.missing_answer_kind(response.completion_tokens, self._decoding(cell.model, self._answer_tokens(cell)).max_tokens)
                return Score(None, 0.0, True, None, 0.0, invalid_kind=kind)
            if rubric is None:
                response = dataclasses.replace(response, text=reasoned.answer_line)
        if rubric is None:
            return self.adapter(cell.benchmark).score(cell.item, response)
        assert verdict is not None and self.grid.judge is not None, "a judged cell is scored from the judge's verdict"
        return rubric.score(verdict, self.grid.judge.mode)
