"""The cache key of a request: the one place it is computed.

A key is the sha256 of the canonical (sorted-key orjson) encoding of everything that determines a model's
output: the provider's name, the model's identity (`Provider.identity()`: name, endpoint when not the
official one, weights hash) and the request's key fields (`Request.key_fields()`: messages, decoding,
sample, mode, letters, continuations). Transport settings and secrets never enter it.

`KEY_VERSION` enters every key. It is not the cache file's schema (engine.cache.CACHE_SCHEMA, the table
layout): a migration of the file must not change a single key, and a change of what a key covers must not
need one. Both are 1 today, as the one constant they were until issue 14; changing KEY_VERSION orphans every
cached answer, so it changes only with the key fields themselves.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import orjson

from engine.config import ModelConfig
from engine.providers.base import Provider
from engine.request import Request

KEY_VERSION = 1


def cache_key(provider: str, identity: Mapping[str, Any], request: Request) -> str:
    """64 hex characters: the key of `request` to the model `identity` served by `provider` (a `Provider.name`)."""
    payload = {"schema": KEY_VERSION, "provider": provider, "model": identity, **request.key_fields()}
    return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()


class Keys:
    """Cache keys for a run's models: `providers` maps model id -> provider (the judge included); each
    provider's identity is read once, on its first key (for a local model that hashes the weights)."""

    def __init__(self, providers: Mapping[str, Provider]) -> None:
        self._providers = providers
        self._identity: dict[str, dict[str, Any]] = {}

    def identity(self, model: ModelConfig) -> dict[str, Any]:
        if (found := self._identity.get(model.id)) is None:
            found = self._identity[model.id] = self._providers[model.id].identity()
        return found

    def of(self, model: ModelConfig, request: Request) -> str:
        """The key of `request` to `model`; KeyError for a model not in the providers given. The provider's
        own `name` enters the key, not the grid's spelling: `provider = "transformers"` and its alias
        `"local"` share keys (and every other provider's name is its grid spelling)."""
        return cache_key(self._providers[model.id].name, self.identity(model), request)
