"""The dry run: per model the cells of a grid, how many the cache already answers, what the rest would cost,
and the power table; one pass over the plan, calling nothing and writing nothing (issue 14).

Two paths, chosen by what the cache can answer:

- **Nothing cached** (no cache file, or one without a response): no cache key is computed and no cell is
  enumerated. Cells are counted arithmetically per benchmark × condition (`Plan.part_counts`; a shard's by one
  walk over its cell ids); every cell is a call to make, so `calls` = `to_call`, an upper bound (the run calls
  identical requests once, e.g. two personas that render alike in a demographic-only condition); input tokens
  are each benchmark × condition × model's cells times the mean estimate (engine.limits.estimate_prompt_tokens)
  of `SAMPLE_PROMPTS` of its prompts, rendered from cells drawn with a seed derived from the grid's
  `[run] seed` and the part's names (`Plan.sample_cells`). A part with at most `SAMPLE_PROMPTS` cells is
  rendered whole (its tokens are exact). Time and memory do not grow with the cells: the 10,000,500-cell grid of
  bench/dryrun_scale.py dry-runs in seconds.
- **A cache with responses**: one walk over every cell, in chunks of `CHUNK`: its request and cache key, one
  `IN` query per chunk; `cached` counts the cells answered, `calls` the distinct requests not answered (a
  repeated request is called once), with their tokens summed exactly. Distinct requests are kept as the first
  64 bits of their keys in numpy arrays (12 bytes a call to make, where a set of 64-character key strings took
  ~160 bytes a cell); two different keys sharing those bits (probability ~n²/2⁶⁵: 3·10⁻⁶ at 10 M calls) would
  count as one call.

A `summary = true` condition's cell takes two calls (engine.plan): the model's summary of the persona, shared by
every question of that persona and rendering, then the answer with the summary in the persona's place. Nothing
cached: one summary per persona and rendering (format, traits: summary conditions differing only in placement
share it; per persona × item for trait inference, whose items hide their targets), a shard's capped at its
cells, an upper bound; the answers are estimated with a summary
`max_tokens` long. With a cache: the summaries are looked up (`engine.summaries.resolve`); a missing one is a
call, and each answer waiting on it a call of its own (its request embeds the summary, so has no key yet).

The judge (judge mode) has no cells of its own: each distinct answer needs a verdict (per persona, when the
rubric shows the judge the persona: `persona_fit` grades one baseline answer once for each). An answer not yet
cached counts one verdict call on a `max_tokens`-long answer (an upper bound: its text is unknown); a cached answer
counts its verdict when that is not cached (none when a reasoning answer has no final answer to grade).

Output tokens are an upper bound everywhere: `max_tokens` per call.
"""

from __future__ import annotations

import hashlib

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import islice

import numpy as np
import polars as pl

from engine.cache import ResponseCache
from engine.config import GridConfig, ModelConfig
from engine.keys import Keys
from engine.limits import estimate_prompt_tokens
from engine.plan import Cell, Plan
from engine.power import REFERENCE_DELTA, power_table
from engine.pricing import batch_price, call_cost, online_price, price_for
from engine.providers import Provider
from engine.request import Request
from engine.runner import prepare
from engine.shard import Shard
from engine.summaries import resolve

SAMPLE_PROMPTS = 64  # rendered prompts per benchmark × condition × model when nothing is cached
CHUNK = 2048  # cells keyed and looked up together when the cache has responses


@dataclass(frozen=True)
class ModelDryRun:
    """One model's (or the judge's) row of the dry run.

    cells: the model's cells in the plan (its shard's); None for the judge, which has no cells of its own.
    cached: of those, answered by the cache; None for the judge.
    to_call: cells − cached; for the judge, the answers whose verdict is not cached (one per answer still to come).
    calls: distinct requests to make (≤ to_call: identical requests are called once; = to_call, an upper bound,
        when nothing was cached and no key was computed).
    input_tokens: estimated prompt tokens of those calls (~4 characters a token).
    max_output_tokens: max_tokens per call, summed (an upper bound).
    usd: their cost at engine.pricing's prices for the model's transport (online, or batch); None when the
        model's price is unknown.
    usd_online, usd_batch: the same calls online and through the provider's batch API (engine.batch: half the
        list price unless [models.batch] overrides it); usd_batch is None for a provider without one.
    """

    model: str
    cells: int | None
    cached: int | None
    to_call: int
    calls: int
    input_tokens: int
    max_output_tokens: int
    usd: float | None
    usd_online: float | None
    usd_batch: float | None


