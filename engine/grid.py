"""Load and check a grid: grid.toml (a file, TOML text or a dict) -> engine.config.GridConfig, validated whole
before any work starts.

The top of the configuration: engine.config holds the types and imports nothing from the project; this module
imports the adapters, providers and persona formats it checks against. Every problem is reported as
`FILE: key.path: what was wrong (expected ...)`, with the nearest valid key suggested for typos; all problems are
collected, so a user fixes a file in one pass.

Adding a key: a field with its default in engine.config (its type gives the type check and the error text), and
its range/semantic check in `_check_semantics` or `_check_model` below. A benchmark adapter's options are
declared by the adapter (`options` names them, its constructor's parameter annotations type them, the
constructor validates their values), so a new benchmark is one module and one registry line.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import difflib
import functools
import math
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench_adapters import ADAPTERS, JUDGE
from bench_adapters.choice import CYCLIC
from bench_adapters.modes import REASONING_MODES
from bench_adapters.rubric import JUDGE_MODES, load_rubric
from engine.batch import BATCH_LIMITS, BATCH_PROVIDERS
from engine.config import BatchConfig, BenchmarkConfig, GridConfig, ModelConfig, RayConfig, RunConfig, VllmConfig
from engine.errors import GridError
from engine.providers import PROVIDERS, provider_class
from persona_builder import FORMATS
from persona_builder.render import subset_problem

__all__ = ["GridError", "load_grid", "option_defaults", "option_types"]

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# Upper bounds far above any real use: a larger value is a typo, and would exhaust memory (one task per
# concurrency slot) or crash a backend rather than run.
MAX_TOKENS = 1_000_000
MAX_SAMPLES = 10_000
MAX_CONCURRENCY = 10_000
MAX_BATCH_SIZE = 100_000
MAX_RETRIES = 100
MAX_SECONDS = 7 * 24 * 3600.0  # timeout_s, max_retry_time_s
# Characters that would make a name (a file or folder name in a run) escape its folder or be unreadable.
_NAME_FORBIDDEN = ("/", "\\", "\0")

_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}


def _describe(tp: Any) -> str:
    if tp in _TYPE_NAMES:
        return _TYPE_NAMES[tp]
    if dataclasses.is_dataclass(tp):
        return "a table"
    origin = typing.get_origin(tp)
    if origin in (tuple, collections.abc.Sequence):
        return "an array of tables"
    return str(tp)


def _convert(value: Any, tp: Any, where: str, problems: list[str]) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) > 1:  # e.g. `orders`: an integer or a string; take the first type the value is
            for arg in args:
                tried: list[str] = []
                converted = _convert(value, arg, where, tried)
                if not tried:
                    return converted
            problems.append(f"{where}: expected {' or '.join(_describe(a) for a in args)}, got {value!r}")
            return None
        return _convert(value, args[0], where, problems)
    if origin in (tuple, collections.abc.Sequence):
        inner = typing.get_args(tp)[0]
        if not isinstance(value, list):
            problems.append(f"{where}: expected {_describe(tp)}, got {type(value).__name__}")
            return ()
        return tuple(_convert(v, inner, f"{where}[{i}]", problems) for i, v in enumerate(value))
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            problems.append(f"{where}: expected a table, got {type(value).__name__}")
            return None
        return _build(tp, value, where, problems)
    ok = (
        isinstance(value, bool)
        if tp is bool
        else isinstance(value, tp) and not isinstance(value, bool)
        if tp is int
        else isinstance(value, (int, float)) and not isinstance(value, bool)
        if tp is float
        else isinstance(value, tp)
    )
    if not ok:
        problems.append(f"{where}: expected {_describe(tp)}, got {value!r}")
        return None
    # TOML integers are unbounded in Python but int64 everywhere downstream (orjson, SQLite, Parquet), and
    # TOML floats include nan and inf: both would fail far from the grid, so they are refused here.
    if tp is int and not INT64_MIN <= value <= INT64_MAX:
        problems.append(f"{where}: expected an integer in the 64-bit range, got {_short(value)}")
        return None
    if tp is float:
        try:
            number = float(value)
        except OverflowError:  # an integer literal beyond the float range
            number = math.inf
        if not math.isfinite(number):
            problems.append(f"{where}: expected a finite number, got {_short(value)}")
            return None
        return number
    return value


def _short(number: float) -> str:
    text = str(number)
    return text if len(text) <= 32 else f"{text[:12]}...({len(text)} digits)"


@functools.cache
def option_types() -> dict[str, Any]:
    """Every adapter option's name -> its type (the adapter constructor's annotation), in registry order. One
    name has one type across adapters (`categories` is tuple[str, ...] wherever it appears), so a [[benchmarks]]
    table's keys can be typed before its adapter is known; which adapter accepts which is checked later."""
    types_: dict[str, Any] = {}
    for adapter in ADAPTERS.values():
        hints = typing.get_type_hints(adapter.__init__)
        for name in adapter.options:
            types_.setdefault(name, hints[name])
    return types_


