"""What calls cost: a price table per model, cost of a run, and the dry-run estimate before spending.

Prices are list prices in USD per million tokens (input, output) as published by the providers in 2025;
they change, so every model can override them in grid.toml (`input_price`, `output_price`). A model name
matches its longest table prefix, so dated snapshots ("gpt-4o-2024-08-06") price like their family.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from bench_adapters.modes import SUMMARY_TOKENS
from engine.cache import ResponseCache
from engine.keys import Keys
from engine.config import ModelConfig
from engine.limits import estimate_prompt_tokens
from engine.plan import Plan
from engine.providers.base import Provider
from engine.request import Request, Response
from engine.summaries import resolve

PRICES: dict[str, tuple[float, float]] = {
    # openai
    "gpt-5": (1.25, 10.0),
    "gpt-5-mini": (0.25, 2.0),
    "gpt-5-nano": (0.05, 0.40),
    "gpt-4.1": (2.0, 8.0),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4o": (2.50, 10.0),
    "gpt-4o-mini": (0.15, 0.60),
    "o3": (2.0, 8.0),
    "o4-mini": (1.10, 4.40),
    # anthropic
    "claude-opus-4": (15.0, 75.0),
    "claude-sonnet-4": (3.0, 15.0),
    "claude-3-7-sonnet": (3.0, 15.0),
    "claude-haiku-4-5": (1.0, 5.0),
    "claude-3-5-haiku": (0.80, 4.0),
    # google
    "gemini-2.5-pro": (1.25, 10.0),
    "gemini-2.5-flash": (0.30, 2.50),
    "gemini-2.5-flash-lite": (0.10, 0.40),
    "gemini-2.0-flash": (0.10, 0.40),
}
_FREE = frozenset({"transformers", "local", "vllm"})  # our own hardware


def price_for(model: ModelConfig) -> tuple[float, float] | None:
    """(input, output) USD per million tokens the model's calls cost: its batch price under transport = "batch",
    else its online price; None when unknown."""
    return batch_price(model) if model.transport == "batch" else online_price(model)


def batch_price(model: ModelConfig) -> tuple[float, float] | None:
    """Batch price: [models.batch] input_price / output_price, else half the online price (OpenAI, Anthropic and
    Gemini all bill batch requests at 50% of their list prices: openai.com/api/pricing, docs.anthropic.com
    /en/docs/build-with-claude/batch-processing#pricing, ai.google.dev/gemini-api/docs/batch-mode)."""
    online = online_price(model)
    b = model.batch
    half = None if online is None else (online[0] / 2, online[1] / 2)
    if b.input_price is None and b.output_price is None:
        return half
    if half is None and (b.input_price is None or b.output_price is None):
        return None
    return (
        b.input_price if b.input_price is not None else half[0],  # type: ignore[index]
        b.output_price if b.output_price is not None else half[1],  # type: ignore[index]
    )


def online_price(model: ModelConfig) -> tuple[float, float] | None:
    """Online (list) price: the model's input_price / output_price, else engine.pricing's table."""
    listed = (0.0, 0.0) if model.provider in _FREE else _lookup(model.model)
    if model.input_price is None and model.output_price is None:
        return listed
    if listed is None and (model.input_price is None or model.output_price is None):
        return None
    return (
        model.input_price if model.input_price is not None else listed[0],  # type: ignore[index]
        model.output_price if model.output_price is not None else listed[1],  # type: ignore[index]
    )


def _lookup(name: str) -> tuple[float, float] | None:
    name = name.lower().removeprefix("models/")
    matches = [k for k in PRICES if name == k or name.startswith(k + "-") or name.startswith(k + "@")]
    return PRICES[max(matches, key=len)] if matches else None


def call_cost(price: tuple[float, float] | None, prompt_tokens: int | None, completion_tokens: int | None) -> float:
    if price is None:
        return 0.0
    return ((prompt_tokens or 0) * price[0] + (completion_tokens or 0) * price[1]) / 1e6


@dataclass(frozen=True)
class Estimate:
    calls: int
    input_tokens: int
    output_tokens: int  # an upper bound: max_tokens per call
    usd: float | None  # at the price of the model's transport (batch or online); None: no price known
    online_usd: float | None = None  # the same calls online
    batch_usd: float | None = None  # the same calls through the provider's batch API; None where it has none


def estimate(plan: Plan, providers: Mapping[str, Provider], cache: ResponseCache | None) -> dict[str, Estimate]:
    """Per model (and the judge): the distinct calls not yet cached, their estimated tokens and cost. Calls nothing.

    The judge's calls depend on answers not yet given: an uncached answer counts as one verdict call whose
    answer is max_tokens long (an upper bound); a cached answer counts only if its verdict is not cached."""
    out = {}
    judge = plan.grid.judge.model if plan.grid.judge is not None else None
    keys_of = Keys(providers)
    verdicts = _Tally()
    for model in plan.grid.models:
        answers = _Tally()
        cells = plan.cells(model)
        while chunk := [c for _, c in zip(range(2048), cells)]:
            # Summary cells: each persona summary not cached is one call; the answers waiting on it are unknown
            # yet (they embed it), so each counts as a call, its summary at the summary's max_tokens.
            resolved = resolve(plan, lambda r: keys_of.of(model, r), cache, chunk)
            for skey, summary in resolved.missing.items():
                answers.add(skey, summary, cached=False)
            requests = {keys_of.of(model, r): (c, r) for c, r in zip(resolved.ready, map(plan.request, resolved.ready))}
            for c in resolved.waiting:
                placeholder = "x" * (4 * SUMMARY_TOKENS)
                requests[f"after-summary:{c.id}"] = (c, plan.request(c.with_summary(placeholder)))
            requests = {k: cr for k, cr in requests.items() if k not in answers.seen}
            keys = list(requests)
            # Answers' texts only where a judge will read them; key presence is enough for the rest.
            if cache is None:
                known: Mapping[str, Response | None] = {}
            else:
                known = cache.lookup(keys) if judge is not None else dict.fromkeys(cache.contains_keys(keys))
            judged: dict[str, Request] = {}  # verdicts on cached answers, looked up together below
            for key, (cell, request) in requests.items():
                answers.add(key, request, cached=key in known)
                if judge is None or not plan.judged(cell.benchmark):
                    continue
                hit = known.get(key)
                if hit is None:  # one verdict per distinct answer request, whatever the answers turn out to be
                    verdicts.add(f"answer:{key}", plan.judge_request(cell, "x" * (4 * request.decoding.max_tokens)), cached=False)
                elif (graded := plan.graded_text(cell, hit)) is not None:
                    verdict = plan.judge_request(cell, graded)
                    judged[keys_of.of(judge, verdict)] = verdict
            found = cache.contains_keys(list(judged)) if judged and cache is not None else set()
            for vkey, verdict in judged.items():
                verdicts.add(vkey, verdict, cached=vkey in found)
        out[model.id] = answers.estimate(model)
    if judge is not None:
        out[judge.id] = verdicts.estimate(judge)
    return out


class _Tally:
    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.calls, self.tokens_in, self.tokens_out = 0, 0.0, 0

    def add(self, key: str, request: Request, cached: bool) -> None:
        if key in self.seen:
            return
        self.seen.add(key)
        if not cached:
            self.calls += 1
            self.tokens_in += estimate_prompt_tokens(request)
            self.tokens_out += request.decoding.max_tokens

    def estimate(self, model: ModelConfig) -> Estimate:
        from engine.batch import BATCH_PROVIDERS

        def cost(price: tuple[float, float] | None) -> float | None:
            return None if price is None else call_cost(price, round(self.tokens_in), self.tokens_out)

        batch = cost(batch_price(model)) if model.provider in BATCH_PROVIDERS else None
        return Estimate(self.calls, round(self.tokens_in), self.tokens_out, cost(price_for(model)), cost(online_price(model)), batch)
