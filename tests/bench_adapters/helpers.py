"""Small builders shared by the adapter tests."""

from __future__ import annotations

import math

from engine.request import Response


def letters(**probs: float) -> Response:
    """A response carrying only letter logprobs, given as probabilities."""
    return Response(letter_logprobs={k: math.log(v) for k, v in probs.items()})


def text(answer: str | None) -> Response:
    return Response(text=answer)


def options(*logps: float) -> Response:
    return Response(option_logprobs=tuple(logps), option_tokens=tuple(1 for _ in logps))
