"""Local generation and scoring with HF transformers on torch: batched, left-padded, one forward pass per batch.

letter-logprob and likelihood requests generate nothing: they go to engine.providers.hf_scoring.

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
from engine.providers import hf_scoring, weights
from engine.providers.in_process import InProcessProvider
from engine.request import Request, Response


class LocalProvider(InProcessProvider):
    name = "local"

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self._model: Any = None
        self._tokenizer: Any = None
        self._device: str | None = None
        self._load_lock = threading.Lock()
        self._letter_ids: dict[str, int] = {}

    # -- loading -----------------------------------------------------------------------------------

    def _load(self) -> None:
        with self._load_lock:
            if self._model is not None:
                return
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # our own progress bar is the one a user watches
            torch.set_num_threads(os.cpu_count() or 1)
            device = self.config.device
            if device == "auto":
                device = "cuda" if torch.cuda.is_available() else "cpu"
            dtype = getattr(torch, self.config.dtype)
            src = self._source
            if src.kind == "gguf":
                folder = weights.gguf_checkpoint(src, self.config.dtype)
                tok = AutoTokenizer.from_pretrained(folder)
                model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype)
            else:
                kwargs = {"revision": src.revision} if src.revision else {}
                tok = AutoTokenizer.from_pretrained(src.location, **kwargs)
                model = AutoModelForCausalLM.from_pretrained(src.location, dtype=dtype, **kwargs)
            tok.padding_side = "left"  # decoder-only batching: prompts end where generation starts
            if tok.pad_token is None:
                tok.pad_token = tok.eos_token
            self._tokenizer = tok
            self._model = model.to(device).eval()
            self._device = device

    def _letter_token(self, letter: str) -> int | None:
        if letter not in self._letter_ids:
            ids = self._tokenizer.encode(letter, add_special_tokens=False)
            self._letter_ids[letter] = ids[0] if len(ids) == 1 else -1
        tid = self._letter_ids[letter]
        return None if tid < 0 else tid

    # -- generation --------------------------------------------------------------------------------

    def _run_batch(self, batch: list[Request]) -> list[Response]:
        self._load()
        import torch

        tok, model = self._tokenizer, self._model
        started = time.perf_counter()
        # Requests in one batch share mode and decoding in practice (one benchmark, one model config); group anyway.
        groups: dict[Any, list[int]] = {}
        for i, req in enumerate(batch):
            groups.setdefault((req.mode, req.decoding), []).append(i)
        out: list[Response | None] = [None] * len(batch)
        for (mode, decoding), idxs in groups.items():
            if mode in ("letter-logprob", "likelihood"):  # scored in forward passes, nothing generated
                scored = self._score([batch[i] for i in idxs], mode, started)
                for i, response in zip(idxs, scored):
                    out[i] = response
                continue
            prompts = [self._prompt(batch[i]) for i in idxs]
            enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self._device)
            sample = decoding.temperature > 0
            if sample:
                seed = hashlib.sha256("".join(p for p in prompts).encode()).digest()
                torch.manual_seed(int.from_bytes(seed[:8], "little") + batch[idxs[0]].sample)
            with torch.inference_mode():
                gen = model.generate(
                    **enc,
                    max_new_tokens=decoding.max_tokens,
                    do_sample=sample,
                    temperature=decoding.temperature if sample else None,
                    top_p=decoding.top_p if sample else None,
                    top_k=None,
                    pad_token_id=tok.pad_token_id,
                    output_logits=True,
                    return_dict_in_generate=True,
                )
            first = torch.log_softmax(gen.logits[0].float(), dim=-1)  # next-token logprobs at the answer position
            new_tokens = gen.sequences[:, enc["input_ids"].shape[1] :]
            elapsed = time.perf_counter() - started
            for row, i in enumerate(idxs):
                req = batch[i]
                toks = new_tokens[row]
                n_new = int((toks != tok.pad_token_id).sum()) if tok.pad_token_id is not None else len(toks)
                letter_lp = None
                if req.want_logprobs and req.letters:
                    letter_lp = {
                        letter: float(first[row, tid]) for letter in req.letters if (tid := self._letter_token(letter)) is not None
                    }
                out[i] = Response(
                    text=tok.decode(toks, skip_special_tokens=True),
                    letter_logprobs=letter_lp,
                    prompt_tokens=int(enc["attention_mask"][row].sum()),
                    completion_tokens=n_new,
                    latency_s=elapsed,
                )
        return [r for r in out if r is not None]

    def _score(self, batch: list[Request], mode: str, started: float) -> list[Response]:
        tok, prompts = self._tokenizer, [self._prompt(r) for r in batch]
        prompt_tokens = [len(tok.encode(p, add_special_tokens=False)) for p in prompts]
        if mode == "letter-logprob":
            logprobs = hf_scoring.next_token_logprobs(self._model, tok, prompts, self._device)
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
        scores = hf_scoring.option_logprobs(self._model, tok, [(p, req.continuations) for p, req in zip(prompts, batch)], self._device)
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
        return weights.chat_prompt(self._tokenizer, req.messages)