@functools.cache
def option_defaults() -> dict[str, Any]:
    """Every adapter option, unset (None, or () for a list): GridConfig.canonical's `option_defaults`, so the
    manifest's config (and config_hash) lists every option as when engine.config declared them all."""
    return {name: () if typing.get_origin(tp) in (tuple, collections.abc.Sequence) else None for name, tp in option_types().items()}


def _build(cls: type, table: dict[str, Any], where: str, problems: list[str]) -> Any:
    hints = typing.get_type_hints(cls)
    # GridConfig.path is set by the loader; every other table's `path` (e.g. a benchmark's data file) is a key.
    # BenchmarkConfig.options is not a key: the adapter's options are flat keys of the table.
    fields = {f.name: f for f in dataclasses.fields(cls) if not (cls is GridConfig and f.name == "path") and not (cls is BenchmarkConfig and f.name == "options")}
    extra = option_types() if cls is BenchmarkConfig else {}
    prefix = f"{where}." if where else ""
    for key in table:
        if key not in fields and key not in extra:
            valid = [*fields, *extra]
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f" (valid keys: {', '.join(valid)})"
            problems.append(f"{prefix}{key}: unknown key{hint}")
    kwargs = {}
    for name, f in fields.items():
        if name in table:
            kwargs[name] = _convert(table[name], hints[name], f"{prefix}{name}", problems)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            problems.append(f"{prefix}{name}: required key missing (expected {_describe(hints[name])})")
    if extra:  # set options only: an empty list leaves the adapter's default, as an absent key does
        options = ((k, _convert(v, extra[k], f"{prefix}{k}", problems)) for k, v in table.items() if k in extra and k not in fields)
        kwargs["options"] = tuple((k, v) for k, v in options if v not in (None, ()))
    try:
        return cls(**kwargs)
    except TypeError:
        return None  # a required key was missing or invalid: already reported