@dataclass(frozen=True)
class DryRun:
    """What `dry_run` returns: the grid's models in order (then the judge, if any), the power table
    (engine.power.power_table; empty without a baseline or personas) and how the tokens were found."""

    models: tuple[ModelDryRun, ...]
    power: pl.DataFrame
    sampled: int  # 0: every cell keyed and looked up; else prompts rendered per benchmark × condition × model

    def counts_frame(self) -> pl.DataFrame:
        """model, cells, cached, to_call: the grid's models (not the judge)."""
        rows = [(m.model, m.cells, m.cached, m.to_call) for m in self.models if m.cells is not None]
        return pl.DataFrame(rows, schema=["model", "cells", "cached", "to_call"], orient="row")

    def estimate_frame(self) -> pl.DataFrame:
        """model, calls, input_tokens, max_output_tokens, usd, usd_online, usd_batch: one row per model and judge,
        then `total` (each usd column sums the known prices; None when none is known)."""
        rows: list[tuple] = [(m.model, m.calls, m.input_tokens, m.max_output_tokens, m.usd, m.usd_online, m.usd_batch) for m in self.models]

        def total(values) -> float | None:
            known = [v for v in values if v is not None]
            return sum(known) if known else None

        rows.append(("total", sum(m.calls for m in self.models), sum(m.input_tokens for m in self.models), sum(m.max_output_tokens for m in self.models),
                     total(m.usd for m in self.models), total(m.usd_online for m in self.models), total(m.usd_batch for m in self.models)))
        return pl.DataFrame(rows, schema=["model", "calls", "input_tokens", "max_output_tokens", "usd", "usd_online", "usd_batch"], orient="row")

    def tables(self, title: str) -> list[tuple[str, pl.DataFrame]]:
        """(title, frame) in printing order: counts, power (when there is one), estimate."""
        how = (f"nothing cached, so calls = to_call (an upper bound) and input tokens from {self.sampled} seeded prompts "
               "per benchmark × condition × model" if self.sampled else "calls = distinct requests to make (identical ones are called once)")
        tables = [(f"dry run: {title} (to_call = cells the cache cannot answer)", self.counts_frame())]
        if not self.power.is_empty():
            tables.append((f"power: MDE = the Δ found with 80% power at α = 0.05; P(find {REFERENCE_DELTA}) = power at Δ = {REFERENCE_DELTA}", self.power))
        tables.append((f"estimate for the calls to make ({how}; tokens ~4 characters each; output at most max_tokens)", self.estimate_frame()))
        return tables


def dry_run(grid: GridConfig, shard: Shard | None = None) -> DryRun:
    """The dry run of `grid` (of one shard when given): builds the plan once, reads the cache when it exists and
    holds responses, calls nothing and writes nothing. Raises what planning raises (GridError, PersonaFileError,
    ValueError from an adapter) and CacheError for an unreadable cache file."""
    plan, providers = prepare(grid, shard)  # exactly as a run builds them
    cache = ResponseCache(grid.cache_path) if grid.cache_path.exists() else None
    try:
        if cache is None or cache.empty():
            return DryRun(tuple(_sampled(plan, providers)), power_table(plan, providers, None), SAMPLE_PROMPTS)
        return DryRun(tuple(_keyed(plan, providers, cache)), power_table(plan, providers, cache), 0)
    finally:
        if cache is not None:
            cache.close()


def _row(model: ModelConfig, cells: int | None, cached: int | None, to_call: int, calls: int, tokens_in: float, tokens_out: int) -> ModelDryRun:
    from engine.batch import BATCH_PROVIDERS

    def cost(price: tuple[float, float] | None) -> float | None:
        return None if price is None else call_cost(price, round(tokens_in), tokens_out)

    batch = cost(batch_price(model)) if model.provider in BATCH_PROVIDERS else None
    return ModelDryRun(model.id, cells, cached, to_call, calls, round(tokens_in), tokens_out, cost(price_for(model)), cost(online_price(model)), batch)


