"""The run manifest: enough to say exactly what produced a result set (never a secret)."""

from __future__ import annotations

import hashlib
import os
import platform
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson

from bench_adapters.rubric import Rubric
from engine.config import GridConfig
from engine.grid import option_defaults

_PACKAGES = ("mtpa-engine", "polars", "orjson", "openai", "aiohttp", "torch", "transformers", "click", "tenacity")


def package_versions() -> dict[str, str | None]:
    """Installed version of each of _PACKAGES (None: not installed), as `importlib.metadata.version` gives it.

    Read from the `{name}-{version}.dist-info` folder's name (packaging.python.org, "Recording installed
    projects") where there is one: parsing each METADATA file with the email parser, as `version` does, took
    ~50 ms of every run's start (torch's and transformers' are long); other layouts (egg-info) are parsed."""
    versions: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
            continue
        folder = getattr(dist, "_path", None)
        if isinstance(folder, Path) and folder.name.endswith(".dist-info") and "-" in folder.name:
            versions[name] = folder.name.removesuffix(".dist-info").split("-", 1)[1]
        else:
            versions[name] = dist.version
    return versions


def _platform() -> str:
    """The OS as `platform.platform()` names it on Linux ("Linux-6.8.0-x86_64-with-glibc2.36"), elsewhere
    system-release-machine: without the `uname -p` subprocess `platform.platform()` forks for the processor
    name, ~8 ms of every run's start."""
    u = platform.uname()  # its `processor`, the one slow field, is only looked up when read
    name = f"{u.system}-{u.release}-{u.machine}"
    if u.system == "Linux":
        lib, version = platform.libc_ver()
        name += f"-with-{lib}{version}" if lib else ""
    return name


def build_manifest(
    grid: GridConfig,
    identities: dict[str, dict[str, Any]],
    cells: dict[str, int],
    rubrics: dict[str, Rubric] | None = None,
    higher_is_better: dict[str, bool] | None = None,
) -> dict[str, Any]:
    """The manifest of a run starting now (status "running"). `higher_is_better`: per benchmark (its grid id),
    its adapter's score direction, which the report reads from here (it imports no adapter)."""
    return {
        "run": grid.run.name,
        "grid_file": str(grid.path),
        # None for a grid given as text or a dict (engine.grid.load_grid with base_dir): there is no file
        "grid_sha256": hashlib.sha256(grid.path.read_bytes()).hexdigest() if grid.path.is_file() else None,
        "config_hash": grid.config_hash(option_defaults()),
        "config": grid.canonical(option_defaults()),
        "seeds": {
            "run": grid.run.seed,
            "benchmarks": {b.label: b.seed for b in grid.benchmarks},
            "models": {m.id: m.seed for m in grid.models},
        },
        "models": {m.id: {"provider": m.provider, "model": m.model, "identity": identities[m.id]} for m in grid.models},
        "judge": None
        if grid.judge is None
        else {"id": grid.judge.model.id, "provider": grid.judge.model.provider, "model": grid.judge.model.model, "mode": grid.judge.mode, "identity": identities[grid.judge.model.id]},
        "rubrics": {label: {"name": r.name, "source": r.source, "sha256": r.digest} for label, r in (rubrics or {}).items()},
        "cells": cells,
        "higher_is_better": higher_is_better or {},
        "python": sys.version.split()[0],
        "platform": _platform(),
        "packages": package_versions(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "status": "running",
    }


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk leaves no half-written temp file behind
        raise