def _check_semantics(grid: GridConfig, problems: list[str]) -> None:
    if not _paths_usable(grid, problems):
        return  # every later check opens these paths
    _check_name("run.name", grid.run.name, problems)
    if grid.run.seed < 0:
        problems.append("run.seed: expected a non-negative integer")
    if grid.run.score not in ("primary", "p_gold"):
        problems.append(f"run.score: expected primary or p_gold, got '{grid.run.score}'")
    _check_executor(grid.run, problems)
    personas = grid.personas
    if personas is not None:
        if not grid.resolve(personas.source).is_file():
            problems.append(f"personas.source: file not found: {grid.resolve(personas.source)}")
        if personas.limit is not None and personas.limit < 1:
            problems.append("personas.limit: expected a positive integer")
    if not grid.benchmarks:
        problems.append("benchmarks: at least one [[benchmarks]] table is required")
    for i, b in enumerate(grid.benchmarks):
        where = f"benchmarks[{i}]"
        adapter = ADAPTERS.get(b.name)
        if adapter is None:
            problems.append(f"{where}.name: unknown benchmark '{b.name}'{_suggest(b.name, ADAPTERS)}")
        elif b.mode not in adapter.modes:
            problems.append(f"{where}.mode: '{b.mode}' not supported by {b.name} (expected one of {', '.join(adapter.modes)})")
        else:
            _check_adapter_options(grid, b, adapter, where, problems)
            if getattr(adapter, "per_persona", False) and personas is None:
                problems.append(f"{where}.name: {b.name} takes its items from the personas; add a [personas] table")
        if b.path is not None and not grid.resolve(b.path).exists():
            problems.append(f"{where}.path: file not found: {grid.resolve(b.path)}")
        if b.limit is not None and b.limit < 1:
            problems.append(f"{where}.limit: expected a positive integer")
        if b.max_tokens is not None:
            _check_range(f"{where}.max_tokens", b.max_tokens, 1, MAX_TOKENS, problems)
        if b.seed < 0:
            problems.append(f"{where}.seed: expected a non-negative integer")
        if b.id is not None:
            _check_name(f"{where}.id", b.id, problems)
        _check_orders(b, adapter, where, problems)
        _check_rubric(grid, b, adapter, where, problems)
        _check_prompt(grid, b, where, problems)
    if not grid.models:
        problems.append("models: at least one [[models]] table is required")
    for i, m in enumerate(grid.models):
        _check_model(grid, m, f"models[{i}]", problems)
    _check_judge(grid, problems)
    _check_unique("models", "id", [m.id for m in grid.models], problems)
    _check_unique("benchmarks", "id", [b.label for b in grid.benchmarks], problems)
    if not grid.conditions:
        problems.append("conditions: at least one [[conditions]] table is required")
    _check_unique("conditions", "name", [c.name for c in grid.conditions], problems)
    for i, c in enumerate(grid.conditions):
        where = f"conditions[{i}]"
        _check_name(f"{where}.name", c.name, problems)
        if c.format is not None and c.format not in FORMATS:
            problems.append(f"{where}.format: unknown format '{c.format}' (expected one of {', '.join(FORMATS)}; omit it for the baseline)")
        if c.format is not None and personas is None:
            problems.append(f"{where}.format: a persona condition needs a [personas] table")
        if (wrong := subset_problem(c.traits)) is not None:  # "+year": a trait the catalog shows only on request
            problems.append(f"{where}.traits: {wrong}")
        if c.placement not in ("system", "user"):
            problems.append(f"{where}.placement: expected system or user, got '{c.placement}'")
    if sum(c.format is None for c in grid.conditions) > 1:
        problems.append("conditions: at most one baseline condition (one without 'format') is allowed")
    _check_modes(grid, problems)


def _check_modes(grid: GridConfig, problems: list[str]) -> None:
    """`reasoning` needs a generated answer to read; `summary` needs a persona to summarise."""
    for i, c in enumerate(grid.conditions):
        where = f"conditions[{i}]"
        if c.summary and c.format is None:
            problems.append(f"{where}.summary: a summary is of the persona, and this condition shows none; set format, or leave summary out")
        if not c.reasoning:
            continue
        for j, b in enumerate(grid.benchmarks):
            if b.mode not in REASONING_MODES:
                problems.append(
                    f"{where}.reasoning: benchmarks[{j}] ({b.label}) is scored in mode '{b.mode}', which reads probabilities at the answer "
                    f"position and generates nothing, so there is no reasoning to ask for (reasoning works with mode {' or '.join(REASONING_MODES)})"
                )


