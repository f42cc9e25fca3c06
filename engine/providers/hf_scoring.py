"""Forward passes on a transformers causal LM: scoring, and greedy decoding, with persona-prefix reuse.

- `next_token_logprobs`: the distribution at the answer position (letter-logprob mode): one forward pass per
  prefix group of a batch, keeping only the last position's logits.
- `option_logprobs`: the summed log-probability of each option after its prompt (likelihood mode), as lm-eval
  computes it, with the prompt computed once per question rather than once per option (see its docstring).
  Rows are sorted by length and packed into forward passes under token and mask budgets, and the LM head runs
  only at the positions that predict option tokens, so memory stays bounded whatever the vocabulary.
- `greedy_tokens`: greedy decoding for letter mode, token for token what `generate(do_sample=False)` returns.

All three reuse a shared prompt prefix (persona-prefix reuse, the in-process equivalent of vLLM's prefix
caching): prompts are tokenized whole, rows that share a long token prefix (chat template + persona, since
the plan is persona-major) are grouped, the prefix's KV cache is computed once (and kept across batches in a
`PrefixStore`), and only each row's suffix runs. Attention is causal, so a prefix's keys and values do not
depend on what follows it: the logits equal a full-prompt forward pass to float rounding.
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


# A shared prefix shorter than this is not worth a cache: the bookkeeping costs more than the tokens saved.
MIN_PREFIX = 8
# What one more forward call costs, in tokens of compute, when choosing how to split rows into prefix groups.
GROUP_COST = 8


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two token id sequences."""
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def prefix_groups(rows: Sequence[Sequence[int]], limits: Sequence[int] | None = None) -> list[tuple[list[int], int]]:
    """Rows partitioned into (row indices, shared prefix length) groups, every row in exactly one group.

    The prefix is the longest common token prefix of the group's whole prompts (never pieces tokenized
    apart, so no token straddles the cut), capped at `limits[i]` per row (default: its length - 1, so every
    row keeps a token to run); 0 means no reuse. Rows are sorted by token ids, so rows sharing a prefix are
    neighbours, and cut into the runs that compute the fewest tokens (each run: its prefix once, every row's
    suffix, GROUP_COST per call), an O(n²) dynamic programme over the batch. Groups come back in the order of
    their last row, so the group that the next batch continues (plan order is persona-major) runs last and its
    prefix stays in the PrefixStore.
    """
    cap = list(limits) if limits is not None else [len(r) - 1 for r in rows]
    order = sorted(range(len(rows)), key=lambda i: rows[i])
    n = len(order)
    adjacent = [0] + [common_prefix(rows[order[k - 1]], rows[order[k]]) for k in range(1, n)]
    best = [0.0] + [float("inf")] * n  # best[j]: least cost of the first j sorted rows
    cut: list[tuple[int, int]] = [(0, 0)] * (n + 1)  # (start of the last run, its prefix)
    for j in range(1, n + 1):
        last = order[j - 1]
        shared, tokens = max(cap[last], 0), 0
        for i in range(j, 0, -1):  # the run order[i-1 : j]
            row = order[i - 1]
            if i < j:
                shared = min(shared, cap[row], adjacent[i])
            tokens += len(rows[row])
            used = shared if shared >= MIN_PREFIX else 0
            cost = best[i - 1] + tokens - (j - i) * used + GROUP_COST
            if cost < best[j]:
                best[j], cut[j] = cost, (i - 1, used)
    groups: list[tuple[list[int], int]] = []
    j = n
    while j:
        i, used = cut[j]
        groups.append((order[i:j], used))
        j = i
    return sorted(groups, key=lambda g: max(g[0]))


