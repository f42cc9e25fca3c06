"""Every error the engine raises on purpose, in one hierarchy (it imports nothing, so any module can use it).

    EngineError
    ├── GridError              a grid that does not validate (ValueError)
    ├── RunError               a run that cannot start or that stopped (RuntimeError)
    │   ├── RunDirError        an unusable output/cache path, or another run holds the folder
    │   ├── PreflightError     a model that cannot be called at all (no key, key rejected, unknown model)
    │   ├── CacheError         a cache file that cannot be used
    │   │   └── CacheWriteError    a cache commit failed mid-run (also a WriteError)
    │   └── WriteError         a write failed mid-run (full disk, I/O error); what was committed stays
    │       └── ResultsWriteError  a results part file or the personas table
    ├── ReportError            a run folder or report option the report cannot use (ValueError)
    ├── CacheToolError         `cache merge/stats/vacuum/export` on an unusable file or argument (ValueError)
    └── ProviderError          one call's failure, classified by engine.providers.errors (retried or recorded)
        ├── HTTPStatusError    a non-2xx answer
        ├── MalformedBody      a 2xx body that is not the JSON it should be
        │   └── IncompleteAnswer   JSON without an answer where one must be
        └── ContentFiltered    the provider refused or blocked the answer

The modules that raise them re-export their own (`engine.cache.CacheError` is this CacheError). Each keeps the
builtin base it had (ValueError / RuntimeError / Exception), so `except ValueError` around a grid still works.
Survey and adapter input errors stay in their packages, which import nothing from the engine:
`persona_builder.PersonaFileError` and `bench_adapters.sources.RecordError` (both ValueError).
"""

from __future__ import annotations

from collections.abc import Mapping


class EngineError(Exception):
    """Base of every error the engine raises on purpose; str() is the user-facing message."""


class GridError(EngineError, ValueError):
    """An invalid grid; str() lists every problem found, one per line, each `FILE: key.path: what (expected ...)`."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class RunError(EngineError, RuntimeError):
    """A run could not start, or stopped; the message names the path, model or file and the cause."""


class RunDirError(RunError):
    """A path the run needs is unusable, or another run holds the folder; the message names the path."""


class PreflightError(RunError):
    """A model cannot be called at all (no key, key rejected, unknown model): stop before the grid starts."""


class WriteError(RunError):
    """A write failed mid-run (e.g. no space left); every answer committed before it is kept, so a rerun resumes."""


class CacheError(RunError):
    """The cache file cannot be used or written; the message names the file and the cause."""


class CacheWriteError(CacheError, WriteError):
    """A commit failed mid-run (e.g. "database or disk is full"); every earlier commit stays."""


class ResultsWriteError(WriteError):
    """A part file could not be written; the message names the file and the cause (e.g. no space left)."""


class ReportError(EngineError, ValueError):
    """A run directory or option the report cannot use; the message says which and why."""


class TemplateError(EngineError, ValueError):
    """A prompt template that cannot be loaded or rendered (engine.templates); the message names the file, the
    line and the cause."""


class CacheToolError(EngineError, ValueError):
    """A file that is not a usable cache, or a bad argument: the message is one line naming the file."""


class ProviderError(EngineError):
    """One call's failure that the engine classifies itself (engine.providers.errors.classify): retried when
    transient, else recorded in the results as that cell's error kind."""


class HTTPStatusError(ProviderError):
    """A non-2xx answer from a provider, for transports that do not raise their own typed errors."""

    def __init__(self, status_code: int, body: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(body)
        self.status_code = status_code
        self.headers = headers or {}


class MalformedBody(ProviderError):
    """A 2xx answer whose body is not the JSON it should be: a truncated or garbled reply, worth one more try."""


class ContentFiltered(ProviderError):
    """The provider refused or blocked the answer; asking again would only pay for the same refusal."""


class IncompleteAnswer(MalformedBody):
    """A 2xx JSON body without an answer where one must be (no choices, or null text and no finish reason):
    a server hiccup, retried like a garbled body and never cached as the model's answer."""