def _check_model(grid: GridConfig, m: ModelConfig, where: str, problems: list[str]) -> None:
    _check_name(f"{where}.id", m.id, problems)
    if m.provider not in PROVIDERS:
        problems.append(f"{where}.provider: unknown provider '{m.provider}'{_suggest(m.provider, PROVIDERS)}")
    _check_range(f"{where}.samples", m.samples, 1, MAX_SAMPLES, problems)
    _check_range(f"{where}.max_tokens", m.max_tokens, 1, MAX_TOKENS, problems)
    if not 0 <= m.temperature <= 2:
        problems.append(f"{where}.temperature: expected a number in [0, 2]")
    if not 0 < m.top_p <= 1:
        problems.append(f"{where}.top_p: expected a number in (0, 1]")
    if m.seed is not None and m.seed < 0:
        problems.append(f"{where}.seed: expected a non-negative integer")
    if m.base_url is not None:
        _check_url(f"{where}.base_url", m.base_url, problems)
    if m.transport not in ("aiohttp", "sdk", "batch"):
        problems.append(f"{where}.transport: expected aiohttp, sdk or batch, got '{m.transport}'")
    _check_batch(m, where, problems)
    if m.device not in ("auto", "cpu", "cuda"):
        problems.append(f"{where}.device: expected auto, cpu or cuda")
    if m.dtype not in ("float32", "bfloat16", "float16"):
        problems.append(f"{where}.dtype: expected float32, bfloat16 or float16")
    lim, at = m.limits, f"{where}.limits"
    _check_range(f"{at}.concurrency", lim.concurrency, 1, MAX_CONCURRENCY, problems)
    if lim.batch_size is not None:
        _check_range(f"{at}.batch_size", lim.batch_size, 1, MAX_BATCH_SIZE, problems)
    _check_range(f"{at}.max_retries", lim.max_retries, 0, MAX_RETRIES, problems)
    for name in ("requests_per_minute", "tokens_per_minute"):
        if getattr(lim, name) < 0:
            problems.append(f"{at}.{name}: expected a non-negative number (0 = unlimited)")
    for name in ("timeout_s", "max_retry_time_s"):
        if not 0 < getattr(lim, name) <= MAX_SECONDS:
            problems.append(f"{at}.{name}: expected a number of seconds in (0, {MAX_SECONDS:.0f}]")
    if m.api_key_file is not None and not grid.resolve(m.api_key_file).is_file():
        problems.append(f"{where}.api_key_file: file not found: {grid.resolve(m.api_key_file)}")
    if (m.input_price or 0) < 0 or (m.output_price or 0) < 0:
        problems.append(f"{where}: input_price and output_price must be non-negative")
    _check_vllm(m, where, problems)


def _check_rubric(grid: GridConfig, b: BenchmarkConfig, adapter: type | None, where: str, problems: list[str]) -> None:
    if b.mode != JUDGE:
        if b.rubric is not None:
            problems.append(f'{where}.rubric: only used with mode = "judge"')
        return
    spec = b.rubric or getattr(adapter, "rubric", None)
    if spec is None:
        return
    try:
        rubric = load_rubric(spec, grid.root)
    except ValueError as exc:
        problems.extend(f"{where}.rubric: {line}" for line in str(exc).splitlines())
        return
    if rubric.quotes_persona and grid.personas is None:
        problems.append(f"{where}.rubric: '{rubric.name}' grades an answer against a persona; add a [personas] table")


def _check_prompt(grid: GridConfig, b: BenchmarkConfig, where: str, problems: list[str]) -> None:
    """`template`, `format` and `shots` (engine.templates): a readable template, a format every model can send."""
    from bench_adapters import JUDGE
    from engine.providers import PROVIDERS, provider_class
    from engine.templates import FORMATS, MTPA, PRESET_MODES, PromptTemplate, TemplateError

    if b.template is not None:
        if "\0" in b.template:
            problems.append(f"{where}.template: a path cannot contain a NUL character")
            return
        try:
            PromptTemplate.load(b.template, b.name, grid.root)
        except TemplateError as exc:
            problems.append(f"{where}.template: {exc}")
    if b.format not in FORMATS:
        problems.append(f"{where}.format: expected one of {', '.join(FORMATS)}, got '{b.format}'")
    elif b.format == "completion":
        if b.template in (None, MTPA):
            problems.append(f'{where}.format: "completion" needs a template (a preset such as "lm-eval" or a .jinja file): the built-in prompts are chat turns')
        for i, m in enumerate(grid.models):
            if m.provider in PROVIDERS and not provider_class(m.provider).supports_completion:
                problems.append(
                    f'{where}.format: models[{i}] ({m.id}) uses provider "{m.provider}", whose API takes chat messages only; '
                    'format = "completion" needs a transformers, vllm or openai (completions endpoint) model'
                )
    if b.template in PRESET_MODES and b.mode not in PRESET_MODES[b.template]:
        problems.append(
            f'{where}.mode: the "{b.template}" preset shows no lettered options; it scores each option by its likelihood, '
            f'as its source does: set mode = "{PRESET_MODES[b.template][0]}"'
        )
    if b.mode == "likelihood":
        for i, m in enumerate(grid.models):
            if m.provider in PROVIDERS and not provider_class(m.provider).supports_likelihood:
                problems.append(
                    f'{where}.mode: models[{i}] ({m.id}) uses provider "{m.provider}", which cannot score option continuations; '
                    'mode = "likelihood" needs a transformers ("local") or vllm model'
                )
    if b.shots is not None and b.shots < 0:
        problems.append(f"{where}.shots: expected a non-negative integer")
    elif b.shots and b.mode == JUDGE:
        problems.append(f'{where}.shots: mode "judge" has no gold answers to show as examples; leave shots at 0')


