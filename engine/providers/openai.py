"""OpenAI chat completions; any OpenAI-compatible server (vLLM, llama.cpp, Together, ...) via base_url.

A request in completion format (`Request.prompt`, grid key `format = "completion"`) goes to the legacy
`POST /completions` endpoint instead: the prompt as is, no chat template (base models; vLLM serves it too).

Channels: "aiohttp" (default, lean) and "sdk" (the official AsyncOpenAI client on its aiohttp transport,
returning the raw body so both share one parser). Preflight looks the model up: `GET /models/{model}` on
OpenAI itself, and `GET /models` on compatible servers (which often serve only the list), where the model
must be listed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.errors import ContentFiltered, HTTPStatusError, IncompleteAnswer
from engine.providers.api import APIProvider, Channel, JSONTransport, count, entry, letter_logprobs, loads
from engine.request import Request, Response

_MAX_TOP_LOGPROBS = 20
DEFAULT_BASE_URL = "https://api.openai.com/v1"


def _check_listed(model: str, listing: dict[str, Any]) -> None:
    ids = [m.get("id") for m in listing.get("data") or []]
    if model not in ids:
        raise HTTPStatusError(404, f"the server lists {ids[:10]}, not '{model}'")


class _Lean:
    def __init__(self, base_url: str, model: str, api_key: str, timeout_s: float) -> None:
        self._http = JSONTransport({"Authorization": f"Bearer {api_key}"}, timeout_s)
        self._base_url, self._model = base_url, model
        self._url = base_url + "/chat/completions"
        self._completions_url = base_url + "/completions"

    async def generate(self, params: dict[str, Any]) -> tuple[dict[str, Any], Mapping[str, str]]:
        return await self._http.request("POST", self._completions_url if "prompt" in params else self._url, params)

    async def lookup_model(self) -> None:
        if self._base_url == DEFAULT_BASE_URL:
            await self._http.request("GET", f"{self._base_url}/models/{self._model}")
        else:
            listing, _ = await self._http.request("GET", self._base_url + "/models")
            _check_listed(self._model, listing)

    async def close(self) -> None:
        await self._http.close()


class _SDK:
    def __init__(self, base_url: str, model: str, api_key: str, timeout_s: float) -> None:
        from openai import AsyncOpenAI, DefaultAioHttpClient

        self._client = AsyncOpenAI(api_key=api_key, base_url=base_url, max_retries=0, timeout=timeout_s, http_client=DefaultAioHttpClient())
        self._base_url, self._model = base_url, model

    async def generate(self, params: dict[str, Any]) -> tuple[dict[str, Any], Mapping[str, str]]:
        # The raw body, parsed once by orjson, instead of the SDK's pydantic models: same data, less CPU.
        endpoint = self._client.completions if "prompt" in params else self._client.chat.completions
        raw = await endpoint.with_raw_response.create(**params)
        return loads(raw.http_response.content), raw.headers

    async def lookup_model(self) -> None:
        if self._base_url == DEFAULT_BASE_URL:
            await self._client.models.retrieve(self._model)
        else:
            raw = await self._client.models.with_raw_response.list()
            _check_listed(self._model, loads(raw.http_response.content))

    async def close(self) -> None:
        await self._client.close()


class OpenAIProvider(APIProvider):
    name = "openai"
    key_envs = ("OPENAI_API_KEY",)
    default_base_url = DEFAULT_BASE_URL

    def _open(self, api_key: str) -> Channel:
        cls = _SDK if self.config.transport == "sdk" else _Lean
        return cls(self.base_url, self.config.model, api_key, self.config.limits.timeout_s)

    def _params(self, req: Request) -> dict[str, Any]:
        prompt = {"prompt": req.prompt} if req.prompt is not None else {"messages": [{"role": role, "content": content} for role, content in req.messages]}
        params: dict[str, Any] = {
            "model": self.config.model,
            **prompt,
            "temperature": req.decoding.temperature,
            "max_tokens": req.decoding.max_tokens,
            "top_p": req.decoding.top_p,
        }
        if req.decoding.seed is not None:
            params["seed"] = req.decoding.seed
        if req.want_logprobs and req.letters:
            top = min(_MAX_TOP_LOGPROBS, max(5, len(req.letters)))
            if req.prompt is not None:  # /completions: `logprobs` is the number of top tokens
                params["logprobs"] = top
            else:
                params["logprobs"] = True
                params["top_logprobs"] = top
        return params

    def _parse(self, body: dict[str, Any], req: Request, params: dict[str, Any]) -> Response:
        """The first choice's text, and letter logprobs when asked for, read leniently: a malformed optional
        part (usage, a logprob entry) is dropped, never the text.

        A body without choices, or a choice with null content and no finish_reason, is an IncompleteAnswer
        (retried, never cached). Null content with a finish_reason (e.g. "length": a reasoning model spent
        max_tokens thinking) is the model's final answer and is cached as no text, scored invalid.
        """
        # Read step by step rather than with `entry` paths: ~2 µs less a call, the same leniency.
        choices = body.get("choices") if isinstance(body, dict) else None
        choice = choices[0] if isinstance(choices, list) and choices else None
        if not isinstance(choice, dict):
            raise IncompleteAnswer(f"no choices in the response body: {str(body)[:200]}")
        completion = "prompt" in params
        if completion:
            text = choice.get("text")
        else:
            message = choice.get("message")
            text = message.get("content") if isinstance(message, dict) else None
        text = text if isinstance(text, str) else None
        finish = choice.get("finish_reason")
        if finish == "content_filter" and not text:
            raise ContentFiltered("finish_reason content_filter")
        if text is None and not finish:
            raise IncompleteAnswer("a choice with null content and no finish_reason")
        lp = None
        if "logprobs" in params and completion:
            # /completions: logprobs.top_logprobs[0] is {token: logprob} at the first generated position
            top = entry(choice, "logprobs", "top_logprobs", 0)
            candidates = [{"token": k, "logprob": v} for k, v in top.items()] if isinstance(top, dict) else None
            lp = letter_logprobs(candidates, req.letters, "token", "logprob")
        elif "logprobs" in params:
            lp = letter_logprobs(entry(choice, "logprobs", "content", 0, "top_logprobs"), req.letters, "token", "logprob")
        usage = body.get("usage")
        return Response(text=text, letter_logprobs=lp, prompt_tokens=count(usage, "prompt_tokens"), completion_tokens=count(usage, "completion_tokens"))
