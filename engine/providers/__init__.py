"""Provider registry. Backends are imported on first use so a grid that only uses an API never imports torch."""

from __future__ import annotations

import importlib

from engine.config import ModelConfig
from engine.providers.base import Provider

PROVIDERS: dict[str, str] = {
    # HF transformers on torch, in this process. "local" is its first name, kept as an alias: vLLM is local too.
    # Both spellings give the same cache keys (engine.keys uses the provider's own `name`, "local").
    "transformers": "engine.providers.local:LocalProvider",
    "local": "engine.providers.local:LocalProvider",
    "openai": "engine.providers.openai:OpenAIProvider",
    "anthropic": "engine.providers.anthropic:AnthropicProvider",
    "google": "engine.providers.google:GoogleProvider",
    "vllm": "engine.providers.vllm:VllmProvider",
}


def provider_class(name: str) -> type[Provider]:
    module, cls = PROVIDERS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def create_provider(config: ModelConfig) -> Provider:
    return provider_class(config.provider)(config)


__all__ = ["PROVIDERS", "Provider", "create_provider", "provider_class"]