def _check_orders(b: BenchmarkConfig, adapter: type | None, where: str, problems: list[str]) -> None:
    if b.orders == 1:
        return
    if isinstance(b.orders, str) and b.orders != CYCLIC:
        problems.append(f'{where}.orders: expected a positive integer or "{CYCLIC}", got \'{b.orders}\'')
    elif isinstance(b.orders, int) and b.orders < 1:
        problems.append(f'{where}.orders: expected a positive integer or "{CYCLIC}", got {b.orders}')
    elif b.mode == "likelihood":
        problems.append(f"{where}.orders: likelihood mode scores each option's text on its own, so option order never enters it; leave orders at 1")
    elif b.mode == JUDGE:
        problems.append(f'{where}.orders: mode "judge" shows no options to reorder; leave orders at 1')
    elif adapter is not None and not hasattr(adapter, "ordered"):
        problems.append(f"{where}.orders: {b.name} has no lettered options to reorder; leave orders at 1")


def _check_judge(grid: GridConfig, problems: list[str]) -> None:
    judged = [i for i, b in enumerate(grid.benchmarks) if b.mode == JUDGE]
    judge = grid.judge
    if judge is None:
        for i in judged:
            problems.append(f'benchmarks[{i}].mode: "judge" needs a [judge] table naming the judge model ([judge.model])')
        return
    if not judged:
        problems.append('judge: no benchmark has mode = "judge"; remove [judge] or set a benchmark\'s mode')
    if judge.mode not in JUDGE_MODES:
        problems.append(f"judge.mode: expected one of {', '.join(JUDGE_MODES)}, got '{judge.mode}'")
    elif judge.mode == "letter-logprob" and judge.model.provider in PROVIDERS and not provider_class(judge.model.provider).supports_logprobs:
        problems.append(f'judge.mode: "letter-logprob" needs letter logprobs, which provider "{judge.model.provider}" never returns; use "letter"')
    if judge.model.samples != 1:
        problems.append("judge.model.samples: the judge gives one verdict per answer; leave samples at 1")
    if judge.model.id in {m.id for m in grid.models}:
        problems.append(f"judge.model.id: '{judge.model.id}' is also a model under test; give the judge its own id")
    if judge.model.transport == "batch":
        problems.append('judge.model.transport: the judge runs online (its requests exist only once the answers are in); use "aiohttp" or "sdk"')
    _check_model(grid, judge.model, "judge.model", problems)


def _check_batch(m: ModelConfig, where: str, problems: list[str]) -> None:
    b = m.batch
    if m.transport != "batch":
        if b != BatchConfig():
            problems.append(f'{where}.batch: applies only to transport = "batch"')
        return
    if m.provider not in BATCH_PROVIDERS:
        problems.append(f'{where}.transport: "batch" is offered for providers {", ".join(BATCH_PROVIDERS)}, not \'{m.provider}\'')
        return
    most = BATCH_LIMITS[m.provider].max_requests
    if b.max_requests is not None:
        _check_range(f"{where}.batch.max_requests", b.max_requests, 1, most, problems)
    if not 0 < b.poll_s <= MAX_SECONDS:
        problems.append(f"{where}.batch.poll_s: expected a number of seconds in (0, {MAX_SECONDS:.0f}]")
    if m.provider == "openai" and b.completion_window != "24h":
        problems.append(f'{where}.batch.completion_window: OpenAI offers only "24h", got \'{b.completion_window}\'')
    if (b.input_price or 0) < 0 or (b.output_price or 0) < 0:
        problems.append(f"{where}.batch: input_price and output_price must be non-negative")


