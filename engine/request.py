"""What the scheduler hands a provider and what comes back: plain, backend-neutral value types."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Decoding:
    temperature: float
    max_tokens: int
    top_p: float
    seed: int | None


@dataclass(frozen=True, slots=True)
class Request:
    messages: tuple[tuple[str, str], ...]  # (role, content)
    decoding: Decoding
    sample: int
    mode: str  # scoring mode, e.g. "letter"
    letters: tuple[str, ...]  # answer letters whose next-token logprobs are wanted
    want_logprobs: bool
    # mode "likelihood": texts whose log-likelihood after the prompt is wanted, one per option
    continuations: tuple[str, ...] = ()
    # format "completion" (engine.templates): the prompt sent as is, no chat template; `messages` is then ()
    prompt: str | None = None

    def key_fields(self) -> dict[str, Any]:
        """Everything in the request that can change the model's output, for the cache key."""
        d = self.decoding
        return {
            "messages": self.messages,
            "temperature": d.temperature,
            "max_tokens": d.max_tokens,
            "top_p": d.top_p,
            "seed": d.seed,
            "sample": self.sample,
            "mode": self.mode,
            "letters": self.letters if self.want_logprobs else (),
            **({"continuations": self.continuations} if self.continuations else {}),
            # only when set: chat requests keep the keys they always had
            **({"prompt": self.prompt} if self.prompt is not None else {}),
        }

    @property
    def prompt_chars(self) -> int:
        return sum(len(content) for _, content in self.messages) + len(self.prompt or "")


@dataclass(slots=True)
class Response:
    text: str | None = None
    letter_logprobs: dict[str, float] | None = None
    # mode "likelihood": summed token logprob of each continuation, and its token count (for normalising)
    option_logprobs: tuple[float, ...] | None = None
    option_tokens: tuple[int, ...] | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency_s: float = 0.0
    error_kind: str | None = None  # e.g. rate_limit, server_error, timeout, bad_request, auth, exception
    error: str | None = None  # the cause, as reported by the backend
    attempts: int = 1

    @property
    def ok(self) -> bool:
        return self.error_kind is None

    @classmethod
    def failed(cls, kind: str, message: str, latency_s: float = 0.0) -> Response:
        return cls(error_kind=kind, error=message[:2000], latency_s=latency_s)
