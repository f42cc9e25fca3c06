"""What calls cost: a price table per model and the cost of a call (the dry run's estimate: engine.dryrun).

Prices are list prices in USD per million tokens (input, output) as published by the providers in 2025;
they change, so every model can override them in grid.toml (`input_price`, `output_price`). A model name
matches its longest table prefix, so dated snapshots ("gpt-4o-2024-08-06") price like their family.
"""

from __future__ import annotations

from engine.config import ModelConfig

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
    return _overridden(None if online is None else (online[0] / 2, online[1] / 2), model.batch.input_price, model.batch.output_price)


def online_price(model: ModelConfig) -> tuple[float, float] | None:
    """Online (list) price: the model's input_price / output_price, else engine.pricing's table."""
    return _overridden((0.0, 0.0) if model.provider in _FREE else _lookup(model.model), model.input_price, model.output_price)


def _overridden(price: tuple[float, float] | None, input_price: float | None, output_price: float | None) -> tuple[float, float] | None:
    """`price` with the grid's overrides of either side; None when a side is neither overridden nor known."""
    if input_price is None and output_price is None:
        return price
    if price is None and (input_price is None or output_price is None):
        return None
    return (
        input_price if input_price is not None else price[0],  # type: ignore[index]
        output_price if output_price is not None else price[1],  # type: ignore[index]
    )


def _lookup(name: str) -> tuple[float, float] | None:
    name = name.lower().removeprefix("models/")
    matches = [k for k in PRICES if name == k or name.startswith(k + "-") or name.startswith(k + "@")]
    return PRICES[max(matches, key=len)] if matches else None


def call_cost(price: tuple[float, float] | None, prompt_tokens: int | None, completion_tokens: int | None) -> float:
    if price is None:
        return 0.0
    return ((prompt_tokens or 0) * price[0] + (completion_tokens or 0) * price[1]) / 1e6
