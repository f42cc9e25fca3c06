"""The one interface every model backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

from engine.config import ModelConfig
from engine.errors import PreflightError
from engine.request import Request, Response

__all__ = ["PreflightError", "Provider"]  # PreflightError lives in engine.errors; providers raise it


class Provider(ABC):
    """A model backend.

    `complete` takes a batch: local backends get up to `batch_size` requests per call and run them in one
    forward pass; API backends have batch_size 1 and get `concurrency` concurrent calls. It must return one
    Response per request, in order, and report failures as Response.failed rather than raising, so one bad
    cell never takes its batch-mates or the run down.
    """

    name: ClassVar[str]
    supports_logprobs: ClassVar[bool] = True  # False: letter logprobs (p_gold) are never returned
    supports_completion: ClassVar[bool] = True  # False: chat messages only, no `format = "completion"` prompt
    supports_likelihood: ClassVar[bool] = False  # True: scores option continuations (mode "likelihood"): local backends

    def __init__(self, config: ModelConfig) -> None:
        self.config = config

    @property
    def batch_size(self) -> int:
        return 1

    @property
    def concurrency(self) -> int:
        return self.config.limits.concurrency

    @abstractmethod
    def identity(self) -> dict[str, Any]:
        """What the outputs depend on (model name, revision or weights hash); cheap, loads no weights."""

    @abstractmethod
    async def complete(self, batch: Sequence[Request]) -> list[Response]: ...

    async def preflight(self) -> None:  # noqa: B027 - optional hook
        """Check in seconds that the model can be called at all; raise PreflightError saying why not."""
        return None

    def check_request(self, request: Request) -> None:  # noqa: B027 - optional hook
        """Raise PreflightError if no request shaped like `request` can ever be answered (e.g. a chat template
        that refuses its roles); called before the run with one request per condition, loads no weights."""
        return None

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        return None
