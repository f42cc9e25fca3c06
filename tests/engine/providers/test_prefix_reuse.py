"""Persona-prefix reuse on the transformers backend (issue 17) and per-prompt template failures (issue 12 item 14).

A tiny random-weight Llama with a real character-level tokenizer is built on the spot (seconds, nothing
downloaded): throughput aside, reuse must not change a single score, so every mode is compared against a
plain full-prompt forward pass (and greedy text against `generate()`).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from engine.config import LimitsConfig, ModelConfig
from engine.providers import create_provider, hf_scoring, weights
from engine.request import Decoding, Request

WORDS = ["[UNK]", "[PAD]", "[EOS]", "<|im_start|>", "<|im_end|>", *"ABCDEFGHIJKLMNOPQRSTUVWXYZ", *"abcdefghijklmnopqrstuvwxyz", *"0123456789 .,?:()-'\n"]
CHAT = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
NO_SYSTEM = "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('this chat template takes no system turn') }}{% endif %}{% endfor %}" + CHAT


def tiny_checkpoint(folder: Path, template: str = CHAT) -> Path:
    """A 2-layer random-weight Llama and its character tokenizer, saved as a checkpoint folder."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(dict.fromkeys(WORDS))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", eos_token="[EOS]")
    fast.chat_template = template
    config = LlamaConfig(
        vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=2048, pad_token_id=vocab["[PAD]"], eos_token_id=vocab["[EOS]"],
        bos_token_id=None,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tiny_checkpoint(tmp_path_factory.mktemp("tiny"))
    return create_provider(ModelConfig(id="tiny", provider="local", model=str(folder), max_tokens=5, limits=LimitsConfig(batch_size=16)))


PERSONAS = ["You are a 41 year old woman from Ohio who never attends religious services.", "You are a 70 year old man from Lagos."]
QUESTIONS = ["Which fruit is red?\nA. Apple\nB. Pear\nC. Plum", "Which bird swims?\nA. Gull\nB. Duck", "Pick one.\nA. x\nB. y\nC. z\nD. w"]


def _request(question: str, persona: str | None, mode: str, placement: str = "system") -> Request:
    if persona is None:
        messages: tuple[tuple[str, str], ...] = (("user", question),)
    elif placement == "system":
        messages = (("system", persona), ("user", question))
    else:
        messages = (("user", f"{persona}\n\n{question}"),)
    letters = tuple(line[0] for line in question.splitlines() if len(line) > 2 and line[1] == ".")
    return Request(
        messages, Decoding(0.0, 5, 1.0, None), 0, mode, letters, mode != "likelihood",
        tuple(f" {letter}" for letter in letters) if mode == "likelihood" else (),
    )


def _grid_batch(mode: str) -> list[Request]:
    """Persona-major like the plan, both placements, and baseline rows sharing only the chat template."""
    return [_request(q, p, mode, placement) for placement in ("system", "user") for p in PERSONAS for q in QUESTIONS] + [
        _request(q, None, mode) for q in QUESTIONS
    ]


def test_prefix_groups_split_at_the_longest_common_prefix_hand_worked():
    persona_a = list(range(100, 120))  # 20 shared tokens
    rows = [persona_a + [1, 2], persona_a + [3], persona_a[:9] + [7, 7, 7], [5, 6], persona_a + [1, 4, 4]]
    # Sorted: 3, 2, 0, 4, 1. Row 2 shares 9 tokens with A's rows: joining them would cut their shared 20 to 9
    # (cost 78 - 3*9 + 8 = 59 against 12 + 8 + 66 - 2*20 + 8 = 54 apart); rows 3 and 2 share nothing, and one
    # call for both (14 + 8) beats two (2 + 8 + 12 + 8). Groups come in the order of their last row.
    assert hf_scoring.prefix_groups(rows) == [([3, 2], 0), ([0, 4, 1], 20)]
    # A limit per row caps the prefix (likelihood keeps each context's last token out of it).
    assert hf_scoring.prefix_groups(rows, [5, 5, 5, 1, 19]) == [([3, 2, 0, 4, 1], 0)]
    assert hf_scoring.prefix_groups(rows, [30, 15, 30, 1, 30]) == [([3, 2], 0), ([0, 4, 1], 15)]
    assert hf_scoring.prefix_groups([persona_a + [1], persona_a + [2]]) == [([0, 1], 20)]
    assert hf_scoring.common_prefix([1, 2, 3], [1, 2]) == 2 and hf_scoring.common_prefix([], [1]) == 0


def test_prefix_store_crops_extends_and_recomputes(tiny):
    tiny._load()
    store, model = hf_scoring.PrefixStore(), tiny._model
    base = list(range(10, 40))  # 30 tokens
    kv = store.get(model, base, "cpu")
    assert kv[0][0].shape[2] == 30 and (store.computed_tokens, store.reused_tokens) == (30, 0)
    store.get(model, base[:20], "cpu")  # a crop: nothing computed
    assert (store.computed_tokens, store.reused_tokens) == (30, 20)
    extended = store.get(model, base[:20] + [5, 6, 7], "cpu")  # 20 held, 3 computed
    assert (store.computed_tokens, store.reused_tokens) == (33, 40)
    fresh = hf_scoring.PrefixStore().get(model, base[:20] + [5, 6, 7], "cpu")  # the same prefix from scratch
    for (k1, v1), (k2, v2) in zip(extended, fresh):
        assert (k1 - k2).abs().max() < 1e-5 and (v1 - v2).abs().max() < 1e-5
    store.get(model, [1, 2, 3, 4, 5, 6, 7, 8, 9], "cpu")  # nothing in common: recomputed
    assert (store.computed_tokens, store.reused_tokens) == (42, 40)


def _full_pass_logprobs(provider, requests: list[Request]):
    """The reference: each prompt alone, tokenized whole, one plain forward pass, no cache, no padding."""
    import torch

    out = []
    for req in requests:
        ids = provider._tokenizer.encode(weights.chat_prompt(provider._tokenizer, req.messages), add_special_tokens=False)
        with torch.inference_mode():
            logits = provider._model(input_ids=torch.tensor([ids])).logits[0, -1]
        out.append(torch.log_softmax(logits.float(), dim=-1))
    return out


@pytest.mark.parametrize("mode", ["letter", "letter-logprob", "likelihood"])
def test_scores_with_prefix_reuse_equal_a_full_prompt_pass(tiny, mode):
    requests = _grid_batch(mode)
    tiny._prefixes = None
    plain = asyncio.run(tiny.complete(requests))
    tiny._prefixes = hf_scoring.PrefixStore()
    reused = asyncio.run(tiny.complete(requests[:7])) + asyncio.run(tiny.complete(requests[7:]))  # two batches, as the scheduler cuts them
    assert tiny._prefixes.reused_tokens > 0  # the second batch continued the first one's persona prefix
    assert all(r.ok for r in plain + reused)
    reference = _full_pass_logprobs(tiny, requests)
    for req, a, b, ref in zip(requests, plain, reused, reference):
        assert (a.text, a.prompt_tokens, a.completion_tokens) == (b.text, b.prompt_tokens, b.completion_tokens)
        if mode != "likelihood":
            for letter in req.letters:
                tid = tiny._letter_token(letter)
                assert abs(b.letter_logprobs[letter] - float(ref[tid])) < 1e-4
                assert abs(a.letter_logprobs[letter] - float(ref[tid])) < 1e-4
        else:
            for lp_a, lp_b in zip(a.option_logprobs, b.option_logprobs):
                assert abs(lp_a - lp_b) < 1e-4
            for cont, lp, n in zip(req.continuations, b.option_logprobs, b.option_tokens):
                assert (lp, n) == pytest.approx(_full_pass_option(tiny, req, cont), abs=1e-4)


def _full_pass_option(provider, req: Request, continuation: str) -> tuple[float, int]:
    """The reference for likelihood: prompt + option as one sequence, plain forward pass, the option's
    tokens' logprobs summed (the prompt's trailing newline moves onto the option, as lm-eval splits)."""
    import torch

    prompt = weights.chat_prompt(provider._tokenizer, req.messages)
    context = prompt.rstrip()
    whole = provider._tokenizer.encode(prompt + continuation, add_special_tokens=False)
    n_ctx = len(provider._tokenizer.encode(context, add_special_tokens=False))
    with torch.inference_mode():
        logprobs = torch.log_softmax(provider._model(input_ids=torch.tensor([whole])).logits[0].float(), dim=-1)
    return sum(float(logprobs[k - 1, whole[k]]) for k in range(n_ctx, len(whole))), len(whole) - n_ctx


def test_greedy_text_equals_generate(tiny):
    import torch

    requests = _grid_batch("letter")
    tiny._prefixes = hf_scoring.PrefixStore()
    responses = asyncio.run(tiny.complete(requests))
    tok = tiny._tokenizer
    for req, resp in zip(requests, responses):
        ids = tok.encode(weights.chat_prompt(tok, req.messages), add_special_tokens=False)
        with torch.inference_mode():
            gen = tiny._model.generate(input_ids=torch.tensor([ids]), max_new_tokens=5, do_sample=False, pad_token_id=tok.pad_token_id)
        new = gen[0, len(ids) :]
        assert resp.text == tok.decode(new, skip_special_tokens=True)
        assert resp.completion_tokens == int((new != tok.pad_token_id).sum())


@pytest.fixture(scope="module")
def no_system(tmp_path_factory):
    folder = tiny_checkpoint(tmp_path_factory.mktemp("nosys"), NO_SYSTEM)
    return create_provider(ModelConfig(id="nosys", provider="local", model=str(folder), max_tokens=3, limits=LimitsConfig(batch_size=16)))


@pytest.mark.parametrize("mode", ["letter", "letter-logprob", "likelihood"])
def test_a_prompt_the_template_refuses_fails_only_its_own_cell(no_system, mode):
    batch = [_request(QUESTIONS[0], PERSONAS[0], mode), _request(QUESTIONS[1], None, mode), _request(QUESTIONS[2], PERSONAS[1], mode, "user")]
    refused, baseline, in_user_turn = asyncio.run(no_system.complete(batch))
    assert refused.error_kind == "bad_request" and "this chat template takes no system turn" in refused.error
    assert baseline.ok and in_user_turn.ok


def test_check_request_names_the_roles_the_template_refuses(no_system):
    from engine.errors import PreflightError

    no_system.check_request(_request(QUESTIONS[0], None, "letter"))
    no_system.check_request(_request(QUESTIONS[0], PERSONAS[0], "letter", "user"))
    with pytest.raises(PreflightError, match="cannot render a system\\+user prompt: this chat template takes no system turn"):
        no_system.check_request(_request(QUESTIONS[0], PERSONAS[0], "letter"))


@pytest.mark.slow
def test_run_refuses_a_grid_whose_template_rejects_the_system_placement(tmp_path):
    """The shared case as a test: exit 2 before anything is written, naming model, condition and placement."""
    tiny_checkpoint(tmp_path / "ckpt", NO_SYSTEM)
    (tmp_path / "personas.jsonl").write_text(
        '{"id": "p1", "source": "GSS", "traits": {"sex": {"question": "What is your sex?", "answer": "Female", "category": "demographic"}}}\n'
    )
    (tmp_path / "items.jsonl").write_text('{"uid": "q1", "q": "Which fruit?", "opts": ["Apple", "Pear"], "gold": 0}\n')
    grid = """[run]\nname = "r"\noutput_dir = "out/{name}"\ncache = "out/cache.sqlite"\n[personas]\nsource = "personas.jsonl"
[[benchmarks]]\nname = "dataset"\npath = "items.jsonl"\nquestion_field = "q"\noptions_field = "opts"\ngold_field = "gold"\nid_field = "uid"
[[models]]\nid = "no-system-turn"\nprovider = "local"\nmodel = "ckpt"\nmax_tokens = 4
[[conditions]]\nname = "baseline"\n[[conditions]]\nname = "prose"\nformat = "prose"\n"""
    (tmp_path / "grid.toml").write_text(grid)
    run = [sys.executable, "-m", "engine.cli", "run", "grid.toml", "--no-progress"]
    proc = subprocess.run(run, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "model 'no-system-turn', condition 'prose' (placement = \"system\")" in proc.stderr
    assert 'set placement = "user"' in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()  # checked before anything is written
    # The fix the message suggests runs: the persona goes in the user turn, every cell answered.
    (tmp_path / "grid.toml").write_text(grid + 'placement = "user"\n')
    proc = subprocess.run(run, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    import polars as pl

    results = pl.read_parquet(tmp_path / "out" / "r" / "results" / "*.parquet")
    assert results.height == 2 and results["status"].to_list() == ["ok", "ok"]
