"""The `mtpa-engine` console script and `python -m engine`: engine.cli.entry, with the cyclic garbage collector
paused from before the CLI's own imports (entry resumes it where a command starts its work).

Importing engine.cli with the collector on ran ~50 young collections, ~6 ms of every command's start
(bench/startup.py); `python -m engine.cli` still works, without that saving."""

import gc

gc.disable()
from engine.cli import entry  # noqa: E402

if __name__ == "__main__":
    entry()
