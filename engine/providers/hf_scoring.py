"""Scoring without generation on a transformers causal LM: batched forward passes, no sampling.

- `next_token_logprobs`: the distribution at the answer position (letter-logprob mode): one forward pass for
  a whole batch of prompts, keeping only the last position's logits.
- `option_logprobs`: the summed log-probability of each option after its prompt (likelihood mode), as lm-eval
  computes it, with the prompt computed once per question rather than once per option (see its docstring).
  Rows are sorted by length and packed into forward passes under token and mask budgets, and the LM head runs
  only at the positions that predict option tokens, so memory stays bounded whatever the vocabulary.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# Per forward pass: padded tokens in, and attention-mask cells (rows × width²); LM-head rows per slice.
TOKENS_PER_PASS = 16_384
MASK_PER_PASS = 64_000_000
_HEAD_ROWS = 1024


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


def option_logprobs(
    model: Any, tokenizer: Any, requests: Sequence[tuple[str, Sequence[str]]], device: str
) -> list[list[tuple[float, int]]]:
    """(summed logprob, token count) of each option given its context, per request, in order.

    One row per request, not per option: the context once, then every option after it. A 4D attention mask
    lets each option see the context and itself only, and position ids restart after the context for each
    option, so every option is scored exactly as if it followed the context alone, while the context (the
    persona and question, most of the tokens) is computed once instead of once per option.
    """
    import torch

    units = [_packed(tokenizer, context, options) for context, options in requests]
    order = sorted(range(len(units)), key=lambda i: -len(units[i].ids))
    out: list[list[tuple[float, int]]] = [[] for _ in units]
    start = 0
    while start < len(order):
        width = len(units[order[start]].ids)  # longest first: the first row of a pass sets its width
        end = start + 1
        while end < len(order) and (end - start + 1) * width <= TOKENS_PER_PASS and (end - start + 1) * width * width <= MASK_PER_PASS:
            end += 1
        chunk = [units[i] for i in order[start:end]]
        with torch.inference_mode():
            scored = _score_pass(model, chunk, width, tokenizer.pad_token_id, device)
        for i, result in zip(order[start:end], scored):
            out[i] = result
        start = end
    return out


class _Unit:
    """One request packed as a row: context, then each option, with the positions and targets to score."""

    __slots__ = ("ids", "positions", "spans")

    def __init__(self, context: list[int], options: list[list[int]]) -> None:
        self.ids = list(context)
        self.positions = list(range(len(context)))
        self.spans: list[tuple[int, int]] = []  # (start, length) of each option in the row
        for option in options:
            self.spans.append((len(self.ids), len(option)))
            self.ids += option
            self.positions += range(len(context), len(context) + len(option))


def _packed(tokenizer: Any, context: str, options: Sequence[str]) -> _Unit:
    splits = [split_pair(tokenizer, context, option) for option in options]
    # split_pair cuts every option at the same place (the context without trailing spaces), so one context serves.
    ctx = splits[0][0] if splits else tokenizer.encode(context, add_special_tokens=False)
    bos = tokenizer.bos_token_id
    if bos is not None and getattr(tokenizer, "add_bos_token", False) and ctx[:1] != [bos]:  # as encode() with special tokens would
        ctx = [bos, *ctx]
    # An option needs a preceding token to be predicted from; an empty context gets the EOS token.
    return _Unit(ctx or [tokenizer.eos_token_id], [cont for _, cont in splits])


def _score_pass(model: Any, units: list[_Unit], width: int, pad_id: int, device: str) -> list[list[tuple[float, int]]]:
    import torch

    rows = len(units)
    ids = torch.full((rows, width), pad_id, dtype=torch.long)
    positions = torch.zeros((rows, width), dtype=torch.long)
    allowed = torch.zeros((rows, width, width), dtype=torch.bool)
    eye = torch.eye(width, dtype=torch.bool)
    allowed[:] = eye  # a padding slot sees itself only, so its softmax stays finite; nothing real sees it
    rows_at, cols_at, targets, owners = [], [], [], []
    for r, unit in enumerate(units):
        pad = width - len(unit.ids)
        ids[r, pad:] = torch.tensor(unit.ids)
        positions[r, pad:] = torch.tensor(unit.positions)
        first = unit.spans[0][0] if unit.spans else len(unit.ids)
        ctx = slice(pad, pad + first)
        allowed[r, ctx, ctx] = torch.tril(torch.ones((first, first), dtype=torch.bool))
        for k, (s, n) in enumerate(unit.spans):
            span = slice(pad + s, pad + s + n)
            allowed[r, span, ctx] = True
            allowed[r, span, span] = torch.tril(torch.ones((n, n), dtype=torch.bool))
            # Token t of an option is predicted at the slot before it: the context's last token for t = 0.
            for t in range(n):
                rows_at.append(r)
                cols_at.append(pad + (first - 1 if t == 0 else s + t - 1))
                targets.append(unit.ids[s + t])
                owners.append((r, k))
    dtype = next(model.parameters()).dtype
    if model.config._attn_implementation == "sdpa":
        mask = allowed[:, None].to(device)
    else:  # eager and others add the mask to the scores
        mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill_(~allowed, torch.finfo(dtype).min)[:, None].to(device)
    hidden = model.get_decoder()(input_ids=ids.to(device), attention_mask=mask, position_ids=positions.to(device)).last_hidden_state
    picked = _target_logprobs(model, hidden[torch.tensor(rows_at), torch.tensor(cols_at)], torch.tensor(targets, device=device))
    sums = [[0.0] * len(unit.spans) for unit in units]
    for (r, k), lp in zip(owners, picked.tolist()):
        sums[r][k] += lp
    return [[(sums[r][k], n) for k, (_, n) in enumerate(unit.spans)] for r, unit in enumerate(units)]


def _target_logprobs(model: Any, hidden: Any, targets: Any) -> Any:
    """log p(target) at each gathered position, through the LM head in slices (a vocabulary row per position)."""
    import torch

    head = model.get_output_embeddings()
    cap = getattr(model.config, "final_logit_softcapping", None)
    out = []
    for lo in range(0, hidden.shape[0], _HEAD_ROWS):
        logits = head(hidden[lo : lo + _HEAD_ROWS]).float()
        if cap:
            logits = torch.tanh(logits / cap) * cap
        out.append(torch.log_softmax(logits, dim=-1).gather(-1, targets[lo : lo + _HEAD_ROWS, None]).squeeze(-1))
    return torch.cat(out) if out else torch.zeros(0)