class PrefixStore:
    """The KV cache of the last prefix computed, kept across batches: a persona's questions span many batches.

    Holds one prefix (batch 1): plan order is persona-major, so the next batch almost always shares it. A
    request for a prefix that shares most of its tokens with the held one crops or extends it; otherwise it
    is computed anew. Only for models whose cache is plain full attention on every layer (no sliding window,
    no recurrent state), where a cropped cache equals one computed from the shorter prefix.
    """

    def __init__(self) -> None:
        self.ids: list[int] = []
        self.kv: list[tuple[Any, Any]] = []  # per layer: keys, values of shape (1, kv heads, len(ids), head dim)
        self.computed_tokens = 0  # prefix tokens run through the model
        self.reused_tokens = 0  # prefix tokens served from the store
        self.suffix_tokens = 0  # tokens run after a prefix (or whole, in groups without one)

    def get(self, model: Any, ids: Sequence[int], device: str) -> list[tuple[Any, Any]]:
        """Per-layer (keys, values) of exactly `ids`, computing only what the held prefix lacks."""
        import torch

        held = common_prefix(self.ids, ids)
        if held < MIN_PREFIX or 2 * held < len(ids):
            held = 0
        self.reused_tokens += held
        if held < len(ids):
            rest = torch.tensor([list(ids[held:])], dtype=torch.long, device=device)
            positions = torch.arange(held, len(ids), device=device)[None]
            past = _cache(model, [(k[:, :, :held], v[:, :, :held]) for k, v in self.kv], 1) if held else None
            with torch.inference_mode():
                out = model(input_ids=rest, position_ids=positions, use_cache=True, logits_to_keep=1, **_cache_arg(model, past))
            self.kv = [(layer.keys, layer.values) for layer in _out_cache(out).layers]
            self.computed_tokens += len(ids) - held
        else:
            self.kv = [(k[:, :, : len(ids)], v[:, :, : len(ids)]) for k, v in self.kv]
        self.ids = list(ids)
        return self.kv


def reusable(model: Any) -> bool:
    """Whether a prefix's KV cache can be cropped and shared: full attention on every layer, nothing recurrent,
    and a transformers whose DynamicCache keeps per-layer tensors (`layers`, transformers >= 4.56); else every
    prompt runs whole, as before."""
    from transformers import DynamicCache

    config = model.config.get_text_config(decoder=True)
    kinds = getattr(config, "layer_types", None)  # where given, it says which layers slide (Qwen2 sets a window it never uses)
    full = set(kinds) == {"full_attention"} if kinds else not getattr(config, "sliding_window", None)
    return full and hasattr(DynamicCache(), "layers")


def _cache_arg(model: Any, cache: Any) -> dict[str, Any]:
    """The forward() keyword for a KV cache: `cache` in newer transformers, `past_key_values` before it."""
    import inspect

    name = "cache" if "cache" in inspect.signature(type(model).forward).parameters else "past_key_values"
    return {name: cache}


def _out_cache(out: Any) -> Any:
    return out.cache if "cache" in out else out.past_key_values


def _cache(model: Any, kv: Sequence[tuple[Any, Any]], batch: int) -> Any:
    """A DynamicCache holding `kv` for each of `batch` rows; the first update copies, the prefix stays intact."""
    from transformers import DynamicCache

    return DynamicCache(ddp_cache_data=[(k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1)) for k, v in kv], config=model.config)


def _suffix_pass(model: Any, rows: Sequence[Sequence[int]], shared: int, pad_id: int, device: str, store: PrefixStore | None) -> Any:
    """Forward pass of rows that share their first `shared` tokens: the prefix from `store`, the suffixes
    left-padded after it. Returns the model output (logits of the last position, and its cache)."""
    import torch

    suffixes = [r[shared:] for r in rows]
    if store is not None:
        store.suffix_tokens += sum(map(len, suffixes))
    ids, mask = _left_padded(suffixes, pad_id, device)
    past = None
    if shared:
        assert store is not None
        past = _cache(model, store.get(model, rows[0][:shared], device), len(rows))
        # Padding sits between prefix and suffix: the mask hides it; positions count real tokens only.
        mask = torch.cat([torch.ones((len(rows), shared), dtype=mask.dtype, device=device), mask], dim=1)
    positions = _positions(mask)[:, shared:]
    return model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1, **_cache_arg(model, past))


def encode(tokenizer: Any, prompts: Sequence[str]) -> list[list[int]]:
    """Whole prompts to token ids, as every mode tokenizes them (the chat template adds the special tokens)."""
    return [tokenizer.encode(p, add_special_tokens=False) for p in prompts]


def next_token_logprobs(model: Any, tokenizer: Any, prompts: Sequence[str], device: str, store: PrefixStore | None = None) -> Any:
    """Log-softmax of the next-token logits after each prompt: a (len(prompts), vocab) float tensor.

    With a `store` (and a model where `reusable`), rows sharing a prefix run only their suffixes against it.
    """
    import torch

    rows = encode(tokenizer, prompts)
    groups = prefix_groups(rows) if store is not None and reusable(model) else [(list(range(len(rows))), 0)]
    out: list[Any] = [None] * len(rows)
    with torch.inference_mode():
        for idxs, shared in groups:
            logits = _suffix_pass(model, [rows[i] for i in idxs], shared, tokenizer.pad_token_id, device, store).logits
            for row, i in enumerate(idxs):
                out[i] = logits[row, -1]
    return torch.log_softmax(torch.stack(out).float(), dim=-1)


