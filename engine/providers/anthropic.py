"""Anthropic messages API (`POST /v1/messages`), lean aiohttp or the official AsyncAnthropic client.

Leading ("system", text) messages go into the top-level `system` field: the messages list takes only user
and assistant turns. The API returns no logprobs, so p_gold stays empty for these models.
`top_p` is sent only when it differs from 1.0: recent Claude models reject temperature and top_p together.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from engine.errors import ContentFiltered, IncompleteAnswer
from engine.providers.api import APIProvider, Channel, JSONTransport, count, loads
from engine.request import Request, Response

API_VERSION = "2023-06-01"


class _Lean:
    def __init__(self, base_url: str, model: str, api_key: str, timeout_s: float) -> None:
        self._http = JSONTransport({"x-api-key": api_key, "anthropic-version": API_VERSION}, timeout_s)
        self._url = base_url + "/v1/messages"
        self._model_url = f"{base_url}/v1/models/{model}"

    async def generate(self, params: dict[str, Any]) -> tuple[dict[str, Any], Mapping[str, str]]:
        return await self._http.request("POST", self._url, params)

    async def lookup_model(self) -> None:
        await self._http.request("GET", self._model_url)

    async def close(self) -> None:
        await self._http.close()


class _SDK:
    def __init__(self, base_url: str, model: str, api_key: str, timeout_s: float) -> None:
        from anthropic import AsyncAnthropic, DefaultAioHttpClient

        self._client = AsyncAnthropic(api_key=api_key, base_url=base_url, max_retries=0, timeout=timeout_s, http_client=DefaultAioHttpClient())
        self._model = model
        # Recent SDKs dropped sampling arguments (temperature, top_p) from create(): what the signature
        # does not take goes through extra_body, so both channels send the same wire body.
        self._named = set(inspect.signature(self._client.messages.create).parameters)

    async def generate(self, params: dict[str, Any]) -> tuple[dict[str, Any], Mapping[str, str]]:
        named = {k: v for k, v in params.items() if k in self._named}
        extra = {k: v for k, v in params.items() if k not in self._named}
        raw = await self._client.messages.with_raw_response.create(**named, extra_body=extra or None)
        return loads(raw.http_response.content), raw.headers

    async def lookup_model(self) -> None:
        await self._client.models.retrieve(self._model)

    async def close(self) -> None:
        await self._client.close()


class AnthropicProvider(APIProvider):
    name = "anthropic"
    supports_logprobs = False
    supports_completion = False  # the messages API has no plain-text prompt
    key_envs = ("ANTHROPIC_API_KEY",)
    default_base_url = "https://api.anthropic.com"

    def _open(self, api_key: str) -> Channel:
        cls = _SDK if self.config.transport == "sdk" else _Lean
        return cls(self.base_url, self.config.model, api_key, self.config.limits.timeout_s)

    def _params(self, req: Request) -> dict[str, Any]:
        messages = list(req.messages)
        system = []
        while messages and messages[0][0] == "system":
            system.append(messages.pop(0)[1])
        params: dict[str, Any] = {
            "model": self.config.model,
            "max_tokens": req.decoding.max_tokens,
            "messages": [{"role": role, "content": content} for role, content in messages],
            "temperature": req.decoding.temperature,
        }
        if system:
            params["system"] = "\n\n".join(system)
        if req.decoding.top_p != 1.0:
            params["top_p"] = req.decoding.top_p
        return params

    def _parse(self, body: dict[str, Any], req: Request, params: dict[str, Any]) -> Response:
        """The text blocks joined, read block by block (a block that is not a text object is skipped). A body
        without a `content` list is an IncompleteAnswer (retried, never cached); an empty list with a
        stop_reason is the model's final (empty) answer, scored invalid."""
        blocks = body.get("content")
        if not isinstance(blocks, list) or (not blocks and not body.get("stop_reason")):
            raise IncompleteAnswer(f"no content in the response body: {str(body)[:200]}")
        text = "".join(b["text"] for b in blocks if isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str))
        if body.get("stop_reason") == "refusal":
            raise ContentFiltered(f"stop_reason refusal: {text[:200]}")
        prompt = count(body, "usage", "input_tokens")
        if prompt is not None:
            # Cached prompt tokens are billed (at other rates) but reported apart.
            prompt += (count(body, "usage", "cache_creation_input_tokens") or 0) + (count(body, "usage", "cache_read_input_tokens") or 0)
        return Response(text=text, prompt_tokens=prompt, completion_tokens=count(body, "usage", "output_tokens"))
