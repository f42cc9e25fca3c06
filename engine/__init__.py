"""mtpa-engine: persona x question x model x condition grids, cached, resumable, rate-limited.

The library face (engine._api): load_grid, dry_run, run, run_async, open_run, build_report, their result types
and the engine's errors (engine.errors). Names are imported on first use, so `import engine` (and every
`mtpa-engine` command's start) stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name -> the module defining it
_FACE = {
    "load_grid": "engine.grid",
    "dry_run": "engine._api",
    "run": "engine._api",
    "run_async": "engine._api",
    "open_run": "engine._api",
    "build_report": "engine._api",
    "DryRun": "engine._api",
    "ReportOutcome": "engine._api",
    "RunOutcome": "engine.runner",
    "GridConfig": "engine.config",
    **dict.fromkeys(
        (
            "EngineError",
            "GridError",
            "RunError",
            "RunDirError",
            "PreflightError",
            "WriteError",
            "CacheError",
            "CacheWriteError",
            "ResultsWriteError",
            "ReportError",
        ),
        "engine.errors",
    ),
}

__all__ = list(_FACE)

if TYPE_CHECKING:
    from engine._api import DryRun, ReportOutcome, build_report, dry_run, open_run, run, run_async  # noqa: F401
    from engine.config import GridConfig  # noqa: F401
    from engine.errors import (  # noqa: F401
        CacheError,
        CacheWriteError,
        EngineError,
        GridError,
        PreflightError,
        ReportError,
        ResultsWriteError,
        RunDirError,
        RunError,
        WriteError,
    )
    from engine.grid import load_grid  # noqa: F401
    from engine.runner import RunOutcome  # noqa: F401


def __getattr__(name: str) -> Any:
    module = _FACE.get(name)
    if module is None:
        raise AttributeError(f"module 'engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
