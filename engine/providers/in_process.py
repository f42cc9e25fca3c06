"""What the in-process backends (transformers, vLLM) share: local weights, one batch at a time on a thread."""

from __future__ import annotations

import asyncio
from abc import abstractmethod
from collections.abc import Sequence
from typing import Any

from engine.config import ModelConfig
from engine.providers import weights
from engine.providers.base import Provider
from engine.request import Request, Response


class InProcessProvider(Provider):
    default_batch_size = 16
    supports_likelihood = True  # the weights are here: every option's tokens are scored in a forward pass

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self._source = weights.resolve(config.model, config.revision)
        self._identity: dict[str, Any] | None = None

    @property
    def batch_size(self) -> int:
        return self.config.limits.batch_size or self.default_batch_size

    @property
    def concurrency(self) -> int:
        return 1  # one batch at a time: the backend already uses every core (or the whole GPU)

    def identity(self) -> dict[str, Any]:
        if self._identity is None:
            self._identity = {**weights.identity(self._source), "dtype": self.config.dtype}
        return self._identity

    async def complete(self, batch: Sequence[Request]) -> list[Response]:
        try:
            return await asyncio.to_thread(self._run_batch, list(batch))
        except Exception as exc:  # a broken batch becomes per-cell errors, never a dead run
            return [Response.failed("exception", f"{type(exc).__name__}: {exc}") for _ in batch]

    @abstractmethod
    def _run_batch(self, batch: list[Request]) -> list[Response]: ...