def greedy_tokens(
    model: Any, rows: Sequence[Sequence[int]], max_new: int, pad_id: int, device: str, store: PrefixStore | None = None
) -> tuple[list[list[int]], Any]:
    """Greedy decoding of each prompt, as `generate(do_sample=False)` with no logits processors decodes.

    Returns (new tokens per row: up to and including the first EOS, then nothing) and the log-softmax of
    the first step's logits, a (len(rows), vocab) float tensor. Rows sharing a prefix decode together
    against its cache, each group in lockstep until every row has stopped or `max_new` tokens are out.
    """
    import torch

    eos = model.generation_config.eos_token_id
    stops = set(eos if isinstance(eos, list) else [] if eos is None else [eos])
    groups = prefix_groups(rows) if store is not None and reusable(model) else [(list(range(len(rows))), 0)]
    tokens: list[list[int]] = [[] for _ in rows]
    first: list[Any] = [None] * len(rows)
    with torch.inference_mode():
        for idxs, shared in groups:
            out = _suffix_pass(model, [rows[i] for i in idxs], shared, pad_id, device, store)
            width = max(len(rows[i]) for i in idxs)
            lengths = torch.tensor([len(rows[i]) for i in idxs], device=device)
            done = [False] * len(idxs)
            for step in range(max_new):
                logits = out.logits[:, -1]
                if step == 0:
                    for row, i in enumerate(idxs):
                        first[i] = logits[row]
                picked = logits.argmax(dim=-1)
                for row, i in enumerate(idxs):
                    if not done[row]:
                        tid = int(picked[row])
                        tokens[i].append(tid)
                        done[row] = tid in stops
                if all(done) or step == max_new - 1:
                    break
                full = _decode_mask(rows, idxs, shared, width, step + 1, device)
                position = (lengths + step)[:, None]
                out = model(input_ids=picked[:, None], attention_mask=full, position_ids=position, use_cache=True, logits_to_keep=1, **_cache_arg(model, _out_cache(out)))
    return tokens, torch.log_softmax(torch.stack(first).float(), dim=-1)


def _decode_mask(rows: Sequence[Sequence[int]], idxs: Sequence[int], shared: int, width: int, steps: int, device: str) -> Any:
    """The 2D attention mask of a group after `steps` decoded tokens: prefix, left-padded suffixes, new tokens."""
    import torch

    mask = torch.ones((len(idxs), width + steps), dtype=torch.long, device=device)
    for row, i in enumerate(idxs):
        mask[row, shared : shared + width - len(rows[i])] = 0
    return mask


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
    model: Any, tokenizer: Any, requests: Sequence[tuple[str, Sequence[str]]], device: str, store: PrefixStore | None = None
) -> list[list[tuple[float, int]]]:
    """(summed logprob, token count) of each option given its context, per request, in order.

    One row per request, not per option: the context once, then every option after it. A 4D attention mask
    lets each option see the context and itself only, and position ids restart after the context for each
    option, so every option is scored exactly as if it followed the context alone, while the context (the
    persona and question, most of the tokens) is computed once instead of once per option. With a `store`,
    rows sharing a context prefix (the persona) run against its cached KV and only their rest is packed.
    """
    import torch

    units = [_packed(tokenizer, context, options) for context, options in requests]
    if store is not None and reusable(model):
        # The prefix ends before each context's last token: that token predicts the first option token.
        groups = prefix_groups([u.ids for u in units], [u.context - 1 for u in units])
    else:
        groups = [(list(range(len(units))), 0)]
    out: list[list[tuple[float, int]]] = [[] for _ in units]
    for idxs, shared in groups:
        kv = store.get(model, units[idxs[0]].ids[:shared], device) if shared and store is not None else None
        rest = {i: units[i].after(shared) for i in idxs}
        order = sorted(idxs, key=lambda i: -len(rest[i].ids))
        start = 0
        while start < len(order):
            width = len(rest[order[start]].ids)  # longest first: the first row of a pass sets its width
            end = start + 1
            while end < len(order) and (end - start + 1) * width <= TOKENS_PER_PASS and (end - start + 1) * width * (shared + width) <= MASK_PER_PASS:
                end += 1
            chunk = [rest[i] for i in order[start:end]]
            past = _cache(model, kv, len(chunk)) if kv is not None else None
            with torch.inference_mode():
                scored = _score_pass(model, chunk, width, tokenizer.pad_token_id, device, shared, past)
            for i, result in zip(order[start:end], scored):
                out[i] = result
            start = end
    return out


