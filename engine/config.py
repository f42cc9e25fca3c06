"""grid.toml's typed configuration: frozen dataclasses, the bottom of the engine (this module imports nothing
from the project, so every other module may import it).

Each field is a grid.toml key with its default; a comment gives its unit or allowed values. Loading and checking
a grid (types, ranges, nearest valid key, adapter options) is engine.grid's job. To add a key: a field here with
its default, and its semantic check (if any) in engine.grid; a benchmark adapter's options are not listed here:
each adapter declares them (its `options` names and its constructor's typed parameters).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import orjson


@dataclass(frozen=True)
class RayConfig:
    """[run.ray]: where and how wide in-process models (local, vllm) run under executor = "ray" (engine.ray_pool).
    Scale, not results: none of it enters a cache key."""

    address: str | None = None  # None: Ray's default (a cluster running on this machine, else a new local one); "auto": a running cluster; "HOST:PORT" or "ray://HOST:10001"
    workers: int = 0  # Ray actors per model; 0 = as many as the cluster's free CPUs (vllm: GPUs) hold
    cpus_per_worker: float = 1
    gpus_per_worker: float = 0  # local on GPUs; vllm takes tensor_parallel_size GPUs per replica
    batches_per_worker: int = 2  # batches in flight per actor: one computing, one already waiting there


@dataclass(frozen=True)
class RunConfig:
    name: str
    seed: int = 0
    output_dir: str = "runs/{name}"  # relative to the grid file; {name} is substituted
    cache: str = "cache.sqlite"  # relative to the grid file
    score: str = "primary"  # what the run's tables (and `report` by default) compute Δ on: primary | p_gold
    executor: str = "local"  # local (this process) | ray (in-process models on Ray actors; engine.ray_pool)
    ray: RayConfig = field(default_factory=RayConfig)


@dataclass(frozen=True)
class PersonasConfig:
    source: str  # JSONL or Parquet persona records, relative to the grid file
    limit: int | None = None  # seeded sample of this many personas (default: all)


_ENGINE_OPTIONS = ("shots",)  # engine keys an adapter may also declare as its own option


@dataclass(frozen=True)
class BenchmarkConfig:
    name: str  # the adapter
    id: str | None = None  # what results call it (default: name); set it to run one adapter twice
    path: str | None = None  # data file; default: the copy vendored with the adapter
    limit: int | None = None  # seeded sample of this many questions (default: all)
    seed: int = 0  # question sample and per-question option shuffle
    mode: str = "letter"  # letter | letter-logprob | likelihood | judge (each adapter declares which it supports)
    rubric: str | None = None  # judge mode: a built-in rubric name or a rubric TOML file (default: the adapter's)
    max_tokens: int | None = None  # answer length for this benchmark (default: the model's; judge mode: 256)
    # Option orders per question: 1 (the seeded shuffle), "cyclic" (every cyclic shift) or N seeded permutations.
    orders: int | str = 1
    # The adapter's own options (e.g. truthfulqa's `task`), as (key, value) pairs in file order: flat keys of
    # the [[benchmarks]] table that the adapter declares (bench_adapters: `options`), checked by engine.grid.
    options: tuple[tuple[str, Any], ...] = ()
    # Few-shot examples per item (engine.templates); an adapter that declares `shots` itself reads it instead
    # (trait inference: other respondents with the target revealed).
    shots: int | None = None
    # Prompt templates (engine.templates): a preset name or a .jinja file; "chat" turns or one "completion" string.
    template: str | None = None
    format: str = "chat"

    @property
    def label(self) -> str:
        return self.id or self.name

    def adapter_options(self, declared: tuple[str, ...] = ()) -> dict[str, Any]:
        """The adapter options that are set, by name (keyword arguments of the adapter); unset ones leave the
        adapter's defaults. `declared`: the adapter's option names; an engine key among them (trait inference's
        `shots`) is passed to the adapter too when set."""
        engine_keys = {n: getattr(self, n) for n in declared if n in _ENGINE_OPTIONS and getattr(self, n) not in (None, ())}
        return dict(self.options) | engine_keys


@dataclass(frozen=True)
class LimitsConfig:
    concurrency: int = 8  # API calls in flight (local backends: batches in flight)
    requests_per_minute: float = 0  # 0 = unlimited
    tokens_per_minute: float = 0  # 0 = unlimited; estimated prompt + max output tokens
    batch_size: int | None = None  # local backends: prompts per call (default: local 16, vllm 256)
    timeout_s: float = 120
    max_retries: int = 4  # transient failures (429, 5xx, timeouts) per cell
    max_retry_time_s: float = 300  # API: total time one cell may spend retrying
    account: str | None = None  # API: models naming the same account share one set of limits


@dataclass(frozen=True)
class VllmConfig:
    """vLLM engine arguments ([models.vllm]): speed and memory, not the model or its decoding, so not in the cache key."""

    # No data_parallel_size: vLLM's offline LLM refuses it in one process (one LLM per GPU group would be needed).
    tensor_parallel_size: int = 1
    max_num_seqs: int | None = None  # sequences scheduled per step (default: vLLM's)
    gpu_memory_utilization: float | None = None  # default: vLLM's (0.9); on a CPU build, of RAM
    max_model_len: int | None = None  # default: the model's context length
    enforce_eager: bool = False  # skip CUDA graph capture: faster start, slower steps
    enable_prefix_caching: bool = True  # reuse the KV cache of a shared persona preamble


@dataclass(frozen=True)
class BatchConfig:
    """[models.batch]: how `transport = "batch"` packs, submits and polls provider batch jobs (engine.batch).

    Not in the cache key: a batch answer and an online answer to the same request are one cache entry."""

    max_requests: int | None = None  # requests per job (default and ceiling: the provider's limit)
    poll_s: float = 60.0  # seconds between two polls of the live jobs
    completion_window: str = "24h"  # OpenAI: the only window it offers
    input_price: float | None = None  # USD per million input tokens in batch (default: half the online price)
    output_price: float | None = None  # USD per million output tokens in batch (default: half the online price)


@dataclass(frozen=True)
class ModelConfig:
    id: str
    provider: str
    model: str
    temperature: float = 0.0
    max_tokens: int = 8
    top_p: float = 1.0
    seed: int | None = None  # sent to APIs that accept one
    samples: int = 1  # samples per cell (pass@k needs temperature > 0)
    logprobs: bool = True  # ask for next-token logprobs over the answer letters where the backend offers them
    base_url: str | None = None  # OpenAI-compatible servers
    transport: str = "aiohttp"  # API providers: aiohttp (lean, fast) | sdk (the official client) | batch (provider batch API)
    api_key_env: str | None = None  # name of the environment variable holding the key (never the key)
    api_key_file: str | None = None  # or a file holding the key, relative to the grid file
    input_price: float | None = None  # USD per million input tokens (default: engine.pricing's table)
    output_price: float | None = None  # USD per million output tokens
    revision: str | None = None  # local hub models
    device: str = "auto"  # local: auto | cpu | cuda
    dtype: str = "float32"  # local: float32 | bfloat16 | float16
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    vllm: VllmConfig = field(default_factory=VllmConfig)
    batch: BatchConfig = field(default_factory=BatchConfig)


@dataclass(frozen=True)
class ConditionConfig:
    name: str
    format: str | None = None  # None = baseline (no persona); else prose | json | bullets
    traits: str = "all"  # all | demographic | values | -<trait> (leave one out), then optionally +<trait> (all+year)
    placement: str = "system"  # where the persona goes: system message or ahead of the user turn
    # PERSONA Bench's generation modes (bench_adapters.modes): reason before a final "Answer:" line; answer
    # with the model's own summary of the persona (a first, cached call) in place of the persona.
    reasoning: bool = False
    summary: bool = False


@dataclass(frozen=True)
class JudgeConfig:
    """[judge]: the model that grades free-text answers (benchmarks in mode "judge"), through the same engine."""

    model: ModelConfig  # [judge.model]: any provider, with its own limits; never one of the models under test
    mode: str = "letter"  # letter (any backend) | letter-logprob (expected rubric value; needs letter logprobs)


@dataclass(frozen=True)
class GridConfig:
    run: RunConfig
    personas: PersonasConfig | None = None
    benchmarks: tuple[BenchmarkConfig, ...] = ()
    models: tuple[ModelConfig, ...] = ()
    conditions: tuple[ConditionConfig, ...] = ()
    judge: JudgeConfig | None = None
    path: Path = Path("grid.toml")  # set by the loader, not read from the file

    @property
    def root(self) -> Path:
        return self.path.parent

    def resolve(self, relative: str) -> Path:
        p = Path(relative).expanduser()
        return p if p.is_absolute() else self.root / p

    @property
    def output_dir(self) -> Path:
        return self.resolve(self.run.output_dir.replace("{name}", self.run.name)).resolve()

    @property
    def cache_path(self) -> Path:
        return self.resolve(self.run.cache).resolve()

    @property
    def baseline(self) -> ConditionConfig | None:
        return next((c for c in self.conditions if c.format is None), None)

    def canonical(self, option_defaults: Mapping[str, Any] = MappingProxyType({})) -> dict[str, Any]:
        """The grid as plain data (the manifest's `config`). Each benchmark's options are flat keys of its table,
        as in grid.toml, over `option_defaults` (engine.grid.OPTION_DEFAULTS: every adapter option, unset)."""
        data = dataclasses.asdict(self)
        data.pop("path")
        for bench, config in zip(data["benchmarks"], self.benchmarks):
            bench.pop("options")
            bench.update(option_defaults, **dict(config.options))
        return data

    def config_hash(self, option_defaults: Mapping[str, Any] = MappingProxyType({})) -> str:
        """SHA-256 (hex) of canonical(): the manifest's fingerprint of the configuration; not part of any cache key."""
        return hashlib.sha256(orjson.dumps(self.canonical(option_defaults), option=orjson.OPT_SORT_KEYS)).hexdigest()
