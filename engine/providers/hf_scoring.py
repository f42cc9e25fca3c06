"""Scoring without generation on a transformers causal LM: batched forward passes, no sampling.

- `next_token_logprobs`: the distribution at the answer position (letter-logprob mode): one forward pass for
  a whole batch of prompts, keeping only the last position's logits.
- `continuation_logprobs`: the summed log-probability of each continuation after its prompt (likelihood mode),
  as lm-eval computes it. Every (prompt, continuation) pair of a batch is one row; rows are sorted by length
  and packed into forward passes under a token budget, keeping logits only for the continuation positions,
  so memory stays bounded whatever the vocabulary and option count.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# Per forward pass: padded tokens in, and (rows × kept positions × vocabulary) logit floats out.
TOKENS_PER_PASS = 16_384
LOGITS_PER_PASS = 64_000_000


def _positions(mask: Any) -> Any:
    # Left padding shifts every prompt; positions must count real tokens only, as generate() does.
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def _left_padded(rows: Sequence[Sequence[int]], pad_id: int, device: str) -> tuple[Any, Any]:
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r) :] = torch.tensor(r, dtype=torch.long)
        mask[i, width - len(r) :] = 1
    return ids.to(device), mask.to(device)


def next_token_logprobs(model: Any, tokenizer: Any, prompts: Sequence[str], device: str) -> Any:
    """Log-softmax of the next-token logits after each prompt: a (len(prompts), vocab) float tensor."""
    import torch

    rows = [tokenizer.encode(p, add_special_tokens=False) for p in prompts]
    ids, mask = _left_padded(rows, tokenizer.pad_token_id, device)
    with torch.inference_mode():
        logits = model(input_ids=ids, attention_mask=mask, position_ids=_positions(mask), logits_to_keep=1).logits
    return torch.log_softmax(logits[:, -1].float(), dim=-1)


def split_pair(tokenizer: Any, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """Token ids of context and continuation as lm-eval splits them: encode the whole, cut at the context.

    Trailing spaces of the context move onto the continuation, so " Paris" is scored as a word, not a space.
    """
    spaces = len(context) - len(context.rstrip())
    if spaces:
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    whole = tokenizer.encode(context + continuation, add_special_tokens=False)
    ctx = tokenizer.encode(context, add_special_tokens=False)
    if whole[: len(ctx)] != ctx:  # a token straddles the boundary: score the continuation on its own
        return ctx, tokenizer.encode(continuation, add_special_tokens=False)
    return ctx, whole[len(ctx) :]


def continuation_logprobs(
    model: Any, tokenizer: Any, pairs: Sequence[tuple[str, str]], device: str
) -> list[tuple[float, int]]:
    """(summed logprob, token count) of each continuation given its context, in the order of `pairs`."""
    import torch

    split = [split_pair(tokenizer, ctx, cont) for ctx, cont in pairs]
    bos = tokenizer.bos_token_id
    if bos is not None and getattr(tokenizer, "add_bos_token", False):  # as encode() with special tokens would
        split = [(ctx if ctx[:1] == [bos] else [bos, *ctx], cont) for ctx, cont in split]
    # A continuation needs a preceding token to be predicted from; an empty context gets the EOS token.
    split = [(ctx or [tokenizer.eos_token_id], cont) for ctx, cont in split]
    order = sorted(range(len(split)), key=lambda i: -(len(split[i][0]) + len(split[i][1])))
    vocab = model.get_output_embeddings().weight.shape[0]
    out: list[tuple[float, int]] = [(0.0, 0)] * len(split)
    start = 0
    while start < len(order):
        # Rows are sorted longest first, so the first row of a pass sets its width.
        width = len(split[order[start]][0]) + len(split[order[start]][1])
        keep = len(split[order[start]][1])
        end = start + 1
        while end < len(order):
            keep_next = max(keep, len(split[order[end]][1]))
            rows = end - start + 1
            if rows * width > TOKENS_PER_PASS or rows * keep_next * vocab > LOGITS_PER_PASS:
                break
            keep, end = keep_next, end + 1
        chunk = order[start:end]
        rows_ids = [split[i][0] + split[i][1] for i in chunk]
        ids, mask = _left_padded(rows_ids, tokenizer.pad_token_id, device)
        with torch.inference_mode():
            # Logits at the last `keep` + 1 positions: position t predicts token t + 1.
            logits = model(input_ids=ids, attention_mask=mask, position_ids=_positions(mask), logits_to_keep=keep + 1).logits
            logprobs = torch.log_softmax(logits[:, :-1].float(), dim=-1)
        for row, i in enumerate(chunk):
            cont = split[i][1]
            n = len(cont)
            if n == 0:
                out[i] = (0.0, 0)
                continue
            targets = torch.tensor(cont, device=logprobs.device)
            picked = logprobs[row, keep - n :].gather(-1, targets[:, None]).squeeze(-1)
            out[i] = (float(picked.sum()), n)
        start = end
    return out