class _Unit:
    """One request packed as a row: context, then each option, with the positions and targets to score."""

    __slots__ = ("context", "ids", "positions", "spans")

    def __init__(self, context: list[int], options: list[list[int]]) -> None:
        self.context = len(context)
        self.ids = list(context)
        self.positions = list(range(len(context)))
        self.spans: list[tuple[int, int]] = []  # (start, length) of each option in the row
        for option in options:
            self.spans.append((len(self.ids), len(option)))
            self.ids += option
            self.positions += range(len(context), len(context) + len(option))

    def after(self, shared: int) -> _Unit:
        """The same row without its first `shared` context tokens (they come from a prefix cache)."""
        if not shared:
            return self
        rest = _Unit([], [])
        rest.context = self.context - shared
        rest.ids, rest.positions = self.ids[shared:], self.positions[shared:]
        rest.spans = [(s - shared, n) for s, n in self.spans]
        return rest


def _packed(tokenizer: Any, context: str, options: Sequence[str]) -> _Unit:
    splits = [split_pair(tokenizer, context, option) for option in options]
    # split_pair cuts every option at the same place (the context without trailing spaces), so one context serves.
    ctx = splits[0][0] if splits else tokenizer.encode(context, add_special_tokens=False)
    bos = tokenizer.bos_token_id
    if bos is not None and getattr(tokenizer, "add_bos_token", False) and ctx[:1] != [bos]:  # as encode() with special tokens would
        ctx = [bos, *ctx]
    # An option needs a preceding token to be predicted from. An empty context (lm-eval's CrowS-Pairs prompt)
    # gets lm-eval's `prefix_token_id`: BOS, or EOS for a tokenizer without one (lm_eval/models/huggingface.py
    # and `loglikelihood` in lm_eval/api/model.py, EleutherAI/lm-evaluation-harness @ 4e7e0d4).
    prefix = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    return _Unit(ctx or [prefix], [cont for _, cont in splits])


def _score_pass(
    model: Any, units: list[_Unit], width: int, pad_id: int, device: str, shared: int = 0, past: Any = None
) -> list[list[tuple[float, int]]]:
    """Score one pass of packed rows; with `past`, every row continues the same `shared`-token prefix."""
    import torch

    rows = len(units)
    ids = torch.full((rows, width), pad_id, dtype=torch.long)
    positions = torch.zeros((rows, width), dtype=torch.long)
    allowed = torch.zeros((rows, width, shared + width), dtype=torch.bool)
    allowed[:, :, :shared] = True  # the prefix is context: every slot may see it
    eye = torch.eye(width, dtype=torch.bool)
    allowed[:, :, shared:] = eye  # a padding slot sees itself only, so its softmax stays finite; nothing real sees it
    rows_at, cols_at, targets, owners = [], [], [], []
    for r, unit in enumerate(units):
        pad = width - len(unit.ids)
        ids[r, pad:] = torch.tensor(unit.ids)
        positions[r, pad:] = torch.tensor(unit.positions)
        first = unit.spans[0][0] if unit.spans else len(unit.ids)
        ctx, ctx_keys = slice(pad, pad + first), slice(shared + pad, shared + pad + first)
        allowed[r, ctx, ctx_keys] = torch.tril(torch.ones((first, first), dtype=torch.bool))
        for k, (s, n) in enumerate(unit.spans):
            span, span_keys = slice(pad + s, pad + s + n), slice(shared + pad + s, shared + pad + s + n)
            allowed[r, span, ctx_keys] = True
            allowed[r, span, span_keys] = torch.tril(torch.ones((n, n), dtype=torch.bool))
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
    decoder = model.get_decoder()
    hidden = decoder(
        input_ids=ids.to(device), attention_mask=mask, position_ids=positions.to(device), use_cache=past is not None, **_cache_arg(decoder, past)
    ).last_hidden_state
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