def _check_vllm(m: ModelConfig, where: str, problems: list[str]) -> None:
    v = m.vllm
    if m.provider != "vllm":
        if v != VllmConfig():
            problems.append(f"{where}.vllm: engine arguments apply only to provider = \"vllm\"")
        return
    if v.tensor_parallel_size < 1:
        problems.append(f"{where}.vllm.tensor_parallel_size: expected a positive integer")
    if (v.max_num_seqs is not None and v.max_num_seqs < 1) or (v.max_model_len is not None and v.max_model_len < 1):
        problems.append(f"{where}.vllm: max_num_seqs and max_model_len must be positive integers")
    if v.gpu_memory_utilization is not None and not 0 < v.gpu_memory_utilization <= 1:
        problems.append(f"{where}.vllm.gpu_memory_utilization: expected a number in (0, 1]")


def _check_adapter_options(grid: GridConfig, b: BenchmarkConfig, adapter: type, where: str, problems: list[str]) -> None:
    order = list(option_types())
    stray = sorted((n for n, _ in b.options if n not in adapter.options), key=order.index)
    for n in stray:
        accepted = ", ".join(adapter.options) or "none"
        problems.append(f"{where}.{n}: not an option of {b.name} (its options: {accepted})")
    if stray:
        return
    path = grid.resolve(b.path) if b.path else None
    try:  # constructing an adapter validates its options without reading any data
        adapter(path=path, limit=b.limit, seed=b.seed, mode=b.mode, **b.adapter_options(adapter.options))
    except ValueError as exc:
        problems.append(f"{where}: {exc}")


def _paths_usable(grid: GridConfig, problems: list[str]) -> bool:
    """No path key holds a NUL character (the OS refuses such a path wherever it is first opened)."""
    models = [(f"models[{i}]", m) for i, m in enumerate(grid.models)] + ([("judge.model", grid.judge.model)] if grid.judge else [])
    paths = [
        ("run.output_dir", grid.run.output_dir),
        ("run.cache", grid.run.cache),
        ("personas.source", grid.personas.source if grid.personas else None),
        *((f"benchmarks[{i}].{k}", getattr(b, k)) for i, b in enumerate(grid.benchmarks) for k in ("path", "rubric")),
        *((f"{where}.api_key_file", m.api_key_file) for where, m in models),
    ]
    bad = [key for key, value in paths if value is not None and "\0" in value]
    problems.extend(f"{key}: a path cannot contain a NUL character" for key in bad)
    return not bad


def ray_problem() -> str | None:
    """Why executor = "ray" cannot run here (one line), or None when Ray is installed."""
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        return "executor \"ray\" needs Ray, which is not installed: pip install 'mtpa-engine[ray]'"
    return None


def _check_executor(run: RunConfig, problems: list[str]) -> None:
    if run.executor not in ("local", "ray"):
        problems.append(f"run.executor: expected local or ray, got '{run.executor}'")
    elif run.executor == "ray" and (missing := ray_problem()):
        problems.append(f"run.executor: {missing}")
    r = run.ray
    if r != RayConfig() and run.executor != "ray":
        problems.append('run.ray: only used with executor = "ray"')
    if not 0 <= r.workers <= MAX_CONCURRENCY:
        problems.append(f"run.ray.workers: expected an integer in [0, {MAX_CONCURRENCY:,}] (0 = as many as the cluster holds)")
    if r.cpus_per_worker < 0 or r.gpus_per_worker < 0 or r.cpus_per_worker + r.gpus_per_worker == 0:
        problems.append("run.ray: cpus_per_worker and gpus_per_worker must be non-negative, and not both 0")
    _check_range("run.ray.batches_per_worker", r.batches_per_worker, 1, 64, problems)
    if r.address is not None and not r.address.strip():
        problems.append('run.ray.address: expected "auto", HOST:PORT or ray://HOST:PORT (omit it for Ray\'s default)')


def _check_range(where: str, value: int, lo: int, hi: int, problems: list[str]) -> None:
    if not lo <= value <= hi:
        problems.append(f"{where}: expected an integer in [{lo}, {hi:,}], got {value:,}")


def _check_name(where: str, name: str, problems: list[str]) -> None:
    """A name that becomes a file or folder name: non-empty, one path component, printable."""
    if not name.strip():
        problems.append(f"{where}: expected a non-empty name")
    elif any(c in name for c in _NAME_FORBIDDEN) or ".." in name or not name.isprintable():
        problems.append(f"{where}: {name!r} becomes a file or folder name: no '/', '\\', '..', NUL or control characters")


