"""Google Gemini API (`POST /v1beta/models/{model}:generateContent`), lean aiohttp or google-genai's client.

Generation config honoured: temperature, topP, maxOutputTokens, seed, and candidateCount = 1 (each sample
of a cell is its own cached call, so one candidate per call); responseLogprobs/logprobs give the letter
logprobs where the model offers them. Leading system messages become `systemInstruction`. Google sends no
Retry-After header: a 429's `RetryInfo.retryDelay` in the error body is turned into one for the limiter.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.errors import ContentFiltered, HTTPStatusError, IncompleteAnswer
from engine.providers.api import APIProvider, Channel, JSONTransport, count, entry, letter_logprobs, loads
from engine.request import Request, Response

API_VERSION = "v1beta"
_MAX_LOGPROBS = 19  # the API takes logprobs in [0, 20)
_BLOCKED = frozenset({"SAFETY", "PROHIBITED_CONTENT", "BLOCKLIST", "SPII", "RECITATION", "IMAGE_SAFETY"})
# wire (camelCase) generationConfig key -> google-genai GenerateContentConfig field
_SDK_FIELDS = {
    "temperature": "temperature",
    "topP": "top_p",
    "maxOutputTokens": "max_output_tokens",
    "candidateCount": "candidate_count",
    "seed": "seed",
    "responseLogprobs": "response_logprobs",
    "logprobs": "logprobs",
}


def _with_retry_after(exc: HTTPStatusError) -> HTTPStatusError:
    """Copy a 429's RetryInfo delay ("30s") into a retry-after header."""
    if exc.status_code == 429 and "retry-after" not in exc.headers:
        try:
            details = loads(str(exc))["error"].get("details") or []
        except Exception:  # noqa: BLE001 - a body we cannot read carries no hint; fall back to the default pause
            return exc
        for detail in details:
            delay = str(detail.get("retryDelay", "")).removesuffix("s")
            if delay:
                exc.headers = {**exc.headers, "retry-after": delay}
    return exc


class _Lean:
    def __init__(self, base_url: str, model: str, api_key: str, timeout_s: float) -> None:
        self._http = JSONTransport({"x-goog-api-key": api_key}, timeout_s)
        self._model_url = f"{base_url}/{API_VERSION}/models/{model}"
        self._url = self._model_url + ":generateContent"

    async def generate(self, params: dict[str, Any]) -> tuple[dict[str, Any], Mapping[str, str]]:
        try:
            return await self._http.request("POST", self._url, params)
        except HTTPStatusError as exc:
            raise _with_retry_after(exc) from None

    async def lookup_model(self) -> None:
        await self._http.request("GET", self._model_url)

    async def close(self) -> None:
        await self._http.close()


class _SDK:
    def __init__(self, base_url: str, model: str, api_key: str, timeout_s: float) -> None:
        from google import genai
        from google.genai import types

        # retry_options with one attempt also switches off the client's implicit reconnect-and-retry.
        options = types.HttpOptions(base_url=base_url, api_version=API_VERSION, timeout=int(timeout_s * 1000), retry_options=types.HttpRetryOptions(attempts=1))
        self._client = genai.Client(api_key=api_key, http_options=options)
        self._types = types
        self._model = model

    async def generate(self, params: dict[str, Any]) -> tuple[dict[str, Any], Mapping[str, str]]:
        from google.genai import errors

        config = {_SDK_FIELDS[k]: v for k, v in params["generationConfig"].items()}
        if "systemInstruction" in params:
            config["system_instruction"] = params["systemInstruction"]["parts"][0]["text"]
        try:
            resp = await self._client.aio.models.generate_content(
                model=self._model,
                contents=params["contents"],
                # The raw body, parsed once by orjson, instead of the SDK's pydantic models.
                config=self._types.GenerateContentConfig(**config, should_return_http_response=True),
            )
        except errors.APIError as exc:
            raise _with_retry_after(HTTPStatusError(exc.code, str(exc), getattr(exc.response, "headers", None))) from None
        http = resp.sdk_http_response
        return loads(http.body or ""), http.headers or {}

    async def lookup_model(self) -> None:
        from google.genai import errors

        try:
            await self._client.aio.models.get(model=self._model)
        except errors.APIError as exc:
            raise HTTPStatusError(exc.code, str(exc)) from None

    async def close(self) -> None:
        await self._client.aio.aclose()


class GoogleProvider(APIProvider):
    name = "google"
    key_envs = ("GEMINI_API_KEY", "GOOGLE_API_KEY")
    default_base_url = "https://generativelanguage.googleapis.com"
    supports_completion = False  # generateContent takes contents (turns) only

    def _open(self, api_key: str) -> Channel:
        cls = _SDK if self.config.transport == "sdk" else _Lean
        return cls(self.base_url, self.config.model.removeprefix("models/"), api_key, self.config.limits.timeout_s)

    def _params(self, req: Request) -> dict[str, Any]:
        messages = list(req.messages)
        system = []
        while messages and messages[0][0] == "system":
            system.append(messages.pop(0)[1])
        d = req.decoding
        generation: dict[str, Any] = {"temperature": d.temperature, "topP": d.top_p, "maxOutputTokens": d.max_tokens, "candidateCount": 1}
        if d.seed is not None:
            generation["seed"] = d.seed
        if req.want_logprobs and req.letters:
            generation["responseLogprobs"] = True
            generation["logprobs"] = min(_MAX_LOGPROBS, max(5, len(req.letters)))
        params: dict[str, Any] = {
            "contents": [{"role": "model" if role == "assistant" else "user", "parts": [{"text": text}]} for role, text in messages],
            "generationConfig": generation,
        }
        if system:
            params["systemInstruction"] = {"parts": [{"text": "\n\n".join(system)}]}
        return params

    def _parse(self, body: dict[str, Any], req: Request, params: dict[str, Any]) -> Response:
        """The first candidate's answer parts (not its "thought" parts), read part by part; logprobs and usage
        are optional and read leniently. No candidates with a blockReason is a refusal; no candidates without
        one is an IncompleteAnswer (retried, never cached)."""
        cand = entry(body, "candidates", 0)
        if not isinstance(cand, dict):
            reason = entry(body, "promptFeedback", "blockReason")
            if reason:
                raise ContentFiltered(f"prompt blocked: {reason}")
            raise IncompleteAnswer(f"no candidates in the response body: {str(body)[:200]}")
        # "thought" parts are the model's reasoning, not its answer.
        parts = entry(cand, "content", "parts")
        text = "".join(p["text"] for p in parts or () if isinstance(p, dict) and isinstance(p.get("text"), str) and not p.get("thought"))
        if cand.get("finishReason") in _BLOCKED and not text:
            raise ContentFiltered(f"finishReason {cand['finishReason']}")
        lp = None
        if "logprobs" in params["generationConfig"]:
            lp = letter_logprobs(entry(cand, "logprobsResult", "topCandidates", 0, "candidates"), req.letters, "token", "logProbability")
        completion = count(body, "usageMetadata", "candidatesTokenCount")
        if completion is not None:
            completion += count(body, "usageMetadata", "thoughtsTokenCount") or 0  # thinking tokens are billed as output
        return Response(text=text, letter_logprobs=lp, prompt_tokens=count(body, "usageMetadata", "promptTokenCount"), completion_tokens=completion)