def _mean_tokens(requests: Sequence[Request]) -> float:
    return sum(estimate_prompt_tokens(r) for r in requests) / len(requests)


def _sampled(plan: Plan, providers: dict[str, Provider]) -> list[ModelDryRun]:
    """Nothing cached: counts and a sampled token estimate (module docstring)."""
    grid = plan.grid
    judge = grid.judge.model if grid.judge is not None else None
    verdicts, verdicts_in, verdicts_out = 0, 0.0, 0
    rows = []
    for model in grid.models:
        counts = plan.part_counts(model)
        tokens_in, tokens_out = 0.0, 0
        # Persona summaries by rendering (format, traits; a trait-inference benchmark's own, its items hiding
        # their targets): conditions and benchmarks showing the same rendering share them. -> (calls, samples)
        summaries: dict[tuple[str | None, str, str | None], tuple[int, list[Request]]] = {}
        for condition in grid.conditions:
            for bench in plan.benchmarks:
                label = bench.config.label
                n = counts[label, condition.name]
                if not n:
                    continue
                rng = random.Random(f"{grid.run.seed}:dry-run:{model.id}:{label}:{condition.name}")
                cells = plan.sample_cells(model, bench, condition, SAMPLE_PROMPTS, rng)
                if condition.summary:
                    asked = [r for c in cells if (r := plan.summary_request(c)) is not None]
                    cells = [c.with_summary(_unknown_answer(asked[0])) for c in cells]
                    rendering = (condition.format, condition.traits, label if bench.per_persona else None)
                    calls, drawn = summaries.get(rendering, (0, []))
                    cap = n // model.samples if bench.per_persona else min(len(plan.personas), n // model.samples)
                    summaries[rendering] = (max(calls, cap), drawn + asked)
                requests = [plan.request(c) for c in cells]
                tokens_in += n * _mean_tokens(requests)
                tokens_out += n * requests[0].decoding.max_tokens
                if judge is not None and plan.judged(label):
                    asked = [plan.judge_request(c, _unknown_answer(r)) for c, r in zip(cells, requests)]
                    verdicts += n
                    verdicts_in += n * _mean_tokens(asked)
                    verdicts_out += n * asked[0].decoding.max_tokens
        for calls, drawn in summaries.values():
            tokens_in += calls * _mean_tokens(drawn)
            tokens_out += calls * drawn[0].decoding.max_tokens
        cells_total = sum(counts.values())
        summary_calls = sum(calls for calls, _ in summaries.values())
        rows.append(_row(model, cells_total, 0, cells_total, cells_total + summary_calls, tokens_in, tokens_out))
    if judge is not None:
        rows.append(_row(judge, None, None, verdicts, verdicts, verdicts_in, verdicts_out))
    return rows


def _unknown_answer(request: Request) -> str:
    """The reply to `request` not given yet, as long as it may be (~4 characters a token): an answer the judge's
    prompt quotes, a summary the answer's prompt embeds."""
    return "x" * (4 * request.decoding.max_tokens)


class _Calls:
    """Distinct requests to make and their tokens: 64-bit key prefixes in numpy arrays (module docstring)."""

    def __init__(self) -> None:
        self._keys: list[np.ndarray] = []
        self._tokens_in: list[np.ndarray] = []
        self._tokens_out: list[np.ndarray] = []
        self._pending: list[tuple[int, float, int]] = []
        self._keyless = (0, 0.0, 0)  # requests with no key yet (they embed a summary to come): each distinct
        self.added = 0  # requests added, repeats included

    def add(self, key: str | None, request: Request) -> None:
        if key is None:
            n, tokens_in, tokens_out = self._keyless
            self._keyless = (n + 1, tokens_in + estimate_prompt_tokens(request), tokens_out + request.decoding.max_tokens)
            self.added += 1
            return
        self._pending.append((int(key[:16], 16), estimate_prompt_tokens(request), request.decoding.max_tokens))
        self.added += 1
        if len(self._pending) >= CHUNK:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            keys, tokens_in, tokens_out = zip(*self._pending)
            self._keys.append(np.array(keys, dtype=np.uint64))
            self._tokens_in.append(np.array(tokens_in, dtype=np.float32))
            self._tokens_out.append(np.array(tokens_out, dtype=np.uint32))
            self._pending = []

    def totals(self) -> tuple[int, float, int]:
        """(distinct calls, their input tokens, their max output tokens)."""
        self._flush()
        n, tokens_in, tokens_out = self._keyless
        if not self._keys:
            return n, tokens_in, tokens_out
        _, first = np.unique(np.concatenate(self._keys), return_index=True)
        tokens_in += float(np.concatenate(self._tokens_in)[first].astype(np.float64).sum())
        return n + len(first), tokens_in, tokens_out + int(np.concatenate(self._tokens_out)[first].astype(np.int64).sum())


