"""Local generation and scoring with HF transformers on torch: batched, left-padded, persona prefix computed once.

Each prompt is rendered alone first (a prompt the chat template refuses fails its own cell). letter-logprob
and likelihood requests generate nothing, and greedy letter answers decode token by token, all in
engine.providers.hf_scoring against a shared-prefix KV cache kept across batches; sampled answers go through
generate().

Chosen over llama.cpp for the embedded default after measuring (see README): our prompts are long and the
answers a few tokens, so prefill dominates, and batched transformers prefill is faster on this CPU than
llama-cpp-python's serialised one; it also installs from wheels instead of a 4-7 minute compile.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from typing import Any

from engine.config import ModelConfig
from engine.errors import PreflightError
from engine.providers import hf_scoring, weights
from engine.providers.in_process import InProcessProvider
from engine.request import Request, Response

# OpenMP threads spin while they wait for each other. On a machine whose cores are shared (the 2-core box this
# was measured on ran at load 17), a spinning thread holds a core its partner needs, and a 160-token forward
# pass took 15-25 s on 2 threads against 2 s on 1 (bench/local_throughput.py); passive waiting gave 2 threads
# the 1-thread time under load. libgomp reads this once, when torch loads, so it is set here, before the
# first `import torch` of this module; a user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


class LocalProvider(InProcessProvider):
    name = "local"

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self._model: Any = None
        self._tokenizer: Any = None
        self._device: str | None = None
        self._load_lock = threading.Lock()
        self._letter_ids: dict[str, int] = {}
        # Persona-prefix reuse (hf_scoring); None turns it off, for comparing against full-prompt passes.
        self._prefixes: hf_scoring.PrefixStore | None = hf_scoring.PrefixStore()

    # -- loading -----------------------------------------------------------------------------------

    def _load_tokenizer(self) -> Any:
        """The tokenizer alone (seconds, no weights): what rendering and checking prompts need."""
        with self._load_lock:
            if self._tokenizer is None:
                from transformers import AutoTokenizer
                from transformers.utils import logging as hf_logging

                hf_logging.disable_progress_bar()  # our own progress bar is the one a user watches
                tok = AutoTokenizer.from_pretrained(str(self._folder()), **self._revision())
                tok.padding_side = "left"  # decoder-only batching: prompts end where generation starts
                if tok.pad_token is None:
                    tok.pad_token = tok.eos_token
                self._tokenizer = tok
            return self._tokenizer

    def _folder(self) -> Any:
        src = self._source
        return weights.gguf_checkpoint(src, self.config.dtype) if src.kind == "gguf" else src.location

    def _revision(self) -> dict[str, str]:
        src = self._source
        return {"revision": src.revision} if src.kind != "gguf" and src.revision else {}

    def _load(self) -> None:
        self._load_tokenizer()
        with self._load_lock:
            if self._model is not None:
                return
            import torch
            from transformers import AutoModelForCausalLM

            # OMP_NUM_THREADS when set (a Ray actor holding some of a node's CPUs: engine.ray_pool), else every core.
            torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or 0) or os.cpu_count() or 1)
            device = self.config.device
            if device == "auto":
                device = "cuda" if torch.cuda.is_available() else "cpu"
            dtype = getattr(torch, self.config.dtype)
            model = AutoModelForCausalLM.from_pretrained(str(self._folder()), dtype=dtype, **self._revision())
            self._model = model.to(device).eval()
            self._device = device

    def _letter_token(self, letter: str) -> int | None:
        if letter not in self._letter_ids:
            ids = self._tokenizer.encode(letter, add_special_tokens=False)
            self._letter_ids[letter] = ids[0] if len(ids) == 1 else -1
        tid = self._letter_ids[letter]
        return None if tid < 0 else tid

    # -- checking ----------------------------------------------------------------------------------

    def check_request(self, request: Request) -> None:
        """Render `request` through the model's chat template (tokenizer only, no weights); PreflightError if it refuses."""
        try:
            self._prompt(request)
        except Exception as exc:  # a Jinja TemplateError, or whatever the template raises
            roles = "+".join(role for role, _ in request.messages) or "completion"
            raise PreflightError(f"the chat template of '{self.config.model}' cannot render a {roles} prompt: {exc}") from None

    # -- generation --------------------------------------------------------------------------------

    def _run_batch(self, batch: list[Request]) -> list[Response]:
        self._load()
        started = time.perf_counter()
        out: list[Response | None] = [None] * len(batch)
        # Rendered one by one, before any batching: a prompt the chat template refuses fails its own cell only.
        prompts: dict[int, str] = {}
        for i, req in enumerate(batch):
            try:
                prompts[i] = self._prompt(req)
            except Exception as exc:
                out[i] = Response.failed("bad_request", f"chat template: {type(exc).__name__}: {exc}")
        # Requests in one batch share mode and decoding in practice (one benchmark, one model config); group anyway.
        groups: dict[Any, list[int]] = {}
        for i in prompts:
            groups.setdefault((batch[i].mode, batch[i].decoding), []).append(i)
        for (mode, decoding), idxs in groups.items():
            reqs, texts = [batch[i] for i in idxs], [prompts[i] for i in idxs]
            if mode in ("letter-logprob", "likelihood"):  # scored in forward passes, nothing generated
                responses = self._score(reqs, texts, mode, started)
            elif decoding.temperature > 0:
                responses = self._sampled(reqs, texts, decoding, started)
            else:
                responses = self._greedy(reqs, texts, decoding, started)
            for i, response in zip(idxs, responses):
                out[i] = response
        return [r if r is not None else Response.failed("exception", "no output") for r in out]

    def _letters(self, req: Request, logprobs: Any, row: int) -> dict[str, float] | None:
        if not (req.want_logprobs and req.letters):
            return None
        return {letter: float(logprobs[row, tid]) for letter in req.letters if (tid := self._letter_token(letter)) is not None}

    def _greedy(self, batch: list[Request], prompts: list[str], decoding: Any, started: float) -> list[Response]:
        tok = self._tokenizer
        rows = hf_scoring.encode(tok, prompts)
        tokens, first = hf_scoring.greedy_tokens(self._model, rows, decoding.max_tokens, tok.pad_token_id, self._device, self._prefixes)
        elapsed = time.perf_counter() - started
        return [
            Response(
                text=tok.decode(new, skip_special_tokens=True),
                letter_logprobs=self._letters(req, first, row),
                prompt_tokens=len(ids),
                completion_tokens=sum(t != tok.pad_token_id for t in new),  # as generate() pads: the pad/EOS uncounted
                latency_s=elapsed,
            )
            for row, (req, ids, new) in enumerate(zip(batch, rows, tokens))
        ]

    def _sampled(self, batch: list[Request], prompts: list[str], decoding: Any, started: float) -> list[Response]:
        """Sampled answers through generate(), unchanged: its random stream is what makes a seeded sample repeat."""
        import torch

        tok = self._tokenizer
        enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self._device)
        seed = hashlib.sha256("".join(p for p in prompts).encode()).digest()
        torch.manual_seed(int.from_bytes(seed[:8], "little") + batch[0].sample)
        with torch.inference_mode():
            gen = self._model.generate(
                **enc,
                max_new_tokens=decoding.max_tokens,
                do_sample=True,
                temperature=decoding.temperature,
                top_p=decoding.top_p,
                top_k=None,
                pad_token_id=tok.pad_token_id,
                output_logits=True,
                return_dict_in_generate=True,
            )
        first = torch.log_softmax(gen.logits[0].float(), dim=-1)  # next-token logprobs at the answer position
        new_tokens = gen.sequences[:, enc["input_ids"].shape[1] :]
        elapsed = time.perf_counter() - started
        return [
            Response(
                text=tok.decode(new_tokens[row], skip_special_tokens=True),
                letter_logprobs=self._letters(req, first, row),
                prompt_tokens=int(enc["attention_mask"][row].sum()),
                completion_tokens=int((new_tokens[row] != tok.pad_token_id).sum()),
                latency_s=elapsed,
            )
            for row, req in enumerate(batch)
        ]

    def _score(self, batch: list[Request], prompts: list[str], mode: str, started: float) -> list[Response]:
        tok = self._tokenizer
        prompt_tokens = [len(ids) for ids in hf_scoring.encode(tok, prompts)]
        if mode == "letter-logprob":
            logprobs = hf_scoring.next_token_logprobs(self._model, tok, prompts, self._device, self._prefixes)
            elapsed = time.perf_counter() - started
            return [
                Response(
                    letter_logprobs={
                        letter: float(logprobs[row, tid]) for letter in req.letters if (tid := self._letter_token(letter)) is not None
                    },
                    prompt_tokens=n,
                    completion_tokens=0,
                    latency_s=elapsed,
                )
                for row, (req, n) in enumerate(zip(batch, prompt_tokens))
            ]
        scores = hf_scoring.option_logprobs(
            self._model, tok, [(p, req.continuations) for p, req in zip(prompts, batch)], self._device, self._prefixes
        )
        elapsed = time.perf_counter() - started
        return [
            Response(
                option_logprobs=tuple(lp for lp, _ in per_option),
                option_tokens=tuple(k for _, k in per_option),
                prompt_tokens=n,
                completion_tokens=0,
                latency_s=elapsed,
            )
            for per_option, n in zip(scores, prompt_tokens)
        ]

    def _prompt(self, req: Request) -> str:
        return weights.prompt_text(self._load_tokenizer(), req)
