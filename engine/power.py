"""Power before spending: the smallest persona effect a grid can detect, printed by `run --dry-run`.

For one model × benchmark × persona condition with Q questions, P personas, S samples and O option orders per
cell, Δ̂ = mean persona score − mean baseline score. Treating answers as independent draws with one score
variance σ² (a score in [0, 1]), the baseline mean has variance σ²/(Q·S·O) and the persona mean σ²/(Q·P·S·O):

    SE = sqrt(σ² / (Q·S·O) · (1 + 1/P))
    power(Δ) = Φ(|Δ|/SE − z₀.₉₇₅) + Φ(−|Δ|/SE − z₀.₉₇₅)          (two-sided z-test, α = 0.05)
    MDE = (z₀.₉₇₅ + z₀.₈₀) · SE = 2.8016 · SE                        (the Δ found with 80% power)

Hand-worked: Q = 40, S = O = 1, many personas, σ² = 0.1875 (a 4-option question answered at chance, p(1 − p)
with p = 0.25): SE = sqrt(0.1875/40) = 0.06847, so a true Δ of 0.05 is found with power Φ(0.7303 − 1.96) +
Φ(−0.7303 − 1.96) = 0.1094 + 0.0036 = 0.113, and MDE = 0.1918. The baseline's one answer per question is the
bottleneck: more personas cannot shrink SE below sqrt(σ²/(Q·S·O)).

This is optimistic where personas differ from each other (persona variance adds to SE; the report's intervals
include it) and pessimistic where a persona rarely changes the baseline's answer (pairing removes shared
question difficulty), so it is a first look, not a guarantee.

σ² comes from the cache when an earlier run answered cells of this grid: the variance (ddof 0) of the scores of
up to `SAMPLE_CELLS` cached answers of the model × benchmark (every condition, the first `SAMPLE_PERSONAS`
personas, every question, option order and sample), scored by the benchmark's adapter as a run scores them
(on `p_gold` when the grid's `[run] score` is p_gold); at least
`MIN_CACHED` are needed. Otherwise σ² = `DEFAULT_VARIANCE` = 0.25, the largest variance a score in [0, 1] can
have, so the default never overstates power. Judged benchmarks always use the default (a verdict is needed
to score an answer).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import polars as pl

from engine.cache import ResponseCache
from engine.keys import Keys
from engine.config import GridConfig, ModelConfig
from engine.plan import Benchmark, Cell, Plan
from engine.providers import Provider
from engine.summaries import resolve

Z_ALPHA = 1.959963984540054  # two-sided α = 0.05
Z_POWER = 0.8416212335729143  # power 0.80
DEFAULT_VARIANCE = 0.25
SAMPLE_CELLS = 4096
SAMPLE_PERSONAS = 8
MIN_CACHED = 30
REFERENCE_DELTA = 0.05  # the power column: how often a Δ of this size would be found


def standard_error(variance: float, questions: int, personas: int, samples: int = 1, orders: float = 1) -> float:
    """SE of Δ̂ (score units) under independent answers of score variance `variance`; counts must be ≥ 1."""
    return math.sqrt(variance / (questions * samples * orders) * (1.0 + 1.0 / personas))


def minimum_detectable(se: float) -> float:
    """The true Δ a two-sided α = 0.05 test finds with 80% power."""
    return (Z_ALPHA + Z_POWER) * se


def power(delta: float, se: float) -> float:
    """Probability that a two-sided α = 0.05 z-test rejects Δ = 0 when the true Δ is `delta`."""
    shift = abs(delta) / se
    return _phi(shift - Z_ALPHA) + _phi(-shift - Z_ALPHA)


def _phi(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


@dataclass(frozen=True)
class Variance:
    value: float
    answers: int  # cached answers it was estimated from; 0 for the default

    @property
    def source(self) -> str:
        return f"cache n={self.answers}" if self.answers else "default"


def cached_variance(plan: Plan, model: ModelConfig, provider: Provider, bench: Benchmark, cache: ResponseCache | None) -> Variance:
    """σ² of the model × benchmark's cached scores (see the module docstring), or the default."""
    label = bench.config.label
    if cache is None or plan.judged(label):
        return Variance(DEFAULT_VARIANCE, 0)
    cells = []
    for condition in plan.grid.conditions:
        for persona in [None] if condition.format is None else plan.personas[:SAMPLE_PERSONAS]:
            cells += [
                Cell(0, model, label, item, condition, persona, s, order, perm)
                for variants in bench.variants
                for order, (item, perm) in enumerate(variants)
                for s in range(model.samples)
            ]
    p_gold = plan.grid.run.score == "p_gold"
    keys_of = Keys({model.id: provider})
    cells = resolve(plan, lambda r: keys_of.of(model, r), cache, cells[:SAMPLE_CELLS]).ready  # summary cells: only once summarised
    keys = [keys_of.of(model, plan.request(c)) for c in cells]
    found = cache.lookup(keys)
    scores = []
    for cell, key in zip(cells, keys):
        if key in found:
            score = plan.score(cell, found[key])
            if p_gold:  # the grid's Δ is on p_gold ([run] score): its variance is what matters
                if score.p_gold is not None:
                    scores.append(score.p_gold)
            else:
                scores.append(score.score if score.score is not None else score.correct)
    if len(scores) < MIN_CACHED:
        return Variance(DEFAULT_VARIANCE, 0)
    return Variance(float(pl.Series(scores, dtype=pl.Float64).var(ddof=0)), len(scores))


def power_table(plan: Plan, providers: dict[str, Provider], cache: ResponseCache | None) -> pl.DataFrame:
    """One row per model × benchmark × persona condition (none without a baseline or personas): the counts,
    σ² and its source, the minimum detectable Δ (MDE) and the power to find a Δ of `REFERENCE_DELTA`.
    O is a benchmark's mean number of option orders per question (cyclic orders differ with the option count).
    A per-persona benchmark (trait inference) pairs each persona × target item with its own baseline answer, so
    its Q is the number of items and P is 1."""
    rows = []
    grid = plan.grid
    if grid.baseline is None or not plan.personas:
        return pl.DataFrame()
    for model in grid.models:
        for bench in plan.benchmarks:
            if bench.per_persona:
                questions, personas, orders = bench.persona_items.count, 1, 1.0
            else:
                questions, personas = len(bench.items), len(plan.personas)
                orders = bench.cells_per_persona / questions if questions else 1.0
            if not questions:
                continue
            variance = cached_variance(plan, model, providers[model.id], bench, cache)
            se = standard_error(variance.value, questions, personas, model.samples, orders)
            for condition in grid.conditions:
                if condition.format is None:
                    continue
                rows.append(
                    (model.id, bench.config.label, condition.name, questions, personas, model.samples, round(orders, 2),
                     variance.value, variance.source, minimum_detectable(se), power(REFERENCE_DELTA, se))
                )
    schema = ["model", "benchmark", "condition", "questions", "personas", "samples", "orders", "σ²", "σ² from", "MDE", f"P(find {REFERENCE_DELTA})"]
    return pl.DataFrame(rows, schema=schema, orient="row")


def dry_run_power(grid: GridConfig) -> pl.DataFrame:
    """`power_table` for a grid, reading its cache if it exists; writes nothing."""
    from engine.runner import prepare

    plan, providers = prepare(grid)
    cache = ResponseCache(grid.cache_path) if grid.cache_path.exists() else None
    try:
        return power_table(plan, providers, cache)
    finally:
        if cache is not None:
            cache.close()
