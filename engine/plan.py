"""The lazy grid: persona x question x model x condition x sample, enumerated in a fixed order.

Cells are generated on demand and never stored, so a ten-million-cell grid plans in constant memory. Within
a model and condition, cells are persona-major so prompts sharing a persona preamble arrive together
(prefix caches hit, and the persona is rendered once per run of cells rather than once per cell).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

from bench_adapters import ADAPTERS, Adapter, Item
from engine.config import BenchmarkConfig, ConditionConfig, GridConfig, ModelConfig
from engine.request import Decoding, Request
from persona_builder import Persona, load_personas, render


@dataclass(frozen=True, slots=True)
class Cell:
    index: int
    model: ModelConfig
    benchmark: str
    item: Item
    condition: ConditionConfig
    persona: Persona | None
    sample: int

    @property
    def id(self) -> str:
        """Stable across runs and machines: derived from the cell's coordinates, not its position."""
        pid = self.persona.id if self.persona else "-"
        raw = f"{self.model.id}\x1f{self.benchmark}\x1f{self.item.id}\x1f{self.condition.name}\x1f{pid}\x1f{self.sample}"
        return hashlib.sha256(raw.encode()).hexdigest()[:20]


@dataclass(frozen=True)
class Benchmark:
    config: BenchmarkConfig
    adapter: Adapter
    items: tuple[Item, ...]


class Plan:
    def __init__(self, grid: GridConfig, personas: list[Persona], benchmarks: list[Benchmark]) -> None:
        self.grid = grid
        self.personas = personas
        self.benchmarks = benchmarks
        self._adapters = {b.config.name: b for b in benchmarks}
        self._by_id = {p.id: p for p in personas}
        self._render = lru_cache(maxsize=4096)(self._render_uncached)
        self._tasks: dict[tuple[str, str], str] = {}  # benchmark items are few; prompts are built once each

    @classmethod
    def from_grid(cls, grid: GridConfig) -> Plan:
        personas: list[Persona] = []
        if grid.personas is not None:
            personas = load_personas(grid.resolve(grid.personas.source))
            limit = grid.personas.limit
            if limit is not None and limit < len(personas):
                keep = sorted(random.Random(grid.run.seed).sample(range(len(personas)), limit))
                personas = [personas[i] for i in keep]
        benchmarks = []
        for b in grid.benchmarks:
            kind = ADAPTERS[b.name]
            path = grid.resolve(b.path) if b.path else None
            adapter = kind(path=path, limit=b.limit, seed=b.seed, mode=b.mode, **b.adapter_options(kind.options))
            benchmarks.append(Benchmark(b, adapter, tuple(adapter.items())))
        return cls(grid, personas, benchmarks)

    def _personas_for(self, condition: ConditionConfig) -> list[Persona | None]:
        return [None] if condition.format is None else list(self.personas)

    def count(self, model: ModelConfig) -> int:
        return sum(
            len(b.items) * len(self._personas_for(c)) * model.samples for b in self.benchmarks for c in self.grid.conditions
        )

    def __len__(self) -> int:
        return sum(self.count(m) for m in self.grid.models)

    def __iter__(self) -> Iterator[Cell]:
        for model in self.grid.models:
            yield from self.cells(model)

    def cells(self, model: ModelConfig) -> Iterator[Cell]:
        """One model's cells; each model has its own stream so that all models can run at once."""
        index = 0
        for m in self.grid.models:
            if m.id == model.id:
                break
            index += self.count(m)
        for bench in self.benchmarks:
            for condition in self.grid.conditions:
                for persona in self._personas_for(condition):
                    for item in bench.items:
                        for sample in range(model.samples):
                            yield Cell(index, model, bench.config.name, item, condition, persona, sample)
                            index += 1

    def adapter(self, benchmark: str) -> Adapter:
        return self._adapters[benchmark].adapter

    def mode(self, benchmark: str) -> str:
        return self._adapters[benchmark].config.mode

    def _render_uncached(self, persona_id: str, fmt: str, traits: str) -> str:
        return render(self._by_id[persona_id], fmt, traits)

    @staticmethod
    @lru_cache(maxsize=64)
    def _decoding(model: ModelConfig) -> Decoding:
        return Decoding(model.temperature, model.max_tokens, model.top_p, model.seed)

    def _task(self, benchmark: str, item: Item) -> str:
        key = (benchmark, item.id)
        if key not in self._tasks:
            self._tasks[key] = self.adapter(benchmark).task_prompt(item)
        return self._tasks[key]

    def request(self, cell: Cell) -> Request:
        task = self._task(cell.benchmark, cell.item)
        messages: tuple[tuple[str, str], ...]
        cond = cell.condition
        if cell.persona is None or cond.format is None:
            messages = (("user", task),)
        else:
            persona_text = self._render(cell.persona.id, cond.format, cond.traits)
            if cond.placement == "system":
                messages = (("system", persona_text), ("user", task))
            else:
                messages = (("user", f"{persona_text}\n\n{task}"),)
        m = cell.model
        mode = self.mode(cell.benchmark)
        return Request(
            messages=messages,
            decoding=self._decoding(m),
            sample=cell.sample,
            mode=mode,
            letters=cell.item.letters,
            # letter-logprob is nothing but the letter logprobs; likelihood never needs them
            want_logprobs=m.logprobs if mode == "letter" else mode == "letter-logprob",
            continuations=self.adapter(cell.benchmark).continuations(cell.item) if mode == "likelihood" else (),
        )