def _chunks(cells: Iterator[Cell]) -> Iterator[list[Cell]]:
    while chunk := list(islice(cells, CHUNK)):
        yield chunk


def _keyed(plan: Plan, providers: dict[str, Provider], cache: ResponseCache) -> list[ModelDryRun]:
    """A cache with responses: every cell keyed and looked up once (module docstring)."""
    judge = plan.grid.judge.model if plan.grid.judge is not None else None
    keys_of = Keys(providers)  # each provider's identity read once
    pending, verdicts = _Calls(), _Calls()  # verdicts on answers still to come (by answer and judge prompt); on cached answers (by verdict key)
    rows = []
    for model in plan.grid.models:
        calls, cells, cached = _Calls(), 0, 0
        for chunk in _chunks(plan.cells(model)):
            cells += len(chunk)
            # Summary cells: a summary not cached is a call; each answer waiting on it is one too (keyless).
            resolved = resolve(plan, lambda r: keys_of.of(model, r), cache, chunk)
            for skey, summary in resolved.missing.items():
                calls.add(skey, summary)
            for cell in resolved.waiting:
                summary = plan.summary_request(cell)
                assert summary is not None, "a waiting cell is a summary cell"
                request = plan.request(cell.with_summary(_unknown_answer(summary)))
                calls.add(None, request)
                if judge is not None and plan.judged(cell.benchmark):
                    pending.add(None, plan.judge_request(cell, _unknown_answer(request)))
            chunk = resolved.ready
            requests = [plan.request(c) for c in chunk]
            keys = [keys_of.of(model, r) for r in requests]
            judged = [judge is not None and plan.judged(c.benchmark) for c in chunk]
            # Answers' texts only where a judge will read them; key presence is enough for the rest.
            found = cache.lookup(keys) if any(judged) else dict.fromkeys(cache.contains_keys(keys))
            asked: list[tuple[str, Request]] = []  # per judged cell, verdicts on cached answers, looked up together below
            for cell, key, request, is_judged in zip(chunk, keys, requests, judged):
                hit = found.get(key)  # the cached answer's text, where a judge reads it
                if key in found:
                    cached += 1
                else:
                    calls.add(key, request)
                if not is_judged:
                    continue
                assert judge is not None
                if hit is None:
                    # One verdict per answer and per judge prompt around it: a rubric that quotes the persona
                    # (persona_fit) judges one baseline answer once for each persona.
                    verdict = plan.judge_request(cell, _unknown_answer(request))
                    pending.add(hashlib.sha256(f"{key} {keys_of.of(judge, verdict)}".encode()).hexdigest(), verdict)
                elif (graded := plan.graded_text(cell, hit)) is not None:  # None: a reasoning reply with no answer
                    verdict = plan.judge_request(cell, graded)
                    asked.append((keys_of.of(judge, verdict), verdict))
            have = cache.contains_keys([vkey for vkey, _ in asked]) if asked else set()
            for vkey, verdict in asked:
                if vkey not in have:
                    verdicts.add(vkey, verdict)
        rows.append(_row(model, cells, cached, cells - cached, *calls.totals()))
    if judge is not None:
        (n1, in1, out1), (n2, in2, out2) = pending.totals(), verdicts.totals()
        rows.append(_row(judge, None, None, pending.added + verdicts.added, n1 + n2, in1 + in2, out1 + out2))
    return rows
