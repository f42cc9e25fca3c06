"""Local-model throughput on one NVIDIA GPU with nothing downloaded: random-weight models of real shapes.

Run through bench/gpu.sh. Throughput does not depend on the weights, so each model is built on the spot
with random weights in a real architecture's shape (SmolLM2-135M's, and Llama-3.2-1B's: same layer,
head, KV-head and vocabulary sizes; Llama 3's long-context RoPE scaling left out, it does not change the
work). The tokenizer is a byte-level BPE trained in seconds on the grid's own prompts, with SmolLM2's chat
template; the mean prompt length in tokens is printed, since a tokenizer trained on the prompts encodes them
more compactly than the real one. The grid is the engine's own: `--personas` personas (the 40 examples,
varied by age) x `--questions` TruthfulQA questions in letter-logprob mode, prompts built by engine.plan in
plan order (persona-major), run through engine.providers.local. It prints, per model:

(1) transformers one prompt at a time, full prompt each time (over the first `--sample` prompts),
(2) transformers batched with persona-prefix reuse (every prompt),
(3) vLLM with the prompts shuffled and (4) vLLM in plan order, where vLLM imports,

as prompts/s and ratios to (1), the share of prompt tokens not recomputed (prefix reuse for (2), vLLM's
prefix-cache hit rate for (3)/(4)), and how often the most likely letter agrees with (1).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib.util
import json
import random
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SMOLLM2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n"
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# Llama-architecture shapes (from the models' config.json); "tiny" is for testing the script on a CPU.
SHAPES = {
    "smollm2-135m": {"hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9,
                     "num_key_value_heads": 3, "head_dim": 64, "vocab_size": 49152, "rope_theta": 100000.0},
    "llama-3.2-1b": {"hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16, "num_attention_heads": 32,
                     "num_key_value_heads": 8, "head_dim": 64, "vocab_size": 128256, "rope_theta": 500000.0},
    # head_dim 32: the smallest vLLM's CPU attention takes (its get_supported_head_sizes; 16 fails at the first forward)
    "tiny": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2,
             "num_key_value_heads": 1, "head_dim": 32, "vocab_size": 2048, "rope_theta": 10000.0},
}


def write_grid(folder: Path, personas: int, questions: int, model_dir: Path, device: str, dtype: str) -> Path:
    """personas.jsonl (the examples, varied by age until there are enough) and a letter-logprob grid."""
    examples = [json.loads(line) for line in (REPO / "examples" / "personas.jsonl").read_text().splitlines() if line.strip()]
    with (folder / "personas.jsonl").open("w") as fh:
        for i in range(personas):
            p = json.loads(json.dumps(examples[i % len(examples)]))
            p["id"] = f"{p['id']}-{i}"
            if "age" in p["traits"] and i >= len(examples):
                p["traits"]["age"]["answer"] = str(18 + (7 * i) % 70)
            fh.write(json.dumps(p) + "\n")
    grid = folder / "grid.toml"
    grid.write_text(textwrap.dedent(f"""
        [run]
        name = "gpu"
        [personas]
        source = "personas.jsonl"
        [[benchmarks]]
        name = "truthfulqa"
        limit = {questions}
        mode = "letter-logprob"
        [[models]]
        id = "m"
        provider = "local"
        model = "{model_dir}"
        device = "{device}"
        dtype = "{dtype}"
        [[conditions]]
        name = "prose"
        format = "prose"
        """))
    return grid


def build_tokenizer(texts: list[str]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=2048, special_tokens=SPECIAL, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>", pad_token="<|im_end|>", unk_token="<|endoftext|>")
    fast.chat_template = SMOLLM2_TEMPLATE
    fast.padding_side = "left"
    return fast


def build_model(shape: str, tokenizer, device: str, dtype: str):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    config = LlamaConfig(**SHAPES[shape], tie_word_embeddings=True, max_position_embeddings=8192, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=eos, pad_token_id=eos)
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(config).to(getattr(torch, dtype))
    return model.eval()


def best_letter(response) -> str | None:
    lp = response.letter_logprobs
    return max(lp, key=lp.get) if lp else None


def run_local(provider, requests: list, batch: int) -> tuple[float, list]:
    import torch

    out: list = []
    sync = torch.cuda.synchronize if provider._device.startswith("cuda") else (lambda: None)
    sync()
    started = time.perf_counter()
    for start in range(0, len(requests), batch):
        out.extend(asyncio.run(provider.complete(requests[start : start + batch])))
    sync()
    return time.perf_counter() - started, out


def bench_model(shape: str, args: argparse.Namespace) -> list[tuple[str, float, float | None, float | None]]:
    """[(method, prompts/s, share of prompt tokens not recomputed, agreement with (1))] for one model shape."""
    from engine.config import LimitsConfig
    from engine.grid import load_grid
    from engine.plan import Plan
    from engine.providers import create_provider, hf_scoring, weights

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model_dir = root / "model"
        model_dir.mkdir()
        grid = load_grid(write_grid(root, args.personas, args.questions, model_dir, args.device, args.dtype))
        plan = Plan.from_grid(grid)
        requests = [plan.request(cell) for cell in plan.cells(grid.models[0])]
        built = time.perf_counter()
        tokenizer = build_tokenizer(["\n".join(c for _, c in r.messages) for r in requests[:: max(1, len(requests) // 2000)]])
        model = build_model(shape, tokenizer, args.device, args.dtype)
        mean_tokens = sum(len(tokenizer.encode(weights.chat_prompt(tokenizer, r.messages))) for r in requests[:200]) / min(200, len(requests))
        print(f"\n{shape}: {sum(p.numel() for p in model.parameters()) / 1e6:.0f}M parameters (random), {len(requests)} prompts "
              f"({args.personas} personas x {args.questions} questions, letter-logprob), ~{mean_tokens:.0f} tokens each; built in "
              f"{time.perf_counter() - built:.1f} s", flush=True)

        def provider(batch: int):
            p = create_provider(dataclasses.replace(grid.models[0], limits=LimitsConfig(batch_size=batch)))
            p._tokenizer, p._model, p._device = tokenizer, model, args.device  # the model built here, not loaded
            return p

        sample = requests[: args.sample]
        one = provider(1)
        one._prefixes = None  # the reference: every prompt whole
        run_local(one, sample[:2], 1)  # warm-up (CUDA context, kernels) outside the clock
        wall1, ref = run_local(one, sample, 1)
        rows = [("(1) transformers, one prompt at a time", len(sample) / wall1, None, 1.0)]
        print(f"  (1) {len(sample) / wall1:.1f} prompts/s", flush=True)
        batched = provider(args.batch)
        run_local(batched, requests[:2], args.batch)
        batched._prefixes = hf_scoring.PrefixStore()
        wall2, out = run_local(batched, requests, args.batch)
        store = batched._prefixes
        prompt_tokens = sum(r.prompt_tokens or 0 for r in out)
        reuse = 1 - (store.computed_tokens + store.suffix_tokens) / prompt_tokens
        agree = sum(best_letter(a) == best_letter(b) for a, b in zip(ref, out)) / len(ref)
        rows.append((f"(2) transformers, batch {args.batch}, prefix reuse", len(requests) / wall2, reuse, agree))
        errors = sum(not r.ok for r in ref + out)
        if errors:
            print(f"  {errors} cells failed: {next(r.error for r in ref + out if not r.ok)}")
        if importlib.util.find_spec("vllm") is not None:
            model.save_pretrained(model_dir)
            tokenizer.save_pretrained(model_dir)
            rows += bench_vllm(grid, requests, ref, args)
        else:
            print("  vLLM not importable here: (3) and (4) skipped")
        del model
    return rows


def bench_vllm(grid, requests: list, ref: list, args: argparse.Namespace) -> list[tuple[str, float, float | None, float | None]]:
    from engine.providers import create_provider
    from engine.providers.vllm import PrefixCacheStats

    provider = create_provider(dataclasses.replace(grid.models[0], provider="vllm"))
    rows = []
    shuffled = random.Random(0).sample(range(len(requests)), len(requests))
    for name, order in (("(3) vLLM, shuffled", shuffled), ("(4) vLLM, persona-grouped", list(range(len(requests))))):
        asyncio.run(provider.complete(requests[:1]))
        provider._llm.reset_prefix_cache()  # each ordering starts cold, like a fresh run
        provider.prefix_cache = PrefixCacheStats()
        started = time.perf_counter()
        back: list = [None] * len(requests)
        for start in range(0, len(order), provider.batch_size):
            chunk = order[start : start + provider.batch_size]
            for i, response in zip(chunk, asyncio.run(provider.complete([requests[i] for i in chunk]))):
                back[i] = response
        wall = time.perf_counter() - started
        agree = sum(best_letter(a) == best_letter(b) for a, b in zip(ref, back)) / len(ref)
        rows.append((name, len(requests) / wall, provider.prefix_cache.hit_rate, agree))
    asyncio.run(provider.aclose())
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="smollm2-135m,llama-3.2-1b", help=f"comma-separated, of {', '.join(SHAPES)}")
    parser.add_argument("--personas", type=int, default=200)
    parser.add_argument("--questions", type=int, default=100)
    parser.add_argument("--sample", type=int, default=400, help="prompts timed one at a time for (1)")
    parser.add_argument("--batch", type=int, default=100, help="transformers batch size for (2)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--tiny", action="store_true", help="seconds on a CPU: the tiny shape, 4 personas x 3 questions, float32")
    args = parser.parse_args()
    if args.tiny:
        args.models, args.personas, args.questions, args.sample, args.batch, args.device, args.dtype = "tiny", 4, 3, 12, 6, "cpu", "float32"
    import torch
    import transformers

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, {gpu}, device {args.device}, {args.dtype}")
    table = []
    for shape in args.models.split(","):
        table += [(shape, *row) for row in bench_model(shape, args)]
    print(f"\n{'model':<14}{'method':<46}{'prompts/s':>10}{'x (1)':>8}{'not recomputed':>16}{'same letter':>13}")
    reference = {}
    for shape, name, rate, reuse, agree in table:
        reference.setdefault(shape, rate)
        shown = f"{reuse:.1%}" if reuse is not None else "-"
        print(f"{shape:<14}{name:<46}{rate:>10.1f}{rate / reference[shape]:>8.1f}{shown:>16}{agree:>13.0%}")


if __name__ == "__main__":
    main()