def _check_url(where: str, url: str, problems: list[str]) -> None:
    """An http(s) URL with a host (and a valid port, if any)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in 0-65535
    except ValueError as exc:
        problems.append(f"{where}: not a valid URL ({exc}): {url!r}")
        return
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in url):
        problems.append(f"{where}: expected an http(s) URL with a host, such as http://127.0.0.1:8000/v1, got {url!r}")


def _suggest(name: str, options: dict) -> str:
    close = difflib.get_close_matches(name, list(options), n=1)
    listing = f"expected one of {', '.join(sorted(options))}"
    return f" ({listing}; did you mean '{close[0]}'?)" if close else f" ({listing})"


def _check_unique(table: str, key: str, values: list[str], problems: list[str]) -> None:
    seen = set()
    for i, v in enumerate(values):
        if v in seen:
            problems.append(f"{table}[{i}].{key}: duplicate value '{v}'")
        seen.add(v)


def load_grid(source: str | Path | Mapping[str, Any], *, base_dir: str | Path | None = None) -> GridConfig:
    """Parse and validate a grid; every relative path in it resolves against the grid file's folder.

    `source` is a grid.toml path (str or Path); or, with `base_dir` (the folder relative paths resolve
    against), the grid's TOML text (str) or its tables as a dict (what tomllib.loads returns). Messages name the
    file, or `<grid>` for text or a dict. Reads the files the grid names (personas, data, rubrics) only to check
    they exist; builds no plan.

    Raises GridError (a ValueError) listing every problem, one per line: `FILE: key.path: what (expected ...)`;
    TypeError for a dict or TOML text (a str with a line break) without base_dir.
    """
    if base_dir is None:
        if not isinstance(source, (str, Path)):
            raise TypeError("load_grid: a dict of tables needs base_dir (the folder its relative paths resolve against)")
        if isinstance(source, str) and "\n" in source:  # TOML text, not a file name
            raise TypeError("load_grid: TOML text needs base_dir (the folder its relative paths resolve against)")
        path = Path(source)
        label = str(path)
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise GridError([f"{path}: grid file not found"]) from None
        except tomllib.TOMLDecodeError as exc:
            raise GridError([f"{path}: not valid TOML ({exc})"]) from None
        except UnicodeDecodeError as exc:
            raise GridError([f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason})"]) from None
        except OSError as exc:  # a directory, no permission
            raise GridError([f"{path}: cannot read the grid file ({exc.strerror or exc})"]) from None
    else:
        # No file: the folder is what relative paths need; "<grid>" names no file (the manifest's grid_sha256 is None)
        path, label = Path(base_dir) / "<grid>", "<grid>"
        if isinstance(source, str):
            try:
                raw = tomllib.loads(source)
            except tomllib.TOMLDecodeError as exc:
                raise GridError([f"{label}: not valid TOML ({exc})"]) from None
        elif isinstance(source, Mapping):
            raw = dict(source)
        else:
            raise TypeError(f"load_grid: with base_dir, expected TOML text or a dict, got {type(source).__name__}")
    return _validate(raw, path, label)


def _validate(raw: dict[str, Any], path: Path, label: str) -> GridConfig:
    problems: list[str] = []
    grid = _build(GridConfig, raw, "", problems)
    if grid is not None and not problems:
        grid = dataclasses.replace(grid, path=path.resolve())
        _check_semantics(grid, problems)
    if grid is not None and not problems:
        # Providers see only their ModelConfig: hand them the key file as an absolute path.
        def absolute_key(m: ModelConfig) -> ModelConfig:
            return m if m.api_key_file is None else dataclasses.replace(m, api_key_file=str(grid.resolve(m.api_key_file).resolve()))

        judge = grid.judge and dataclasses.replace(grid.judge, model=absolute_key(grid.judge.model))
        grid = dataclasses.replace(grid, models=tuple(absolute_key(m) for m in grid.models), judge=judge)
    if problems:
        raise GridError([f"{label}: {p}" for p in problems])
    return grid
